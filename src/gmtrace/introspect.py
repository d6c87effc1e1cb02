"""Introspection: the 15 architecture hyperparameters of any `torch.nn.Module`.

`describe(module)` is the only source of the zoo's architecture ground truth. It
works in two passes:

* a **static walk** over `named_modules()` counts layers, filters, norms, pools,
  blocks and parameters;
* an **execution trace** (one forward pass on an example input under a
  `TorchFunctionMode`) sees what only running the network shows: which
  activation ends it, which activation the blocks use (functional calls too),
  how feature maps grow and shrink, and whether an earlier feature map is added
  to or concatenated with a later one (a skip connection).

Without an example input the order-dependent fields fall back to registration
order, which is right for plain `nn.Sequential` stacks.

Custom layers can say what they are with class attributes, so that users can
annotate their own GMs:

* ``gmtrace_role = "conv" | "fc" | "norm" | "pool" | "none"``
* ``gmtrace_norm = "batch" | "instance" | "layer_group"`` (for a custom norm)
* ``gmtrace_block = True`` (a repeated block; nested blocks count once, outermost)

An undeclared module that owns parameters directly counts as a conv layer when one
of them has 3 or more dimensions and as a fully connected layer when one has 2.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gmtrace.schema import ARCH_NAMES, UPSAMPLING_KINDS, arch_row

_NORM_TYPES: tuple[tuple[type, str], ...] = (
    (nn.modules.batchnorm._BatchNorm, "batch"),
    (nn.modules.instancenorm._InstanceNorm, "instance"),
    (nn.LayerNorm, "layer_group"),
    (nn.GroupNorm, "layer_group"),
    (nn.LocalResponseNorm, "layer_group"),
    (nn.RMSNorm, "layer_group"),
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
# Activation names (function or module, lower case, trailing "_" dropped) -> class.
_ACT_CLASS: dict[str, str] = {
    "relu": "relu",
    "relu6": "relu",
    "threshold": "relu",
    "leaky_relu": "leaky_relu",
    "leakyrelu": "leaky_relu",
    "rrelu": "leaky_relu",
    "elu": "smooth",
    "gelu": "smooth",
    "silu": "smooth",
    "softplus": "smooth",
    "mish": "smooth",
    "celu": "smooth",
    "selu": "smooth",
    "tanh": "other",
    "sigmoid": "other",
    "prelu": "other",
    "hardtanh": "other",
    "hardswish": "other",
    "hardsigmoid": "other",
    "softsign": "other",
    "sin": "other",
    "tanhshrink": "other",
    "logsigmoid": "other",
}
# Functions that may end a network without being a block activation.
_OUTPUT_ONLY = {"softmax", "log_softmax", "clamp", "clip"}
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
    nn.Softmax: "softmax",
    nn.LogSoftmax: "log_softmax",
}
_WEIGHT_FUNCS = {
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "linear",
    "bilinear",
    "_convolution",
    "convolution",
}
# Outputs of these never carry the input's signal (noise injection, buffers).
_MERGE_FUNCS = {"add", "iadd", "radd", "cat", "concat", "concatenate"}
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
    "normal",
    "normal_",
    "uniform_",
    "bernoulli",
    "detach",
}


@dataclass
class Architecture:
    """The 15 hyperparameters of one module, plus extra targets."""

    values: dict[str, float | str]
    extra: dict[str, object] = field(default_factory=dict)
    traced: bool = False

    def __getitem__(self, name: str) -> float | str:
        return self.values[name]

    def row(self):
        """Raw row of 15 (discrete fields as class indices)."""
        return arch_row(self.values)


def _role(m: nn.Module) -> str | None:
    declared = getattr(m, "gmtrace_role", None)
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
    if type(m) in _ACT_MODULES:
        return "act"
    if isinstance(m, (nn.Embedding, nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return None
    own = [p for p in m.parameters(recurse=False)]
    if any(p.dim() >= 3 for p in own):
        return "conv"
    if any(p.dim() == 2 for p in own):
        return "fc"
    return None


def _norm_kind(m: nn.Module) -> str:
    declared = getattr(m, "gmtrace_norm", None)
    if declared:
        return declared
    for t, kind in _NORM_TYPES:
        if isinstance(m, t):
            return kind
    return "layer_group"


def _out_channels(m: nn.Module) -> int:
    if hasattr(m, "out_channels"):
        return int(m.out_channels)
    weights = [p for p in m.parameters(recurse=False) if p.dim() >= 3]
    return int(weights[0].shape[0]) if weights else 0


def _is_block(m: nn.Module) -> bool:
    return bool(getattr(m, "gmtrace_block", False))


def _weight_layers(m: nn.Module) -> int:
    return sum(1 for sub in m.modules() if _role(sub) in ("conv", "fc"))


def _blocks(module: nn.Module) -> list[nn.Module]:
    """Outermost repeated blocks: declared ones, else repeated sibling containers."""
    declared: list[nn.Module] = []

    def visit(m: nn.Module) -> None:
        for child in m.children():
            if _is_block(child):
                declared.append(child)
            else:
                visit(child)

    visit(module)
    if declared:
        return declared
    found: list[nn.Module] = []

    def visit_structural(m: nn.Module) -> None:
        children = list(m.children())
        kinds = Counter(
            type(c).__name__ for c in children if list(c.children()) and _weight_layers(c)
        )
        for c in children:
            if kinds.get(type(c).__name__, 0) >= 2 and list(c.children()) and _weight_layers(c):
                found.append(c)
            else:
                visit_structural(c)

    visit_structural(module)
    return found


def _act_name(name: str) -> str:
    return name.lower().rstrip("_").replace("__", "")


@dataclass
class _Event:
    name: str  # function name, normalized
    module_role: str | None  # role of the innermost module the call happened in
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None
    kwargs: dict
    args: tuple
    graph: bool  # input derived from the example input


class _Tracer(TorchFunctionMode):
    """Records every torch function call of one forward pass, with the depth in
    weight layers of each tensor derived from the example input."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[_Event] = []
        self.depth: dict[int, int] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique during the pass
        self.stack: list[nn.Module] = []
        self.skip = False

    def mark(self, t: torch.Tensor, depth: int) -> None:
        self.depth[id(t)] = depth
        self.keep.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = _act_name(getattr(func, "__name__", str(func)))
        if name in ("__get__", "size", "dim", "numel", "__len__", "shape"):
            return out
        flat = []
        for a in list(args) + list(kwargs.values()):
            if isinstance(a, torch.Tensor):
                flat.append(a)
            elif isinstance(a, (list, tuple)):
                flat.extend(x for x in a if isinstance(x, torch.Tensor))
        graph_in = [t for t in flat if id(t) in self.depth]
        outs = (
            [out]
            if isinstance(out, torch.Tensor)
            else [
                o
                for o in (out if isinstance(out, (list, tuple)) else [])
                if isinstance(o, torch.Tensor)
            ]
        )
        if graph_in and name not in _FRESH_FUNCS:
            d = max(self.depth[id(t)] for t in graph_in) + (1 if name in _WEIGHT_FUNCS else 0)
            if name in _MERGE_FUNCS and len(graph_in) >= 2:
                self._check_skip(name, graph_in, kwargs, args)
            for o in outs:
                self.mark(o, d)
        role = None
        for m in reversed(self.stack):
            r = _role(m)
            if r is not None:
                role = r
                break
        src = graph_in[0] if graph_in else (flat[0] if flat else None)
        self.events.append(
            _Event(
                name=name,
                module_role=role,
                in_shape=tuple(src.shape) if src is not None else None,
                out_shape=tuple(outs[0].shape) if outs else None,
                kwargs=kwargs,
                args=args,
                graph=bool(graph_in),
            )
        )
        return out

    def _check_skip(self, name, tensors, kwargs, args) -> None:
        a, b = tensors[0], tensors[1]
        if a.dim() != 4 or b.dim() != 4 or a.shape[-1] < 2:
            return
        is_add = name in ("add", "iadd", "radd")
        if is_add and a.shape != b.shape:
            return
        if not is_add:
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            if dim not in (1, -3) or a.shape[-2:] != b.shape[-2:]:
                return
        if self.depth[id(a)] != self.depth[id(b)]:
            self.skip = True


def _static(module: nn.Module) -> tuple[dict, dict]:
    counts = Counter()
    filters = 0
    norms: Counter = Counter()
    acts: list[str] = []
    order: list[tuple[str, str]] = []  # (role, detail) in registration order
    up_kinds: list[str] = []
    down = False
    for _, m in module.named_modules():
        role = _role(m)
        if role == "conv":
            counts["conv"] += 1
            filters += _out_channels(m)
            order.append(("weight", ""))
            stride = getattr(m, "stride", 1)
            stride = max(stride) if isinstance(stride, tuple) else stride
            if isinstance(m, nn.modules.conv._ConvTransposeNd) and stride > 1:
                up_kinds.append("transposed")
            elif isinstance(m, nn.modules.conv._ConvNd) and stride > 1:
                down = True
        elif role == "fc":
            counts["fc"] += 1
            order.append(("weight", ""))
        elif role == "norm":
            counts["norm"] += 1
            norms[_norm_kind(m)] += 1
        elif role == "pool":
            counts["pool"] += 1
            down = True
        elif role == "act":
            acts.append(_ACT_MODULES[type(m)])
            order.append(("act", _ACT_MODULES[type(m)]))
        if isinstance(m, nn.PixelShuffle):
            up_kinds.append("pixel_shuffle")
        elif isinstance(m, nn.Upsample):
            up_kinds.append("bilinear" if "linear" in str(m.mode) else "nearest")
        if getattr(m, "gmtrace_skip", False):
            counts["declared_skip"] += 1
    last_act = "none"
    for kind, detail in reversed(order):
        if kind == "weight":
            break
        last_act = detail
        break
    blocks = _blocks(module)
    per_block = [_weight_layers(b) for b in blocks]
    counts_out = {
        "n_layers": counts["conv"] + counts["fc"],
        "n_conv": counts["conv"],
        "n_fc": counts["fc"],
        "n_pool": counts["pool"],
        "n_norm": counts["norm"],
        "n_filters": filters,
        "n_blocks": len(blocks),
        "n_layers_per_block": round(sum(per_block) / len(per_block), 2) if per_block else 0.0,
        "n_params": sum(p.numel() for p in module.parameters() if p.requires_grad),
    }
    if last_act != "none" and last_act in acts:
        acts.remove(last_act)  # the output activation is not a block activation
    info = {
        "norms": norms,
        "acts": acts,
        "last_act": last_act,
        "up_kinds": up_kinds,
        "down": down,
        "skip": counts["declared_skip"] > 0,
    }
    return counts_out, info


def _traced(module: nn.Module, example: tuple) -> dict:
    tracer = _Tracer()
    handles = []

    def enter(mod, _inputs) -> None:
        tracer.stack.append(mod)

    def leave(_mod, _inputs, _output) -> None:
        tracer.stack.pop()

    for m in module.modules():
        handles.append(m.register_forward_pre_hook(enter))
        handles.append(m.register_forward_hook(leave))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), tracer:
            for t in example:
                if isinstance(t, torch.Tensor):
                    tracer.mark(t, 0)
            module(*example)
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    events = tracer.events
    acts: list[str] = []
    up_kinds: list[str] = []
    down = False
    functional_pools = 0
    last_weight = max(
        (i for i, e in enumerate(events) if e.name in _WEIGHT_FUNCS and e.graph), default=-1
    )
    last_act = "none"
    for i, e in enumerate(events):
        if not e.graph or e.in_shape is None or e.out_shape is None:
            continue
        grows = len(e.in_shape) == 4 and len(e.out_shape) == 4 and e.out_shape[-1] > e.in_shape[-1]
        shrinks = (
            len(e.in_shape) == 4 and len(e.out_shape) == 4 and e.out_shape[-1] < e.in_shape[-1]
        )
        if e.name in _ACT_CLASS or e.name in _OUTPUT_ONLY:
            if i > last_weight:
                last_act = e.name
            elif e.name in _ACT_CLASS:
                acts.append(e.name)
        if "conv_transpose" in e.name and grows:
            up_kinds.append("transposed")
        elif (
            e.name in ("interpolate", "upsample", "upsample_nearest", "upsample_bilinear") and grows
        ):
            mode = str(e.kwargs.get("mode", e.args[3] if len(e.args) > 3 else "nearest"))
            up_kinds.append("bilinear" if "linear" in mode or "cubic" in mode else "nearest")
        elif e.name == "pixel_shuffle":
            up_kinds.append("pixel_shuffle")
        if shrinks and (
            "conv" in e.name or "pool" in e.name or e.name in ("interpolate", "pixel_unshuffle")
        ):
            down = True
        if "pool" in e.name and e.module_role != "pool":
            functional_pools += 1
    return {
        "acts": acts,
        "last_act": last_act,
        "up_kinds": up_kinds,
        "down": down,
        "skip": tracer.skip,
        "functional_pools": functional_pools,
    }


def _dominant(items: list[str], order: tuple[str, ...]) -> str | None:
    if not items:
        return None
    counts = Counter(items)
    best = max(counts.values())
    return next(k for k in order if counts.get(k) == best)


def describe(module: nn.Module, example_input=None) -> Architecture:
    """Compute the 15 architecture hyperparameters of `module`.

    `example_input` is a tensor or tuple of tensors for one forward pass; when it is
    None and the module has an ``example_input()`` method, that is used. Without any,
    order-dependent fields come from registration order.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"describe() needs a torch.nn.Module, got {type(module).__name__}")
    counts, info = _static(module)
    if example_input is None and callable(getattr(module, "example_input", None)):
        example_input = module.example_input()
    traced = example_input is not None
    if traced:
        example = example_input if isinstance(example_input, tuple) else (example_input,)
        info.update(_traced(module, example))
        info["skip"] = info["skip"] or counts.get("declared_skip", False)
        counts["n_pool"] += info["functional_pools"]
        info["down"] = info["down"] or counts["n_pool"] > 0
    norm = _dominant(list(info["norms"].elements()), ("batch", "instance", "layer_group"))
    last = info["last_act"]
    block_acts = [_ACT_CLASS[a] for a in info["acts"] if a in _ACT_CLASS]
    up_kind = _dominant(info["up_kinds"], UPSAMPLING_KINDS[1:]) or "none"
    values: dict[str, float | str] = dict(counts)
    values.update(
        {
            "norm_type": norm or "none",
            "last_activation": last
            if last in ("tanh", "sigmoid")
            else ("none" if last == "none" else "other"),
            "block_activation": _dominant(block_acts, ("relu", "leaky_relu", "smooth", "other"))
            or "other",
            "upsampling": "learned" if up_kind in ("transposed", "pixel_shuffle") else "fixed",
            "skip_connection": "yes" if info["skip"] else "no",
            "downsampling": "yes" if info["down"] else "no",
        }
    )
    values = {name: values[name] for name in ARCH_NAMES}
    extra = {
        "upsampling_kind": up_kind,
        "last_activation_fn": last,
        "block_activation_fn": Counter(info["acts"]).most_common(1)[0][0]
        if info["acts"]
        else "none",
    }
    return Architecture(values=values, extra=extra, traced=traced)


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
