"""Training recipes: drawn per GM, applied to the modules, recorded in models.csv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gmtrace.zoo.catalog import create_gm
from gmtrace.zoo.families import Balancer
from gmtrace.zoo.recipe import (
    COLLAPSE_BELOW,
    Recipe,
    diversity,
    initialize,
    latent,
    make_optimizer,
    sample_recipe,
    to_8bit,
)


def test_recipe_roundtrip_and_legacy_default():
    r = sample_recipe(Balancer(np.random.default_rng(0)), (10, 400))
    assert Recipe.from_dict(r.to_dict()) == r
    assert 10 <= r.steps <= 400
    # configs written before recipes existed train as every GM once did
    old = Recipe.from_dict(None)
    assert (old.steps, old.batch, old.optimizer, old.lr) == (80, 12, "adam", 2e-4)
    row = Recipe(optimizer="sgd", lr=0.01234).row()
    assert row["betas"] == "" and row["lr"] == "0.0123"


def test_balanced_recipes_cover_every_option():
    b = Balancer(np.random.default_rng(1))
    rs = [sample_recipe(b, (10, 400)) for _ in range(15)]
    assert {r.optimizer for r in rs} == {"adam", "rmsprop", "sgd"}
    assert {r.init for r in rs} == {"default", "normal02", "xavier", "kaiming", "orthogonal"}
    assert {r.to_8bit for r in rs} == {"round", "floor", "stretch"}
    steps = [r.steps for r in rs]
    assert max(steps) / min(steps) > 5  # log-uniform over 1.6 orders of magnitude


def test_initialize_and_optimizer_follow_the_recipe():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3), nn.BatchNorm2d(64), nn.Linear(4, 64))
    initialize(net, Recipe(init="normal02", norm_eps=1e-3, norm_momentum=0.01))
    assert net[0].weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert float(net[0].bias.detach().abs().max()) == 0.0
    assert (net[1].eps, net[1].momentum) == (1e-3, 0.01)
    initialize(net, Recipe(init="orthogonal"))
    w = net[2].weight  # 64 x 4: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(4), atol=1e-5)
    opt = make_optimizer(net.parameters(), Recipe(optimizer="sgd", lr=0.01))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    opt = make_optimizer(net.parameters(), Recipe(optimizer="adam", betas=(0.0, 0.99)))
    assert opt.defaults["betas"] == (0.0, 0.99)


@pytest.mark.parametrize("kind", ["normal", "uniform", "truncnormal"])
def test_latents_have_unit_variance_and_truncate(kind):
    torch.manual_seed(0)
    r = Recipe(latent=kind, truncation=0.5)
    z = latent(20000, 8, r, "cpu")
    assert z.std().item() == pytest.approx(1.0, abs=0.03)
    assert latent(20000, 8, r, "cpu", sampling=True).std().item() == pytest.approx(0.5, abs=0.02)
    if kind != "normal":
        assert z.abs().max().item() <= 2.0 / 0.8796 + 1e-4


def test_to_8bit_modes():
    x = np.array([-1.0, -0.5, 0.0, 0.999], np.float32).reshape(1, 1, 1, 4).repeat(3, 1)
    assert to_8bit(x, "round")[0, 0, :, 0].tolist() == [0, 64, 128, 255]
    assert to_8bit(x, "floor")[0, 0, :, 0].tolist() == [0, 63, 127, 254]
    stretched = to_8bit(x * 0.1, "stretch")[0, 0, :, 0]  # a faint image spans 0..255
    assert stretched[0] == 0 and stretched[-1] == 255
    with pytest.raises(ValueError, match="8-bit"):
        to_8bit(x, "bogus")


def test_diversity_flags_mode_collapse():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    same = np.repeat(real[:1], 20, axis=0)
    assert diversity(same, real) == 0.0 < COLLAPSE_BELOW
    assert diversity(real[::-1].copy(), real) == pytest.approx(1.0)


def test_gm_trains_with_its_recipe():
    b = Balancer(np.random.default_rng(3))
    from gmtrace.zoo.catalog import FAMILIES

    cfg = FAMILIES["dcgan"].sample_config(b, 32)
    cfg["recipe"] = Recipe(optimizer="rmsprop", lr=1e-4, latent="uniform").to_dict()
    gm = create_gm("dcgan", cfg, 32)
    gm.setup(torch.device("cpu"))
    assert isinstance(gm.opt, torch.optim.RMSprop) and gm.opt.defaults["lr"] == 1e-4
    assert isinstance(gm.adversary.opt, torch.optim.RMSprop | torch.optim.Adam)
    gm.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert gm.sample(3).shape == (3, 3, 32, 32)
