"""Fingerprint networks and RED's fingerprint constraints against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from gmtrace.nets import fingerprint_losses as FL
from gmtrace.nets.config import FENConfig
from gmtrace.nets.fen import DnCNN, fold_batch_norm, red


def test_red_fen_matches_reds_size():
    net = red()
    # 17 layers, 64 channels, biases kept, BN: 559,363 parameters as in RED's code
    assert sum(p.numel() for p in net.parameters()) == 559_363
    assert net.receptive_field == 35
    for size in (32, 48, 64):
        assert net(torch.randn(2, 3, size, size)).shape == (2, 3, size, size)
    with pytest.raises(ValueError, match="at least 2"):
        DnCNN(FENConfig(depth=1))


def test_spectrum_is_orthonormal_and_centred():
    fp = torch.zeros(1, 3, 8, 8)
    fp[:, :, :, :] = 1.0  # constant luma 1 -> all energy at DC
    s = FL.spectrum(fp)
    assert s.shape == (1, 8, 8)
    assert s[0, 4, 4].item() == pytest.approx(8.0)  # sqrt(64) with norm="ortho"
    assert s.sum().item() == pytest.approx(8.0, abs=1e-4)
    g = torch.randn(2, 3, 16, 16)
    # Parseval with the orthonormal DFT
    assert FL.spectrum(g).pow(2).sum().item() == pytest.approx(
        FL.luma(g).pow(2).sum().item(), rel=1e-4
    )


def test_window_scales_with_size():
    m64 = FL.low_window(64, 64)
    assert m64.sum().item() == (2 * 12 + 1) ** 2  # r = round(0.195 * 64) = 12
    m128 = FL.low_window(128, 128)
    assert m128.sum().item() == 51 * 51  # RED's 51 x 51 window at 128 px
    assert m64[32, 32] and not m64[0, 0]


def test_fingerprint_losses_formulas():
    torch.manual_seed(0)
    fp = torch.randn(3, 3, 16, 16)
    g = FL.luma(fp)
    assert FL.magnitude_loss(fp).item() == pytest.approx(g.pow(2).mean().item())
    s = FL.spectrum(fp)
    mask = FL.low_window(16, 16)
    assert FL.low_frequency_loss(s).item() == pytest.approx(s[:, mask].pow(2).mean().item())
    per_image = torch.stack([s[b][~mask].max() for b in range(3)])
    assert FL.repetition_loss(s).item() == pytest.approx(-per_image.mean().item())
    sym = torch.ones(2, 8, 8)
    assert FL.symmetry_loss(sym).item() == 0.0
    asym = torch.zeros(1, 4, 4)
    asym[0, 0, 1] = 2.0
    assert FL.symmetry_loss(asym).item() == pytest.approx(2 * 4.0 / 16)


def test_periodic_pattern_has_high_frequency_peak():
    """A checkerboard (period 2) puts its energy at the Nyquist corner, outside the
    low window, so the repetition term rewards it and the low term does not."""
    y, x = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((x + y) % 2 * 2 - 1).float().expand(1, 3, 16, 16)
    flat = torch.ones(1, 3, 16, 16)
    s_c, s_f = FL.spectrum(checker), FL.spectrum(flat)
    assert FL.repetition_loss(s_c) < FL.repetition_loss(s_f)
    assert FL.low_frequency_loss(s_c) < FL.low_frequency_loss(s_f)


def test_supcon():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    # each anchor: positive sim 1/tau, negatives 0 -> -log(e^2 / (e^2 + 2))
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert FL.supcon_loss(z, labels, tau).item() == pytest.approx(expected, rel=1e-5)
    mixed = FL.supcon_loss(z, torch.tensor([0, 1, 0, 1]), tau)
    assert mixed > FL.supcon_loss(z, labels, tau)
    assert FL.supcon_loss(z, torch.arange(4), tau).item() == 0.0  # no positives


def test_folding_batch_norm_keeps_the_function():
    import copy

    torch.manual_seed(0)
    fen = DnCNN(FENConfig(depth=5, width=8, batch_norm=True, highpass=True))
    for m in fen.modules():  # a trained-looking BN: stats and affine far from identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    torch.nn.init.normal_(fen.body[-1].weight, std=0.1)
    x = torch.rand(4, 3, 20, 20)
    folded = fold_batch_norm(copy.deepcopy(fen))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        want = fen.eval()(x)
        got = folded(x)
    assert want.abs().mean() > 0.01
    assert torch.allclose(got, want, atol=1e-5)
