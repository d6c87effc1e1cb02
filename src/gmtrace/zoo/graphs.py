"""The 15 architecture hyperparameters of a network given as a graph file: an ncnn
graph (`model.param`) or an ONNX model (`model.onnx`). No torch, no ncnn runtime.

This is the ground truth of generators gmtrace did not build (the pretrained tier),
and what an analyst runs on a generator found in the wild. Each front end turns its
format's layers into `Op`s of a few kinds; `describe_ops` computes the values from
them with the definitions `zoo.introspect` uses for torch modules (docs/graphs.md
lists where a graph must differ):

* weight layers: convolutions and transposed convolutions (``n_conv``), fully
  connected layers (``n_fc``; an ONNX MatMul on a weight initializer too);
  ``n_filters`` sums the conv layers' output channels; ``n_params`` sums the weights
  and biases of every layer that has them (norms' affine parameters, PReLU slopes,
  learned per-channel scales and biases included);
* ``n_pool``: pooling layers; ``downsampling``: a strided convolution, a pooling
  that shrinks the map (strided, global or adaptive), space-to-depth, or an
  interpolation with a scale below 1;
* up-sampling: transposed convolutions with stride > 1, pixel shuffle
  (DepthToSpace), nearest / linear / cubic interpolation with a scale above 1; the
  kind growing the most output channels wins (ties: transposed, nearest, bilinear,
  pixel_shuffle); growing a 1x1 map does not count;
* a skip connection is an add (or a channel concat) of two operands that share an
  ancestor and went through different numbers of weight layers since the nearest
  one they share; operands of different inputs, or a 1x1 map (a squeeze-excitation
  branch), make none;
* blocks: every skip join is a block; its layers are the weight layers between
  the shared ancestor and the join, each counted in the innermost block holding
  it; ``n_layers_per_block`` is their mean (a torch module's blocks are its
  repeated sibling containers, which a graph does not keep);
* ``last_activation``: going back from the output through shape and element-wise
  operations (an add or concat follows its deepest operand) to the first
  activation or weight layer (its fused activation, or none);
* ``block_activation``: the dominant activation class among those that run before
  the last weight layer, inside blocks when any are;
* normalization: a converter may fold a batch norm into the convolution before it
  (ncnn's optimizer and torch's ONNX export both do), which leaves no trace in the
  graph. ``n_norm`` and ``norm_type`` are therefore `UNKNOWN` unless the graph holds
  a batch norm right after a convolution (proof that nothing was folded) or the
  caller says the norms were kept.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gmtrace.core.schema import ARCH_NAMES, UNKNOWN, UPSAMPLING_KINDS
from gmtrace.zoo.architecture import ACT_CLASS, BLOCK_ACT_CLASSES, NORM_KINDS, Architecture
from gmtrace.zoo.ncnn import Graph, GraphError, Layer, read_param

GRAPH_SUFFIXES = (".param", ".onnx")

WEIGHT_KINDS = ("conv", "deconv", "fc")


@dataclass
class Op:
    """One layer of a graph, in the terms `describe_ops` needs.

    kind: input, const, conv, deconv, fc, pool, norm, act, up, down, add, concat,
    mul, pass (shape and element-wise operations that carry their first input on).
    """

    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    channels: int | None = None  # output channels (weight layers, inputs)
    weights: int = 0  # learned values this layer owns
    stride: int = 1
    act: str | None = None  # an act op's function, or a weight layer's fused one
    norm: str | None = None  # batch, instance, layer_group
    up: str | None = None  # transposed, nearest, bilinear, pixel_shuffle
    factor: float = 1.0  # pixel shuffle's factor (channels shrink by its square)
    shrinks: bool = False  # pool, down: the map gets smaller
    flat: bool = False  # output is a 1x1 map or a vector (global pooling, fc)


@dataclass
class _Blob:
    op: int  # index of the op that wrote it
    channels: int | None
    signal: bool  # derives from an input of the network (not a constant)
    flat: bool


@dataclass
class _Graph:
    ops: list[Op]
    output: str
    path: str
    norms_kept: bool | None = None
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# ncnn


_NCNN_FUSED = {1: "relu", 2: "leaky_relu", 3: "clip", 4: "sigmoid", 5: "mish", 6: "hardswish"}
_NCNN_ACTS = {
    "Sigmoid": "sigmoid",
    "TanH": "tanh",
    "ELU": "elu",
    "GELU": "gelu",
    "Swish": "silu",
    "SiLU": "silu",
    "Mish": "mish",
    "PReLU": "prelu",
    "Clip": "clip",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
    "SELU": "selu",
    "Softplus": "softplus",
    "Softmax": "softmax",
    "CELU": "celu",
}
_NCNN_NORMS = {
    "BatchNorm": "batch",
    "InstanceNorm": "instance",
    "LayerNorm": "layer_group",
    "GroupNorm": "layer_group",
    "LRN": "layer_group",
    "RMSNorm": "layer_group",
}
_NCNN_CONV = {
    "Convolution",
    "ConvolutionDepthWise",
    "Convolution1D",
    "Convolution3D",
    "ConvolutionDepthWise1D",
    "ConvolutionDepthWise3D",
}
_NCNN_DECONV = {
    "Deconvolution",
    "DeconvolutionDepthWise",
    "Deconvolution1D",
    "Deconvolution3D",
    "DeconvolutionDepthWise1D",
    "DeconvolutionDepthWise3D",
}
_NCNN_POOL = {"Pooling", "Pooling1D", "Pooling3D"}
# layers that carry their first input on (shape, copies, element-wise on one input)
_NCNN_PASS = {
    "Split",
    "Crop",
    "Reshape",
    "Flatten",
    "Permute",
    "Padding",
    "Slice",
    "Squeeze",
    "ExpandDims",
    "Noop",
    "Dropout",
    "Packing",
    "Cast",
    "UnaryOp",
    "Power",
    "Exp",
    "Log",
    "AbsVal",
    "Bias",
    "Threshold",
    "Reduction",
    "Quantize",
    "Dequantize",
    "Requantize",
    "Tile",
    "ShuffleChannel",
    "Flip",
}


def _fused(layer: Layer) -> str | None:
    code = int(layer.get(9, 0))
    if code == 2:
        slope = layer.get(10, [0.0])
        return "leaky_relu" if slope and float(slope[0]) != 0.0 else "relu"
    return _NCNN_FUSED.get(code)


def _ncnn_op(layer: Layer) -> Op:
    t, g = layer.type, layer.get
    # Crop's and Interp's second input gives only the size to match: no signal
    ins = layer.inputs[:1] if t in ("Crop", "Interp") else layer.inputs
    op = Op("pass", layer.name, ins, layer.outputs)
    if t == "Input":
        op.kind, op.channels = "input", int(g(2, 0)) or None
    elif t == "MemoryData":
        op.kind = "const"
    elif t in _NCNN_CONV or t in _NCNN_DECONV:
        op.kind = "conv" if t in _NCNN_CONV else "deconv"
        op.channels = int(g(0))
        op.weights = int(g(6)) + (op.channels if int(g(5, 0)) else 0)
        op.stride = max(int(g(3, 1)), int(g(13, g(3, 1))))
        op.act = _fused(layer)
        if op.kind == "deconv" and op.stride > 1:
            op.up = "transposed"
    elif t == "InnerProduct":
        op.kind, op.channels, op.flat = "fc", int(g(0)), True
        op.weights = int(g(2)) + (op.channels if int(g(1, 0)) else 0)
        op.act = _fused(layer)
    elif t in _NCNN_POOL:
        op.kind = "pool"
        whole = bool(int(g(4, 0))) or bool(int(g(7, 0)))  # global or adaptive
        stride = max(int(g(2, 1)), int(g(12, g(2, 1))))
        op.shrinks, op.flat = whole or stride > 1, bool(int(g(4, 0)))
    elif t in _NCNN_NORMS:
        op.kind, op.norm = "norm", _NCNN_NORMS[t]
        channels = int(g(0, 0))
        affine = {"BatchNorm": 1, "InstanceNorm": int(g(2, 1))}.get(t, int(g(2, 1)))
        op.weights = 2 * channels * affine
    elif t == "ReLU":
        op.kind, op.act = "act", "leaky_relu" if float(g(0, 0.0)) != 0.0 else "relu"
    elif t in _NCNN_ACTS:
        op.kind, op.act = "act", _NCNN_ACTS[t]
        if t == "PReLU":
            op.weights = int(g(0, 1))
    elif t == "Interp":
        scale = max(float(g(1, 1.0)), float(g(2, 1.0)))
        mode = {1: "nearest", 2: "bilinear", 3: "bilinear"}.get(int(g(0, 1)), "nearest")
        if scale > 1 or (scale == 1 and len(layer.inputs) > 1):  # grows to a reference size
            op.kind, op.up = "up", mode
        elif scale < 1:
            op.kind, op.shrinks = "down", True
    elif t == "PixelShuffle":
        op.kind, op.up, op.factor = "up", "pixel_shuffle", float(g(0, 1))
    elif t == "Reorg":
        op.kind, op.shrinks = "down", True
    elif t in ("BinaryOp", "Eltwise"):
        two = len(layer.inputs) >= 2
        code = int(g(0, 0 if t == "BinaryOp" else 1))
        add = code in (0, 1) if t == "BinaryOp" else code == 1
        mul = code == 2 if t == "BinaryOp" else code == 0
        if two and add:
            op.kind = "add"
        elif two and mul:
            op.kind = "mul"
    elif t == "Scale":
        if len(layer.inputs) >= 2:
            op.kind = "mul"
        else:  # a learned per-channel scale (and bias)
            op.weights = int(g(0, 0)) * (2 if int(g(1, 0)) else 1)
    elif t == "Concat":
        op.kind = "concat" if int(g(0, 0)) == 0 else "pass"
    elif t not in _NCNN_PASS:
        raise ValueError(f"unsupported layer type {t}")
    return op


def ncnn_graph(path: str | Path, norms_kept: bool | None = None) -> _Graph:
    graph: Graph = read_param(path)
    ops = []
    for i, layer in enumerate(graph.layers, start=3):
        try:
            ops.append(_ncnn_op(layer))
        except (ValueError, TypeError, IndexError) as e:
            raise GraphError(f"{path}: line {i}: layer {layer.name}: {e}") from None
    if not ops or not ops[-1].outputs:
        raise GraphError(f"{path}: the graph has no output")
    return _Graph(ops, ops[-1].outputs[0], str(path), norms_kept)


# ---------------------------------------------------------------------------
# ONNX

_ONNX_ACTS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "PRelu": "prelu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Elu": "elu",
    "Selu": "selu",
    "Celu": "celu",
    "Gelu": "gelu",
    "Softplus": "softplus",
    "Mish": "mish",
    "HardSigmoid": "hardsigmoid",
    "HardSwish": "hardswish",
    "Softsign": "softsign",
    "Clip": "clip",
    "Softmax": "softmax",
    "LogSoftmax": "softmax",
    "ThresholdedRelu": "relu",
}
_ONNX_NORMS = {
    "BatchNormalization": "batch",
    "InstanceNormalization": "instance",
    "LayerNormalization": "layer_group",
    "GroupNormalization": "layer_group",
    "LRN": "layer_group",
    "RMSNormalization": "layer_group",
    "SimplifiedLayerNormalization": "layer_group",
}
_ONNX_POOL = {
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
}
_ONNX_PASS = {
    "Identity",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Pad",
    "Cast",
    "Shape",
    "Gather",
    "Dropout",
    "Split",
    "Expand",
    "Tile",
    "Sub",
    "Div",
    "Pow",
    "Sqrt",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Erf",
    "Floor",
    "Ceil",
    "Round",
    "Min",
    "Max",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "Sin",
    "Cos",
    "Reciprocal",
    "Sign",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "Not",
    "And",
    "Or",
    "ConstantOfShape",
    "Range",
    "Einsum",
    "CumSum",
    "Trilu",
    "NonZero",
    "ScatterND",
    "GatherElements",
    "ArgMax",
    "TopK",
    "DequantizeLinear",
    "QuantizeLinear",
}


def _onnx_attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def onnx_graph(path: str | Path, norms_kept: bool | None = None) -> _Graph:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:  # pragma: no cover - onnx is a dependency
        raise GraphError(f"{path}: reading ONNX needs the onnx package") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises several kinds
        raise GraphError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
    g = model.graph
    init = {t.name: t for t in g.initializer}
    values = {t.name: numpy_helper.to_array(t) for t in g.initializer if len(t.dims) <= 1}
    ops: list[Op] = []
    for vi in g.input:
        if vi.name in init:
            continue
        dims = vi.type.tensor_type.shape.dim
        c = dims[1].dim_value if len(dims) > 1 and dims[1].dim_value else None
        ops.append(Op("input", vi.name, [], [vi.name], channels=c))
    if init:
        ops.append(Op("const", "initializers", [], list(init)))

    counted: set[str] = set()

    def numel(name: str) -> int:
        """Values of an initializer, the first time a layer claims it (shared once)."""
        t = init.get(name)
        if t is None or name in counted:
            return 0
        counted.add(name)
        return int(_prod(t.dims))

    for node in g.node:
        if node.op_type == "Identity" and node.input[0] in init:
            init[node.output[0]] = init[node.input[0]]  # an alias of a shared weight
            ops.append(Op("const", node.name or "Identity", [], [node.output[0]]))
            continue
        try:
            ops.append(_onnx_op(node, _onnx_attrs(node), init, values, numel))
        except (ValueError, TypeError, IndexError, KeyError) as e:
            name = node.name or node.op_type
            raise GraphError(f"{path}: node {name}: {e}") from None
        if node.op_type == "Constant":
            a = _onnx_attrs(node)
            if "value" in a:
                values[node.output[0]] = numpy_helper.to_array(a["value"])
    if not g.output:
        raise GraphError(f"{path}: the graph has no output")
    _fold_silu(ops)
    return _Graph(ops, g.output[0].name, str(path), norms_kept)


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _onnx_op(node, a: dict, init: dict, values: dict, numel) -> Op:
    t = node.op_type
    ins = [i for i in node.input if i]
    op = Op("pass", node.name or t, ins, list(node.output))
    if t == "Constant":
        op.kind = "const"
    elif t in ("Conv", "ConvTranspose"):
        w = init.get(ins[1])
        if w is None:
            raise ValueError(f"{t} weight {ins[1]!r} is not an initializer")
        groups = int(a.get("group", 1))
        op.kind = "conv" if t == "Conv" else "deconv"
        op.channels = int(w.dims[0]) if t == "Conv" else int(w.dims[1]) * groups
        op.weights = sum(numel(i) for i in ins[1:])
        op.stride = max(a.get("strides", [1]) or [1])
        if op.kind == "deconv" and op.stride > 1:
            op.up = "transposed"
    elif t == "Gemm" or (t == "MatMul" and any(i in init and len(init[i].dims) >= 2 for i in ins)):
        w = next(init[i] for i in ins if i in init and len(init[i].dims) >= 2)
        trans = t == "Gemm" and int(a.get("transB", 0))
        op.kind, op.flat = "fc", True
        op.channels = int(w.dims[0] if trans else w.dims[-1])
        op.weights = sum(numel(i) for i in ins)
    elif t in _ONNX_POOL:
        op.kind = "pool"
        glob = t.startswith("Global")
        op.shrinks, op.flat = glob or max(a.get("strides", [1]) or [1]) > 1, glob
    elif t in _ONNX_NORMS:
        op.kind, op.norm = "norm", _ONNX_NORMS[t]
        op.weights = sum(numel(i) for i in ins[1:3])
    elif t in _ONNX_ACTS:
        op.kind, op.act = "act", _ONNX_ACTS[t]
        if t == "LeakyRelu" and float(a.get("alpha", 0.01)) == 0.0:
            op.act = "relu"
        op.weights = sum(numel(i) for i in ins[1:]) if t == "PRelu" else 0
    elif t in ("Resize", "Upsample"):
        scale = _resize_scale(ins, values)
        mode = a.get("mode", b"nearest")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if scale is None or scale > 1:
            op.kind, op.up = "up", "nearest" if mode == "nearest" else "bilinear"
        elif scale < 1:
            op.kind, op.shrinks = "down", True
    elif t == "DepthToSpace":
        op.kind, op.up, op.factor = "up", "pixel_shuffle", float(a.get("blocksize", 1))
    elif t == "SpaceToDepth":
        op.kind, op.shrinks = "down", True
    elif t in ("Add", "Mul", "Sum"):
        learned = [i for i in ins if i in init and numel(i) > 1]
        op.weights = sum(numel(i) for i in learned)
        data = [i for i in ins if i not in init and i not in values]
        if len(data) >= 2:
            op.kind = "mul" if t == "Mul" else "add"
        op.inputs = data or ins
    elif t == "Concat":
        op.kind = "concat" if int(a.get("axis", 1)) == 1 else "pass"
    elif t not in _ONNX_PASS:
        raise ValueError(f"unsupported operator {t}")
    if op.kind == "pass" and t in _ONNX_PASS:
        op.inputs = [i for i in ins if i not in init] or ins
    return op


def _resize_scale(ins: list[str], values: dict) -> float | None:
    """The largest spatial scale of a Resize/Upsample, or None when only a size is
    given (then growth is assumed: a generator resizes up)."""
    for name in ins[1:]:
        v = values.get(name)
        if v is not None and v.dtype.kind == "f" and v.size >= 3:
            return float(max(v.reshape(-1)[2:]))
    return None


def _fold_silu(ops: list[Op]) -> None:
    """x * sigmoid(x) (how torch exports SiLU) is one silu activation."""
    writer = {b: op for op in ops for b in op.outputs}
    for op in ops:
        if op.kind != "mul" or len(op.inputs) != 2:
            continue
        for a, b in (op.inputs, op.inputs[::-1]):
            sig = writer.get(b)
            if (
                sig is not None
                and sig.kind == "act"
                and sig.act == "sigmoid"
                and sig.inputs[:1] == [a]
            ):
                sig.act = "silu"
                op.kind, op.inputs = "pass", [b]
                break


# ---------------------------------------------------------------------------
# describe


def read_graph(path: str | Path, norms_kept: bool | None = None) -> _Graph:
    p = Path(path)
    if not p.is_file():
        raise GraphError(f"{p}: no such file")
    if p.suffix == ".param":
        return ncnn_graph(p, norms_kept)
    if p.suffix == ".onnx":
        return onnx_graph(p, norms_kept)
    raise GraphError(f"{p}: not a graph file (expected {' or '.join(GRAPH_SUFFIXES)})")


def describe_graph(path: str | Path, norms_kept: bool | None = None) -> Architecture:
    """The 15 hyperparameters of the network in an ncnn `.param` or ONNX `.onnx`
    file; `GraphError` (naming the file and the layer) when it cannot be read.

    `norms_kept`: True when the converter is known to have kept every normalization
    layer, False when it may have folded some; None infers it from the graph."""
    return describe_ops(read_graph(path, norms_kept))


def _dominant(items, order: tuple[str, ...]) -> str | None:
    totals: Counter = Counter()
    for key, weight in items:
        totals[key] += weight
    if not totals:
        return None
    best = max(totals.values())
    return next(k for k in order if totals.get(k) == best)


def describe_ops(graph: _Graph) -> Architecture:
    ops = graph.ops
    blobs: dict[str, _Blob] = {}
    ancestors: list[frozenset[int]] = []  # ops each op's output derives from (itself too)
    depth: list[int] = []  # weight layers on the longest path from an input
    for i, op in enumerate(ops):
        data = [blobs[b] for b in op.inputs if b in blobs]
        missing = [b for b in op.inputs if b not in blobs]
        if missing and op.kind not in ("input", "const"):
            raise GraphError(
                f"{graph.path}: layer {op.name} reads {missing[0]}, which no earlier layer writes"
            )
        signal = [d for d in data if d.signal]
        anc = frozenset({i}).union(*(ancestors[d.op] for d in signal)) if signal else frozenset({i})
        ancestors.append(anc)
        depth.append(max((depth[d.op] for d in signal), default=0) + (op.kind in WEIGHT_KINDS))
        first = signal[0] if signal else (data[0] if data else None)
        channels = op.channels
        if op.kind == "concat":
            chans = [d.channels for d in signal]
            channels = sum(chans) if chans and None not in chans else None
        elif op.kind not in ("input", "const", *WEIGHT_KINDS):
            channels = first.channels if first else None
            if op.up == "pixel_shuffle" and channels:
                channels = int(channels / op.factor**2)
        is_signal = op.kind == "input" or bool(signal)
        flat = op.flat or (
            first is not None and first.flat and op.kind not in ("up", "input", "const")
        )
        for b in op.outputs:
            blobs[b] = _Blob(i, channels, is_signal, flat)
    if graph.output not in blobs:
        raise GraphError(f"{graph.path}: the output {graph.output} is written by no layer")

    weight_ops = [i for i, op in enumerate(ops) if op.kind in WEIGHT_KINDS]
    # skip joins and the blocks they close
    spans: list[frozenset[int]] = []
    for op in ops:
        if op.kind not in ("add", "concat"):
            continue
        operands = [blobs[b] for b in op.inputs if b in blobs and blobs[b].signal]
        if len(operands) < 2 or any(d.flat for d in operands):
            continue
        if op.kind == "add" and len({d.channels for d in operands if d.channels}) > 1:
            continue  # broadcasting, not a join of two maps
        sides = [ancestors[d.op] for d in operands]
        shared = frozenset.intersection(*sides)
        if not shared:
            continue  # different inputs merged
        own = [frozenset(j for j in s - shared if ops[j].kind in WEIGHT_KINDS) for s in sides]
        if len({len(s) for s in own}) > 1:
            spans.append(frozenset(j for s in sides for j in s - shared))
    skip = bool(spans)
    # each weight layer in the innermost block holding it
    exclusive = Counter()
    for j in weight_ops:
        holders = [k for k, s in enumerate(spans) if j in s]
        if holders:
            exclusive[min(holders, key=lambda k: len(spans[k]))] += 1
    per_block = [exclusive[k] for k in range(len(spans))]
    in_block = frozenset().union(*spans) if spans else frozenset()

    # activations: the output's, then the blocks'
    last, last_op = _last_activation(ops, blobs, depth, graph.output)
    last_weight = max(weight_ops, default=-1)
    acts: list[tuple[str, bool]] = []  # (activation, inside a block)
    for i, op in enumerate(ops):
        if op.act is None or i == last_op:
            continue
        if op.kind == "act" and i < last_weight or op.kind in WEIGHT_KINDS and i < last_weight:
            acts.append((op.act, i in in_block))
    chosen = [a for a, inside in acts if inside] or [a for a, _ in acts]
    classes = [ACT_CLASS.get(a, "other") for a in chosen]
    block_class = _dominant(((c, 1) for c in classes), BLOCK_ACT_CLASSES)
    in_class = [a for a, c in zip(chosen, classes, strict=True) if c == block_class]

    # how maps grow and shrink
    up: list[tuple[str, int]] = []
    for op in ops:
        if op.up is None:
            continue
        before = blobs[op.inputs[0]] if op.inputs and op.inputs[0] in blobs else None
        if before is not None and before.flat:
            continue  # a projection out of a vector
        out = blobs[op.outputs[0]].channels or 1
        up.append((op.up, out))
    up_kind = _dominant(up, UPSAMPLING_KINDS[1:]) or "none"
    down = any(op.kind in ("conv", "pool", "down") and (op.stride > 1 or op.shrinks) for op in ops)

    norms = [op.norm for op in ops if op.kind == "norm"]
    kept = graph.norms_kept
    notes = list(graph.notes)
    if kept is None:
        kept = any(
            op.kind == "norm"
            and op.norm == "batch"
            and op.inputs
            and op.inputs[0] in blobs
            and ops[blobs[op.inputs[0]].op].kind in ("conv", "deconv")
            for op in ops
        )
    if not kept:
        notes.append(
            "n_norm and norm_type are unknown: a converter may have folded batch norms "
            "into the convolutions, which leaves no trace in the graph"
        )
    n_conv = sum(ops[i].kind in ("conv", "deconv") for i in weight_ops)
    n_fc = sum(ops[i].kind == "fc" for i in weight_ops)
    values: dict[str, float | str] = {
        "n_layers": n_conv + n_fc,
        "n_conv": n_conv,
        "n_fc": n_fc,
        "n_pool": sum(op.kind == "pool" for op in ops),
        "n_norm": len(norms) if kept else UNKNOWN,
        "n_filters": sum(ops[i].channels or 0 for i in weight_ops if ops[i].kind != "fc"),
        "n_blocks": len(spans),
        "n_layers_per_block": round(sum(per_block) / len(per_block), 2) if per_block else 0.0,
        "n_params": sum(op.weights for op in ops),
        "norm_type": (_dominant(((n, 1) for n in norms), NORM_KINDS) or "none")
        if kept
        else UNKNOWN,
        "last_activation": last if last in ("none", "tanh", "sigmoid") else "other",
        "block_activation": block_class or "other",
        "upsampling": "learned" if up_kind in ("transposed", "pixel_shuffle") else "fixed",
        "skip_connection": "yes" if skip else "no",
        "downsampling": "yes" if down else "no",
    }
    extra = {
        "upsampling_kind": up_kind,
        "last_activation_fn": last,
        "block_activation_fn": Counter(in_class).most_common(1)[0][0] if in_class else "none",
    }
    return Architecture({n: values[n] for n in ARCH_NAMES}, extra, traced=True, notes=notes)


def _last_activation(
    ops: list[Op], blobs: dict[str, _Blob], depth: list[int], output: str
) -> tuple[str, int]:
    """The activation on the network's output, and the op that applies it (-1)."""
    blob = output
    seen: set[int] = set()
    while blob in blobs:
        i = blobs[blob].op
        if i in seen:
            break
        seen.add(i)
        op = ops[i]
        if op.kind == "act":
            return op.act or "none", i
        if op.kind in WEIGHT_KINDS:
            return (op.act or "none"), (i if op.act else -1)
        if op.kind in ("norm", "input", "const"):
            return "none", -1
        data = [b for b in op.inputs if b in blobs and blobs[b].signal]
        if not data:
            return "none", -1
        blob = (
            max(data, key=lambda b: depth[blobs[b].op])
            if op.kind in ("add", "concat", "mul")
            else data[0]
        )
    return "none", -1
