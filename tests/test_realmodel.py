"""The model of real photographs: self-descriptions with known answers, and a
density fitted on real images only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.functional import avg_pool2d

from gmtrace.realmodel.density import RealModelError, RealPhotoModel
from gmtrace.realmodel.selfdesc import (
    BLOCKS,
    CROSS_SCALE_NAMES,
    DESCRIPTION_NAMES,
    MIN_SIDE,
    PER_CHANNEL,
    PERIOD_NAMES,
    SCALES,
    SPECTRUM_NAMES,
    WIDTHS,
    cross_scale,
    describe,
    describe_images,
    describe_scale,
    high_pass,
    periodicity,
    residual_stats,
    spectrum,
    upper_quantile,
    windows,
)


def col(name: str) -> int:
    return DESCRIPTION_NAMES.index(name)


def test_a_channel_made_of_the_others_is_predicted_exactly():
    rng = np.random.default_rng(0)
    r, b = rng.normal(size=(2, 3, 48, 48))
    x = torch.from_numpy(np.stack([r, 2 * r - 0.5 * b, b], 1) / 8).float()
    d = describe_images(x)
    assert d.shape == (3, len(DESCRIPTION_NAMES)) == (3, 193)
    assert d[:, col("s1_g_w_other_1")].numpy() == pytest.approx([2.0] * 3, abs=1e-3)
    assert d[:, col("s1_g_w_other_2")].numpy() == pytest.approx([-0.5] * 3, abs=1e-3)
    neighbours = [col(f"s1_g_{n}") for n in PER_CHANNEL[:8]]
    assert np.abs(d[:, neighbours].numpy()).max() < 1e-3
    assert (d[:, col("s1_g_log_gain")] < -12).all()  # nothing left to predict


def test_an_image_enlarged_k_times_is_predicted_from_its_k_times_coarser_version():
    """Bicubic enlargement by k: every fine pixel is a smooth function of the coarse
    image, so the 3x3 parents of the k-times box average predict it (gain far below
    0, about -3); other factors' parents mostly do not (a 2x image's 3x3 cells
    straddle its own). White noise's detail is nothing its parents tell (gain 0). A
    flat image stays finite."""
    rng = np.random.default_rng(5)
    noise = torch.from_numpy(rng.uniform(size=(3, 72, 72))).float()
    for k in (2, 3, 4):
        small = torch.from_numpy(rng.uniform(size=(3, 1, 72 // k, 72 // k))).float()
        big = torch.nn.functional.interpolate(small, scale_factor=k, mode="bicubic")[:, 0]
        d = dict(zip(CROSS_SCALE_NAMES, cross_scale(big).T, strict=True))
        assert (d[f"xscale_{k}_mean"] < -2.5).all() and (d[f"xscale_{k}_min"] < -2.5).all()
        assert (d[f"xscale_{k}_spread"] < 0.3).all()  # every phase alike
    small = torch.from_numpy(rng.uniform(size=(3, 1, 36, 36))).float()
    big = torch.nn.functional.interpolate(small, scale_factor=2, mode="bicubic")[:, 0]
    two = dict(zip(CROSS_SCALE_NAMES, cross_scale(big).T, strict=True))
    assert (two["xscale_3_mean"] > -1).all() and (two["xscale_3_spread"] > 0.1).all()
    white = dict(zip(CROSS_SCALE_NAMES, cross_scale(noise).T, strict=True))
    for name in CROSS_SCALE_NAMES:
        assert (white[name].abs() < 0.1).all()
    assert torch.isfinite(cross_scale(torch.full((2, 64, 64), 0.5))).all()


def test_a_description_cut_after_a_part_is_the_prefix_of_the_whole():
    """A model fitted before the cross-scale part existed reads the first 184 values,
    unchanged, and `describe(width=)` computes only those."""
    images = np.random.default_rng(2).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)
    whole = describe(images)
    assert WIDTHS == tuple(b for _, b in BLOCKS) == (180, 184, 193)
    for w in WIDTHS:
        np.testing.assert_array_equal(describe(images, width=w), whole[:, :w])
    with pytest.raises(ValueError, match="one of its parts"):
        describe(images, width=100)


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
    spread = dict(zip(PERIOD_NAMES, periodicity(high_pass(big)).T, strict=True))
    flat = dict(zip(PERIOD_NAMES, periodicity(high_pass(noise)).T, strict=True))
    for axis in ("rows", "cols"):
        assert (spread[f"period_3_{axis}"] > 0.5).all()  # phases differ several-fold
        assert (spread[f"period_6_{axis}"] > 0.5).all()  # a multiple of 3
        for p in (2, 4, 5, 8):  # other periods: what so few phases' sampling leaves
            assert (spread[f"period_{p}_{axis}"] < 0.3).all()
        for p in (2, 3, 4, 5, 6, 8):
            assert (flat[f"period_{p}_{axis}"] < 0.1).all()
    for axis in ("across", "down"):  # the magnitude repeats 3 pixels on
        assert (spread[f"lag_3_{axis}"] > 0.4).all() and (flat[f"lag_3_{axis}"].abs() < 0.05).all()


def test_the_residual_spectrum_of_noise_is_flat_and_of_an_enlarged_image_has_lines():
    """A white residual's spectrum is flat: its magnitude is Rayleigh (mean / median
    = sqrt(pi / (4 ln 2)) = 1.0645), its power exponential (flatness exp(-gamma),
    log -0.577), and the band beyond 0.35 cycles holds its share of the frequencies
    (1 - (45 / 64)^2 = 0.506 on 64 x 64). A 2x nearest enlargement puts lines in the
    A 2x bilinear enlargement leaves its high-pass residual's energy at low
    frequencies: peakier, less flat, almost none beyond 0.35 cycles, where noise's
    residual (the high-pass filter weighs high frequencies up) keeps most of it. A
    faint checkerboard on a smooth image is one line at the Nyquist corner: the high
    share up, the flatness down. A flat image stays finite."""
    rng = np.random.default_rng(7)
    white = torch.from_numpy(rng.normal(size=(4, 64, 64))).float()
    s = dict(zip(SPECTRUM_NAMES, spectrum(white).T, strict=True))
    assert s["spectrum_log_peakiness"].numpy() == pytest.approx([np.log(1.0645)] * 4, abs=0.02)
    assert s["spectrum_log_flatness"].numpy() == pytest.approx([-0.577] * 4, abs=0.05)
    assert s["spectrum_high"].numpy() == pytest.approx([0.506] * 4, abs=0.03)
    noise = torch.from_numpy(rng.uniform(size=(4, 3, 66, 66))).float()
    small = torch.from_numpy(rng.uniform(size=(4, 3, 33, 33))).float()
    big = torch.nn.functional.interpolate(small, scale_factor=2, mode="bilinear")
    n = dict(zip(SPECTRUM_NAMES, spectrum(high_pass(noise)).T, strict=True))
    e = dict(zip(SPECTRUM_NAMES, spectrum(high_pass(big)).T, strict=True))
    assert (n["spectrum_high"] > 0.7).all() and (e["spectrum_high"] < 0.1).all()
    assert (e["spectrum_log_peakiness"] > n["spectrum_log_peakiness"] + 0.3).all()
    assert (e["spectrum_log_lines"] > n["spectrum_log_lines"] + 0.5).all()
    assert (e["spectrum_log_flatness"] < n["spectrum_log_flatness"] - 0.8).all()
    smooth = avg_pool2d(torch.from_numpy(rng.uniform(size=(4, 3, 70, 70))).float(), 5, stride=1)
    board = smooth + 0.01 * torch.from_numpy(np.indices((66, 66)).sum(0) % 2).float()
    m = dict(zip(SPECTRUM_NAMES, spectrum(high_pass(smooth)).T, strict=True))
    b = dict(zip(SPECTRUM_NAMES, spectrum(high_pass(board)).T, strict=True))
    assert (b["spectrum_high"] > m["spectrum_high"] + 0.15).all()
    assert (b["spectrum_log_flatness"] < m["spectrum_log_flatness"] - 0.3).all()
    assert torch.isfinite(spectrum(high_pass(torch.full((1, 3, 20, 20), 0.4)))).all()


def test_uint8_and_float_inputs_agree_and_small_images_are_refused():
    rng = np.random.default_rng(2)
    u8 = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    f = torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.allclose(describe_images(u8), describe_images(f), atol=1e-4)
    with pytest.raises(ValueError, match=f"at least {MIN_SIDE} pixels"):
        describe_images(u8[:, :12, :12])


def test_the_fast_windows_and_quantile_are_unfold_and_quantile_exactly():
    """The description reads its windows through a strided view and its 99th
    percentile from a partial sort (docs/benchmarks.md: the same bits, faster): both
    equal torch's own to the bit, on odd sizes, float64, ties and a single row."""
    rng = np.random.default_rng(9)
    for shape, dtype in (((3, 3, 19, 23), torch.float32), ((2, 1, 7, 5), torch.float64)):
        x = torch.from_numpy(rng.normal(size=shape)).to(dtype)
        for k in (3, 5):
            assert torch.equal(windows(x, k), torch.nn.functional.unfold(x, k))
    rows = [
        torch.from_numpy(rng.random((4, 3844))).float(),
        torch.from_numpy(rng.integers(0, 5, (3, 101))).float(),  # ties
        torch.rand(1, 2),
        torch.rand(2, 1),
    ]
    for v in rows:
        for q in (0.99, 0.5, 1.0):
            assert torch.equal(upper_quantile(v, q), torch.quantile(v, q, dim=1))


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
    r = high_pass(unit)
    ref = torch.cat([*parts, periodicity(r), spectrum(r), cross_scale(unit.mean(1))], 1)
    assert torch.isfinite(got).all()
    assert torch.allclose(got[:3].double(), ref[:3], atol=2e-3)
    gain = col("s1_g_log_gain")
    assert float(got[3, gain]) == pytest.approx(float(ref[3, gain]), abs=1e-3)


def test_density_scores_unlike_images_as_unlike_real_ones():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    odd = real[:50] + 25.0  # shifted far off the real cloud
    m = RealPhotoModel.fit(real[50:], seed=0, dims=8)
    assert 1 <= m.components <= 8 and m.parts[0].basis.shape == (12, 8)
    u_real, u_odd = m.unlikeness(real[:50]), m.unlikeness(odd)
    assert 0.2 < u_real.mean() < 0.8  # held-out real images: about uniform
    assert u_odd.min() > 0.95 and ((u_odd >= 0) & (u_odd <= 1)).all()
    again = RealPhotoModel.from_arrays(m.to_arrays())
    assert np.allclose(again.parts[0].nll(odd), m.parts[0].nll(odd))


def test_a_small_part_that_tells_images_apart_is_not_drowned_by_a_large_one():
    """Images typical in 40 values and far off in a part of 2 of their own: one
    density over all 42 in 8 principal directions hardly sees them (the 40's
    correlations take those directions); modelled in parts and combined by
    Fisher's method, they are unlike every photograph, while held-out photographs
    stay about uniform. Saved and loaded, the parts answer the same; a model of one
    part reads only its columns of a wider description (as a model saved before the
    spectrum part does)."""
    rng = np.random.default_rng(8)
    mix = rng.normal(size=(10, 40))
    real = np.c_[rng.normal(size=(600, 10)) @ mix, rng.normal(size=(600, 2))]
    real[:, :40] += 0.3 * rng.normal(size=(600, 40))
    odd = np.c_[rng.normal(size=(60, 10)) @ mix, rng.normal(size=(60, 2)) + [5.0, 0.0]]
    odd[:, :40] += 0.3 * rng.normal(size=(60, 40))
    whole = RealPhotoModel.fit(real[100:], seed=0, dims=8)
    parts = RealPhotoModel.fit(real[100:], seed=0, dims=8, blocks=((0, 40), (40, 42)))
    assert parts.components == sum(p.components for p in parts.parts) and len(parts.parts) == 2
    assert parts.unlikeness(odd).mean() > 0.95 > whole.unlikeness(odd).mean() + 0.2
    assert 0.3 < parts.unlikeness(real[:100]).mean() < 0.7
    again = RealPhotoModel.from_arrays(parts.to_arrays())
    assert np.array_equal(again.unlikeness(odd), parts.unlikeness(odd))
    assert again.columns == [(0, 40), (40, 42)]
    first = RealPhotoModel.fit(real[100:, :40], seed=0)
    wider = RealPhotoModel.from_arrays(first.to_arrays())
    assert np.array_equal(wider.unlikeness(odd), first.unlikeness(odd[:, :40]))
    with pytest.raises(RealModelError, match="reads descriptions of 42"):
        parts.unlikeness(odd[:, :40])
    with pytest.raises(RealModelError, match="the parts read 40"):
        RealPhotoModel.fit(real, blocks=((0, 40),))


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


def _textures(rng: np.random.Generator, n: int, size: int = 32) -> np.ndarray:
    """uint8 [n, size, size, 3] smooth random textures with a little noise: stand-ins
    for photographs."""
    x = torch.from_numpy(rng.normal(size=(n, 3, size // 4, size // 4))).float()
    x = torch.nn.functional.interpolate(x, size=size, mode="bicubic", align_corners=False)
    x = 128 + 40 * x + 6 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    return x.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def test_photographs_are_varied_as_the_network_training_varies_them():
    from gmtrace.data.augment import VARIATIONS, varied

    photos = _textures(np.random.default_rng(0), 40)
    assert varied(photos, "as given", 0) is photos
    jpeg_ = varied(photos, "JPEG", 0)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(photos, jpeg_, strict=True)])
    assert jpeg_.shape == photos.shape and 0.25 < changed.mean() < 0.75  # about half
    assert np.array_equal(varied(photos, "JPEG", 0), jpeg_)  # the seed draws the same
    whole = varied(photos, VARIATIONS[2], 0)
    assert whole.shape == photos.shape and whole.dtype == np.uint8
    with pytest.raises(ValueError, match="one of"):
        varied(photos, "sharpened", 0)
    with pytest.raises(ValueError, match="square"):
        varied(photos[:, :, :20], "JPEG", 0)


def test_the_variation_is_chosen_where_the_held_back_images_are_told_apart_best():
    """The held-back images come as a platform gives them, JPEG-compressed: a model
    of the photographs as given finds the compressed photographs unlike it too, one
    of photographs varied by JPEG does not, and tells them from the enlarged
    (generated) images better; the choice takes a variation with JPEG in it."""
    from gmtrace.data.augment import VARIATIONS, jpeg
    from gmtrace.methods.fused import choose_variation
    from gmtrace.realmodel.selfdesc import real_parts

    rng = np.random.default_rng(5)
    photos = _textures(rng, 300)
    val_real = _textures(rng, 60)
    small = _textures(rng, 60, size=16)
    enlarged = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)  # nearest, 2x
    val = np.concatenate([enlarged, val_real])
    y = np.r_[np.ones(60), np.zeros(60)]
    width = WIDTHS[1]
    described = [describe(np.stack([jpeg(a, 75) for a in val]), width=width)]
    best, model, scores = choose_variation(photos, described, y, width, real_parts(), 0)
    assert set(scores) == set(VARIATIONS) and best != "as given"
    assert scores[best][0] > scores["as given"][0] + 0.2
    assert model.width == width
