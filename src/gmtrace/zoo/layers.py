"""Building blocks shared by every generator family (timm-style `layers`).

Each choice a family samples (normalization, activation, up-sampling kind,
modulated convolution, noise injection) is built here, so the zoo varies one
hyperparameter at a time through the same code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "batch", "instance", "layer_group")
# Block activations by schema class: relu, leaky_relu, smooth, other.
ACTIVATIONS = ("relu", "leaky_relu", "elu", "gelu", "silu", "softplus", "prelu", "hardswish")
ACTIVATION_CLASS = {
    "relu": "relu",
    "leaky_relu": "leaky_relu",
    "elu": "smooth",
    "gelu": "smooth",
    "silu": "smooth",
    "softplus": "smooth",
    "prelu": "other",
    "hardswish": "other",
}
LAST_ACTIVATIONS = ("none", "tanh", "sigmoid", "hardtanh")
UPSAMPLERS = ("transposed", "nearest", "bilinear", "pixel_shuffle")


def norm(kind: str, ch: int) -> nn.Module:
    """A 2-D normalization layer of the given kind (Identity for "none")."""
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "layer_group":
        return nn.GroupNorm(math.gcd(ch, 4), ch)
    raise ValueError(f"unknown norm {kind!r}")


def act(kind: str) -> nn.Module:
    """A block activation module."""
    table = {
        "relu": lambda: nn.ReLU(),
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "elu": lambda: nn.ELU(),
        "gelu": lambda: nn.GELU(),
        "silu": lambda: nn.SiLU(),
        "softplus": lambda: nn.Softplus(),
        "prelu": lambda: nn.PReLU(),
        "hardswish": lambda: nn.Hardswish(),
    }
    if kind not in table:
        raise ValueError(f"unknown activation {kind!r}")
    return table[kind]()


def last_act(kind: str) -> nn.Module:
    """The activation on a generator's output."""
    return {"none": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "hardtanh": nn.Hardtanh}[
        kind
    ]()


def output_to_image(y: torch.Tensor, last: str) -> torch.Tensor:
    """Map a generator's raw output to the [-1, 1] image range it was trained on."""
    return y * 2.0 - 1.0 if last == "sigmoid" else y


def image_to_output(x: torch.Tensor, last: str) -> torch.Tensor:
    """Inverse of `output_to_image`, for reconstruction targets."""
    return (x + 1.0) / 2.0 if last == "sigmoid" else x


class Up(nn.Module):
    """Double the spatial size and map `cin` to `cout` channels.

    transposed: ConvTranspose2d(k=4, s=2); nearest / bilinear: interpolate then a
    3x3 conv; pixel_shuffle: a 3x3 conv to 4*cout channels then PixelShuffle(2).
    """

    def __init__(self, kind: str, cin: int, cout: int):
        super().__init__()
        self.kind = kind
        if kind == "transposed":
            self.conv = nn.ConvTranspose2d(cin, cout, 4, 2, 1)
        elif kind in ("nearest", "bilinear"):
            self.conv = nn.Conv2d(cin, cout, 3, 1, 1)
        elif kind == "pixel_shuffle":
            self.conv = nn.Conv2d(cin, cout * 4, 3, 1, 1)
            self.shuffle = nn.PixelShuffle(2)
        else:
            raise ValueError(f"unknown up-sampling {kind!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "transposed":
            return self.conv(x)
        if self.kind == "pixel_shuffle":
            return self.shuffle(self.conv(x))
        align = False if self.kind == "bilinear" else None
        x = F.interpolate(x, scale_factor=2, mode=self.kind, align_corners=align)
        return self.conv(x)


class UpBlock(nn.Module):
    """Plain generator block: up-sample, norm, activation, then `extra` convs."""

    gmtrace_block = True

    def __init__(self, up: str, cin: int, cout: int, norm_kind: str, act_kind: str, extra: int = 0):
        super().__init__()
        layers: list[nn.Module] = [Up(up, cin, cout), norm(norm_kind, cout), act(act_kind)]
        for _ in range(extra):
            layers += [nn.Conv2d(cout, cout, 3, 1, 1), norm(norm_kind, cout), act(act_kind)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResUpBlock(nn.Module):
    """Residual generator block (BigGAN/SNGAN style): norm-act-up-conv-norm-act-conv
    on the main path, the same kind of up-sampling on the shortcut, summed."""

    gmtrace_block = True

    def __init__(self, up: str, cin: int, cout: int, norm_kind: str, act_kind: str):
        super().__init__()
        self.main = nn.Sequential(
            norm(norm_kind, cin),
            act(act_kind),
            Up(up, cin, cout),
            norm(norm_kind, cout),
            act(act_kind),
            nn.Conv2d(cout, cout, 3, 1, 1),
        )
        self.short = Up(up, cin, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.short(x)


class ResBlock(nn.Module):
    """Same-resolution residual block: x + conv-norm-act-conv-norm(x)."""

    gmtrace_block = True

    def __init__(self, ch: int, norm_kind: str, act_kind: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, 1, 1),
            norm(norm_kind, ch),
            act(act_kind),
            nn.Conv2d(ch, ch, 3, 1, 1),
            norm(norm_kind, ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class DownBlock(nn.Module):
    """Encoder block: strided conv (or conv + pooling), norm, activation."""

    gmtrace_block = True

    def __init__(self, cin: int, cout: int, norm_kind: str, act_kind: str, pool: bool):
        super().__init__()
        if pool:
            layers = [nn.Conv2d(cin, cout, 3, 1, 1), nn.AvgPool2d(2)]
        else:
            layers = [nn.Conv2d(cin, cout, 4, 2, 1)]
        self.body = nn.Sequential(*layers, norm(norm_kind, cout), act(act_kind))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PixelNorm(nn.Module):
    """x / sqrt(mean_c(x^2) + eps): StyleGAN's normalization of latent codes."""

    gmtrace_role = "norm"
    gmtrace_norm = "layer_group"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class NoiseInjection(nn.Module):
    """x + w * n with per-channel learned w and fresh Gaussian noise n (StyleGAN)."""

    gmtrace_role = "none"

    def __init__(self, ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, ch, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight * torch.randn_like(x)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution.

    w'_{oik} = w_{oik} * s_i  with s = A(style) (a learned affine map), and with
    demodulation w''_{oik} = w'_{oik} * d_o, d_o = 1 / sqrt(sum_{ik} w'^2_{oik} + eps).
    Computed in StyleGAN2's non-fused form, which is exact and fast on CPUs:
    y = d * conv(x * s, w) (scaling the input by s and the output by d).
    """

    gmtrace_role = "conv"

    def __init__(self, cin: int, cout: int, style_dim: int, k: int = 3, demod: bool = True):
        super().__init__()
        self.cin, self.out_channels, self.k, self.demod = cin, cout, k, demod
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / math.sqrt(cin * k * k))
        self.affine = nn.Linear(style_dim, cin)
        nn.init.ones_(self.affine.bias)
        self.bias = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)  # [B, cin]
        out = F.conv2d(x * s[:, :, None, None], self.weight, padding=self.k // 2)
        if self.demod:
            # d_{b,o} = (sum_{i,k} w_{oik}^2 s_{bi}^2 + eps)^-1/2
            w2 = self.weight.pow(2).sum(dim=(2, 3))  # [cout, cin]
            d = torch.rsqrt(s.pow(2) @ w2.t() + 1e-8)  # [B, cout]
            out = out * d[:, :, None, None]
        return out + self.bias


class AdaIN(nn.Module):
    """Adaptive instance norm: (1 + gamma(style)) * IN(x) + beta(style)."""

    def __init__(self, ch: int, style_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(ch, affine=False)
        self.style = nn.Linear(style_dim, ch * 2)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(style).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class Discriminator(nn.Module):
    """A small conv discriminator (DCGAN / PatchGAN style) used to train GMs.

    `features(x)` returns its intermediate maps, for feature-matching losses;
    `patch=True` keeps a spatial map of logits (PatchGAN) instead of one logit.
    """

    def __init__(
        self, res: int, width: int = 32, patch: bool = False, spectral: bool = False, in_ch: int = 3
    ):
        super().__init__()
        wrap = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        layers, ch, size = [], in_ch, res
        n_down = 3 if patch else max(2, int(math.log2(res)) - 2)
        for i in range(n_down):
            cout = min(width * 2**i, 256)
            layers.append(nn.Sequential(wrap(nn.Conv2d(ch, cout, 4, 2, 1)), nn.LeakyReLU(0.2)))
            ch, size = cout, size // 2
        self.blocks = nn.ModuleList(layers)
        self.patch = patch
        self.head = wrap(nn.Conv2d(ch, 1, 3, 1, 1) if patch else nn.Linear(ch * size * size, 1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for b in self.blocks:
            x = b(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor, return_features: bool = False):
        feats = self.features(x)
        h = feats[-1]
        out = self.head(h) if self.patch else self.head(h.flatten(1))
        out = out.flatten(1)
        return (out, feats) if return_features else out


class RandomFeatures(nn.Module):
    """A fixed, randomly initialized conv network whose maps serve as features for
    the L2 (perceptual) distance when no pretrained network may be downloaded."""

    def __init__(self, seed: int = 0, width: int = 16, depth: int = 3):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        convs, ch = [], 3
        for i in range(depth):
            c = nn.Conv2d(ch, width * 2**i, 3, 2 if i else 1, 1)
            with torch.no_grad():
                c.weight.copy_(torch.randn(c.weight.shape, generator=g) / math.sqrt(ch * 9))
                c.bias.zero_()
            convs.append(c)
            ch = width * 2**i
        self.convs = nn.ModuleList(convs)
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for c in self.convs:
            x = F.relu(c(x))
            feats.append(x)
        return feats
