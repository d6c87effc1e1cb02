"""The fusion of the supervised detector with the real-photo model, the unsure band,
the inner validation split, and the fused method in the evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.data.dataset import GMDataset
from gmtrace.data.splits import inner_validation
from gmtrace.evaluation.adopt import read_out_of_fold
from gmtrace.evaluation.protocol import evaluate
from gmtrace.grouping.cluster import density_group, first_half, group_with
from gmtrace.index.index import SameSource
from gmtrace.methods.fused import crop_owners
from gmtrace.readout.fused import FUSION, REENCODINGS, Fusion
from gmtrace.realmodel.density import RealPhotoModel
from gmtrace.realmodel.fusion import (
    Stacker,
    UnsureBand,
    choose_width,
    logit,
    owner_means,
    recalibrated,
    stack_features,
    unsure_share,
)
from gmtrace.realmodel.selfdesc import BLOCKS, describe

runner = CliRunner()


def test_stacker_recovers_a_logistic_model_and_weighs_the_classes_equally():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    y = (rng.random(20000) < 1 / (1 + np.exp(-(2.0 * x[:, 0] - 0.5 * x[:, 1] + 0.3)))).astype(float)
    s = Stacker.fit(x, y, l2=0.0)
    # class balancing moves the bias by log(n_neg / n_pos), not the weights
    assert np.allclose(s.weights, [2.0, -0.5], atol=0.1)
    assert s.bias == pytest.approx(0.3 + np.log((1 - y).sum() / y.sum()), abs=0.1)
    again = Stacker.from_arrays(s.to_arrays("fuse_"), "fuse_")
    assert np.allclose(again.prob(x[:5]), s.prob(x[:5]))
    with pytest.raises(ValueError, match="both classes"):
        Stacker.fit(x, np.ones(len(x)))


def test_a_useless_input_gets_no_weight_and_the_unlikeness_logit_is_bounded():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(3000), np.zeros(3000)]
    p_sup = np.where(y > 0, 0.9, 0.1)  # tells the classes apart
    noise = rng.random(6000)  # tells nothing
    s = Stacker.fit(stack_features(p_sup, noise), y)
    assert abs(s.weights[1]) < 0.05 * abs(s.weights[0])
    assert np.isfinite(stack_features(None, np.array([0.0, 1.0]))).all()
    assert logit(np.array([0.5]))[0] == 0.0


def test_unsure_band_names_the_reencoding_that_flips_the_verdict():
    band = UnsureBand(1.0, ("JPEG q95", "JPEG q75", "a 0.75 resize"))
    p = np.array(
        [
            [0.99, 0.55, 0.7, 0.99],  # as given
            [0.98, 0.51, 0.7, 0.99],
            [0.2, 0.52, 0.7, 0.99],  # JPEG q75 flips the first
            [0.97, 0.55, 0.7, 0.99],
        ]
    )
    unsure, reason = band.decide(p)
    assert unsure.tolist() == [True, True, True, False]
    assert reason[0] == "the verdict changes under JPEG q75"
    assert reason[1].startswith("p stays near 0.5")  # mean logit within 1 of 0
    assert reason[3] == ""
    flagged = band.flagged(np.array([0.6, 0.99, 0.99]), np.array([False, False, True]))
    assert flagged.tolist() == [True, False, True]
    assert not UnsureBand(1.0, (), disagreement=False).flagged(np.array([0.99]), np.array([True]))[
        0
    ]


def test_band_width_is_the_widest_within_the_budget():
    rng = np.random.default_rng(2)
    p0 = rng.random(2000)
    versions = np.stack([p0, np.clip(p0 + rng.normal(0, 0.05, 2000), 0, 1)])
    disagree = np.zeros(2000, bool)
    band = choose_width(versions, disagree, 0.1, ("JPEG q75",))
    assert unsure_share(band, versions, disagree) <= 0.1
    wider = UnsureBand(band.width + 0.1, band.reencodings, band.disagreement)
    assert unsure_share(wider, versions, disagree) > 0.1
    # a disagreement that alone spends the budget is not used to flag
    everyone = np.ones(2000, bool)
    flips = np.stack([np.full(2000, 0.9), np.full(2000, 0.1)])
    assert not choose_width(flips, everyone, 0.1, ("JPEG q75",)).disagreement


def test_band_holds_its_budget_on_images_of_several_crops_too():
    """Crops of one photograph that disagree average near 0.5: a band chosen on
    single crops would set most such images aside; read by images of 4 crops too,
    the band narrows until the budget holds on both readings."""
    rng = np.random.default_rng(3)
    n = 4000
    sign = np.repeat(rng.choice([-1.0, 1.0], n // 4), 4)  # each image's true side
    z = sign * 1.5 + rng.normal(0, 2.0, n)  # its crops: noisy, often on the wrong side
    p0 = 1 / (1 + np.exp(-z))
    versions = np.stack([p0, p0])
    disagree = np.zeros(n, bool)
    owner = np.repeat(np.arange(n // 4), 4)
    images = (owner_means(versions, owner), np.zeros(n // 4, bool))
    alone = choose_width(versions, disagree, 0.08, ("JPEG q75",))
    both = choose_width(versions, disagree, 0.08, ("JPEG q75",), also=(images,))
    assert unsure_share(alone, *images) > 0.08  # the single-crop band over budget
    assert unsure_share(both, *images) <= 0.08 and unsure_share(both, versions, disagree) <= 0.08
    assert both.width < alone.width
    assert np.allclose(owner_means(np.array([1.0, 3.0, 5.0]), np.array([1, 0, 1])), [3.0, 3.0])


def test_crop_owners_gather_a_gms_images_and_a_photographs_crops():
    gm = np.array([7, 7, 7, 7, 7, 9, 9])
    src = ["a.jpg", "b.jpg", "a.jpg", "a.jpg", "a.jpg", "a.jpg"]
    owner = crop_owners(gm, src, 4)
    assert owner.tolist() == [0, 0, 0, 0, 1, 2, 2, 3, 4, 3, 3, 3, 5]


def test_inner_validation_holds_out_whole_codebases_but_not_the_dominant_one():
    names = [f"g{i}" for i in range(30)]
    codebases = ["gmtrace"] * 20 + ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2
    val = inner_validation(names, codebases, ["f"] * 30, seed=0)
    held = {codebases[names.index(n)] for n in val}
    assert val and "gmtrace" not in held
    for cb in held:  # whole codebases only
        assert {n for n, c in zip(names, codebases, strict=True) if c == cb} <= set(val)
    # one codebase: families held out instead
    fam = ["x"] * 10 + ["y"] * 10 + ["z"] * 10
    val = inner_validation(names, ["gmtrace"] * 30, fam, seed=0)
    assert len({fam[names.index(n)] for n in val}) == 1 and len(val) == 10
    # several codebases, not one large one: a third of them, within half the GMs
    cbs = ["big"] * 19 + ["other"] * 18 + [c for c in "abcdefgh" for _ in range(2)]
    names = [f"g{i}" for i in range(len(cbs))]
    for seed in range(5):
        val = inner_validation(names, cbs, ["f"] * len(cbs), seed=seed)
        held = {cbs[names.index(n)] for n in val}
        assert len(held) == 4 and len(val) <= len(cbs) // 2


def test_inner_validation_can_hold_back_a_third_of_the_dominant_codebases_families():
    names = [f"g{i}" for i in range(30)]
    codebases = ["gmtrace"] * 20 + ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["d"] * 2
    fams = [f"fam{i % 6}" for i in range(20)] + ["f"] * 10
    plain = inner_validation(names, codebases, fams, seed=0)
    val = inner_validation(names, codebases, fams, seed=0, largest_families=True)
    assert set(plain) < set(val)  # the small codebases' choice is kept
    extra = set(val) - set(plain)
    held_fams = {fams[names.index(n)] for n in extra}
    assert {codebases[names.index(n)] for n in extra} == {"gmtrace"} and len(held_fams) == 2
    # whole families: every GM of a held-back family, none of the others
    assert extra == {n for n, f in zip(names[:20], fams[:20], strict=True) if f in held_fams}
    # where the largest codebase is in the pool anyway, nothing changes
    even = ["a"] * 10 + ["b"] * 10 + ["c"] * 10
    assert inner_validation(names, even, fams, 0, largest_families=True) == inner_validation(
        names, even, fams, 0
    )
    # one codebase: its families are the split's keys, and the setting changes nothing
    one, fams9 = ["gmtrace"] * 30, ["big"] * 16 + [f"fam{i % 4}" for i in range(14)]
    assert inner_validation(names, one, fams9, 0, largest_families=True) == inner_validation(
        names, one, fams9, 0
    )


def test_density_grouping_leaves_an_outlier_ungrouped():
    rng = np.random.default_rng(3)
    a = rng.normal(0, 0.05, size=(30, 4)) + [1, 0, 0, 0]
    b = rng.normal(0, 0.05, size=(30, 4)) + [0, 1, 0, 0]
    emb = np.r_[a, b, [[0, 0, 5, 0]]]
    labels = density_group(emb, min_size=5)
    assert len(set(labels[:30])) == 1 and len(set(labels[30:60])) == 1
    assert labels[0] != labels[30]
    assert labels[60] not in set(labels[:60])  # a group of its own
    assert labels.max() == 2  # numbered 0..G-1
    assert len(group_with(emb, 0)) == 61  # 0: the silhouette cut
    assert density_group(emb[:3], min_size=5).tolist() == [0, 1, 2]


def test_first_half_keeps_the_first_half_of_each_group_in_order():
    labels = np.array([2, 1, 2, 2, 1, 2, 7])
    assert first_half(labels).tolist() == [True, True, True, False, False, False, True]


def _toy_fusion(width: float) -> Fusion:
    rng = np.random.default_rng(4)
    photos = (rng.random((40, 32, 32, 3)) * 255).astype(np.uint8)
    real = RealPhotoModel.fit(describe(photos), seed=0, blocks=BLOCKS)
    return Fusion(
        real,
        Stacker(np.array([1.0, 0.0]), 0.0),  # the supervised p as it is
        Stacker(np.array([1.0]), 0.0),
        UnsureBand(width, tuple(REENCODINGS)),
        min_size=10,
    )


def test_fusion_answers_per_image_from_its_crops_and_survives_a_round_trip(tmp_path: Path):
    fusion = _toy_fusion(width=1.0)
    rng = np.random.default_rng(5)
    # crops of distinct brightness, so a re-encoded crop is still told by its mean
    noise = rng.normal(0, 4, size=(6, 32, 32, 3))
    crops = np.clip(noise + 30 + 35 * np.arange(6)[:, None, None, None], 0, 255).astype(np.uint8)
    owner = np.array([0, 0, 1, 1, 2, 2])
    p_of_owner = np.array([0.99, 0.55, 0.01])  # sure, near 0.5, sure
    means = crops.reshape(6, -1).mean(1)

    def supervised(images: np.ndarray) -> np.ndarray:
        m = images.reshape(len(images), -1).mean(1)
        return p_of_owner[owner[np.abs(m[:, None] - means[None]).argmin(1)]]

    ans = fusion.answer(crops, supervised, owner)
    assert np.allclose(ans.p_generated, [0.99, 0.55, 0.01], atol=1e-3)
    assert ans.unsure.tolist() == [False, True, False]
    assert ans.reason[1].startswith("p stays near 0.5") and ans.reason[0] == ""
    path = fusion.save(tmp_path)
    assert path.name == FUSION
    again = Fusion.load(tmp_path)
    assert again.band == fusion.band and again.min_size == 10
    assert np.allclose(again.stacker.weights, fusion.stacker.weights)
    assert np.allclose(again.real.reference, fusion.real.reference)
    assert np.array_equal(
        again.real.unlikeness(describe(crops)), fusion.real.unlikeness(describe(crops))
    )
    assert Fusion.load(tmp_path / "elsewhere") is None
    # a model of the pixels' part alone, as saved before the spectrum part, reads the
    # first columns of today's description, which have not changed
    old = {
        k: v for k, v in fusion.to_arrays().items() if not k.startswith(("real_part", "real_comb"))
    }
    pixels = Fusion.from_arrays(old).real
    assert pixels.columns == [BLOCKS[0]]
    assert np.array_equal(
        pixels.unlikeness(describe(crops)),
        fusion.real.parts[0].unlikeness(describe(crops)[:, :180]),
    )
    # a real model fitted on another version's descriptions (fewer values) is refused
    for k in ("real_center", "real_scale", "real_mean", "real_basis"):
        old[k] = old[k][:-18]
    with pytest.raises(ValueError, match="reads 162 description values"):
        Fusion.from_arrays(old)
    (tmp_path / FUSION).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=FUSION):
        Fusion.load(tmp_path)


def test_fused_method_in_the_evaluation(tiny_zoo_dir: Path, tmp_path: Path, tiny_eval):
    zoo = GMDataset.from_zoo(tiny_zoo_dir)
    cfg = tiny_eval(methods=("fused",), steps=2, leakage_steps=2, conditions=("jpeg75",))
    evaluate(zoo, tmp_path / "eval", cfg, command="gmtrace evaluate --methods fused")
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    fused = saved["methods"]["fused"]
    for cond in ("clean", "jpeg75"):
        u = fused["unsure"][cond]
        assert 0 <= u["unsure_share"] <= 1 and u["images"] > 0
        assert sum(u["reasons"].values()) == round(u["unsure_share"] * u["images"])
    # the outer network is in the gmtrace method's folder (trained once when both
    # are evaluated); the inner one apart
    fold = tmp_path / "eval" / "fold0"
    assert (fold / "gmtrace" / "model.safetensors").is_file()
    assert (fold / "fused" / "inner" / "gmtrace" / "model.safetensors").is_file()
    rec = json.loads((fold / "fused" / "fusion.json").read_text())
    saved = Fusion.load(fold / "fused")
    assert saved.band.width == rec["band_width"] and saved.min_size == rec["grouping_min_size"]
    assert len(rec["stacker_weights"]) == 2 and rec["validation_real"] > 0
    assert rec["inner_gms"] < len(zoo) and rec["band_width"] >= 0
    assert rec["inner_real_model"] == "all the fold's photographs"  # the tiny zoo has 48
    assert str(rec["grouping_min_size"]) in rec["grouping_validation_ari"]
    assert 0 <= fused["grouping_half"]["ari"]["mean"] <= 1
    assert fused["parsing"] is not None  # the outer network's parse
    # parsing that abstains: the gate chosen on inner validation, scored where it answered
    assert len(rec["parse_gate"]) == 25 and saved.gate is not None
    assert [n for n, g in rec["parse_gate"].items() if g["coverage"] > 0] == saved.gate.reliable()
    ans = fused["parsing"]["answered"]
    assert len(ans["coverage"]) == 25 and 0 <= ans["fields_answered_median"] <= 25
    never = [i for i, c in enumerate(ans["coverage"]) if c == 0]
    l1 = ans["per_image"]["fields"]["l1"]["actual"]
    assert all(l1[i] is None or np.isnan(l1[i]) for i in never if i < 9)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert (
        "### Unsure" in report
        and "| gmtrace fused (+ real-photo model, unsure band), clean |" in report
    )
    assert "the fields that answer (gate from inner validation)" in report
    # the gate across folds, for every parsing method: a fold's fields from the others'
    cross = fused["parsing"]["answered_across_folds"]
    assert len(cross["reliable_per_fold"]) == 2 and len(cross["coverage"]) == 25
    assert "the fields that answer (gate across folds)" in report
    # the calibration across folds: each fold's p through a map fitted on the other's
    cal = fused["detection_pooled_calibrated"]
    assert len(cal["maps"]) == 2 and 0 <= cal["clean"]["ece_balanced"] <= 1
    assert "### Calibration" in report
    # what a shipped model adopts: the pooled out-of-fold answers, then `adopt`
    model = tmp_path / "model"
    shutil.copytree(fold / "fused", model)
    summary = tmp_path / "eval" / "results.json"
    run = json.loads(summary.read_text())
    across = run["methods"]["fused"]["detection_pooled_calibrated"]["clean"]
    # the map is adopted only where the run found that it carries across folds
    for ece, adopted_map in ((1.0, False), (0.0, True)):
        across["ece_balanced"] = ece
        summary.write_text(json.dumps(run))
        ok = runner.invoke(
            app, ["evaluate", "adopt", "--out", str(tmp_path / "eval"), "--model", str(model)]
        )
        assert ok.exit_code == 0, ok.output
        record = json.loads((model / "adopted.json").read_text())
        assert record["map_adopted"] is adopted_map
        assert (Fusion.load(model).final is not None) is adopted_map
        assert ("not recalibrated" in " ".join(ok.output.split())) is not adopted_map
    adopted = Fusion.load(model)
    assert adopted.final is not None and adopted.gate is not None
    record = json.loads((model / "adopted.json").read_text())
    assert record["images"] == len(read_out_of_fold(tmp_path / "eval")["fused.p"])
    assert record["fields_answering"] == adopted.gate.reliable()
    assert adopted.final.weights[0] == pytest.approx(record["platt_weight"])
    # the verdict reads the adopted map: p through it, the band as before
    imgs = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (40, 200)])
    before = Fusion.load(fold / "fused").answer(imgs, lambda a: np.full(len(a), 0.7))
    after = adopted.answer(imgs, lambda a: np.full(len(a), 0.7))
    assert np.allclose(after.p_generated, recalibrated(adopted.final, before.p_generated))
    # the model's card lists its fused parts and the calibration it adopted
    for f in ("model.safetensors", "readout.safetensors", "config.json"):
        shutil.copy(fold / "gmtrace" / f, model / f)  # the fold's network beside its fusion
    ok = runner.invoke(
        app, ["evaluate", "render", "--out", str(tmp_path / "eval"), "--card", str(model)]
    )
    assert ok.exit_code == 0, ok.output
    card = json.loads((model / "card.json").read_text())
    assert card["method"] == "fused"
    chosen = json.loads((model / "fusion.json").read_text())
    stacker = card["fused"]["stacker"]
    assert stacker["bias"] == round(chosen["stacker_bias"], 3)
    # the band's budget held on single crops and on images of several crops
    shares = chosen["band_unsure_validation"]
    assert set(shares) == {"single crops", "images of 4 crops"}
    assert all(0 <= v <= 0.08 for v in shares.values())
    assert f"{shares['images of 4 crops']:.1%} of images of 4 crops" in card["fused"]["unsure band"]
    assert card["fused"]["calibration"]["parsing fields answering"] == adopted.gate.reliable()
    assert "Platt map" in card["fused"]["calibration"]["p recalibrated"]
    # the same-source map of the fingerprint index, from the same run's embeddings
    ok = runner.invoke(
        app,
        [
            "index",
            "calibrate",
            "--run",
            str(tmp_path / "eval"),
            "--model",
            str(model),
            "--method",
            "fused",
        ],
    )
    assert ok.exit_code == 0, ok.output
    same = json.loads((model / "adopted.json").read_text())
    assert same["fields_answering"] == record["fields_answering"]  # kept beside it
    assert same["same_source"]["pairs"] > 0 and SameSource.of_model(model) is not None
    # a run without out-of-fold answers, a model without a fusion: one-line errors
    bad = runner.invoke(app, ["evaluate", "adopt", "--out", str(tmp_path), "--model", str(model)])
    assert bad.exit_code == 2 and "out_of_fold.safetensors" in bad.output
    bad = runner.invoke(
        app,
        ["evaluate", "adopt", "--out", str(tmp_path / "eval"), "--model", str(fold / "gmtrace")],
    )
    assert bad.exit_code == 2 and "no fusion" in bad.output
