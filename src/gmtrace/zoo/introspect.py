"""Introspection: the 15 architecture hyperparameters of any `torch.nn.Module`.

`describe(module)` is the only source of the zoo's architecture ground truth. It
works in two passes:

* a **static walk** over `named_modules()` counts layers, filters, norms, pools,
  blocks and parameters (a module or parameter used twice counts once);
* an **execution trace** (one forward pass on an example input under a
  `TorchFunctionMode`, in eval mode, without gradients, with the random state and
  every submodule's training flag restored afterwards) sees what only running the
  network shows: which activation ends it, which activation the blocks use
  (functional calls too), how feature maps grow and shrink, whether an earlier
  feature map is added to or concatenated with a later one (a skip connection),
  functional pooling and normalization, and how undeclared custom layers use
  their parameters.

Without an example input the order-dependent fields fall back to registration
order, which is right for plain `nn.Sequential` stacks.

Custom layers can say what they are with class attributes, so that users can
annotate their own GMs:

* ``gmtrace_role = "conv" | "fc" | "norm" | "pool" | "none"`` (the module itself
  is one such layer, or none; its children are counted on their own)
* ``gmtrace_norm = "batch" | "instance" | "layer_group"`` (for a custom norm;
  a declared norm without it counts as layer_group)
* ``gmtrace_block = True`` (a repeated block; nested blocks count once, outermost)
* ``gmtrace_skip = True`` (the module makes a skip connection the trace cannot see)

An undeclared module that owns parameters directly (a custom layer; the
originals behind spectral or weight norm included) is judged by how it uses them.
With a trace: each distinct set of its parameters that reaches the weight argument
of a convolution (possibly scaled, modulated, normalized or reshaped first; weight
norm's magnitude and direction are one set) is one conv layer, whose output
channels are the ``out_channels`` attribute when the module has one conv and that
attribute, else the largest parameter's output-channel dimension (the first, after
a leading batch-broadcast 1 such as StyleGAN's [1, out, in, k, k]; for a
transposed convolution the second times the groups). Each set reaching `F.linear`,
a fused attention or recurrent op, or the parameter side of a matmul on a feature
is one fully connected layer. Parameters used otherwise (a learned constant input,
a noise or bias scale) are no layer. Without a trace, or when the forward pass
never touches its parameters, each parameter with at least two dimensions larger
than 1 is a conv layer when it has 3 or more dimensions and a fully connected one
when it has 2 (a learned 4-D constant then looks like a conv: declare it "none").

Field definitions (raw values; `gmtrace.core.schema` encodes them):

* ``n_conv`` / ``n_fc``: conv (any `_ConvNd`, transposed included, or declared)
  and fully connected (`nn.Linear`, `nn.Bilinear`, or declared) layers, plus the
  custom layers above. ``n_layers = n_conv + n_fc`` (norms, embeddings excluded).
* ``n_filters``: sum of output channels over the conv layers.
* ``n_pool``: pooling modules (`MaxPool`, `AvgPool`, adaptive, LP, fractional, or
  declared; registered ones count even if unused) plus functional pooling calls on
  input-derived maps in the trace, outside pooling modules (unpooling is not
  pooling). Functional calls count per module instance as the most calls one
  forward of that instance makes, so a module run twice counts once and a loop
  counts each iteration.
* ``n_norm``: normalization modules (batch, instance, layer, group, local
  response, RMS, or declared) plus functional norm calls counted like pools.
* ``norm_type``: the most frequent norm kind; ties go to batch, then instance,
  then layer_group; ``none`` without norms.
* ``n_blocks``: the outermost declared blocks; when no module declares
  ``gmtrace_block``, the repeated sibling containers (two or more children of one
  parent with the same class, or the same container layout for `nn.Sequential`,
  `nn.ModuleList`, `nn.ModuleDict`, that are not layers themselves and hold weight
  layers); a flat stack has none. ``n_layers_per_block`` is the mean number of
  weight layers per block (shared ones once), rounded to 2 decimals (0 without
  blocks).
* ``n_params``: parameters with ``requires_grad``, each counted once.
* ``last_activation``: the activation the output (its first tensor when it is a
  tuple, list or dict) passes through after its last weight layer (shape and
  elementwise arithmetic such as ``x * 0.5 + 0.5`` keep it, a weight layer or a
  norm ends it; through an add or concat the deepest operand's counts): tanh,
  sigmoid, none, or other (hardtanh, clamp, softmax, relu, ...).
* ``block_activation``: the most frequent activation class among the activation
  calls that run before the last weight layer and inside a block (all of them
  when none runs inside a block, e.g. without blocks); ties go to relu, then
  leaky_relu, smooth, other; ``other`` when there is none. Without a trace:
  activation modules in registration order, the one after the last weight layer
  excluded. Extra ``block_activation_fn``: the most frequent function of that class.
* ``upsampling`` / extra ``upsampling_kind``: the up-sampling kind that grows the
  most feature channels (summed over calls, weighted by the output channels of
  each call; ties in the order transposed, nearest, bilinear, pixel_shuffle);
  growing a 1x1 map (a projection) does not count; bilinear covers every linear
  or cubic mode and transposed convolutions with a fixed (not learned) kernel.
  ``learned`` for transposed and pixel_shuffle, else ``fixed`` (``fixed`` also
  when nothing up-samples, kind ``none``). Without a trace: strided transposed
  conv, `nn.Upsample` and `nn.PixelShuffle` modules, counted once each.
* ``skip_connection``: an add of two equally shaped tensors (4-D and up: at
  least 2 pixels; else at least 2 values per sample) or a channel concat of two
  4-D+ maps of equal spatial size (at least 2 pixels) whose operands derive from a
  common input and went through different numbers of weight layers since it.
  Noise (``randn_like``...) and parameters derive from no input, so noise
  injection and the VAE reparametrization on equal-depth branches are no skip,
  nor is merging two different inputs; a layer applied to a constant (a learned
  input, a grid, noise) starts a signal of its own. Or any ``gmtrace_skip``.
* ``downsampling``: a convolution or pooling with stride > 1 (adaptive and
  fractional pooling, down-scaling interpolation and pixel unshuffle by the size
  they return) that shrinks the map in the trace; statically any strided conv,
  pooling with stride > 1, adaptive pooling or pixel unshuffle.
"""

from __future__ import annotations

import importlib.util
import sys
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.overrides import TorchFunctionMode

from gmtrace.core.schema import ARCH_NAMES, UPSAMPLING_KINDS
from gmtrace.zoo.architecture import ACT_CLASS, BLOCK_ACT_CLASSES, NORM_KINDS, Architecture

_ROLES = ("conv", "fc", "norm", "pool", "none")
_NORM_TYPES: tuple[tuple[type, str], ...] = (
    (nn.modules.batchnorm._BatchNorm, "batch"),
    (nn.modules.instancenorm._InstanceNorm, "instance"),
    (nn.LayerNorm, "layer_group"),
    (nn.GroupNorm, "layer_group"),
    (nn.LocalResponseNorm, "layer_group"),
    *(((nn.RMSNorm, "layer_group"),) if hasattr(nn, "RMSNorm") else ()),
)
_POOL_TYPES: tuple[type, ...] = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
    nn.FractionalMaxPool2d,
    nn.FractionalMaxPool3d,
)
_CONTAINERS: tuple[type, ...] = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NOT_LAYERS: tuple[type, ...] = (
    *_CONTAINERS,
    nn.ParameterList,
    nn.ParameterDict,
    nn.Embedding,
    nn.EmbeddingBag,
)
# Activation names (function or module, lower case, trailing "_" dropped) -> class.
# Functions that may end a network without being a block activation.
_OUTPUT_ONLY = {"softmax", "log_softmax", "softmin", "clamp", "clip"}
_ACT_MODULES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Threshold: "threshold",
    nn.LeakyReLU: "leaky_relu",
    nn.RReLU: "rrelu",
    nn.ELU: "elu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Softplus: "softplus",
    nn.Mish: "mish",
    nn.CELU: "celu",
    nn.SELU: "selu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.PReLU: "prelu",
    nn.Hardtanh: "hardtanh",
    nn.Hardswish: "hardswish",
    nn.Hardsigmoid: "hardsigmoid",
    nn.Softsign: "softsign",
    nn.Tanhshrink: "tanhshrink",
    nn.LogSigmoid: "logsigmoid",
    nn.Hardshrink: "hardshrink",
    nn.Softshrink: "softshrink",
    nn.GLU: "glu",
    nn.Softmax: "softmax",
    nn.Softmax2d: "softmax",
    nn.LogSoftmax: "log_softmax",
    nn.Softmin: "softmin",
}
_CONV_FUNCS = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "_convolution",
    "convolution",
}
_FC_FUNCS = {"linear", "bilinear"}
_MATMUL_FUNCS = {"matmul", "mm", "bmm", "addmm", "baddbmm", "addbmm", "einsum"}
_NORM_FUNCS = {
    "batch_norm": "batch",
    "instance_norm": "instance",
    "layer_norm": "layer_group",
    "group_norm": "layer_group",
    "rms_norm": "layer_group",
    "local_response_norm": "layer_group",
}
# Fused layers whose 2-D parameter arguments are each one fully connected layer.
_FUSED_FC_FUNCS = {"multi_head_attention_forward", "lstm", "gru", "rnn_tanh", "rnn_relu"}
_INTERP_FUNCS = {"interpolate", "upsample", "upsample_nearest", "upsample_bilinear"}
_ADD_FUNCS = {"add", "iadd", "radd"}
_CAT_FUNCS = {"cat", "concat", "concatenate"}
# Outputs of these never carry the input's signal (noise, constants, overwrites).
_FRESH_FUNCS = {
    "randn_like",
    "rand_like",
    "randint_like",
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "new_empty",
    "new_zeros",
    "new_ones",
    "new_full",
    "new_tensor",
    "bernoulli",
    "uniform",
    "exponential",
    "geometric",
    "cauchy",
    "log_normal",
    "random",
    "zero",
    "fill",
}


# ---------------------------------------------------------------------------
# what a module is


def _declared(m: nn.Module, attr: str, allowed: tuple[str, ...]) -> str | None:
    value = getattr(m, attr, None)
    if value is not None and value not in allowed:
        raise ValueError(
            f"{type(m).__name__}.{attr} = {value!r}: expected one of {', '.join(allowed)}"
        )
    return value


def _act_module(m: nn.Module) -> str | None:
    for cls in type(m).__mro__:
        if cls in _ACT_MODULES:
            return _ACT_MODULES[cls]
    return None


def _role(m: nn.Module) -> str | None:
    """conv, fc, norm, pool or act by declaration or by type; None otherwise
    (containers, declared "none", and custom layers, judged by their parameters)."""
    declared = _declared(m, "gmtrace_role", _ROLES)
    if declared is not None:
        return None if declared == "none" else declared
    if isinstance(m, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(m, (nn.Linear, nn.Bilinear)):
        return "fc"
    if any(isinstance(m, t) for t, _ in _NORM_TYPES):
        return "norm"
    if isinstance(m, _POOL_TYPES):
        return "pool"
    if _act_module(m) is not None:
        return "act"
    return None


def _own_params(m: nn.Module) -> list[nn.Parameter]:
    """Parameters a module owns directly, with the originals behind its
    parametrized tensors (spectral or weight norm)."""
    own = list(m.parameters(recurse=False))
    if parametrize.is_parametrized(m):
        own += [p for p in m.parametrizations.parameters() if all(p is not q for q in own)]
    return own


def _is_custom_layer(m: nn.Module) -> bool:
    """Undeclared, untyped, and owning parameters of 2 or more dimensions."""
    return (
        getattr(m, "gmtrace_role", None) is None
        and _role(m) is None
        and not isinstance(m, _NOT_LAYERS)
        and any(p.dim() >= 2 for p in _own_params(m))
    )


def _norm_kind(m: nn.Module) -> str:
    declared = _declared(m, "gmtrace_norm", NORM_KINDS)
    if declared:
        return declared
    for t, kind in _NORM_TYPES:
        if isinstance(m, t):
            return kind
    return "layer_group"


def _max_int(value, default: int = 1) -> int:
    if isinstance(value, (tuple, list)):
        return max((int(v) for v in value), default=default)
    return default if value is None else int(value)


def _strip_broadcast(shape: tuple[int, ...], weight_dim: int | None) -> tuple[int, ...]:
    """Drop a leading batch-broadcast 1 (StyleGAN keeps weights as [1, out, in, k, k])."""
    if weight_dim is not None:
        return shape[1:] if len(shape) == weight_dim + 1 and shape[0] == 1 else shape
    return shape[1:] if len(shape) >= 5 and shape[0] == 1 else shape


def _out_channels(m: nn.Module) -> int:
    """Output channels of a conv module (typed or declared)."""
    if isinstance(getattr(m, "out_channels", None), int):
        return int(m.out_channels)
    weights = [p for p in _own_params(m) if p.dim() >= 3]
    return int(_strip_broadcast(tuple(weights[0].shape), None)[0]) if weights else 0


@dataclass
class _Use:
    """How the trace saw a parameter used as a layer weight."""

    kind: str  # "conv" or "fc"
    transposed: bool = False
    groups: int = 1
    weight_dim: int | None = None


@dataclass
class _Layer:
    """What one module contributes to the counts."""

    n_conv: int = 0
    n_fc: int = 0
    filters: int = 0
    norm: str | None = None
    pool: bool = False
    act: str | None = None

    @property
    def weights(self) -> int:
        return self.n_conv + self.n_fc


def _static_use(p: nn.Parameter) -> _Use | None:
    """Without a trace: a weight has at least two dimensions larger than 1."""
    big = sum(1 for s in p.shape if s > 1)
    if big < 2:
        return None
    return _Use("conv") if p.dim() >= 3 else _Use("fc") if p.dim() == 2 else None


def _traced_uses(module: nn.Module, trace: _Trace) -> dict[int, list[tuple[nn.Parameter, _Use]]]:
    """The weights the trace saw, by custom layer: one per distinct set of parameters
    feeding a weight argument (weight norm's magnitude and direction make one), owned
    by the layer holding the largest parameter of the set."""
    first: dict[int, tuple[nn.Module, nn.Parameter]] = {}  # a tied parameter: first owner
    for m in module.modules():
        for p in _own_params(m):
            first.setdefault(id(p), (m, p))
    owner = {pid: mp for pid, mp in first.items() if _is_custom_layer(mp[0])}
    rank = {pid: i for i, pid in enumerate(owner)}
    out: dict[int, list[tuple[nn.Parameter, _Use]]] = {}
    for origin, use in trace.uses.items():
        mine = sorted((pid for pid in origin if pid in owner), key=rank.__getitem__)
        if mine:
            m, p = max((owner[pid] for pid in mine), key=lambda mp: mp[1].numel())
            out.setdefault(id(m), []).append((p, use))
    return out


def _custom_layer(
    m: nn.Module,
    seen: set[int],
    trace: _Trace | None,
    traced_uses: dict[int, list[tuple[nn.Parameter, _Use]]],
) -> _Layer:
    layer = _Layer()
    own = [p for p in _own_params(m) if id(p) not in seen]
    seen.update(id(p) for p in own)
    if trace is not None and any(id(p) in trace.touched for p in own):
        uses = traced_uses.get(id(m), [])
    else:
        uses = [(p, use) for p in own if (use := _static_use(p)) is not None]
    filters = []
    for p, use in uses:
        if use.kind == "fc":
            layer.n_fc += 1
            continue
        layer.n_conv += 1
        shape = _strip_broadcast(tuple(p.shape), use.weight_dim)
        filters.append(shape[1] * use.groups if use.transposed and len(shape) > 1 else shape[0])
    out_attr = getattr(m, "out_channels", None)
    if len(filters) == 1 and isinstance(out_attr, int):
        filters = [out_attr]
    layer.filters = int(sum(filters))
    return layer


def _layers(module: nn.Module, trace: _Trace | None) -> list[tuple[nn.Module, _Layer]]:
    """Every distinct module in registration order with what it counts as."""
    out = []
    seen: set[int] = set()
    traced_uses = _traced_uses(module, trace) if trace is not None else {}
    for _, m in module.named_modules():
        role = _role(m)
        layer = _Layer()
        if role == "conv":
            layer.n_conv, layer.filters = 1, _out_channels(m)
        elif role == "fc":
            layer.n_fc = 1
        elif role == "norm":
            layer.norm = _norm_kind(m)
        elif role == "pool":
            layer.pool = True
        elif role == "act":
            layer.act = _act_module(m)
        elif _is_custom_layer(m):
            layer = _custom_layer(m, seen, trace, traced_uses)
        seen.update(id(p) for p in _own_params(m))
        out.append((m, layer))
    return out


# ---------------------------------------------------------------------------
# blocks


def _signature(m: nn.Module):
    """Class for custom modules; class and child layout for generic containers."""
    if type(m) in _CONTAINERS:
        return (type(m), tuple(_signature(c) for c in m.children()))
    return type(m)


def _blocks(
    module: nn.Module, weights: Callable[[nn.Module], int], is_layer: Callable[[nn.Module], bool]
) -> list[nn.Module]:
    """Outermost repeated blocks: declared ones, else repeated sibling containers."""
    declared: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        for child in m.children():
            if getattr(child, "gmtrace_block", False):
                declared.append(child)
            else:
                visit(child)

    visit(module)
    if declared:
        return declared
    found: list[nn.Module] = []

    def candidate(c: nn.Module) -> bool:
        return bool(list(c.children())) and not is_layer(c) and weights(c) > 0

    def visit_structural(m: nn.Module) -> None:
        children = list(m.children())
        kinds = Counter(_signature(c) for c in children if candidate(c))
        for c in children:
            if candidate(c) and kinds[_signature(c)] >= 2:
                found.append(c)
            else:
                visit_structural(c)

    visit_structural(module)
    return found


# ---------------------------------------------------------------------------
# the execution trace


def _fn_name(name: str) -> str:
    return name.lower().rstrip("_").replace("__", "")


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for t in obj if isinstance(t, torch.Tensor)]
    return []


def _first_tensor(obj) -> torch.Tensor | None:
    if isinstance(obj, torch.Tensor):
        return obj
    items: Iterable = ()
    if isinstance(obj, (list, tuple)):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    for item in items:
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def _all_tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _all_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _all_tensors(item)]
    return []


def _arg(args: tuple, kwargs: dict, pos: int, key: str, default=None):
    if key in kwargs:
        return kwargs[key]
    return args[pos] if len(args) > pos else default


def _spatial(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape[2:]) if t.dim() >= 3 else ()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _interp_kind(mode) -> str:
    mode = str(mode)
    return "bilinear" if "linear" in mode or "cubic" in mode else "nearest"


class _TensorTable:
    """Facts about live tensors by id; an entry goes when its tensor dies, so
    nothing is kept alive and a later tensor reusing the id inherits nothing."""

    def __init__(self) -> None:
        self._d: dict[int, list] = {}

    def get(self, t: torch.Tensor):
        entry = self._d.get(id(t))
        return None if entry is None else entry[1]

    def set(self, t: torch.Tensor, value) -> None:
        key = id(t)
        entry = self._d.get(key)
        if entry is not None and entry[0]() is t:
            entry[1] = value
            return
        table = self._d

        def drop(ref, key=key) -> None:
            current = table.get(key)
            if current is not None and current[0] is ref:
                del table[key]

        self._d[key] = [weakref.ref(t, drop), value]

    def drop(self, t: torch.Tensor) -> None:
        self._d.pop(id(t), None)


@dataclass
class _Frame:
    """One running forward of one module."""

    module: nn.Module
    role: str | None
    pools: int = 0
    norms: list[str] = field(default_factory=list)


@dataclass
class _Trace:
    """What one forward pass showed."""

    uses: dict[frozenset[int], _Use]  # parameters feeding one weight argument
    touched: set[int]
    # activation calls before the last weight layer, with the ids of the running modules
    acts: list[tuple[str, frozenset[int]]]
    last_act: str
    up: list[tuple[str, int]]
    down: bool
    skip: bool
    pools: int
    norms: list[str]


class _Tracer(TorchFunctionMode):
    """Records the torch function calls of one forward pass: for each tensor derived
    from the example input its depth in weight layers and the last activation since
    its last weight layer; for each tensor derived from a parameter which ones."""

    def __init__(self, params: Iterable[nn.Parameter]) -> None:
        super().__init__()
        # input-derived tensor -> (depth, last activation or None, indices of the inputs)
        self.graph = _TensorTable()
        self.origin = _TensorTable()  # parameter-derived tensor -> frozenset of param ids
        self.params: dict[int, nn.Parameter] = {}
        for p in params:
            self.params[id(p)] = p
            self.origin.set(p, frozenset((id(p),)))
        self.uses: dict[frozenset[int], _Use] = {}
        self.touched: set[int] = set()
        self.index = 0
        self.last_weight = -1
        self.acts: list[tuple[int, str, frozenset[int]]] = []
        self.up: list[tuple[str, int]] = []
        self.down = False
        self.skip = False
        self.stack: list[_Frame] = []
        self.in_role: Counter = Counter()
        self.pools: dict[int, int] = {}
        self.norms: dict[int, list[str]] = {}

    # module stack, fed by forward hooks
    def enter(self, module: nn.Module) -> None:
        role = _role(module)
        self.stack.append(_Frame(module, role))
        self.in_role[role] += 1

    def leave(self, module: nn.Module) -> None:
        if not self.stack or self.stack[-1].module is not module:
            return
        frame = self.stack.pop()
        self.in_role[frame.role] -= 1
        key = id(module)
        self.pools[key] = max(self.pools.get(key, 0), frame.pools)
        if len(frame.norms) > len(self.norms.get(key, ())):
            self.norms[key] = frame.norms

    def mark_input(self, t: torch.Tensor, index: int) -> None:
        self.graph.set(t, (0, None, frozenset((index,))))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        raw = getattr(func, "__name__", "")
        name = _fn_name(raw)
        outs = _tensors(out)
        if name == "setitem" and args and isinstance(args[0], torch.Tensor):
            outs = [args[0]]  # x[i] = y writes y into x
        if outs:
            ins = [t for a in (*args, *kwargs.values()) for t in _tensors(a)]
            self._record(name, raw, args, kwargs, ins, outs)
        return out

    def _weight_use(self, name: str, args: tuple, kwargs: dict, ins: list[torch.Tensor]) -> bool:
        """Record parameters used as layer weights; True when this call is a layer
        with a learned (parameter- or input-derived) weight."""
        if name in _CONV_FUNCS or name in _FC_FUNCS:
            w = _arg(args, kwargs, 2 if name == "bilinear" else 1, "weight")
            if not isinstance(w, torch.Tensor):
                return False
            origin = self.origin.get(w)
            if name in _FC_FUNCS:
                use = _Use("fc")
            else:
                general = name in ("_convolution", "convolution")
                transposed = (
                    bool(_arg(args, kwargs, 6, "transposed", False))
                    if general
                    else name.startswith("conv_transpose")
                )
                groups = _max_int(_arg(args, kwargs, 8 if general else 6, "groups", 1))
                use = _Use("conv", transposed, groups, w.dim())
            if origin:
                self.uses.setdefault(origin, use)
            return bool(origin) or self.graph.get(w) is not None
        if name in _MATMUL_FUNCS and any(self.graph.get(t) is not None for t in ins):
            found = False
            for t in ins:
                origin = self.origin.get(t)
                if origin and self.graph.get(t) is None:
                    found = True
                    self.uses.setdefault(origin, _Use("fc"))
            return found
        if name in _FUSED_FC_FUNCS:
            for t in ins:
                if id(t) in self.params and t.dim() == 2:
                    self.uses.setdefault(frozenset((id(t),)), _Use("fc"))
            return True
        return False

    def _record(
        self,
        name: str,
        raw: str,
        args: tuple,
        kwargs: dict,
        ins: list[torch.Tensor],
        outs: list[torch.Tensor],
    ) -> None:
        index = self.index
        self.index += 1
        self.touched.update(id(t) for t in ins if id(t) in self.params)
        fresh = name in _FRESH_FUNCS or raw == "normal_"
        weight = self._weight_use(name, args, kwargs, ins)
        embedding = name == "embedding"
        # parameter provenance: a layer's output is a feature, not a weight
        if fresh or weight or embedding:
            for o in outs:
                if id(o) not in self.params:
                    self.origin.drop(o)
        else:
            merged = frozenset().union(*(self.origin.get(t) or () for t in ins))
            if merged:
                for o in outs:
                    if id(o) not in self.params:
                        self.origin.set(o, merged)
        if weight and name not in _MATMUL_FUNCS and ins and self.graph.get(ins[0]) is None:
            # a layer applied to a constant (a learned input, a coordinate grid, noise)
            # starts a new signal of its own
            self.graph.set(ins[0], (0, None, frozenset((id(ins[0]),))))
        graph_in = [(t, self.graph.get(t)) for t in ins]
        graph_in = [(t, g) for t, g in graph_in if g is not None]
        if fresh:
            for o in outs:
                self.graph.drop(o)
            return
        if not graph_in:
            return
        depth = max(g[0] for _, g in graph_in) + (1 if weight or embedding else 0)
        if weight or name in _NORM_FUNCS:
            tag = None
        elif name in ACT_CLASS or name in _OUTPUT_ONLY:
            tag = name
        else:
            tag = max(graph_in, key=lambda tg: tg[1][0])[1][1]
        if len(graph_in) >= 2 and (name in _ADD_FUNCS or name in _CAT_FUNCS):
            self._check_skip(name, [t for t, _ in graph_in], args, kwargs)
        sources = frozenset().union(*(g[2] for _, g in graph_in))
        for o in outs:
            self.graph.set(o, (depth, tag, sources))
        if weight:
            self.last_weight = index
        if name in ACT_CLASS:
            self.acts.append((index, name, frozenset(id(f.module) for f in self.stack)))
        self._shape_events(name, args, kwargs, graph_in[0][0], outs[0], weight)

    def _shape_events(
        self, name: str, args: tuple, kwargs: dict, x: torch.Tensor, y: torch.Tensor, learned: bool
    ) -> None:
        sx, sy = _spatial(x), _spatial(y)
        same_rank = len(sx) == len(sy) > 0
        grows = same_rank and all(b >= a for a, b in zip(sx, sy, strict=True)) and sy != sx
        shrinks = same_rank and all(b <= a for a, b in zip(sx, sy, strict=True)) and sy != sx
        channels = int(y.shape[1]) if y.dim() >= 2 else 1
        conv = name in _CONV_FUNCS
        general = name in ("_convolution", "convolution")
        transposed = conv and (
            name.startswith("conv_transpose")
            or (general and bool(_arg(args, kwargs, 6, "transposed")))
        )
        if grows and _numel(sx) > 1:
            if transposed:  # with a fixed kernel (a buffer) it interpolates
                self.up.append(("transposed" if learned else "bilinear", channels))
            elif name in _INTERP_FUNCS:
                default = "bilinear" if name == "upsample_bilinear" else "nearest"
                self.up.append((_interp_kind(_arg(args, kwargs, 3, "mode", default)), channels))
            elif name == "pixel_shuffle":
                self.up.append(("pixel_shuffle", channels))
        if shrinks:
            if conv and not transposed:
                self.down = self.down or _max_int(_arg(args, kwargs, 3, "stride", 1)) > 1
            elif name.startswith(("avg_pool", "max_pool")):
                stride = _arg(args, kwargs, 2, "stride")
                if stride is None or stride == [] or stride == ():
                    stride = _arg(args, kwargs, 1, "kernel_size", 1)
                self.down = self.down or _max_int(stride) > 1
            elif name.startswith("lp_pool"):
                stride = _arg(args, kwargs, 3, "stride")
                stride = _arg(args, kwargs, 2, "kernel_size", 1) if stride is None else stride
                self.down = self.down or _max_int(stride) > 1
            elif "pool" in name or name in _INTERP_FUNCS or name == "pixel_unshuffle":
                self.down = True
        frame = self.stack[-1] if self.stack else None
        if frame is None:
            return
        if "pool" in name and "unpool" not in name and not self.in_role["pool"]:
            frame.pools += 1
        if name in _NORM_FUNCS and not self.in_role["norm"]:
            frame.norms.append(_NORM_FUNCS[name])

    def _check_skip(
        self, name: str, tensors: list[torch.Tensor], args: tuple, kwargs: dict
    ) -> None:
        first = tensors[0]
        if name in _ADD_FUNCS:
            same = [t for t in tensors if t.shape == first.shape]
            per_sample = _spatial(first) if first.dim() >= 4 else tuple(first.shape[1:])
            if first.dim() < 2 or _numel(per_sample) < 2:
                return
        else:
            dim = _arg(args, kwargs, 1, "dim", 0)
            if first.dim() < 4 or not isinstance(dim, int) or dim % first.dim() != 1:
                return
            if _numel(_spatial(first)) < 2:
                return
            same = [t for t in tensors if t.dim() == first.dim() and _spatial(t) == _spatial(first)]
        facts = [self.graph.get(t) for t in same]
        for i, (depth_a, _, sources_a) in enumerate(facts):
            for depth_b, _, sources_b in facts[i + 1 :]:
                if depth_a != depth_b and sources_a & sources_b:
                    self.skip = True

    def result(self, output) -> _Trace:
        y = _first_tensor(output)
        g = self.graph.get(y) if y is not None else None
        pools = sum(self.pools.values())
        norms = [k for kinds in self.norms.values() for k in kinds]
        return _Trace(
            uses=self.uses,
            touched=self.touched,
            acts=[(n, ids) for i, n, ids in self.acts if i < self.last_weight],
            last_act=(g[1] or "none") if g is not None else "none",
            up=self.up,
            down=self.down,
            skip=self.skip,
            pools=pools,
            norms=norms,
        )


def _one_line(exc: BaseException) -> str:
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _trace(module: nn.Module, example: tuple) -> _Trace:
    tracer = _Tracer(module.parameters())
    handles = []
    for m in module.modules():
        handles.append(m.register_forward_pre_hook(lambda mod, _a: tracer.enter(mod)))
        handles.append(
            m.register_forward_hook(lambda mod, _a, _o: tracer.leave(mod), always_call=True)
        )
    flags = [(m, m.training) for m in module.modules()]
    tensors = _all_tensors(example) + list(module.parameters()) + list(module.buffers())
    cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    try:
        for m, _ in flags:  # eval mode, set directly as it is restored below
            m.training = False
        with torch.random.fork_rng(devices=cuda), torch.no_grad(), tracer:
            for i, t in enumerate(_all_tensors(example)):
                tracer.mark_input(t, i)
            output = module(*example)
        return tracer.result(output)
    except Exception as exc:
        raise ValueError(
            f"{type(module).__name__}: forward pass on the example input failed: {_one_line(exc)}"
        ) from exc
    finally:
        for m, training in flags:
            m.training = training
        for h in handles:
            h.remove()


# ---------------------------------------------------------------------------
# describe


def _dominant(items: Iterable[tuple[str, float]], order: tuple[str, ...]) -> str | None:
    """The key with the largest total weight; ties go to the earliest in `order`."""
    totals: Counter = Counter()
    for key, weight in items:
        totals[key] += weight
    if not totals:
        return None
    best = max(totals.values())
    return next(k for k in order if totals.get(k) == best)


def _static_shape(layers: list[tuple[nn.Module, _Layer]]) -> tuple[list, bool]:
    """Up-sampling kinds and down-sampling from module types and strides alone."""
    up: list[tuple[str, int]] = []
    down = False
    for m, layer in layers:
        stride = _max_int(getattr(m, "stride", 1))
        if isinstance(m, nn.modules.conv._ConvTransposeNd):
            if stride > 1:
                up.append(("transposed", 1))
        elif isinstance(m, nn.modules.conv._ConvNd) and stride > 1:
            down = True
        elif isinstance(m, nn.PixelShuffle):
            up.append(("pixel_shuffle", 1))
        elif isinstance(m, nn.Upsample):
            up.append((_interp_kind(m.mode), 1))
        elif isinstance(m, nn.PixelUnshuffle):
            down = True
        elif layer.pool:
            if isinstance(
                m,
                (
                    nn.modules.pooling._MaxPoolNd,
                    nn.modules.pooling._AvgPoolNd,
                    nn.modules.pooling._LPPoolNd,
                ),
            ):
                pool_stride = m.stride if m.stride else m.kernel_size
                down = down or _max_int(pool_stride) > 1
            else:
                down = True
    return up, down


def describe(module: nn.Module, example_input=None) -> Architecture:
    """Compute the 15 architecture hyperparameters of `module` (see the module
    docstring for the definition of each).

    `example_input` is a tensor or tuple of positional arguments for one forward
    pass; when it is None and the module has an ``example_input()`` method, that is
    used. Without any, order-dependent fields come from registration order.
    Raises TypeError for a non-module, ValueError for an invalid ``gmtrace_*``
    declaration or a forward pass that fails on the example input.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"describe() needs a torch.nn.Module, got {type(module).__name__}")
    if example_input is None and callable(getattr(module, "example_input", None)):
        example_input = module.example_input()
    for m in module.modules():  # invalid declarations fail here, before any forward
        if _role(m) == "norm":
            _norm_kind(m)
    trace = None
    if example_input is not None:
        example = example_input if isinstance(example_input, tuple) else (example_input,)
        trace = _trace(module, example)
    layers = _layers(module, trace)
    by_id = {id(m): layer for m, layer in layers}

    def weights(m: nn.Module) -> int:
        return sum(by_id[id(s)].weights for s in m.modules() if id(s) in by_id)

    def is_layer(m: nn.Module) -> bool:
        layer = by_id.get(id(m))
        return _role(m) is not None or (layer is not None and layer.weights > 0)

    blocks = _blocks(module, weights, is_layer)
    per_block = [weights(b) for b in blocks]
    norms = [layer.norm for _, layer in layers if layer.norm]
    n_pool = sum(layer.pool for _, layer in layers)
    static_skip = any(getattr(m, "gmtrace_skip", False) for m, _ in layers)
    in_block = {id(s) for b in blocks for s in b.modules()}
    if trace is not None:
        norms += trace.norms
        n_pool += trace.pools
        last, up, down = trace.last_act, trace.up, trace.down
        skip = trace.skip or static_skip
        acts = [name for name, _ in trace.acts]
        acts_in_blocks = [name for name, ids in trace.acts if ids & in_block]
    else:
        order = [(m, layer.act) for m, layer in layers if layer.act or layer.weights]
        last = order[-1][1] if order and order[-1][1] else "none"
        if last != "none":
            order.pop()  # the output activation is not a block activation
        acts = [a for _, a in order if a]
        acts_in_blocks = [a for m, a in order if a and id(m) in in_block]
        up, down = _static_shape(layers)
        skip = static_skip
    acts = acts_in_blocks or acts
    n_conv = sum(layer.n_conv for _, layer in layers)
    n_fc = sum(layer.n_fc for _, layer in layers)
    block_acts = [a for a in acts if a in ACT_CLASS]
    block_class = _dominant(((ACT_CLASS[a], 1) for a in block_acts), BLOCK_ACT_CLASSES)
    up_kind = _dominant(up, UPSAMPLING_KINDS[1:]) or "none"
    values: dict[str, float | str] = {
        "n_layers": n_conv + n_fc,
        "n_conv": n_conv,
        "n_fc": n_fc,
        "n_pool": n_pool,
        "n_norm": len(norms),
        "n_filters": sum(layer.filters for _, layer in layers),
        "n_blocks": len(blocks),
        "n_layers_per_block": round(sum(per_block) / len(per_block), 2) if per_block else 0.0,
        "n_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "norm_type": _dominant(((n, 1) for n in norms), NORM_KINDS) or "none",
        "last_activation": (last if last in ("none", "tanh", "sigmoid") else "other"),
        "block_activation": block_class or "other",
        "upsampling": "learned" if up_kind in ("transposed", "pixel_shuffle") else "fixed",
        "skip_connection": "yes" if skip else "no",
        "downsampling": "yes" if down else "no",
    }
    values = {name: values[name] for name in ARCH_NAMES}
    in_class = [a for a in block_acts if ACT_CLASS[a] == block_class]
    extra = {
        "upsampling_kind": up_kind,
        "last_activation_fn": last,
        "block_activation_fn": Counter(in_class).most_common(1)[0][0] if in_class else "none",
    }
    return Architecture(values=values, extra=extra, traced=trace is not None)


# ---------------------------------------------------------------------------
# loading user models


def load_object(spec: str) -> object:
    """Load ``FILE.py:NAME`` from a user's file (it runs that file's code)."""
    if ":" not in spec:
        raise ValueError(f"{spec}: expected FILE.py:NAME")
    path_s, name = spec.rsplit(":", 1)
    path = Path(path_s)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    mod_name = f"_gmtrace_user_{abs(hash(str(path.resolve())))}"
    spec_obj = importlib.util.spec_from_file_location(mod_name, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ValueError(f"{path}: not a Python file")
    user = importlib.util.module_from_spec(spec_obj)
    sys.modules[mod_name] = user
    spec_obj.loader.exec_module(user)
    if not hasattr(user, name):
        raise AttributeError(f"{path}: has no {name!r}")
    return getattr(user, name)


def module_from(obj: object) -> nn.Module:
    """An nn.Module from an instance, a class or a zero-argument factory."""
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, type) and issubclass(obj, nn.Module) or isinstance(obj, Callable):
        built = obj()
        if isinstance(built, nn.Module):
            return built
    raise TypeError(f"{obj!r} is not an nn.Module, a Module class or a factory returning one")
