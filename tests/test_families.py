"""Loss functions against their formulas, building blocks, and every generator
family: its ground truth follows its config, and its own losses train it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gmtrace.zoo import losses as L
from gmtrace.zoo.catalog import FAMILIES, create_gm
from gmtrace.zoo.families import TASKS, Balancer, degrade, describe_gm
from gmtrace.zoo.layers import ACTIVATION_CLASS, ModulatedConv2d, Up

torch.manual_seed(0)


def test_pixel_losses():
    x = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    y = torch.zeros(2, 2)
    assert L.l1_loss(x, y).item() == pytest.approx(2.5 / 4)
    assert L.mse_loss(x, y).item() == pytest.approx(2.25 / 4)
    fx = [torch.ones(2, 3, 4, 4), torch.zeros(2, 2, 2, 2)]
    fy = [torch.zeros(2, 3, 4, 4), torch.full((2, 2, 2, 2), 2.0)]
    assert L.l2_feature_loss(fx, fy).item() == pytest.approx(1.0 + 4.0)
    fy_mixed = [torch.stack([torch.zeros(3, 4, 4), 2 * torch.ones(3, 4, 4)]), fx[1]]
    # feature matching compares batch means: mean of (0, 2) is 1, equal to fx's 1
    assert L.l2_feature_loss(fx, fy_mixed, match_means=True).item() == pytest.approx(0.0)


def test_mmd():
    a = torch.randn(64, 8)
    assert L.mmd_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    near = L.mmd_loss(a, torch.randn(64, 8)).item()
    far = L.mmd_loss(a, torch.randn(64, 8) + 3).item()
    assert 0 <= near < far
    assert L.mmd_loss(a, a + 3).item() == pytest.approx(L.mmd_loss(a + 3, a).item(), rel=1e-5)


def test_adversarial_losses_at_known_logits():
    r, f = torch.tensor([2.0]), torch.tensor([-1.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731 softplus
    assert L.adv_d_loss(r, f).item() == pytest.approx(sp(-2.0) + sp(-1.0), rel=1e-5)
    assert L.adv_g_loss(f).item() == pytest.approx(sp(1.0), rel=1e-5)
    assert L.hinge_d_loss(torch.tensor([0.5]), torch.tensor([-0.25])).item() == pytest.approx(
        0.5 + 0.75
    )
    assert L.hinge_g_loss(f).item() == 1.0
    assert L.ls_d_loss(r, f).item() == pytest.approx(0.5 * (1.0 + 1.0))
    assert L.ls_g_loss(f).item() == pytest.approx(0.5 * 4.0)
    assert L.wgan_d_loss(r, f).item() == -3.0
    assert L.wgan_g_loss(f).item() == 1.0


def test_gradient_penalty_of_linear_critic():
    a = torch.full((1, 3, 2, 2), 0.5)  # ||a|| = sqrt(12 * 0.25) = sqrt(3)
    critic = lambda x: (x * a).flatten(1).sum(1, keepdim=True)  # noqa: E731
    gp = L.gradient_penalty(critic, torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2))
    assert gp.item() == pytest.approx((math.sqrt(3) - 1) ** 2, rel=1e-5)
    net = torch.nn.Linear(3, 1)
    with torch.no_grad():
        net.weight.fill_(5.0)
    L.clip_weights(net, 0.01)
    assert net.weight.abs().max().item() == pytest.approx(0.01)


def test_kl_and_ce():
    assert L.kl_loss(torch.zeros(4, 8), torch.zeros(4, 8)).item() == pytest.approx(0.0)
    mu, logvar = torch.ones(1, 2), torch.zeros(1, 2)
    assert L.kl_loss(mu, logvar).item() == pytest.approx(0.5 * 2)
    x = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 3, 1).expand(1, 3, 3, 1)
    bins = L.quantize(x, 5)
    assert bins[0, 0, :, 0].tolist() == [0, 2, 4]
    assert torch.allclose(L.dequantize(bins, 5), x)
    logits = torch.zeros(1, 5, 3, 3, 1)
    assert L.ce_loss(logits, x, 5).item() == pytest.approx(math.log(5), rel=1e-5)


def test_modulated_conv_equals_fused_form():
    m = ModulatedConv2d(4, 5, 6)
    x, style = torch.randn(3, 4, 8, 8), torch.randn(3, 6)
    s = m.affine(style)
    w = m.weight[None] * s[:, None, :, None, None]
    w = w * torch.rsqrt(w.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    fused = F.conv2d(x.reshape(1, 12, 8, 8), w.reshape(15, 4, 3, 3), padding=1, groups=3)
    expected = fused.view(3, 5, 8, 8) + m.bias
    assert torch.allclose(m(x, style), expected, atol=1e-5)


@pytest.mark.parametrize("kind", ["transposed", "nearest", "bilinear", "pixel_shuffle"])
def test_upsamplers_double_size(kind):
    assert Up(kind, 4, 6)(torch.randn(2, 4, 5, 5)).shape == (2, 6, 10, 10)


@pytest.mark.parametrize("task", TASKS)
def test_degradations_change_the_image(task):
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = degrade(x, task, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.allclose(x, y)


def configs(family: str, n: int = 6):
    b = Balancer(np.random.default_rng(3))
    return [FAMILIES[family].sample_config(b, 32) for _ in range(n)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_ground_truth_follows_config(family):
    """What describe() reads off the generator agrees with the config that built it."""
    for cfg in configs(family):
        arch = describe_gm(create_gm(family, cfg, 32))
        v = arch.values
        assert v["n_params"] > 0 and v["n_layers"] == v["n_conv"] + v["n_fc"]
        if family in (
            "dcgan",
            "resgan",
            "vae",
            "catvae",
            "unet",
            "resnet",
            "cgan",
            "vqvae",
            "ddpm",
        ):
            assert arch.extra["upsampling_kind"] == cfg["up"]
            assert v["upsampling"] == (
                "learned" if cfg["up"] in ("transposed", "pixel_shuffle") else "fixed"
            )
            assert v["block_activation"] == ACTIVATION_CLASS[cfg["act"]]
        if family in ("dcgan", "resgan", "vae", "catvae") and cfg["norm"] != "none":
            assert v["norm_type"] == cfg["norm"]
        last = cfg.get("last")
        if last:
            assert (
                v["last_activation"]
                == {"none": "none", "tanh": "tanh", "sigmoid": "sigmoid", "hardtanh": "other"}[last]
            )
        if family == "catvae":
            assert v["last_activation"] == ("other" if cfg["log_softmax"] else "none")
        skip = (
            family in ("resgan", "unet", "resnet", "ddpm", "flow")  # a coupling passes half on
            or (family == "stylegan" and cfg["skip_rgb"])
            or (family == "cgan" and cfg["residual"])
            or (family == "vqvae" and cfg["n_res"] > 0)
        )
        assert v["skip_connection"] == ("yes" if skip else "no"), cfg
        down = family in ("unet", "resnet", "ddpm", "vqvae")
        assert v["downsampling"] == ("yes" if down else "no")
        if family == "fcgan":
            assert v["n_conv"] == 0 and v["n_fc"] == cfg["hidden_layers"] + 1
            assert v["block_activation"] == ACTIVATION_CLASS[cfg["act"]]
        if family == "flow":
            assert v["n_conv"] == 3 * cfg["n_coupling"] and v["n_blocks"] == cfg["n_coupling"]
            assert arch.extra["upsampling_kind"] == "pixel_shuffle"
        if family == "mmd" and cfg["arch"] == "mlp":
            assert v["n_conv"] == 0 and v["n_fc"] == cfg["hidden_layers"] + 1
        if family == "stylegan":
            # mapping MLP + one affine per modulated conv / AdaIN
            assert v["n_fc"] >= cfg["n_mapping"]
            assert v["norm_type"] == ("instance" if cfg["mode"] == "adain" else "layer_group")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_trains_and_samples(family):
    """A few steps of the GM's own objective on a fixed batch: finite losses, the
    generator's weights move, and samples are images in [-1, 1]."""
    torch.manual_seed(1)
    cfg = configs(family, 1)[0]
    gm = create_gm(family, cfg, 32)
    gm.setup(torch.device("cpu"))
    real = torch.rand(6, 3, 32, 32) * 2 - 1
    labels = torch.arange(6) % 4
    before = [p.detach().clone() for p in gm.generator.parameters()]
    for _ in range(3):
        metrics = gm.train_step(real, labels) if gm.conditional else gm.train_step(real)
        assert all(np.isfinite(v) for v in metrics.values())
    moved = sum(
        (a - p).abs().sum().item() for a, p in zip(before, gm.generator.parameters(), strict=True)
    )
    assert moved > 0
    x = gm.sample(6, real if gm.kind == "translate" else None)
    assert x.shape == (6, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert set(gm.loss_types()) <= set(L.ADVERSARIAL) | {"l1", "l2", "mse", "mmd", "kl", "ce"}


@pytest.mark.parametrize("family", ["vae", "unet", "resnet", "mmd", "catvae", "ddpm", "flow"])
def test_reconstruction_objectives_decrease(family):
    """Non-adversarial objectives go down on a fixed batch (deterministic seed)."""
    torch.manual_seed(2)
    cfg = configs(family, 1)[0]
    cfg.pop("adversarial", None)
    gm = create_gm(family, cfg, 32)
    gm.setup(torch.device("cpu"))
    real = torch.rand(8, 3, 32, 32) * 2 - 1
    key = {
        "vae": "rec",
        "unet": "rec",
        "resnet": "rec",
        "mmd": "mmd",
        "catvae": "ce",
        "ddpm": "mse",
        "flow": "bpd",
    }[family]
    first = gm.train_step(real)[key]
    for _ in range(25):
        last = gm.train_step(real)[key]
    assert last < first
