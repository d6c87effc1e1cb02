"""The model of real photographs: self-descriptions with known answers, and a
density fitted on real images only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.functional import avg_pool2d

from gmtrace.realmodel.density import RealModelError, RealPhotoModel
from gmtrace.realmodel.selfdesc import (
    DESCRIPTION_NAMES,
    MIN_SIDE,
    PER_CHANNEL,
    PERIOD_NAMES,
    SCALES,
    describe_images,
    describe_scale,
    periodicity,
    residual_stats,
)


def col(name: str) -> int:
    return DESCRIPTION_NAMES.index(name)


def test_a_channel_made_of_the_others_is_predicted_exactly():
    rng = np.random.default_rng(0)
    r, b = rng.normal(size=(2, 3, 48, 48))
    x = torch.from_numpy(np.stack([r, 2 * r - 0.5 * b, b], 1) / 8).float()
    d = describe_images(x)
    assert d.shape == (3, len(DESCRIPTION_NAMES)) == (3, 180)
    assert d[:, col("s1_g_w_other_1")].numpy() == pytest.approx([2.0] * 3, abs=1e-3)
    assert d[:, col("s1_g_w_other_2")].numpy() == pytest.approx([-0.5] * 3, abs=1e-3)
    neighbours = [col(f"s1_g_{n}") for n in PER_CHANNEL[:8]]
    assert np.abs(d[:, neighbours].numpy()).max() < 1e-3
    assert (d[:, col("s1_g_log_gain")] < -12).all()  # nothing left to predict


def test_white_noise_is_not_predicted_and_leaves_a_gaussian_residual():
    noise = torch.from_numpy(np.random.default_rng(4).normal(size=(3, 3, 64, 64)) / 8).float()
    d = describe_images(noise)
    for c in "rgb":
        assert (d[:, col(f"s1_{c}_log_gain")].abs() < 0.05).all()
        assert d[:, col(f"s1_{c}_log_kurtosis")].numpy() == pytest.approx([np.log(3)] * 3, abs=0.15)
        assert (d[:, col(f"s1_{c}_corr_across")].abs() < 0.05).all()


def test_a_smooth_image_is_predicted_from_its_neighbours():
    # a field averaged over 3x3: each pixel is well predicted by its neighbours
    rng = np.random.default_rng(1)
    noise = torch.from_numpy(rng.normal(size=(2, 3, 66, 66))).float()
    smooth = torch.nn.functional.avg_pool2d(noise, 3, stride=1) / 3
    d = describe_images(smooth.clamp(-1, 1))
    assert (d[:, col("s1_r_log_gain")] < -1).all()
    assert (d[:, [col(f"s1_r_{n}") for n in PER_CHANNEL[:8]]].sum(1) > 0.5).all()


def test_phase_energies_see_where_the_residual_lives():
    r = torch.zeros(1, 8, 8)
    r[:, ::2, ::2] = torch.tensor([1.0, -1.0] * 8).reshape(4, 4)  # phase (0, 0) only
    stats = residual_stats(r, torch.tensor([1.0]))
    phases = stats[0, 4:]
    assert float(phases[0]) == pytest.approx(np.log(4), abs=1e-6)
    assert (phases[1:] < -10).all()
    assert float(stats[0, 2]) == 0 and float(stats[0, 3]) == 0  # no lag-1 neighbours


def test_an_image_enlarged_3x_is_periodic_with_period_3_only():
    rng = np.random.default_rng(5)
    small = torch.from_numpy(rng.uniform(size=(2, 3, 22, 22))).float()
    big = torch.nn.functional.interpolate(small, scale_factor=3, mode="bilinear")  # 66 px
    noise = torch.from_numpy(rng.uniform(size=(2, 3, 66, 66))).float()
    spread = dict(zip(PERIOD_NAMES, periodicity(big).T, strict=True))
    flat = dict(zip(PERIOD_NAMES, periodicity(noise).T, strict=True))
    for axis in ("rows", "cols"):
        assert (spread[f"period_3_{axis}"] > 0.5).all()  # phases differ several-fold
        assert (spread[f"period_6_{axis}"] > 0.5).all()  # a multiple of 3
        for p in (2, 4, 5, 8):  # other periods: what so few phases' sampling leaves
            assert (spread[f"period_{p}_{axis}"] < 0.3).all()
        for p in (2, 3, 4, 5, 6, 8):
            assert (flat[f"period_{p}_{axis}"] < 0.1).all()
    for axis in ("across", "down"):  # the magnitude repeats 3 pixels on
        assert (spread[f"lag_3_{axis}"] > 0.4).all() and (flat[f"lag_3_{axis}"].abs() < 0.05).all()


def test_uint8_and_float_inputs_agree_and_small_images_are_refused():
    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    f = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(describe_images(u8), describe_images(f), atol=1e-4)
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} pixels"):
        describe_images(u8[:, :12, :12])


def test_the_float32_description_matches_a_float64_one_and_stays_finite():
    """The batch is described in float32 (a Gram matrix of windows centred on the
    targets' mean, corrected in float64); a float64 pass of the same steps is the
    reference. A channel constant inside the border (nothing to predict, a centred
    square sum of 0) gives finite values."""
    rng = np.random.default_rng(6)
    noise = torch.from_numpy(rng.normal(size=(4, 3, 70, 70))).float()
    x = (torch.nn.functional.avg_pool2d(noise, 5, stride=1) / 2).clamp(-1, 1)  # 66 px
    x[3, 1] = 0.3
    x[3, 1, 0, :] = -0.9  # constant but for one border row
    got = describe_images(x)
    unit = (x.double() + 1) / 2
    parts = [describe_scale(unit if s == 1 else avg_pool2d(unit, s)) for s in SCALES]
    ref = torch.cat([*parts, periodicity(unit)], 1)
    assert torch.isfinite(got).all()
    assert torch.allclose(got[:3].double(), ref[:3], atol=2e-3)
    gain = col("s1_g_log_gain")
    assert float(got[3, gain]) == pytest.approx(float(ref[3, gain]), abs=1e-3)


def test_density_scores_unlike_images_as_unlike_real_ones():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    odd = real[:50] + 25.0  # shifted far off the real cloud
    m = RealPhotoModel.fit(real[50:], seed=0, dims=8)
    assert 1 <= m.components <= 8 and m.basis.shape == (12, 8)
    u_real, u_odd = m.unlikeness(real[:50]), m.unlikeness(odd)
    assert 0.2 < u_real.mean() < 0.8  # held-out real images: about uniform
    assert u_odd.min() > 0.95 and ((u_odd >= 0) & (u_odd <= 1)).all()
    again = RealPhotoModel.from_arrays(m.to_arrays())
    assert np.allclose(again.nll(odd), m.nll(odd))


def test_density_needs_enough_finite_photographs():
    with pytest.raises(RealModelError, match="at least 20"):
        RealPhotoModel.fit(np.zeros((5, 4)))
    bad = np.random.default_rng(0).normal(size=(50, 4))
    bad[3, 1] = np.nan
    with pytest.raises(RealModelError, match="NaN"):
        RealPhotoModel.fit(bad)
    arrays = RealPhotoModel.fit(np.random.default_rng(0).normal(size=(60, 4)), dims=3).to_arrays()
    del arrays["basis"]
    with pytest.raises(RealModelError, match="lacks"):
        RealPhotoModel.from_arrays(arrays)
