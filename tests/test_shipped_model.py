"""The model shipped inside the package: present, small, loadable by default, and
sane on the full-size photographs that come with scikit-image, scikit-learn and
matplotlib (the model trained on 64 px crops of them; here it reads them whole)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmtrace.nets.model import GMTraceModel
from gmtrace.product.analyze import Analyzer, default_model_dir
from gmtrace.readout.saved import load_network
from gmtrace.zoo.real import load_embedded


def test_default_model_is_shipped_and_loads():
    d = default_model_dir()
    files = ("model.safetensors", "readout.safetensors", "config.json")
    assert all((d / f).is_file() for f in files)
    assert sum((d / f).stat().st_size for f in files) < 8_000_000  # a few MB
    meta = json.loads((d / "config.json").read_text())
    # trained as the codebase run's fold networks were (400 steps of 32), so that what
    # it adopted from that run's out-of-fold answers means the same on it
    assert meta["train"]["steps"] == meta["steps_done"] >= 400
    a = Analyzer()
    assert len(a.gm_names_) == meta["model"]["n_gms"] >= 100 and a.image_size_ == 64
    # "unknown GM" by the training GMs' densities, the rule its fusion chose on its
    # inner validation codebases, at the density's own threshold (a log-density,
    # no fixed range); the network's gallery score keeps its threshold in (0, 1)
    assert a.fusion_.open_rule == "density" and a.fusion_.density is not None
    assert a.open_threshold_ == a.fusion_.density.threshold
    assert a.fusion_.density.center.shape[0] == meta["model"]["n_gms"]
    assert 0 < float(a.readout_.open_threshold_) < 1
    # the network holds no fitted state: the readout does
    net, _ = load_network(d)
    assert set(net.state_dict()) == set(GMTraceModel(net.cfg).state_dict())
    # the open-set score also reads the distance to the nearest training GM
    assert a.gallery_ is not None and a.gallery_.shape[0] == meta["model"]["n_gms"]
    # parsing is read by the GM-level probe on the pixel statistics, the counts by
    # forests averaged with the linear models
    assert a.readout_.has_probe() and int(a.readout_.forest_depth_) > 0
    views = meta["calibration"]["probe_view"]
    assert [views[k] for k in list(views)[:9]] == ["forest"] * 9
    assert set(list(views.values())[9:]) == {"pixels"}
    # the fused detector (a model of real photographs stacked with the network, the
    # unsure band, parsing that abstains): its card lists the parts and the calibration
    assert a.fusion_ is not None and a.fusion_.gate is not None
    card = json.loads((d / "card.json").read_text())
    assert card["method"] == "fused" and "--holdout codebase" in card["command"]
    assert card["fused"]["calibration"]["parsing fields answering"] == a.fusion_.gate.reliable()
    assert card["fused"]["stacker"]["bias"] == round(a.fusion_.stacker.bias, 3)


def test_default_model_calls_real_photographs_real():
    a = Analyzer()
    photos = load_embedded()
    p = np.array([a.analyze_array(ph.pixels, ph.name).p_generated for ph in photos])
    assert len(photos) >= 12
    assert np.mean(p < 0.5) >= 0.8, dict(zip([ph.name for ph in photos], p.round(2), strict=True))


HELDOUT = Path(__file__).parent / "data" / "heldout"


def _heldout_results():
    """The shipped model's answers on the committed held-out set (scripts/
    make_heldout_set.py): 6 images of each of 13 GMs of a demo zoo built with another
    seed than the training zoo, and 24 crops of 12 catalog photographs outside the
    model's training sources; analyzed together, as the reference was recorded."""
    ref = json.loads((HELDOUT / "reference.json").read_text())["rows"]
    paths = [HELDOUT / r["file"] for r in ref]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    a = Analyzer()
    return ref, a.analyze_arrays(images, [r["file"] for r in ref]), a


@pytest.fixture(scope="module")
def heldout():
    return _heldout_results()


def test_shipped_model_gives_the_recorded_answers(heldout):
    """The answers recorded once before the package was restructured (the network
    and its fitted readout saved apart), to 1e-4; recorded again when a model was
    shipped, and when the self-description's float32 arithmetic changed (one Gram
    matrix of unfolded windows, 2026-12-05: 7 of the 102 p moved, by up to 0.006 where
    an image's unlikeness crossed a reference photograph's; no verdict changed)."""
    ref, got, _ = heldout
    assert len(ref) == 102
    for r, g in zip(ref, got, strict=True):
        assert g.path == r["file"]
        for key in ("p_generated", "open_set_score"):
            assert abs(getattr(g, key) - r[key]) < 1e-4, (r["file"], key)
        assert g.unknown_gm == r["unknown_gm"], r["file"]
        assert [k["name"] for k in g.top_gms] == [k["name"] for k in r["known_gms"]]
        np.testing.assert_allclose(
            [k["probability"] for k in g.top_gms],
            [k["probability"] for k in r["known_gms"]],
            atol=1e-4,
        )
        np.testing.assert_allclose(g.embedding, r["embedding"], atol=1e-4)
        np.testing.assert_allclose(g.parse_linear, r["parse_linear"], atol=1e-4)
        np.testing.assert_allclose(
            list(g.loss_probabilities.values()), list(r["loss_probabilities"].values()), atol=1e-4
        )
        for k, v in r["hyperparameters"].items():
            if isinstance(v, float):
                assert abs(g.hyperparameters[k] - v) <= 1e-4 * max(1.0, abs(v)), (r["file"], k)
            else:
                assert g.hyperparameters[k] == v, (r["file"], k)


def test_shipped_model_detects_and_groups_gms_it_never_saw(heldout):
    """Floors a broken model misses, on GMs and photographs the model never trained
    on: detection AUC and the share right at 0.5 on both classes (a model that calls
    everything real, or everything generated, fails), and grouping ARI with the
    number of GMs unknown (one group for all, or one per image, fails).
    Measured for the fused model trained with native real crops (2026-12-05,
    docs/photos.md): AUC 0.974, 88 % / 88 % right, ARI 0.97, 15 groups (its fusion
    refitted with the residual's spectrum, same evening: AUC 0.958, 87 % / 88 %; the fused
    model before it: 0.946, 91 % / 79 %, ARI 0.98, 14 groups; the zoo-only model
    before that: 0.988, 94 % / 88 %, ARI 0.95). The fusion fitted with an upscaler
    package in its inner validation (`--inner-tiers`, 2026-12-06) reads 0.921,
    84.6 % / 83.3 %, ARI 0.97, 15 groups: it trades 0.037 of AUC here (paired bootstrap
    95 % interval 0.012-0.068) for 0.024 on codebases held out (0.012-0.035, by GM),
    and the issue's protocol decides (docs/realmodel.md); the floors of AUC and of
    the generated images' share went from 0.93 and 85 % to 0.90 and 80 % with it.
    Grouping on the self-description too (the same day): 16 groups, ARI 0.95.
    The floors are a broken model's, not targets (those are docs/results.md's)."""
    from sklearn.metrics import adjusted_rand_score, roc_auc_score

    _, got, analyzer = heldout
    fake = np.array([g.path.startswith("fake/") for g in got])
    p = np.array([g.p_generated for g in got])
    assert roc_auc_score(fake, p) >= 0.90
    assert np.mean(p[fake] >= 0.5) >= 0.80 and np.mean(p[~fake] < 0.5) >= 0.75
    gen = [g for g in got if g.path.startswith("fake/")]
    n_groups = analyzer.group(gen, generated_only=False)
    truth = [g.path.split("/")[1] for g in gen]
    assert 10 <= n_groups <= 20
    assert adjusted_rand_score(truth, [g.group for g in gen]) >= 0.8


def test_a_broken_readout_is_one_clear_error(tmp_path):
    """A readout file that lacks a fitted tensor, or is not safetensors, names itself."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from gmtrace.readout.readout import READOUT

    d = default_model_dir()
    for f in ("model.safetensors", "config.json", READOUT):
        shutil.copy(d / f, tmp_path / f)
    state = load_file(str(tmp_path / READOUT))
    with safe_open(str(tmp_path / READOUT), framework="pt") as f:
        meta = f.metadata()
    del state["platt"]
    save_file(state, str(tmp_path / READOUT), metadata=meta)
    with pytest.raises(
        ValueError, match=r"safetensors: not a gmtrace readout \(missing \['platt'\]"
    ):
        Analyzer(tmp_path)
    (tmp_path / READOUT).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="readout.safetensors: not a gmtrace readout"):
        Analyzer(tmp_path)
