"""Fingerprint estimation networks: image in, fingerprint of the same size out."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FENConfig:
    """A DnCNN-style FEN: conv-ReLU, (depth - 2) x [conv-BN-ReLU], conv to 3 channels.

    RED's FEN is depth 17, width 64 (`red()`); the output is linear (unbounded)."""

    depth: int = 17
    width: int = 64
    batch_norm: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


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

    @property
    def receptive_field(self) -> int:
        return 2 * self.cfg.depth + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def red() -> DnCNN:
    """RED's FEN: DnCNN-17, 64 channels, batch norm, conv biases kept."""
    return DnCNN(FENConfig(depth=17, width=64, batch_norm=True))
