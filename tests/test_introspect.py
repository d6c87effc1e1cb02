"""`gmtrace.describe` on hand-built modules whose every count is known.

Each expected value is worked out by hand in the comments, so a change in the
definitions (see the docstring of `gmtrace.zoo.introspect`) shows up here as a diff.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gmtrace import describe
from gmtrace.core.schema import ARCH_NAMES


def check(arch, expected: dict, extra: dict | None = None) -> None:
    """All 15 values (in schema order) and, when given, the extra targets."""
    assert list(arch.values) == list(ARCH_NAMES)
    assert arch.values == expected
    if extra is not None:
        assert arch.extra == extra
    assert arch.row().shape == (15,)


# ---------------------------------------------------------------------------
# DCGAN-like nn.Sequential


def dcgan() -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(16, 32, 4, 1, 0, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(),  # 1->4
        nn.ConvTranspose2d(32, 16, 4, 2, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(),  # ->8
        nn.ConvTranspose2d(16, 8, 4, 2, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),  # ->16
        nn.ConvTranspose2d(8, 3, 4, 2, 1, bias=False),
        nn.Tanh(),  # ->32
    )


DCGAN_VALUES = {
    "n_layers": 4,
    "n_conv": 4,
    "n_fc": 0,
    "n_pool": 0,
    "n_norm": 3,
    "n_filters": 32 + 16 + 8 + 3,
    "n_blocks": 0,
    "n_layers_per_block": 0.0,  # a flat stack has no blocks
    # ConvTranspose weights are [in, out, k, k]; BatchNorm has 2 x channels
    "n_params": 16 * 32 * 16 + 32 * 16 * 16 + 16 * 8 * 16 + 8 * 3 * 16 + 2 * (32 + 16 + 8),
    "norm_type": "batch",
    "last_activation": "tanh",
    "block_activation": "relu",
    "upsampling": "learned",
    "skip_connection": "no",
    "downsampling": "no",
}
DCGAN_EXTRA = {
    "upsampling_kind": "transposed",
    "last_activation_fn": "tanh",
    "block_activation_fn": "relu",
}


def test_dcgan_traced():
    g = dcgan()
    arch = describe(g, torch.randn(2, 16, 1, 1))
    assert arch.traced
    assert DCGAN_VALUES["n_params"] == 18928
    check(arch, DCGAN_VALUES, DCGAN_EXTRA)


def test_dcgan_untraced_gives_the_same():
    arch = describe(dcgan())
    assert not arch.traced
    check(arch, DCGAN_VALUES, DCGAN_EXTRA)


def test_example_input_method_is_used():
    class G(nn.Sequential):
        def example_input(self):
            return torch.randn(1, 16, 1, 1)

    arch = describe(G(*dcgan()))
    assert arch.traced
    check(arch, DCGAN_VALUES, DCGAN_EXTRA)


# ---------------------------------------------------------------------------
# residual network: custom blocks, functional activations and pooling


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1)

    def forward(self, x):
        return x + self.conv2(F.gelu(self.conv1(x)))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.blocks = nn.Sequential(ResBlock(8), ResBlock(8))
        self.pool = nn.AvgPool2d(2)
        self.down = nn.Conv2d(8, 16, 3, 2, 1)
        self.mpool = nn.MaxPool2d(2)
        self.head = nn.Linear(16, 1)

    def forward(self, x):  # [2, 3, 32, 32]
        h = F.leaky_relu(self.stem(x), 0.2)
        h = self.pool(self.blocks(h))  # 16 x 16
        h = self.mpool(F.leaky_relu(self.down(h), 0.2))  # 8 -> 4
        h = F.avg_pool2d(h, 4)  # functional pooling: 1 x 1
        return torch.sigmoid(self.head(h.flatten(1)))


RESNET_PARAMS = (3 * 8 * 9 + 8) + 4 * (8 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + (16 + 1)


def test_residual_network_traced():
    arch = describe(ResNet(), torch.randn(2, 3, 32, 32))
    check(
        arch,
        {
            "n_layers": 7,
            "n_conv": 6,
            "n_fc": 1,
            "n_pool": 3,  # AvgPool2d, MaxPool2d and F.avg_pool2d
            "n_norm": 0,
            "n_filters": 8 + 4 * 8 + 16,
            "n_blocks": 2,
            "n_layers_per_block": 2.0,  # two ResBlock siblings of 2 convs
            "n_params": RESNET_PARAMS,
            "norm_type": "none",
            "last_activation": "sigmoid",
            # leaky_relu runs twice outside the blocks, gelu twice inside: blocks decide
            "block_activation": "smooth",
            "upsampling": "fixed",
            "skip_connection": "yes",
            "downsampling": "yes",
        },
        {"upsampling_kind": "none", "last_activation_fn": "sigmoid", "block_activation_fn": "gelu"},
    )
    assert RESNET_PARAMS == 3745


def test_residual_network_untraced_falls_back_to_modules():
    # Without a forward pass functional calls are invisible: no activation modules,
    # no skip, only the two pooling modules.
    arch = describe(ResNet())
    assert arch.values["n_pool"] == 2
    assert arch.values["n_layers"] == 7 and arch.values["n_params"] == RESNET_PARAMS
    assert arch.values["last_activation"] == "none"
    assert arch.values["block_activation"] == "other"
    assert arch.values["skip_connection"] == "no"
    assert arch.values["downsampling"] == "yes"  # strided conv and pooling modules


def test_residual_add_on_tokens_counts():
    class Mixer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x):  # [batch, tokens, channels]
            return x + self.fc2(F.silu(self.fc1(x)))

    arch = describe(Mixer(), torch.randn(2, 5, 8))
    assert arch["skip_connection"] == "yes"
    assert arch["n_fc"] == 2 and arch["n_conv"] == 0


# ---------------------------------------------------------------------------
# U-Net: concat skips, nearest and bilinear interpolation, instance/group norms


class UNet(nn.Module):
    def __init__(self, mid_norm: str = "group"):
        super().__init__()

        def stage(cin, cout, stride, kind):
            k = 4 if stride == 2 else 3
            n = (
                nn.InstanceNorm2d(cout, affine=True)
                if kind == "instance"
                else nn.GroupNorm(4, cout)
            )
            return nn.Sequential(nn.Conv2d(cin, cout, k, stride, 1), n, nn.ReLU())

        self.enc1 = stage(3, 8, 1, "instance")
        self.enc2 = stage(8, 16, 2, "group")
        self.mid = stage(16, 16, 2, mid_norm)
        self.dec2 = stage(32, 8, 1, "instance")
        self.dec1 = nn.Conv2d(16, 3, 3, 1, 1)

    def forward(self, x):  # [2, 3, 16, 16]
        e1 = self.enc1(x)  # 8 ch, 16
        e2 = self.enc2(e1)  # 16 ch, 8
        m = self.mid(e2)  # 16 ch, 4
        u = F.interpolate(m, scale_factor=2, mode="nearest")  # 16 channels grow
        d2 = self.dec2(torch.cat([u, e2], dim=1))
        u = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)  # 8 ch
        return torch.tanh(self.dec1(torch.cat([u, e1], 1)))


UNET_PARAMS = (
    (3 * 8 * 9 + 8)
    + 16
    + (8 * 16 * 16 + 16)
    + 32
    + (16 * 16 * 16 + 16)
    + 32
    + (32 * 8 * 9 + 8)
    + 16
    + (16 * 3 * 9 + 3)
)


def test_unet():
    arch = describe(UNet(), torch.randn(2, 3, 16, 16))
    check(
        arch,
        {
            "n_layers": 5,
            "n_conv": 5,
            "n_fc": 0,
            "n_pool": 0,
            "n_norm": 4,
            "n_filters": 8 + 16 + 16 + 8 + 3,
            # enc1/dec2 and enc2/mid are identical Sequential siblings: 4 blocks of 1 conv
            "n_blocks": 4,
            "n_layers_per_block": 1.0,
            "n_params": UNET_PARAMS,
            "norm_type": "instance",  # 2 instance vs 2 group: a tie goes to instance
            "last_activation": "tanh",
            "block_activation": "relu",
            # nearest grows 16 channels, bilinear 8
            "upsampling": "fixed",
            "skip_connection": "yes",
            "downsampling": "yes",
        },
        {"upsampling_kind": "nearest", "last_activation_fn": "tanh", "block_activation_fn": "relu"},
    )
    assert UNET_PARAMS == 9243


def test_unet_norm_dominance():
    arch = describe(UNet(mid_norm="instance"), torch.randn(2, 3, 16, 16))
    assert arch["norm_type"] == "instance" and arch["n_norm"] == 4
    model = UNet()
    model.dec2[1] = nn.GroupNorm(2, 8)  # now 3 group norms against 1 instance norm
    arch = describe(model, torch.randn(2, 3, 16, 16))
    assert arch["norm_type"] == "layer_group" and arch["n_norm"] == 4


def test_unet_without_concat_has_no_skip():
    class Plain(UNet):
        def forward(self, x):
            h = self.mid(self.enc2(self.enc1(x)))
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = self.dec2(torch.cat([h, h], 1))  # the same map twice is no skip
            h = F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            return self.dec1(torch.cat([h, h], 1))

    arch = describe(Plain(), torch.randn(2, 3, 16, 16))
    assert arch["skip_connection"] == "no"
    assert arch.extra["upsampling_kind"] == "bilinear"
    assert arch["last_activation"] == "none"


# ---------------------------------------------------------------------------
# up-sampling kinds and output activations


def test_pixel_shuffle_and_no_last_activation():
    g = nn.Sequential(
        nn.Conv2d(3, 12, 3, 1, 1), nn.PixelShuffle(2), nn.PReLU(), nn.Conv2d(3, 3, 3, 1, 1)
    )
    expected = {
        "n_layers": 2,
        "n_conv": 2,
        "n_fc": 0,
        "n_pool": 0,
        "n_norm": 0,
        "n_filters": 15,
        "n_blocks": 0,
        "n_layers_per_block": 0.0,
        "n_params": (3 * 12 * 9 + 12) + 1 + (3 * 3 * 9 + 3),
        "norm_type": "none",
        "last_activation": "none",
        "block_activation": "other",
        "upsampling": "learned",
        "skip_connection": "no",
        "downsampling": "no",
    }
    extra = {
        "upsampling_kind": "pixel_shuffle",
        "last_activation_fn": "none",
        "block_activation_fn": "prelu",
    }
    check(describe(g, torch.randn(1, 3, 8, 8)), expected, extra)
    check(describe(g), expected, extra)


def test_hardtanh_and_clamp_are_other():
    g = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 12), nn.Hardtanh())
    for arch in (describe(g, torch.randn(2, 4)), describe(g)):
        assert arch["last_activation"] == "other"
        assert arch.extra["last_activation_fn"] == "hardtanh"
        assert arch["block_activation"] == "relu"
        assert arch["n_fc"] == 2 and arch["n_params"] == (4 * 8 + 8) + (8 * 12 + 12)

    class Clamped(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 12)

        def forward(self, x):
            return self.fc(x).clamp(-1, 1)

    arch = describe(Clamped(), torch.randn(2, 4))
    assert arch["last_activation"] == "other"
    assert arch.extra["last_activation_fn"] == "clamp"


def test_last_activation_follows_the_output():
    class Rescaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, 1, 1)
            self.aux = nn.Conv2d(3, 1, 1)

        def forward(self, x):
            y = torch.tanh(self.conv(x)) * 0.5 + 0.5  # arithmetic keeps tanh
            self.mask = torch.sigmoid(self.aux(x))  # runs last, but is not the output
            return y

    arch = describe(Rescaled(), torch.randn(1, 3, 8, 8))
    assert arch["last_activation"] == "tanh"

    class NormLast(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(3, 3, 3, 1, 1), nn.BatchNorm2d(3)

        def forward(self, x):
            return self.norm(torch.tanh(self.conv(x)))

    assert describe(NormLast(), torch.randn(1, 3, 8, 8))["last_activation"] == "none"


def test_interpolation_modes_and_projection_from_1x1():
    # a 1x1 -> 4x4 transposed conv is a projection, not up-sampling of a map
    g = nn.Sequential(
        nn.ConvTranspose2d(8, 8, 4, 1, 0),
        nn.ReLU(),
        nn.Upsample(scale_factor=2, mode="bicubic"),
        nn.Conv2d(8, 3, 3, 1, 1),
    )
    for arch in (describe(g, torch.randn(1, 8, 1, 1)), describe(g)):
        assert arch.extra["upsampling_kind"] == "bilinear"
        assert arch["upsampling"] == "fixed"


def test_upsampling_kind_weighted_by_channels():
    class SkipRGB(nn.Module):
        """Features grow by pixel shuffle; 3-channel RGB outputs by bilinear."""

        def __init__(self):
            super().__init__()
            self.ups = nn.ModuleList(
                [nn.Sequential(nn.Conv2d(8, 32, 3, 1, 1), nn.PixelShuffle(2)) for _ in range(2)]
            )
            self.rgb = nn.ModuleList([nn.Conv2d(8, 3, 1) for _ in range(3)])

        def forward(self, x):
            rgb = self.rgb[0](x)
            for up, to_rgb in zip(self.ups, self.rgb[1:], strict=True):
                x = up(x)
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear") + to_rgb(x)
            return rgb

    arch = describe(SkipRGB(), torch.randn(1, 8, 4, 4))
    assert arch.extra["upsampling_kind"] == "pixel_shuffle"  # 2 x 8 channels vs 2 x 3
    assert arch["upsampling"] == "learned"
    assert arch["skip_connection"] == "yes"  # RGB of a shallower level added


# ---------------------------------------------------------------------------
# custom layers: undeclared raw parameters and declared roles


class RawConv(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, 3, 3))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return F.conv2d(x, self.weight * 0.1, self.bias, padding=1)


def test_undeclared_raw_conv_counts_as_conv():
    g = nn.Sequential(RawConv(3, 5), nn.ReLU(), RawConv(5, 3), nn.Tanh())
    for arch in (describe(g, torch.randn(1, 3, 8, 8)), describe(g)):
        check(
            arch,
            {
                "n_layers": 2,
                "n_conv": 2,
                "n_fc": 0,
                "n_pool": 0,
                "n_norm": 0,
                "n_filters": 5 + 3,  # weight.shape[0]
                "n_blocks": 0,
                "n_layers_per_block": 0.0,
                "n_params": (5 * 3 * 9 + 5) + (3 * 5 * 9 + 3),
                "norm_type": "none",
                "last_activation": "tanh",
                "block_activation": "relu",
                "upsampling": "fixed",
                "skip_connection": "no",
                "downsampling": "no",
            },
            {
                "upsampling_kind": "none",
                "last_activation_fn": "tanh",
                "block_activation_fn": "relu",
            },
        )


class ModConv(nn.Module):
    """StyleGAN2-style modulated conv keeping its weight as [1, out, in, k, k]."""

    def __init__(self, cin: int, cout: int, wdim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, 3, 3))
        self.affine = nn.Linear(wdim, cin)

    def forward(self, x, w):
        b, c, h, wd = x.shape
        s = self.affine(w).view(b, 1, c, 1, 1)
        weight = (self.weight * s).view(-1, c, 3, 3)
        out = F.conv2d(x.reshape(1, b * c, h, wd), weight, padding=1, groups=b)
        return out.view(b, -1, h, wd)


class Synthesis(nn.Module):
    def __init__(self):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, 4, 4, 4))  # learned input: no layer
        self.conv = ModConv(4, 6, 8)
        self.up = RawTransposed(6, 5)
        self.proj = nn.Parameter(torch.randn(5, 3))  # used by a matmul: a fc layer

    def forward(self, w):
        x = self.conv(self.const.expand(w.shape[0], -1, -1, -1), w)
        x = self.up(F.leaky_relu(x, 0.2))  # 4 -> 8
        return (x.permute(0, 2, 3, 1) @ self.proj).permute(0, 3, 1, 2)


class RawTransposed(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cin, cout, 4, 4))

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, stride=2, padding=1)


def test_custom_layers_judged_by_how_the_trace_uses_their_parameters():
    arch = describe(Synthesis(), torch.randn(2, 8))
    assert arch["n_conv"] == 2  # ModConv and RawTransposed; the constant is none
    assert arch["n_fc"] == 2  # ModConv.affine and the matmul projection
    assert arch["n_filters"] == 6 + 5  # [1, out, in, k, k] -> out; transposed [in, out]
    assert arch["n_params"] == 4 * 16 + 6 * 4 * 9 + (8 * 4 + 4) + 6 * 5 * 16 + 5 * 3
    assert arch.extra["upsampling_kind"] == "transposed"
    assert arch["block_activation"] == "leaky_relu"
    # Without a trace the shapes decide: the 4-D constant looks like a conv weight.
    static = describe(Synthesis())
    assert static["n_conv"] == 3 and static["n_fc"] == 2


class Noise(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, ch, 1, 1))

    def forward(self, x):
        return x + self.w * torch.randn_like(x)


def test_noise_injection_is_neither_skip_nor_layer():
    g = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), Noise(4), nn.ReLU(), nn.Conv2d(4, 3, 3, 1, 1))
    for arch in (describe(g, torch.randn(1, 3, 8, 8)), describe(g)):
        check(
            arch,
            {
                "n_layers": 2,
                "n_conv": 2,
                "n_fc": 0,
                "n_pool": 0,
                "n_norm": 0,
                "n_filters": 4 + 3,  # the [1, 4, 1, 1] noise weight is no conv
                "n_blocks": 0,
                "n_layers_per_block": 0.0,
                "n_params": (3 * 4 * 9 + 4) + 4 + (4 * 3 * 9 + 3),
                "norm_type": "none",
                "last_activation": "none",
                "block_activation": "relu",
                "upsampling": "fixed",
                "skip_connection": "no",
                "downsampling": "no",
            },
            {
                "upsampling_kind": "none",
                "last_activation_fn": "none",
                "block_activation_fn": "relu",
            },
        )


def test_declared_roles():
    class MyNorm(nn.Module):
        gmtrace_role = "norm"
        gmtrace_norm = "batch"

        def forward(self, x):
            return (x - x.mean()) / (x.std() + 1e-5)

    class MyPool(nn.Module):
        gmtrace_role = "pool"

        def forward(self, x):
            return F.avg_pool2d(x, 2)  # counted once: the declared pool itself

    class Const(nn.Module):
        gmtrace_role = "none"

        def __init__(self):
            super().__init__()
            self.c = nn.Parameter(torch.randn(1, 3, 2, 2))

        def forward(self, x):
            return x + self.c.mean()

    class MyConv(nn.Module):
        gmtrace_role = "conv"
        out_channels = 7

        def __init__(self):
            super().__init__()
            self.kernel = nn.Parameter(torch.randn(21))

        def forward(self, x):
            return F.conv2d(x, self.kernel.view(7, 3, 1, 1))

    g = nn.Sequential(Const(), MyConv(), MyNorm(), nn.ReLU(), MyPool(), nn.Conv2d(7, 3, 1))
    for arch in (describe(g, torch.randn(2, 3, 8, 8)), describe(g)):
        check(
            arch,
            {
                "n_layers": 2,
                "n_conv": 2,
                "n_fc": 0,
                "n_pool": 1,  # MyPool only, not its F.avg_pool2d again
                "n_norm": 1,
                "n_filters": 7 + 3,
                "n_blocks": 0,
                "n_layers_per_block": 0.0,
                "n_params": 12 + 21 + (7 * 3 + 3),
                "norm_type": "batch",
                "last_activation": "none",
                "block_activation": "relu",
                "upsampling": "fixed",
                "skip_connection": "no",
                "downsampling": "yes",
            },
            {
                "upsampling_kind": "none",
                "last_activation_fn": "none",
                "block_activation_fn": "relu",
            },
        )


def test_invalid_declarations_are_rejected():
    class Typo(nn.Module):
        gmtrace_role = "Conv"

    with pytest.raises(ValueError, match=r"Typo\.gmtrace_role = 'Conv'"):
        describe(nn.Sequential(Typo()))

    class BadNorm(nn.Module):
        gmtrace_role = "norm"
        gmtrace_norm = "pixel"

    with pytest.raises(ValueError, match="gmtrace_norm"):
        describe(nn.Sequential(BadNorm()), torch.randn(1))


def test_declared_skip_survives_the_trace():
    class Wrapped(nn.Module):
        gmtrace_skip = True

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, 1, 1)

        def forward(self, x):
            return self.conv(x)

    assert describe(Wrapped())["skip_connection"] == "yes"
    assert describe(Wrapped(), torch.randn(1, 3, 4, 4))["skip_connection"] == "yes"


# ---------------------------------------------------------------------------
# skips that are not skips


class VAEDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.mu, self.logvar = nn.Linear(8, 6), nn.Linear(8, 6)
        self.out = nn.Linear(6, 12)

    def forward(self, x):
        h = F.relu(self.body(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)  # equal depths: no skip
        return torch.sigmoid(self.out(z))


def test_reparametrization_is_no_skip():
    arch = describe(VAEDecoder(), torch.randn(3, 4))
    check(
        arch,
        {
            "n_layers": 4,
            "n_conv": 0,
            "n_fc": 4,
            "n_pool": 0,
            "n_norm": 0,
            "n_filters": 0,
            "n_blocks": 0,
            "n_layers_per_block": 0.0,
            "n_params": (4 * 8 + 8) + 2 * (8 * 6 + 6) + (6 * 12 + 12),
            "norm_type": "none",
            "last_activation": "sigmoid",
            "block_activation": "relu",
            "upsampling": "fixed",
            "skip_connection": "no",
            "downsampling": "no",
        },
    )


def test_merging_two_inputs_is_no_skip():
    class Conditional(nn.Module):
        def __init__(self):
            super().__init__()
            self.fz = nn.Linear(4, 8)
            self.fy1, self.fy2 = nn.Linear(3, 8), nn.Linear(8, 8)

        def forward(self, z, y):
            return self.fz(z) + self.fy2(self.fy1(y))  # depths 1 and 2, other inputs

    arch = describe(Conditional(), (torch.randn(2, 4), torch.randn(2, 3)))
    assert arch["skip_connection"] == "no" and arch["n_fc"] == 3


# ---------------------------------------------------------------------------
# blocks


class Inner(nn.Module):
    gmtrace_block = True

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, 1, 1)

    def forward(self, x):
        return F.relu(self.conv(x))


class Outer(nn.Module):
    gmtrace_block = True

    def __init__(self, n_inner: int):
        super().__init__()
        self.inner = nn.Sequential(*[Inner() for _ in range(n_inner)])
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return self.conv(self.inner(x))


def test_nested_declared_blocks_count_once():
    g = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), Outer(2), Outer(1), nn.Conv2d(4, 3, 1))
    for arch in (describe(g, torch.randn(1, 3, 8, 8)), describe(g)):
        assert arch["n_blocks"] == 2  # the two Outer; Inner blocks are inside them
        assert arch["n_layers_per_block"] == 2.5  # (2 + 1) and (1 + 1) convs
        assert arch["n_conv"] == 7


def test_structural_blocks():
    def unit(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.ReLU())

    # encoder and decoder are different Sequentials: not blocks, their units are
    g = nn.Sequential(
        nn.Sequential(unit(3, 8), unit(8, 8), unit(8, 8)),
        nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU(), unit(8, 8), unit(8, 3)),
    )
    arch = describe(g)
    assert arch["n_blocks"] == 5 and arch["n_layers_per_block"] == 1.0
    # spectral-normalized convs own parametrization children but are layers
    sn = nn.utils.parametrizations.spectral_norm
    flat = nn.Sequential(sn(nn.Conv2d(3, 8, 3, 1, 1)), nn.ReLU(), sn(nn.Conv2d(8, 3, 3, 1, 1)))
    arch = describe(flat, torch.randn(1, 3, 8, 8))
    assert arch["n_blocks"] == 0 and arch["n_conv"] == 2
    assert arch["n_params"] == (3 * 8 * 9 + 8) + (8 * 3 * 9 + 3)


# ---------------------------------------------------------------------------
# activations, pooling and down-sampling details


def test_block_activation_dominance_and_ties():
    def net(*acts):
        layers: list[nn.Module] = []
        for a in acts:
            layers += [nn.Linear(4, 4), a]
        return nn.Sequential(*layers, nn.Linear(4, 4))

    arch = describe(net(nn.ReLU(), nn.LeakyReLU(), nn.ReLU(), nn.LeakyReLU()), torch.randn(2, 4))
    assert arch["block_activation"] == "relu"  # 2 : 2, ties go to relu
    arch = describe(
        net(nn.SiLU(), nn.ReLU(), nn.ReLU(), nn.GELU(), nn.GELU(), nn.ELU()), torch.randn(2, 4)
    )
    assert arch["block_activation"] == "smooth"  # 4 smooth calls against 2 relu
    assert arch.extra["block_activation_fn"] == "gelu"  # most frequent of the class
    arch = describe(nn.Sequential(nn.Linear(4, 4)), torch.randn(2, 4))
    assert arch["block_activation"] == "other" and arch.extra["block_activation_fn"] == "none"


def test_functional_pooling_counts_per_module_instance():
    class Halve(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return F.max_pool2d(self.conv(x), 2)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.halve = Halve()

        def forward(self, x):  # 16 -> 8 -> 4 by one module run twice, then 2 -> 1
            x = self.halve(self.halve(x))
            for _ in range(2):
                x = F.avg_pool2d(x, 2)
            return x

    arch = describe(Net(), torch.randn(1, 2, 16, 16))
    assert arch["n_pool"] == 1 + 2
    assert arch["n_conv"] == 1


def test_unpooling_is_not_pooling():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, 1, 1)
            self.pool = nn.MaxPool2d(2, return_indices=True)
            self.unpool = nn.MaxUnpool2d(2)

        def forward(self, x):
            y, i = self.pool(self.conv(x))
            return self.unpool(y, i)

    arch = describe(Net(), torch.randn(1, 3, 8, 8))
    assert arch["n_pool"] == 1 and arch["downsampling"] == "yes"


def test_same_size_convs_and_pools_are_no_downsampling():
    g = nn.Sequential(
        nn.ReflectionPad2d(1),
        nn.Conv2d(3, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(3, 1, 1),
        nn.Conv2d(4, 3, 1),
    )
    for arch in (describe(g, torch.randn(1, 3, 8, 8)), describe(g)):
        assert arch["downsampling"] == "no"
        assert arch["n_pool"] == 1


def test_functional_norm_counts():
    class AdaIN(nn.Module):
        def __init__(self):
            super().__init__()
            self.style = nn.Linear(4, 6)

        def forward(self, x, w):
            gamma, beta = self.style(w)[:, :, None, None].chunk(2, dim=1)
            return (1 + gamma) * F.instance_norm(x) + beta

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.const = nn.Parameter(torch.randn(1, 3, 4, 4))
            self.conv, self.ada = nn.Conv2d(3, 3, 3, 1, 1), AdaIN()

        def forward(self, w):  # the maps start from a learned constant, not from w
            x = F.relu(self.conv(self.const.expand(w.shape[0], -1, -1, -1)))
            return self.ada(x, w)

    arch = describe(Net(), torch.randn(2, 4))
    assert arch["n_norm"] == 1 and arch["norm_type"] == "instance"
    assert arch["block_activation"] == "relu" and arch["n_conv"] == 1 and arch["n_fc"] == 1
    assert arch["skip_connection"] == "no"  # style broadcast is not an equal-shape add


# ---------------------------------------------------------------------------
# parameters, sharing, training flags, errors


def test_params_count_trainable_once_and_shared_modules_once():
    shared = nn.Conv2d(4, 4, 3, 1, 1)
    frozen = nn.Conv2d(4, 4, 1)
    frozen.requires_grad_(False)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.frozen = shared, shared, frozen
            self.fc1 = nn.Linear(4, 4)
            self.fc2 = nn.Linear(4, 4)
            self.fc2.weight = self.fc1.weight  # a tied parameter

        def forward(self, x):
            x = self.frozen(self.b(F.relu(self.a(x))))
            return self.fc2(self.fc1(x.mean((2, 3))))

    arch = describe(Twice(), torch.randn(2, 4, 6, 6))
    assert arch["n_conv"] == 2 and arch["n_fc"] == 2  # the frozen conv is still a layer
    assert arch["n_filters"] == 8
    assert arch["n_params"] == (4 * 4 * 9 + 4) + (16 + 4) + 4


def test_batchnorm_in_train_mode_and_state_restored():
    g = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3), nn.Dropout(0.5), Noise(3)
    )
    g.train()
    g[4].eval()  # a mixed state must come back exactly
    # one sample: BatchNorm would fail in train mode ("more than 1 value per channel")
    x = torch.randn(1, 4)
    before_rng = torch.get_rng_state()
    arch = describe(g, x)
    assert torch.equal(torch.get_rng_state(), before_rng)  # Noise drew numbers
    assert [m.training for m in g.modules()] == [True, True, True, True, True, False, True]
    assert g[1].num_batches_tracked.item() == 0  # running statistics untouched
    assert torch.equal(g[1].running_mean, torch.zeros(8))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in g.modules())
    assert arch["n_norm"] == 1 and arch["norm_type"] == "batch"
    assert arch["n_params"] == (4 * 8 + 8) + 16 + (8 * 3 + 3) + 3


def test_non_module_is_a_type_error():
    with pytest.raises(TypeError, match="needs a torch.nn.Module, got int"):
        describe(42)
    with pytest.raises(TypeError, match="got function"):
        describe(dcgan)


def test_failing_forward_is_a_one_line_value_error():
    g = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    g.train()
    with pytest.raises(ValueError) as info:
        describe(g, torch.randn(2, 5))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("Sequential: forward pass on the example input failed: ")
    assert "RuntimeError" in message and "2x5" in message
    assert g.training and g[0].training  # flags restored after the failure
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in g.modules())

    class Loud(nn.Module):
        def forward(self, x):
            raise RuntimeError("first line\n  second line")

    with pytest.raises(ValueError, match=r"^Loud: .* failed: RuntimeError: first line$"):
        describe(Loud(), torch.zeros(1))


def test_parametrized_custom_layer_keeps_its_conv():
    wn = nn.utils.parametrizations.weight_norm
    g = nn.Sequential(wn(RawConv(3, 5)), nn.ReLU(), nn.Conv2d(5, 3, 1))
    for arch in (describe(g, torch.randn(1, 3, 8, 8)), describe(g)):
        assert arch["n_conv"] == 2 and arch["n_filters"] == 5 + 3
        # weight norm splits the weight into a magnitude [5,1,1,1] and a direction
        assert arch["n_params"] == (5 + 5 * 3 * 9 + 5) + (5 * 3 + 3)


def test_inplace_residual_tuple_output_and_fixed_transposed_kernel():
    class Basic(nn.Module):
        def __init__(self, ch: int):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(ch, ch, 3, 1, 1), nn.Conv2d(ch, ch, 3, 1, 1)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            out = self.conv2(self.relu(self.conv1(x)))
            out += x  # torchvision style: in-place add, then in-place ReLU
            return self.relu(out)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(Basic(4), Basic(4))
            self.out = nn.Conv2d(4, 3, 1)
            self.register_buffer("kernel", torch.ones(4, 1, 2, 2))  # fixed up-sampling

        def forward(self, x):
            h = F.conv_transpose2d(self.blocks(x), self.kernel, stride=2, groups=4)
            return torch.tanh(self.out(h)), h  # the image first

    arch = describe(Net(), torch.randn(1, 4, 8, 8))
    assert arch["skip_connection"] == "yes"
    assert arch["last_activation"] == "tanh"
    assert arch["n_conv"] == 5 and arch["n_blocks"] == 2 and arch["n_layers_per_block"] == 2.0
    assert arch.extra["upsampling_kind"] == "bilinear"  # not a learned transposed conv
    assert arch["upsampling"] == "fixed"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_module_and_rng_restored():
    g = nn.Sequential(*dcgan(), Noise(3)).cuda()
    x = torch.randn(2, 16, 1, 1, device="cuda")
    before = torch.cuda.get_rng_state()
    arch = describe(g, x)
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert arch["n_params"] == DCGAN_VALUES["n_params"] + 3
    assert arch["last_activation"] == "tanh" and arch["skip_connection"] == "no"
