"""The evaluation protocol end to end on the tiny zoo, and its metrics on known values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gmtrace.core.metrics import (
    binary_f1,
    calibration_error,
    family_prior_loss_f1,
    grouping_scores,
    macro_f1,
    permutation_test,
    purity,
)
from gmtrace.core.precision import bf16_supported
from gmtrace.data.dataset import GMDataset
from gmtrace.evaluation.config import EvalConfig
from gmtrace.evaluation.protocol import evaluate, leakage
from gmtrace.evaluation.report import model_card, probe_views, write_reports
from gmtrace.grouping.cluster import choose_threshold, cluster, group
from gmtrace.readout.embedding import discriminant_projection


@pytest.fixture(scope="module")
def zoo(tiny_zoo_dir: Path) -> GMDataset:
    return GMDataset.from_zoo(tiny_zoo_dir)


def test_f1_metrics_known_values():
    p = np.array([1, 1, 0, 0], bool)
    t = np.array([1, 0, 1, 0], bool)
    assert binary_f1(p, t) == pytest.approx(0.5)  # tp 1, fp 1, fn 1
    assert binary_f1(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    # class 0: tp1 fp0 fn1 -> 2/3; class 1: tp1 fp1 fn0 -> 2/3; class 2 absent
    assert macro_f1(np.array([0, 1, 1]), np.array([0, 0, 1]), 3) == pytest.approx(2 / 3)
    assert purity(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == pytest.approx(0.75)


def test_calibration_error_known_values():
    y = np.array([1, 1, 0, 0])
    assert calibration_error(y.astype(float), y) == 0.0  # certain and right
    # all at p = 0.5 in one bin holding half positives: calibrated
    assert calibration_error(np.full(4, 0.5), y) == pytest.approx(0.0)
    # p = 0.9 for everything, half positive: |0.9 - 0.5|
    assert calibration_error(np.full(4, 0.9), y) == pytest.approx(0.4)
    # two bins: (0.8, 0.8 | y 1, 0) -> 0.3 ; (0.1, 0.1 | y 1, 0) -> 0.4 ; weights 1/2
    p = np.array([0.8, 0.1, 0.8, 0.1])
    assert calibration_error(p, np.array([1, 1, 0, 0])) == pytest.approx(0.35)


def test_calibration_error_balanced_weighs_each_class_half():
    # three generated images at p = 0.9, one photograph at p = 0.9: one bin
    y = np.array([1, 1, 1, 0])
    p = np.full(4, 0.9)
    assert calibration_error(p, y) == pytest.approx(abs(0.9 - 0.75))
    # each class half: the share of positives in the bin is 0.5
    assert calibration_error(p, y, balanced=True) == pytest.approx(0.4)
    # p = 0.5 everywhere is calibrated at the 50/50 prior, not at this 3:1 mix
    assert calibration_error(np.full(4, 0.5), y, balanced=True) == pytest.approx(0.0)
    assert calibration_error(np.full(4, 0.5), y) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="both classes"):
        calibration_error(p, np.ones(4), balanced=True)


def test_family_prior_loss_f1_known_values():
    """Unseen a, c then b, d; each GM's loss types predicted from its family's
    training GM (the other of its family), worked by hand."""
    bits = np.array([[1, 0], [1, 0], [0, 1], [1, 1]], float)  # a, b, c, d
    r = family_prior_loss_f1(
        ["a", "b", "c", "d"], ["A", "A", "B", "B"], bits, [["a", "c"], ["b", "d"]]
    )
    # majority: a [1,0], c [1,1], b [1,0], d [0,1] against a, c, b, d
    assert r["majority"]["per_type"] == pytest.approx([2 / 3, 1.0])
    # above prevalence (fold 1: [1, .5], fold 2: [.5, .5]): a [0,0], c [0,1], b [1,0], d [0,1]
    assert r["above_prevalence"]["per_type"] == pytest.approx([0.5, 1.0])
    assert r["above_prevalence"]["mean"] == pytest.approx(0.75)


def test_permutation_test_separates_signal_from_noise():
    rng = np.random.default_rng(0)
    n = 24
    gt = {
        "cont": rng.random((n, 9)),
        "disc": rng.integers(0, 2, (n, 6)),
        "loss": (rng.random((n, 10)) > 0.5).astype(float),
    }
    fold = np.repeat([0, 1], n // 2)
    perfect = {"cont": gt["cont"], "disc": list(gt["disc"].T), "loss": gt["loss"] > 0.5}
    r = permutation_test(perfect, gt, np.arange(n), fold, 200, 0)
    assert r["summary"]["composite"]["p"] == pytest.approx(1 / 201)
    assert r["summary"]["mean_l1"]["actual"] == 0.0 < r["summary"]["mean_l1"]["random"]
    noise = {
        "cont": rng.random((n, 9)),
        "disc": list(rng.integers(0, 2, (6, n))),
        "loss": rng.random((n, 10)) > 0.5,
    }
    r = permutation_test(noise, gt, np.arange(n), fold, 200, 0)
    assert r["summary"]["composite"]["p"] > 0.05


def test_grouping_finds_separated_clusters_without_k():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 8)) * 5
    truth = np.repeat(np.arange(4), 10)
    emb = centers[truth] + rng.normal(size=(40, 8)) * 0.1
    thr = choose_threshold(emb, truth)
    g = grouping_scores(cluster(emb, thr), truth)
    assert g["ari"] == pytest.approx(1.0) and g["clusters"] == 4


def test_group_reads_the_number_of_gms_off_the_images():
    """No threshold and no count given: 5 GMs of very different sizes (3 to 60
    images) and spreads come out as 5 groups; one blob stays one group."""
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(5, 16)) * 3
    sizes, spreads = [3, 8, 20, 60, 12], [0.2, 0.4, 0.3, 0.6, 0.5]
    truth = np.repeat(np.arange(5), sizes)
    emb = centers[truth] + rng.normal(size=(len(truth), 16)) * np.repeat(spreads, sizes)[:, None]
    g = grouping_scores(group(emb), truth)
    assert g["clusters"] == 5 and g["ari"] == pytest.approx(1.0)
    blob = rng.normal(size=(200, 16)) + 5.0
    assert len(np.unique(group(blob))) == 1
    assert list(group(emb[:2])) == [0, 0] and list(group(np.ones((6, 4)))) == [0] * 6


def test_discriminant_projection_separates_unseen_gms_hidden_by_content():
    """GM identity lives in 3 of 23 dimensions, buried under large per-image
    "content" variation in the other 20; LDA learned on 8 GMs must recover those 3
    directions, so 5 other GMs group cleanly there but not in the raw features."""
    rng = np.random.default_rng(0)

    def sample(n_gms: int, per: int) -> tuple[np.ndarray, np.ndarray]:
        centers = rng.normal(size=(n_gms, 3)) * 2
        truth = np.repeat(np.arange(n_gms), per)
        x = np.concatenate(
            [
                centers[truth] + rng.normal(size=(len(truth), 3)) * 0.1,
                rng.normal(size=(len(truth), 20)) * 3,
            ],
            axis=1,
        )
        return x, truth

    x_train, gm_train = sample(8, 30)
    m, w = discriminant_projection(x_train, gm_train, dims=3)
    assert w.shape == (23, 3) and np.allclose(m, x_train.mean(0))
    x_seen, gm_seen = x_train[::2], gm_train[::2]
    x_new, gm_new = sample(5, 20)

    def ari(f) -> float:
        thr = choose_threshold(f(x_seen), gm_seen)
        return grouping_scores(cluster(f(x_new), thr), gm_new)["ari"]

    projected, raw = ari(lambda x: (x - m) @ w), ari(lambda x: x)
    assert projected > 0.9 and projected > raw + 0.3, (projected, raw)


def test_leakage_image_beats_noise():
    rng = np.random.default_rng(0)
    imgs = (rng.random((32, 16, 16, 3)) * 255).astype(np.uint8)
    imgs[:, :8] //= 4  # structure a decoder can learn
    res = leakage(
        {"image": imgs / 255.0, "noise": rng.normal(size=imgs.shape)}, imgs, steps=60, seed=0
    )
    assert res["image"] > res["noise"] + 3


def test_leakage_is_read_back_per_input_from_its_cache(tmp_path: Path, monkeypatch):
    import gmtrace.evaluation.protocol as protocol

    rng = np.random.default_rng(0)
    imgs = (rng.random((8, 16, 16, 3)) * 255).astype(np.uint8)
    a, b = imgs / 255.0, rng.normal(size=imgs.shape)
    path = tmp_path / "leakage_cache.json"
    first = protocol._cached_leakage({"image": a}, imgs, 5, 0, path)
    assert first == leakage({"image": a}, imgs, steps=5, seed=0)  # the same figure
    scored = []

    def counting(inputs, *args):
        scored.append(sorted(inputs))
        return leakage(inputs, *args)

    monkeypatch.setattr(protocol, "leakage", counting)
    both = protocol._cached_leakage({"image": a, "noise": b}, imgs, 5, 0, path)
    assert scored == [["noise"]] and both["image"] == first["image"]
    assert both["noise"] == leakage({"noise": b}, imgs, steps=5, seed=0)["noise"]
    protocol._cached_leakage({"image": a}, imgs, 6, 0, path)  # other steps: scored again
    assert scored[-1] == ["image"]
    path.write_text("not json")  # an unreadable cache is scored again, not an error
    assert protocol._cached_leakage({"image": a}, imgs, 5, 0, path) == first


def test_evaluate_tiny_zoo_end_to_end(zoo: GMDataset, tmp_path: Path):
    cfg = EvalConfig(
        holdout="family",
        folds=2,
        train_per_gm=8,
        seen_per_gm=2,
        test_per_gm=4,
        neutral_per_gm=2,
        real_test=20,
        image_size=32,
        batch=8,
        steps=3,
        red_steps=1,
        permutations=20,
        leakage_images=16,
        leakage_steps=3,
    )
    report = tmp_path / "docs" / "results.md"
    res = evaluate(zoo, tmp_path / "eval", cfg, report=report, command="gmtrace evaluate ...")
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    # families held out: no fold tests a family that its training holds
    fam = {g.name: g.family for g in zoo.gms}
    for test, fams in zip(saved["folds"], saved["split"]["test_families"], strict=True):
        assert sorted({fam[n] for n in test}) == fams
        assert not {fam[n] for n in zoo.names if n not in test} & set(fams)
    assert saved["split"]["real_by"] == "photograph"  # the tiny zoo has one collection
    assert set(saved["methods"]) == {"gmtrace", "red", "spectral"}
    for r in saved["methods"].values():
        assert len(r["detection"]["auc"]["folds"]) == 2
        assert set(r["detection_degraded"]) == {
            "format_neutral",
            "jpeg95",
            "jpeg75",
            "jpeg50",
            "resize50",
        }
        for key in ("auc", "ece"):  # a fold's figure each, and their mean
            fig = r["detection"][key]
            assert len(fig["folds"]) == 2 and fig["mean"] == pytest.approx(np.mean(fig["folds"]))
        assert r["grouping"]["clusters"]["mean"] >= 1 and "threshold" in r["grouping_threshold"]
        acc = r["closed_set_accuracy"]
        assert acc["mean"] == pytest.approx(np.mean(acc["folds"]))
        pg = r["parsing"]["per_gm"]
        assert len(pg["fields"]["l1"]["actual"]) == 9 and len(pg["fields"]["loss_f1"]["p"]) == 10
        assert 0 < pg["summary"]["composite"]["p"] <= 1
        errs = r["detection_errors"]
        # every real test crop counted under its source; every GM unseen once
        assert 0 < sum(v["n"] for v in errs["real_called_generated"].values()) <= 2 * 20
        assert sorted(errs["unseen_called_real"]) == sorted(zoo.names)
        # a share of each unseen GM's 4 test images
        assert all(v * 4 == round(v * 4) for v in errs["unseen_called_real"].values())
    # every network's answers kept beside its weights, for reruns
    assert len(list((tmp_path / "eval" / "fold1" / "red" / "predictions").glob("*.npz"))) >= 4
    assert res["methods"]["gmtrace"]["steps"] == [3, 3]
    assert res["methods"]["red"]["steps"] == [1, 1]
    lk = saved["leakage"]
    assert {"image", "fingerprint (gmtrace)", "fingerprint (red)"} <= set(lk)
    for f in ("fig_roc.png", "fig_confusion.png", "fig_embedding.png", "fig_fingerprints.png"):
        assert (tmp_path / "eval" / f).stat().st_size > 1000, f
    text = report.read_text()
    assert "## Targets" in text and "RED architecture" in text
    assert "Where the errors are" in text
    assert "whole families held out" in text and "JPEG q75" in text
    assert "](img/results/fig_roc.png)" in text  # figures copied beside the report
    # gmtrace's parsing probe says what it read per field in both folds; RED has none
    assert text.count(" probe reads |") == 1 and "| loss l1 | F1 (AUC) |" in text
    views = probe_views(tmp_path / "eval", ["gmtrace", "red"])
    assert set(views) == {"gmtrace"} and len(views["gmtrace"]) == 25
    assert all(len(v) == 2 for v in views["gmtrace"].values())
    # forests read the counts, the linear probe the classes and loss types
    assert views["gmtrace"]["n_layers"] == ["forest"] * 2
    assert views["gmtrace"]["norm_type"] == views["gmtrace"]["loss_l1"] == ["pixels"] * 2
    assert "| 2 forest + linear |" in text
    assert (report.parent / "img" / "results" / "fig_roc.png").is_file()
    card = model_card(saved)  # what a shipped model's card.json holds
    assert card["figures"]["detection AUC, clean"] == pytest.approx(
        saved["methods"]["gmtrace"]["detection"]["auc"]["mean"], abs=1e-3
    )
    assert card["protocol"] and all(isinstance(x, str) for x in card["limits"])
    # the card says how the shipped model's training compares with the folds'
    per_fold = card["steps_per_fold"]
    assert per_fold == max(saved["methods"]["gmtrace"]["steps"])
    same = model_card(saved, shipped_steps=per_fold)["measured_on"]
    assert same.endswith("the shipped model was trained the same way on all of them")
    longer = model_card(saved, shipped_steps=per_fold + 600)["measured_on"]
    assert longer.endswith(f"for {per_fold + 600} steps")
    # every GM is unseen in exactly one fold
    assert sorted(sum(saved["folds"], [])) == sorted(zoo.names)
    # the reports can be rewritten from results.json alone
    report.unlink()
    (tmp_path / "eval" / "report.md").unlink()
    write_reports(tmp_path / "eval", report)
    assert report.read_text() == text and (tmp_path / "eval" / "report.md").is_file()
    # a report of another name keeps its figures apart from docs/results.md's
    other = tmp_path / "docs" / "results_family.md"
    write_reports(tmp_path / "eval", other)
    assert "](img/results_family/fig_roc.png)" in other.read_text()
    assert (other.parent / "img" / "results_family" / "fig_roc.png").is_file()


def test_cli_render_rewrites_reports(tmp_path: Path):
    from typer.testing import CliRunner

    from gmtrace.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "render", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "results.json: missing" in r.output
    r = runner.invoke(app, ["evaluate", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--zoo" in r.output
    r = runner.invoke(app, ["evaluate", "render", "--out", str(tmp_path), "--curve", str(tmp_path)])
    assert r.exit_code == 2 and "no curve.json here" in r.output
    r = runner.invoke(app, ["evaluate"])
    assert r.exit_code == 2 and "--out DIR is required" in r.output
    # the curve section alone: needs a curve record and a report to put it in
    r = runner.invoke(app, ["evaluate", "render", "--curve-only", "--curve", str(tmp_path)])
    assert r.exit_code == 2 and "--curve-only needs" in r.output
    point = {"synth_gms": 0, "train_gms": 3.0, "command": "c", "spectral": {"auc": 0.5}}
    point["spectral"] |= {k: 0.5 for k in ("auc_q75", "open", "ari", "macro_f1", "loss_f1")}
    point["spectral"]["fields"] = 2
    (tmp_path / "curve.json").write_text(json.dumps({"command": "c", "points": [point]}))
    report = tmp_path / "docs" / "results.md"
    args = ["evaluate", "render", "--curve-only", "--curve", str(tmp_path)]
    r = runner.invoke(app, args + ["--report", str(report)])
    assert r.exit_code == 2 and "no report here" in r.output
    report.parent.mkdir()
    report.write_text("# R\n\n## Training budget\n")
    r = runner.invoke(app, args + ["--report", str(report)])
    assert r.exit_code == 0, r.output
    assert "| 0 | 3 | 0.500 |" in report.read_text()
    assert json.loads((report.parent / "curve.json").read_text())["points"] == [point]


def test_gallery_is_the_normalized_mean_embedding_per_gm():
    from gmtrace.data.loader import ImageBank
    from gmtrace.evaluation.protocol import gallery

    class OneHot:  # embeds an image by its first pixel's value: the GM it came from
        def predict(self, images):
            from types import SimpleNamespace

            e = np.eye(4)[images[:, 0, 0, 0]] + 0.1
            return SimpleNamespace(embedding=e / np.linalg.norm(e, axis=1, keepdims=True))

    fake = [np.full((5, 2, 2, 3), g, np.uint8) for g in range(4)]
    bank = ImageBank(gm_names=list("abcd"), fake=fake, real=fake[0], real_sources=["r"] * 5)
    g = gallery(OneHot(), bank, [2, 0], EvalConfig(gallery_per_gm=3))
    assert g.shape == (2, 4) and np.allclose(np.linalg.norm(g, axis=1), 1)
    assert g[0].argmax() == 2 and g[1].argmax() == 0  # rows follow the GMs asked for


def test_prediction_cache_reads_back_and_refuses_other_weights(tmp_path: Path):
    from gmtrace.methods.base import PredictionCache
    from gmtrace.readout.inference import Inference

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    calls = []

    def compute():
        calls.append(1)
        return Inference(
            p_generated=rng.random(5),
            attribution=rng.random((5, 3)),
            open_score=rng.random(5),
            embedding=rng.random((5, 4)),
            continuous=rng.random((5, 9)),
            discrete_prob=[rng.random((5, 2)), rng.random((5, 4))],
            loss_prob=rng.random((5, 10)),
        )

    cache = PredictionCache(tmp_path / "p", "a" * 64)
    first = cache.get(images, compute)
    again = cache.get(images, compute)
    assert len(calls) == 1
    for name in ("p_generated", "attribution", "embedding", "loss_prob"):
        assert np.array_equal(getattr(first, name), getattr(again, name))
    assert len(again.discrete_prob) == 2 and np.array_equal(
        again.discrete_prob[1], first.discrete_prob[1]
    )
    cache.get(images[:4], compute)  # other images: computed
    assert len(calls) == 2
    PredictionCache(tmp_path / "p", "b" * 64).get(images, compute)  # other weights: computed
    assert len(calls) == 3


def _minimal_run(holdout: str, pretrained: dict | None = None) -> dict:
    """The fields of a results.json that the targets table reads, one method."""
    mean = {"mean": 0.9, "std": 0.0}
    method = {
        "label": "gmtrace",
        "parsing": None,
        "detection": {"auc": mean, "ece": mean},
        "detection_format_neutral": {"auc": mean},
        "closed_set_accuracy": mean,
        "open_set_auroc": mean,
        "grouping": {"ari": mean},
        "detection_pooled": {"clean": {"auc": 0.96, "ece": 0.04}, "jpeg75": {"auc": 0.91}},
        "by_codebase": {"a 1.0": {"auc": 0.88}, "b 2.0": {"auc": 0.86}},
        "by_tier": {"pretrained": pretrained or {}},
    }
    split = {"holdout": holdout}
    return {"config": {"permutations": 999}, "split": split, "methods": {"gmtrace": method}}


def test_targets_a_run_cannot_measure_come_from_the_compared_run():
    from gmtrace.evaluation.report import _targets_section

    codebase = _minimal_run("codebase", {"auc_paired": 0.99, "auc_paired_jpeg75": 0.98})
    tier = _minimal_run("tier", {"auc_paired": 0.70, "auc_paired_jpeg75": 0.60})
    alone = "\n".join(_targets_section(codebase))
    # a codebase run has no pretrained tier held out whole: its own pairs do not count
    assert "vs its photographs | n/a |" in alone and "(other run)" not in alone
    assert "folds pooled | 0.96 missed |" in alone and "clean | 0.86 met |" in alone
    both = "\n".join(_targets_section(codebase, tier))
    assert "vs its photographs | 0.7 missed (other run) |" in both
    assert "JPEG q75, ≥ 0.85 | 0.6 missed (other run) |" in both
    assert "tiers held out" in both
    # what this run measures is never replaced by the other run's figure
    assert "folds pooled | 0.96 missed |" in both


@pytest.mark.skipif(not bf16_supported(), reason="this CPU has no bfloat16 instructions")
def test_a_networks_bf16_answers_are_near_fp32_and_cached_apart(small_model_dir: Path, tmp_path):
    """`gmtrace evaluate --precision bf16`: a network method answers test images in
    bfloat16 (as the scan's `--precision bf16`), near its fp32 answers, and keeps them
    apart from those in its prediction cache."""
    import shutil

    from gmtrace.methods.catalog import create_method
    from gmtrace.train.config import TrainConfig

    shutil.copytree(small_model_dir, tmp_path / "gmtrace")
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    answers = {}
    for precision in ("fp32", "bf16"):
        m = create_method("gmtrace", TrainConfig(), precision)
        m.load(tmp_path / "gmtrace")
        answers[precision] = m.predict(images).p_generated
        assert np.array_equal(m.predict(images).p_generated, answers[precision])  # cached
    for folder in ("predictions", "predictions+bf16"):
        assert len(list((tmp_path / "gmtrace" / folder).glob("*.npz"))) == 1
    a, b = answers["fp32"], answers["bf16"]
    assert np.abs(a - b).max() < 0.05 and not np.array_equal(a, b)
