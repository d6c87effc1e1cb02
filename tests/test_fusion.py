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
from gmtrace.data.augment import VARIATIONS
from gmtrace.data.dataset import GMDataset
from gmtrace.data.loader import ImageBank
from gmtrace.data.splits import inner_validation
from gmtrace.evaluation.adopt import read_out_of_fold
from gmtrace.evaluation.protocol import evaluate
from gmtrace.grouping.cluster import (
    DESCRIPTION_WEIGHTS,
    density_group,
    first_half,
    group_with,
    grouping_features,
    grouping_words,
)
from gmtrace.index.index import SameSource
from gmtrace.methods.fused import (
    choose_grouping,
    choose_open_rule,
    crop_owners,
    validation_groups,
)
from gmtrace.readout.abstain import GATE_RULES, STRICT
from gmtrace.readout.embedding import OPEN_RULES, GMDensity, open_set_score
from gmtrace.readout.fused import FUSION, REENCODINGS, Fusion, open_rule_of, rule_of
from gmtrace.readout.inference import Inference
from gmtrace.realmodel.density import RealPhotoModel
from gmtrace.realmodel.fusion import (
    RULE_WORDS,
    RULES,
    Stacker,
    UnsureBand,
    choose_rule,
    choose_width,
    fit_rule,
    logit,
    owner_means,
    recalibrated,
    rule_features,
    stack_features,
    unsure_share,
)
from gmtrace.realmodel.selfdesc import BLOCKS, describe
from gmtrace.train.config import TrainConfig

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


def test_fixed_rules_read_both_calibrated_logits():
    real_cal = Stacker(np.array([2.0]), -1.0)
    p_sup = np.array([0.5, 0.9, 0.1])
    unl = np.array([0.5, 0.5, 0.9])
    z_sup = logit(p_sup)
    z_real = 2.0 * logit(unl, 0.002) - 1.0
    assert np.allclose(rule_features("sum", p_sup, unl, real_cal)[:, 0], z_sup + z_real)
    assert np.allclose(rule_features("max", p_sup, unl, real_cal)[:, 0], np.maximum(z_sup, z_real))
    mean = (p_sup + 1 / (1 + np.exp(-z_real))) / 2
    assert np.allclose(rule_features("mean", p_sup, unl, real_cal)[:, 0], logit(mean))
    assert rule_features("stacker", p_sup, unl, real_cal).shape == (3, 2)
    with pytest.raises(ValueError, match="unknown fusion rule"):
        rule_features("vote", p_sup, unl, real_cal)


def _two_cues(rng, sup_fakes: bool, real_fakes: bool, n: int):
    """Generated images whose supervised p and unlikeness are those of photographs
    unless told."""
    p_sup = rng.beta(8, 2, n) if sup_fakes else rng.beta(2, 8, n)
    unl = rng.beta(12, 1, n) if real_fakes else rng.random(n)
    return p_sup, unl


def test_choose_rule_keeps_a_fixed_rule_where_each_codebase_shows_one_cue():
    """Held-back codebase A is caught by the supervised detector only, B by the real
    model only: a stacker fitted without A trusts the real model alone and misses
    it, and the other way round; a fixed rule keeps both cues."""
    rng = np.random.default_rng(7)
    a = _two_cues(rng, True, False, 200)
    b = _two_cues(rng, False, True, 200)
    real = (rng.beta(2, 8, 400), rng.random(400))
    p_sup, unl = (np.r_[a[i], b[i], real[i]] for i in range(2))
    y = np.r_[np.ones(400), np.zeros(400)]
    group = np.r_[np.zeros(200), np.ones(200), np.arange(400) % 2].astype(int)
    rule, scores, margin = choose_rule(p_sup, unl, y, group, np.zeros(800, int))
    assert rule != "stacker" and set(scores) == {"stacker", "sum", "mean", "max"}
    assert np.isnan(margin)  # the stacker did not score best: no margin to beat
    assert scores[rule] > scores["stacker"] + 0.15


def test_choose_rule_keeps_the_stacker_where_one_part_is_noise():
    rng = np.random.default_rng(8)
    fakes = [_two_cues(rng, False, True, 150) for _ in range(3)]
    real = (rng.beta(2, 8, 450), rng.random(450))
    # the supervised p tells nothing, confidently: every fixed rule suffers from it
    p_sup = rng.beta(0.3, 0.3, 900)
    unl = np.concatenate([f[1] for f in fakes] + [real[1]])
    y = np.r_[np.ones(450), np.zeros(450)]
    group = np.r_[np.repeat([0, 1, 2], 150), np.arange(450) % 3]
    reading = np.arange(900) % 2  # two readings, each scored on its own
    rule, scores, margin = choose_rule(p_sup, unl, y, group, reading)
    assert rule == "stacker" and scores["stacker"] > max(scores["sum"], scores["max"])
    best_fixed = max(scores[r] for r in ("sum", "mean", "max"))
    assert 0 <= margin < scores["stacker"] - best_fixed
    fitted, real_cal = fit_rule(rule, p_sup, unl, y)
    assert abs(fitted.weights[0]) < 0.2 * abs(fitted.weights[1])
    assert real_cal.weights[0] > 0


def test_choose_rule_keeps_a_fixed_rule_where_the_stacker_wins_by_less_than_its_spread():
    """Six held-back codebases, each caught by both parts in its own measure: the
    stacker's weights, fitted on the rest, suit some left-out codebases and not
    others. It scores best pooled, but by less than the standard error of its
    paired difference over the codebases: the best fixed rule is kept."""
    rng = np.random.default_rng(7)
    n, k = 100, 6
    a, b = rng.uniform(2, 6, k), rng.uniform(2, 6, k)
    fake_sup = np.concatenate([rng.beta(a[g], 2, n) for g in range(k)])
    fake_unl = np.concatenate([rng.beta(b[g], 2, n) for g in range(k)])
    p_sup, unl = np.r_[fake_sup, rng.beta(2, 4, n * k)], np.r_[fake_unl, rng.beta(2, 4, n * k)]
    y = np.r_[np.ones(n * k), np.zeros(n * k)]
    group = np.r_[np.repeat(np.arange(k), n), np.arange(n * k) % k]
    rule, scores, margin = choose_rule(p_sup, unl, y, group, np.zeros(len(y), int))
    best_fixed = max(("sum", "mean", "max"), key=lambda r: scores[r])
    assert scores["stacker"] > scores[best_fixed]  # the case this test is about
    assert scores["stacker"] - scores[best_fixed] <= margin
    assert rule == best_fixed


def test_validation_groups_are_codebases_and_the_largest_codebases_families():
    from types import SimpleNamespace as NS

    gms = [NS(name="g0", codebase="own", family="f1"), NS(name="g1", codebase="own", family="f2")]
    gms += [NS(name="g2", codebase="own", family="f2"), NS(name="g3", codebase="pkg", family="x")]
    ds = NS(gms=gms)
    bank = NS(gm_names=["g0", "g1", "g2", "g3"])
    val_gm = np.array([0, 0, 1, 2, 3])
    group = validation_groups(ds, bank, val_gm, ["s1", "s2", "s2", "s3"])
    # own/f1, own/f2 (g1 and g2 together), pkg; photographs by source in turn
    assert group[:5].tolist() == [0, 0, 1, 1, 2]
    assert group[5:].tolist() == [0, 1, 1, 2]
    few = validation_groups(ds, bank, val_gm, ["s1", "s1", "s1"])
    assert few[5:].tolist() == [0, 1, 2]


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


def test_inner_validation_with_tiers_holds_back_a_codebase_of_every_tier():
    # gmtrace's zoo (out of the pool), one upscaler package too large for the room,
    # and six small packages of a third tier
    cbs = ["gmtrace"] * 60 + ["upscaler"] * 18 + [c for c in "abcdef" for _ in range(2)]
    tiers = ["gmtrace"] * 60 + ["pretrained"] * 18 + ["foreign"] * 12
    names = [f"g{i}" for i in range(len(cbs))]
    fams = ["f"] * len(cbs)
    for seed in range(4):
        plain = inner_validation(names, cbs, fams, seed)
        val = inner_validation(names, cbs, fams, seed, tiers=tiers)
        held = {cbs[names.index(n)] for n in val}
        assert "upscaler" not in {cbs[names.index(n)] for n in plain}  # past the room
        assert set(plain) < set(val) and "upscaler" in held and "gmtrace" not in held
        assert {n for n, c in zip(names, cbs, strict=True) if c == "upscaler"} <= set(val)
    # every tier of the pool already held back: nothing added
    two = ["gmtrace"] * 60 + [c for c in "abcdef" for _ in range(2)]
    t2 = ["gmtrace"] * 60 + ["foreign"] * 12
    n2 = names[: len(two)]
    assert inner_validation(n2, two, fams[: len(two)], 0, tiers=t2) == inner_validation(
        n2, two, fams[: len(two)], 0
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


def _two_gms_the_embedding_cannot_tell_apart(rng, n=30):
    """Images of 3 GMs: two share one embedding (what a network trained on other
    code learned) and differ only in their self-descriptions; the third differs in
    the embedding."""
    emb = np.r_[
        rng.normal(0, 0.05, (2 * n, 2)) + [1, 0],
        rng.normal(0, 0.05, (n, 2)) + [0, 1],
    ]
    desc = rng.normal(0, 0.05, (3 * n, 6))
    desc[:n, :4] += 0.5  # the first GM's pixels are predicted otherwise
    return emb, desc, np.repeat([0, 1, 2], n)


def test_grouping_features_put_the_self_description_beside_the_embedding():
    rng = np.random.default_rng(5)
    emb, desc, gm = _two_gms_the_embedding_cannot_tell_apart(rng)
    # weight 0, or no descriptions: the embedding as it is (the grouping before)
    assert np.array_equal(grouping_features(emb, desc, 0.0), emb)
    assert np.array_equal(grouping_features(emb, None, 1.0), emb)
    x = grouping_features(emb, desc, 2.0)
    assert x.shape == (len(emb), 2 + 6)
    # every column standardized over the case; the description's block weighs
    # weight^2 times the embedding's in total variance
    assert np.allclose(x.mean(0), 0, atol=1e-9)
    assert np.isclose(x[:, :2].var(0).sum(), 2) and np.isclose(x[:, 2:].var(0).sum(), 4 * 2)
    # a constant column (one value for the whole case) is zeros, not NaN
    flat = desc.copy()
    flat[:, 0] = 7.0
    assert np.all(grouping_features(emb, flat, 1.0)[:, 2] == 0)
    # the two GMs of one embedding are told apart only with the description
    from sklearn.metrics import adjusted_rand_score

    alone = adjusted_rand_score(gm, group_with(grouping_features(emb, desc, 0.0), 0))
    both = adjusted_rand_score(gm, group_with(grouping_features(emb, desc, 1.0), 0))
    assert alone < 0.7 and both > 0.95


def test_choose_grouping_takes_the_description_where_the_held_back_gms_say_so():
    rng = np.random.default_rng(6)
    emb, desc, gm = _two_gms_the_embedding_cannot_tell_apart(rng)
    size, weight, scores = choose_grouping(emb, gm, desc, DESCRIPTION_WEIGHTS)
    assert weight == 1.0 and size == 0
    assert scores["0 d1"][0] > 0.95 > scores["0"][0]
    assert set(scores) == {str(z) for z in (0, 5, 10, 20, 40)} | {
        f"{z} d1" for z in (0, 5, 10, 20, 40)
    }
    # without descriptions only the embedding's candidates
    size, weight, scores = choose_grouping(emb, gm, None, DESCRIPTION_WEIGHTS)
    assert weight == 0.0 and all(" d" not in k for k in scores)
    # GMs the embedding tells apart alone: the ties go to the embedding alone
    sep = np.r_[emb[:30], emb[60:], emb[60:] + [3, 3]]
    _, weight, _ = choose_grouping(sep, gm, np.zeros_like(desc), DESCRIPTION_WEIGHTS)
    assert weight == 0.0


def test_grouping_on_the_self_description_alone_where_the_embedding_misleads():
    """The embedding splits the case by something else than the GM (each of its two
    tight clusters holds half of each GM's images), the description by GM: beside
    the embedding the description cannot undo its split, alone it groups by GM;
    the choice on the held-back GMs, given that candidate, takes it."""
    import math

    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(12)
    n = 40
    gm = np.repeat([0, 1, 2], n)
    side = np.tile([0, 1], 3 * n // 2)  # the nuisance the embedding reads
    emb = np.stack([np.where(side == 0, 1.0, -1.0), np.ones(3 * n)], 1)
    emb = emb + rng.normal(0, 0.01, emb.shape)
    desc = rng.normal(0, 0.05, (3 * n, 6))
    desc[:, :3] += np.eye(3)[gm]  # each GM's pixels predicted in its own way
    x = grouping_features(emb, desc, math.inf)
    assert x.shape == desc.shape and np.allclose(x.mean(0), 0, atol=1e-9)
    alone = adjusted_rand_score(gm, group_with(x, 0))
    both = adjusted_rand_score(gm, group_with(grouping_features(emb, desc, 1.0), 0))
    assert alone > 0.95 and both < 0.7
    # (a candidate measured and not kept in the shipped choice: given here)
    size, weight, scores = choose_grouping(emb, gm, desc, (*DESCRIPTION_WEIGHTS, math.inf))
    assert math.isinf(weight) and scores[f"{size} dinf"][0] > 0.95
    assert grouping_words(weight) == "the self-description alone"
    assert grouping_words(1.0) == "the embedding and the self-description (weight 1)"
    assert grouping_words(0.0) == "the embedding"


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
    # a fixed rule is saved and read back; a fusion saved before rules were chosen
    # is a stacker's; a rule this version does not know is a clear error
    fusion.rule, fusion.stacker = "max", Stacker(np.array([1.0]), 0.0)
    fusion.save(tmp_path)
    again = Fusion.load(tmp_path)
    p_sup, unl = np.array([0.2, 0.7]), np.array([0.9, 0.1])
    assert again.rule == "max"
    assert np.allclose(again.fused(p_sup, unl), fusion.fused(p_sup, unl))
    assert rule_of({}) == "stacker"
    # the self-description's weight in the grouping: kept; a fusion saved before it
    # groups on the embedding alone
    fusion.group_weight = 1.0
    fusion.save(tmp_path)
    assert Fusion.load(tmp_path).group_weight == 1.0
    arrays = fusion.to_arrays()
    del arrays["grouping_description_weight"]
    assert Fusion.from_arrays(arrays).group_weight == 0.0
    # how its photographs were varied: kept (a calibration varies a user's the same
    # way); a fusion saved before it was fitted on them as given
    fusion.real_variation = "JPEG"
    fusion.save(tmp_path)
    assert Fusion.load(tmp_path).real_variation == "JPEG"
    arrays = fusion.to_arrays()
    del arrays["real_variation"]
    assert Fusion.from_arrays(arrays).real_variation == "as given"
    with pytest.raises(ValueError, match="varied a way this gmtrace does not know"):
        Fusion.from_arrays(arrays | {"real_variation": np.array(7.0)})
    with pytest.raises(ValueError, match="fusion rule"):
        rule_of({"rule": np.array([9.0])})
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
    cfg = tiny_eval(
        methods=("fused",),
        steps=2,
        leakage_steps=2,
        conditions=("jpeg75",),
        group_description=True,
        cross_scale=True,
    )
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
    assert len(rec["stacker_weights"]) == (2 if rec["rule"] == "stacker" else 1)
    assert saved.rule == rec["rule"] and rec["validation_real"] > 0
    # the rule chosen by leaving held-back codebases out in turn, where there are two
    assert set(rec["rule_validation_auc"]) == (set(RULES) if rec["rule_groups"] >= 2 else set())
    assert rec["inner_gms"] < len(zoo) and rec["band_width"] >= 0
    assert rec["inner_real_model"] == "all the fold's photographs"  # the tiny zoo has 48
    # the grouping chosen with the self-description's weight among its candidates
    # (JSON has no infinity: the description alone would be recorded as "inf")
    w = float(rec["grouping_description_weight"])
    assert w in DESCRIPTION_WEIGHTS and saved.group_weight == w
    key = str(rec["grouping_min_size"]) + (f" d{w:g}" if w else "")
    assert key in rec["grouping_validation_ari"] and "0 d1" in rec["grouping_validation_ari"]
    assert 0 <= fused["grouping_half"]["ari"]["mean"] <= 1
    # the photographs' variation chosen on the inner validation, every one scored
    assert saved.real_variation == rec["real_variation"]
    assert set(rec["real_variation_validation_auc"]) == set(VARIATIONS)
    best = max(np.mean(a) for a in rec["real_variation_validation_auc"].values())
    assert np.mean(rec["real_variation_validation_auc"][rec["real_variation"]]) == best
    # `--cross-scale`: the model of real photographs has the third part (193 values)
    assert saved.real.width == 193 and len(saved.real.parts) == 3
    assert fused["parsing"] is not None  # the outer network's parse
    # parsing that abstains: the gate chosen on inner validation, scored where it answered
    assert len(rec["parse_gate"]) == 25 and saved.gate is not None
    assert [n for n, g in rec["parse_gate"].items() if g["coverage"] > 0] == saved.gate.reliable()
    # its rule chosen with each held-back codebase left out in turn, where there are two
    assert rec["parse_gate_rule"] in {r.word for r in GATE_RULES}
    if rec["rule_groups"] >= 2:
        assert set(rec["parse_gate_rule_scores"]) == {r.word for r in GATE_RULES}
    else:
        assert rec["parse_gate_rule"] == STRICT.word and rec["parse_gate_rule_scores"] == {}
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
    # what each fold's fusion chose, from its fusion.json
    assert "### What each fold's fusion chose" in report
    assert f"| fold0 | {rec['rule_groups']} | {rec['rule']} |" in report
    # the open-set score chosen there too, each score's AUROC recorded and reported;
    # the fold's open-set answers read by the score chosen
    assert rec["open_rule"] in OPEN_RULES and set(rec["open_rule_validation_auroc"]) == {
        *OPEN_RULES
    }
    assert saved.open_rule == rec["open_rule"]
    assert (saved.density is not None) == (rec["open_rule"] == "density")
    assert f"| {rec['open_rule']} | " in report
    # the gate across folds, for every parsing method: a fold's fields from the others'
    cross = fused["parsing"]["answered_across_folds"]
    assert len(cross["reliable_per_fold"]) == 2 and len(cross["coverage"]) == 25
    # each fold's gate rule chosen on the other fold alone: nothing to leave out
    assert cross["rule_per_fold"] == [{"rule": STRICT.word, "scores": {}}] * 2
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
    assert set(record["parse_gate_rule_scores"]) == {r.word for r in GATE_RULES}  # two folds
    assert (
        record["parse_gate_rule"]
        == max(GATE_RULES, key=lambda r: record["parse_gate_rule_scores"][r.word]).word
    )
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
    assert card["fused"]["parts"].endswith(
        "stacked" if chosen["rule"] == "stacker" else RULE_WORDS[chosen["rule"]]
    )
    # and how the photographs of its real part were varied
    assert (
        card["fused"]["photographs the model of real photographs was fitted on"]
        == (chosen["real_variation"])
    )
    # the band's budget held on single crops and on images of several crops
    shares = chosen["band_unsure_validation"]
    assert set(shares) == {"single crops", "images of 4 crops"}
    assert all(0 <= v <= 0.08 for v in shares.values())
    assert f"{shares['images of 4 crops']:.1%} of images of 4 crops" in card["fused"]["unsure band"]
    assert card["fused"]["calibration"]["parsing fields answering"] == adopted.gate.reliable()
    assert card["fused"]["calibration"]["parsing gate rule"].startswith(record["parse_gate_rule"])
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


class _PlaneNet:
    """A stand-in network for the open-set choice: an image's embedding is its mean
    colour's first two channels; its gallery score is what `gallery` says of it."""

    def __init__(self, gallery):
        self.train_cfg = TrainConfig(calib_per_gm=4, probe_per_gm=8)
        self.gallery = gallery

    def predict(self, images: np.ndarray) -> Inference:
        emb = images.reshape(len(images), -1, 3).mean(1)[:, :2].astype(np.float64)
        n = len(images)
        return Inference(
            p_generated=np.ones(n),
            attribution=np.ones((n, 1)),
            open_score=self.gallery(emb),
            embedding=emb,
            continuous=np.zeros((n, 9)),
            discrete_prob=[],
            loss_prob=np.zeros((n, 10)),
        )


def _plane_images(angle: float, spread: float, n: int) -> np.ndarray:
    """n 4x4 images whose mean colour's first two channels point at `angle` +- spread
    (in no order: the images held out are like the rest)."""
    t = angle + np.random.default_rng(n).permutation(np.linspace(-spread, spread, n))
    rgb = np.stack([100 + 90 * np.cos(t), 100 + 90 * np.sin(t), np.full(n, 50.0)], axis=1)
    return np.repeat(np.repeat(rgb[:, None, None, :], 4, 1), 4, 2).round().astype(np.uint8)


def test_the_open_set_score_is_chosen_on_held_back_codebases_and_saved(tmp_path: Path):
    # two training GMs, a tight one and a wide one; the held-back GM's images sit
    # between them, nearer the tight one
    bank = ImageBank(
        gm_names=["tight", "wide"],
        fake=[_plane_images(0.0, 0.02, 16), _plane_images(1.2, 0.5, 16)],
        real=np.zeros((0, 4, 4, 3), np.uint8),
        real_sources=[],
    )
    val_images = _plane_images(0.25, 0.02, 10)

    def rule(gallery) -> tuple[str, dict]:
        net = _PlaneNet(gallery)
        return choose_open_rule(net, bank, net.predict(val_images))

    # a gallery score that cannot tell them apart: the density is chosen
    chosen, auroc = rule(lambda e: np.full(len(e), 0.5))
    assert chosen == "density" and auroc["gallery"] == 0.5 and auroc["density"] > 0.9
    # a gallery score as good as the density: the gallery stays (ties keep it)
    chosen, auroc = rule(lambda e: np.abs(np.arctan2(e[:, 1] - 100, e[:, 0] - 100) - 0.25) < 0.1)
    assert auroc["gallery"] == 1.0 and chosen == "gallery"
    # the fusion carries the rule and the densities, answers by them, and keeps them
    fusion = _toy_fusion(width=1.0)
    attr, emb = np.array([[0.9, 0.1], [0.5, 0.5]]), np.array([[1.0, 0.0], [0.0, 1.0]])
    gallery = open_set_score(attr, emb, np.eye(2))
    assert np.array_equal(fusion.open_score(emb, gallery), gallery)
    assert fusion.open_threshold(0.3) == 0.3
    fusion.open_rule = "density"
    fusion.density = GMDensity.fit(
        np.concatenate([_arc2(0.0), _arc2(1.5)]), np.repeat([0, 1], 5), 2
    )
    assert np.allclose(fusion.open_score(emb, gallery), fusion.density.score(emb))
    assert fusion.open_threshold(0.3) == fusion.density.threshold
    fusion.save(tmp_path)
    again = Fusion.load(tmp_path)
    assert again.open_rule == "density"
    assert np.allclose(again.open_score(emb, gallery), fusion.open_score(emb, gallery))
    # a fusion saved before the rule was chosen reads the gallery score; a rule this
    # version does not know is a clear error
    assert open_rule_of({}) == "gallery"
    old = {k: v for k, v in fusion.to_arrays().items() if not k.startswith(("open_", "density_"))}
    assert (
        Fusion.from_arrays(old).open_rule == "gallery" and Fusion.from_arrays(old).density is None
    )
    with pytest.raises(ValueError, match="open-set rule"):
        open_rule_of({"open_rule": np.array([7.0])})


def _arc2(angle: float) -> np.ndarray:
    t = angle + np.linspace(-0.1, 0.1, 5)
    return np.stack([np.cos(t), np.sin(t)], axis=1)
