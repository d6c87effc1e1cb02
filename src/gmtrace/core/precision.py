"""The arithmetic of inference: float32 (the reference) or bfloat16.

On a CPU with bfloat16 instructions (AVX512_BF16, AMX) torch's autocast runs the
convolutions and matrix products in bfloat16 and the rest in float32: on the 2 cores
measured (docs/benchmarks.md) the scan's forward pass reads 1.6x the crops per second
in torch, 2.3x compiled, and the scan about 1.5x the images. Its answers differ from
float32's by about 1e-2 in p, so it is an option of its own, judged by the protocol's
figures (docs/benchmarks.md, "A fast setting judged by the protocol's figures"), not
by equality with float32. Where the CPU lacks those instructions it is refused: emulated, it is
slower than float32."""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16")


class PrecisionError(ValueError):
    """A precision that is unknown or that this machine cannot run fast."""


def bf16_supported() -> bool:
    """Whether this CPU does bfloat16 arithmetic in hardware (oneDNN's own check)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def check_precision(precision: str, device: str = "cpu") -> str:
    """`precision` if it is one of `PRECISIONS` and runs here, else a `PrecisionError`."""
    if precision not in PRECISIONS:
        known = ", ".join(PRECISIONS)
        raise PrecisionError(f"unknown precision {precision!r}; choose one of {known}")
    if precision == "bf16" and device == "cpu" and not bf16_supported():
        raise PrecisionError(
            "this CPU has no bfloat16 instructions (AVX512_BF16 or AMX): use --precision fp32"
        )
    return precision


def precision_scope(precision: str, device: str = "cpu"):
    """The context that runs torch code in `precision` on `device`."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


class InPrecision(torch.nn.Module):
    """`module` run in `precision`, its tensor outputs in float32."""

    def __init__(self, module: torch.nn.Module, precision: str):
        super().__init__()
        self.inner, self.precision = module, precision

    def forward(self, x: torch.Tensor):
        with precision_scope(self.precision, x.device.type):
            out = self.inner(x)
        return tuple(v.float() for v in out)
