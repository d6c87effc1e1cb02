"""The parsing probe: pixel statistics, the GM-level fit, its place in the model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from gmtrace.core.schema import DISCRETE, LOSS_TYPES, Targets
from gmtrace.data.images import to_float
from gmtrace.nets.config import FENConfig, ModelConfig, ParserConfig, red_config
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.fit import calibrate, fit_heads, fit_parse_probe
from gmtrace.readout.forest import FOREST_ARRAYS, forest_leaves
from gmtrace.readout.inference import infer
from gmtrace.readout.pixel_stats import N_STATS, STAT_NAMES, pixel_statistics
from gmtrace.readout.readout import Readout
from gmtrace.readout.saved import load_model, save_model

SMALL = ModelConfig(
    fen=FENConfig(depth=3, width=8),
    parser=ParserConfig(width=8, stages=2, embed=16, dropout=0.0),
    proj=8,
)


def fitted(model: GMTraceModel, fake: list[np.ndarray], real: np.ndarray) -> Readout:
    """A readout with its probes and calibration fitted on these images."""
    r = Readout.for_model(model)
    fit_heads(r, model, fake, real)
    calibrate(r, model, fake, real)
    return r


def stats(images: np.ndarray) -> dict[str, np.ndarray]:
    s = pixel_statistics(torch.from_numpy(to_float(images))).numpy()
    assert s.shape == (len(images), N_STATS) and np.isfinite(s).all()
    return {n: s[:, i] for i, n in enumerate(STAT_NAMES)}


def test_histogram_statistics_of_known_images():
    half = np.zeros((1, 16, 16, 3), np.uint8)
    half[:, :, 8:] = 255
    s = stats(half)
    assert s["hist_at_0"] == pytest.approx(0.5) and s["hist_at_255"] == pytest.approx(0.5)
    assert s["hist_lowest"] == 0 and s["hist_highest"] == 1
    assert s["hist_mean"] == pytest.approx(0.5) and s["hist_std"] == pytest.approx(0.5)
    # every multiple of 4 from 0 to 252, equally often: 64 of the 253 bins filled, all even
    steps = (np.arange(64 * 64) % 64 * 4).reshape(1, 64, 64, 1).repeat(3, 3).astype(np.uint8)
    s = stats(steps)
    assert s["hist_empty_bins"] == pytest.approx(189 / 253)
    assert s["hist_even_mass"] == pytest.approx(1.0)
    assert s["hist_entropy"] == pytest.approx(np.log(64), rel=1e-5)
    flat = stats(np.full((2, 16, 16, 3), 77, np.uint8))  # constant: no NaN
    assert flat["residual_corr_x1"] == pytest.approx([0, 0])
    assert flat["colour_corr_rg"] == pytest.approx([0, 0])


def test_residual_statistics_see_up_sampling():
    """Nearest up-sampling by 2 zeroes the spectrum at 1/2 cycle per pixel and
    correlates neighbours; independent noise has its most power there."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    up = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.uint8).repeat(2, 1).repeat(2, 2)
    a, b = stats(noise), stats(up)
    for axis in ("x", "y"):
        assert b[f"peak_{axis}_0.5"].max() < a[f"peak_{axis}_0.5"].min() - 2
        assert b[f"residual_corr_{axis}1"].min() > a[f"residual_corr_{axis}1"].max()
    with pytest.raises(ValueError, match="pixel_statistics"):
        pixel_statistics(torch.zeros(1, 3, 4, 4))


def test_probe_parses_from_pixel_statistics_and_survives_a_reload(tmp_path):
    """Eight GMs in four families, bright or dark; a continuous field, a discrete
    field and a loss bit follow brightness. The probe, chosen by leaving families
    out, answers them on new images; a class and a loss nobody trained with are
    never answered; the saved model answers the same."""
    rng = np.random.default_rng(0)
    torch.manual_seed(0)

    def images(bright: bool, n: int = 12) -> np.ndarray:
        lo = 150 if bright else 0
        return rng.integers(lo, lo + 106, (n, 32, 32, 3)).astype(np.uint8)

    bright = np.array([g % 2 == 1 for g in range(8)])
    families = [f"family{g // 2}" for g in range(8)]
    last = DISCRETE.index(next(f for f in DISCRETE if f.name == "last_activation"))
    disc = np.zeros((8, len(DISCRETE)), np.int64)
    disc[:, last] = np.where(bright, 1, 2)
    losses = np.zeros((8, len(LOSS_TYPES)), np.float32)
    losses[:, LOSS_TYPES.index("l1")] = bright
    cont = np.full((8, 9), 0.5, np.float32)
    cont[:, 0] = np.where(bright, 0.8, 0.2)
    targets = Targets(continuous=cont, discrete=disc, losses=losses, groups=np.zeros((8, 3)))
    model = GMTraceModel(replace(SMALL, n_gms=8)).eval()
    fake = [images(b) for b in bright]
    r = fitted(model, fake, images(False, 24))
    assert not r.has_probe()
    info = fit_parse_probe(r, fake, targets, families)
    assert r.has_probe() and info["probe_gms"] == 8 and info["probe_inner_groups"] == 4
    # the features the network learned are never read: the probe's inputs are the
    # pixel statistics alone
    assert r.probe_weight_.shape[0] == N_STATS and r.probe_weight_.any()
    assert info["probe_view"] == {
        k: "forest" if i < 9 else "pixels" for i, k in enumerate(info["probe_view"])
    }
    test = np.concatenate([images(True, 6), images(False, 6)])
    inf = infer(model, r, test)
    # per image (a GM-level probe: most images right), and per set (below)
    assert np.median(inf.continuous[:6, 0]) > 0.6 and np.median(inf.continuous[6:, 0]) < 0.4
    p = inf.discrete_prob[last]
    assert (p[:6].argmax(1) == 1).mean() > 0.5 and (p[6:].argmax(1) == 2).mean() > 0.5
    assert p[:, [0, 3]].max() < 1e-6  # classes no training GM has
    l1 = inf.loss_prob[:, LOSS_TYPES.index("l1")]
    assert (l1[:6] > 0.5).mean() > 0.5 and (l1[6:] < 0.5).mean() > 0.5
    assert inf.loss_prob[:, LOSS_TYPES.index("ce")].max() < 1e-6
    # taken together, the images get the linear probe's answer for their mean input
    # and the mean of the forests' continuous answers
    assert info["probe_forest_depth"] > 0
    x = torch.from_numpy(to_float(test[:6]))
    with torch.no_grad():
        per_image = ((pixel_statistics(x) - r.probe_mean_) / r.probe_std_).clamp(-5, 5)
        lin = (per_image.mean(0) @ r.probe_weight_ + r.probe_bias_).numpy()
        counts = r.probe_parse(model(x).features, x).linear[:, :9]
        arrays = {n: getattr(r, f"forest_{n}_") for n in FOREST_ARRAYS}
        trees = forest_leaves(per_image, arrays, info["probe_forest_depth"]).mean(-1)
        linear = (per_image @ r.probe_weight_ + r.probe_bias_)[:, :9]
        forests = counts.mean(0).numpy()
    # a count is the mean of its forest's answer and its linear model's; its spread,
    # the forest's share of the trees' standard deviation
    torch.testing.assert_close(counts, 0.5 * trees + 0.5 * linear)
    with torch.no_grad():
        spread = r.probe_parse(model(x).features, x).spread
        leaves = forest_leaves(per_image, arrays, info["probe_forest_depth"])
    torch.testing.assert_close(spread, 0.5 * leaves.std(-1, correction=0))
    assert (spread > 0).any()
    np.testing.assert_allclose(inf.count_spread[:6], spread.numpy(), atol=1e-5)
    np.testing.assert_allclose(inf.spread_of(slice(0, 6)), spread.numpy().mean(0), atol=1e-5)
    lin = lin.astype(np.float64)
    c, d, lp = inf.parse_of(slice(0, 6))
    np.testing.assert_allclose(c, np.clip(forests, 0, 1), atol=1e-5)
    assert c[0] > 0.6 and d[last].argmax() == 1 and lp[LOSS_TYPES.index("l1")] > 0.5
    at = 9 + sum(f.n_classes for f in DISCRETE[:last])
    z = lin[at : at + DISCRETE[last].n_classes]
    np.testing.assert_allclose(d[last], np.exp(z - z.max()) / np.exp(z - z.max()).sum(), atol=1e-5)
    np.testing.assert_allclose(lp, 1 / (1 + np.exp(-lin[-len(LOSS_TYPES) :])), atol=1e-5)
    c, d, lp = inf.parse_of(slice(6, 12))
    assert c[0] < 0.4 and d[last].argmax() == 2 and lp[LOSS_TYPES.index("l1")] < 0.5
    save_model(model, r, tmp_path, {})
    saved = load_model(tmp_path)
    again = infer(saved.model, saved.readout, test)
    np.testing.assert_allclose(again.continuous, inf.continuous, atol=1e-6)
    np.testing.assert_allclose(again.loss_prob, inf.loss_prob, atol=1e-6)


def test_forest_tensors_answer_as_scikit_learn():
    """A forest packed into tensors walks to the same leaves as scikit-learn."""
    from sklearn.ensemble import ExtraTreesRegressor

    from gmtrace.readout.forest import pack_forests

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 6))
    ys = [np.sin(x[:, 0]) + x[:, 1] ** 2, (x[:, 2] > 0.3).astype(float)]
    kw = dict(n_estimators=7, min_samples_leaf=2, max_leaf_nodes=16, random_state=0)
    forests = [ExtraTreesRegressor(**kw).fit(x, y) for y in ys]
    arrays, depth = pack_forests(forests, 31)
    test = rng.normal(size=(50, 6)).astype(np.float32)
    leaves = forest_leaves(
        torch.from_numpy(test), {k: torch.from_numpy(v) for k, v in arrays.items()}, depth
    ).numpy()
    want = np.stack([f.predict(test) for f in forests], 1)
    np.testing.assert_allclose(leaves.mean(-1), want, atol=1e-5)
    # each tree's own leaf: the spread over them is a count's per-image confidence
    per_tree = np.stack([np.stack([e.predict(test) for e in f.estimators_], 1) for f in forests], 1)
    assert leaves.shape == (50, 2, 7)
    np.testing.assert_allclose(leaves, per_tree, atol=1e-5)
    assert depth == max(e.tree_.max_depth for f in forests for e in f.estimators_)
    with pytest.raises(ValueError, match="nodes"):
        pack_forests(forests, 8)


def test_probe_without_forests_reads_the_continuous_fields_linearly():
    """probe_trees=0 (and configs saved before forests) keep the linear probe."""
    legacy = ModelConfig().to_dict()
    del legacy["probe_trees"]
    assert ModelConfig.from_dict(legacy).probe_trees == 0
    rng = np.random.default_rng(2)
    model = GMTraceModel(replace(SMALL, n_gms=4, probe_trees=0)).eval()
    r = Readout.for_model(model)
    fake = [rng.integers(40 * g, 40 * g + 60, (6, 32, 32, 3)).astype(np.uint8) for g in range(4)]
    cont = np.linspace(0.1, 0.9, 4)[:, None].repeat(9, 1).astype(np.float32)
    targets = Targets(
        continuous=cont,
        discrete=np.zeros((4, len(DISCRETE)), np.int64),
        losses=np.zeros((4, len(LOSS_TYPES)), np.float32),
        groups=np.zeros((4, 3)),
    )
    info = fit_parse_probe(r, fake, targets, ["a", "b", "c", "d"])
    assert "probe_forest_depth" not in info and not hasattr(r, "forest_value_")
    x = torch.from_numpy(to_float(fake[0]))
    with torch.no_grad():
        u = ((pixel_statistics(x) - r.probe_mean_) / r.probe_std_).clamp(-5, 5)
        out = r.probe_parse(model(x).features, x).linear
    torch.testing.assert_close(out, u @ r.probe_weight_ + r.probe_bias_)


def test_probe_config():
    """Off for configs saved before it existed and for RED's architecture (the
    baseline keeps its own parsing); the network's SGD heads answer without it."""
    legacy = ModelConfig().to_dict()
    del legacy["parse_probe"]
    assert ModelConfig.from_dict(legacy).parse_probe is False
    assert not Readout.for_model(GMTraceModel(red_config(3))).parse_probe
    model = GMTraceModel(replace(SMALL, n_gms=2)).eval()
    rng = np.random.default_rng(0)
    fake = [rng.integers(0, 256, (6, 32, 32, 3)).astype(np.uint8) for _ in range(2)]
    images = np.zeros((2, 32, 32, 3), np.uint8)
    inf = infer(model, fitted(model, fake, fake[0]), images)
    x = torch.from_numpy(to_float(images))
    with torch.no_grad():
        heads = model.parser.forward_head(model(x).features)
    np.testing.assert_allclose(inf.continuous, heads.continuous.numpy(), atol=1e-6)


def test_parse_of_without_the_probe_averages_answers():
    """The SGD heads' (and the baselines') answers are averaged over the images."""
    model = GMTraceModel(replace(SMALL, n_gms=2)).eval()
    rng = np.random.default_rng(1)
    fake = [rng.integers(0, 256, (6, 32, 32, 3)).astype(np.uint8) for _ in range(2)]
    r = fitted(model, fake, fake[1])
    inf = infer(model, r, rng.integers(0, 256, (5, 32, 32, 3)).astype(np.uint8))
    assert inf.parse_linear is None
    c, d, lp = inf.parse_of([1, 3, 4])
    np.testing.assert_allclose(c, inf.continuous[[1, 3, 4]].mean(0))
    np.testing.assert_allclose(d[2], inf.discrete_prob[2][[1, 3, 4]].mean(0))
    np.testing.assert_allclose(lp, inf.loss_prob[[1, 3, 4]].mean(0))
