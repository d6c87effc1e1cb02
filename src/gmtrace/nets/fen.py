"""Fingerprint estimation networks: image in, fingerprint of the same size out."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gmtrace.nets.config import FENConfig


def box_residual(x: torch.Tensor) -> torch.Tensor:
    """x - (3x3 box blur of x), per channel, borders reflected (as spectrum.residual)."""
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
    return x - blurred


class DnCNN(nn.Module):
    """Fully convolutional, stride 1, padding 1: the fingerprint F(I) has the image's
    size; receptive field 2 * depth + 1 pixels."""

    def __init__(self, cfg: FENConfig = FENConfig()):
        super().__init__()
        if cfg.depth < 2:
            raise ValueError(f"FEN depth must be at least 2, got {cfg.depth}")
        self.cfg = cfg
        layers: list[nn.Module] = [nn.Conv2d(3, cfg.width, 3, 1, 1), nn.ReLU(inplace=True)]
        for _ in range(cfg.depth - 2):
            layers.append(nn.Conv2d(cfg.width, cfg.width, 3, 1, 1))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(cfg.width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(cfg.width, 3, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if cfg.highpass:
            nn.init.zeros_(self.body[-1].weight)
            nn.init.zeros_(self.body[-1].bias)

    @property
    def receptive_field(self) -> int:
        return 2 * self.cfg.depth + 1

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """F(x); with `highpass`, `residual` is `box_residual(x)` when the caller
        already has it (the full model reads it twice)."""
        if self.cfg.highpass:
            return (box_residual(x) if residual is None else residual) + self.body(x)
        return self.body(x)


def red() -> DnCNN:
    """RED's FEN: DnCNN-17, 64 channels, batch norm, conv biases kept."""
    return DnCNN(FENConfig(depth=17, width=64, batch_norm=True))


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """`module` for inference with every BatchNorm2d that directly follows a Conv2d
    in a Sequential folded into that convolution (w' = w * g / sqrt(v + eps),
    b' = (b - m) * g / sqrt(v + eps) + beta): the same function in eval mode
    (to float rounding), one pass over the feature map fewer per layer. Works in
    place on the module given (pass a copy); returns it, in eval mode."""
    module.eval()
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
                continue
            if not bn.track_running_stats or bn.running_var is None:
                continue
            inv = torch.rsqrt(bn.running_var + bn.eps)
            scale = inv * bn.weight if bn.affine else inv
            shift = bn.bias if bn.affine else torch.zeros_like(scale)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            with torch.no_grad():
                folded = nn.Conv2d(
                    conv.in_channels,
                    conv.out_channels,
                    conv.kernel_size,
                    conv.stride,
                    conv.padding,
                    conv.dilation,
                    conv.groups,
                    bias=True,
                    padding_mode=conv.padding_mode,
                ).to(conv.weight.device)
                folded.weight.copy_(conv.weight * scale[:, None, None, None])
                folded.bias.copy_((bias - bn.running_mean) * scale + shift)
            seq[i], seq[i + 1] = folded.eval(), nn.Identity()
    return module
