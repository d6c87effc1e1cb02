"""Parsing that abstains (`readout.abstain`): the gate chosen on validation GMs, and
the permutation test scored only where a field answered."""

from __future__ import annotations

import numpy as np

from gmtrace.core.metrics import permutation_test
from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_TYPES
from gmtrace.readout.abstain import (
    FIELD_NAMES,
    GATE_RULES,
    N_FIELDS,
    STRICT,
    ParseGate,
    choose_rule,
    confidence,
    field_matrix,
    truth_matrix,
)

NC, ND = len(CONTINUOUS), len(DISCRETE)


def _validation(seed: int = 0, n_gms: int = 12, per_gm: int = 20):
    """Validation GMs whose parse is right on some fields, right only where it is
    confident on others, and noise on the rest."""
    rng = np.random.default_rng(seed)
    gm = np.repeat(np.arange(n_gms), per_gm)
    n = len(gm)
    t_cont = rng.uniform(0, 1, (n_gms, NC))
    t_disc = rng.integers(0, 3, (n_gms, ND))
    t_loss = rng.integers(0, 2, (n_gms, len(LOSS_TYPES))).astype(float)
    cont = rng.uniform(0, 1, (n, NC))
    cont[:, 0] = t_cont[gm, 0] + rng.normal(0, 0.02, n)  # n_layers: right
    disc_prob = []
    sure = rng.uniform(size=n) < 0.5  # half the images are confident
    for j, f in enumerate(DISCRETE):
        p = rng.dirichlet(np.ones(f.n_classes), n) * 0.5  # top prob at most about 0.5
        if j == 0:  # norm_type: right, and confident, only on the sure half
            guess = np.where(sure, t_disc[gm, 0], rng.integers(0, 3, n))
            p[np.arange(n), guess] += np.where(sure, 0.9, 0.3)
        if j == 1:  # last_activation: right on 70 % of the images, its confidence no clue
            right = rng.uniform(size=n) < 0.7
            guess = np.where(right, t_disc[gm, 1], (t_disc[gm, 1] + 1) % 3)
            p[np.arange(n), guess] += rng.uniform(0.6, 1.5, n)  # always the top class
        disc_prob.append(p / p.sum(1, keepdims=True))
    loss = rng.uniform(0.3, 0.7, (n, len(LOSS_TYPES)))  # noise, never far from 0.5
    loss[:, 0] = np.where(t_loss[gm, 0] > 0.5, 0.95, 0.05)  # l1: right and sure
    truth = truth_matrix(t_cont, t_disc, t_loss)
    return (cont, disc_prob, loss), truth, gm, sure


def test_the_gate_answers_what_validation_supports_and_abstains_on_noise():
    parts, truth, gm, sure = _validation()
    gate = ParseGate.fit(field_matrix(*parts), confidence(*parts), truth, gm, seed=1)
    reliable = gate.reliable()
    assert "n_layers" in reliable and "loss l1" in reliable and "norm_type" in reliable
    # the counts have no per-image confidence: all or nothing
    assert gate.coverage[FIELD_NAMES.index("n_layers")] == 1.0
    # norm_type is right only where it is sure: it answers for fewer than all
    j = FIELD_NAMES.index("norm_type")
    assert 0 < gate.coverage[j] < 1
    answered = gate.answered(*parts)
    assert answered.shape == (len(gm), N_FIELDS)
    assert answered[sure, j].mean() > answered[~sure, j].mean()
    # last_activation beats the shuffles but its confidence does not rank its answers:
    # it answers for every image, not for a share picked by chance
    assert gate.coverage[FIELD_NAMES.index("last_activation")] == 1.0
    # the noise fields: at the gate's 5 % level one of the 21 may pass by chance, not
    # more than a few; those that never answer say why in their p
    signal = ("n_layers", "norm_type", "last_activation", "loss l1")
    noise = [k for k, n in enumerate(FIELD_NAMES) if n not in signal]
    shut = [k for k in noise if not np.isfinite(gate.threshold[k])]
    assert len(shut) >= len(noise) - 2
    assert not answered[:, shut].any()
    assert all(gate.p[k] > 0.05 for k in shut)
    again = ParseGate.from_arrays(gate.to_arrays())
    assert np.array_equal(again.threshold, gate.threshold) and again.reliable() == reliable
    assert ParseGate.from_arrays({}) is None


def test_a_count_with_a_spread_answers_where_its_forest_agrees():
    """With the forests' spread as the counts' confidence, a count that is right only
    where its trees agree answers for those images, not all or none."""
    parts, truth, gm, sure = _validation()
    cont = parts[0].copy()
    j = FIELD_NAMES.index("n_conv")
    t = truth[:, j]
    cont[:, j] = np.where(sure, t[gm] + 0.01, np.random.default_rng(5).uniform(0, 1, len(gm)))
    spread = np.where(sure, 0.02, 0.3)[:, None] * np.ones((1, NC))
    parts = (cont, *parts[1:])
    conf = confidence(*parts, spread)
    assert (
        np.allclose(conf[:, :NC], 1 - spread)
        and conf[:, NC:].tolist() == confidence(*parts)[:, NC:].tolist()
    )
    gate = ParseGate.fit(field_matrix(*parts), conf, truth, gm, seed=1)
    assert 0 < gate.coverage[j] < 1
    answered = gate.answered(*parts, spread)
    assert answered[sure, j].all() and not answered[~sure, j].any()
    # without a spread the same count can only answer for every image or none
    flat = ParseGate.fit(field_matrix(*parts), confidence(*parts), truth, gm, seed=1)
    assert flat.coverage[j] in (0.0, 1.0)


def test_too_few_validation_gms_answer_nothing():
    parts, truth, gm, _ = _validation(n_gms=2)
    gate = ParseGate.fit(field_matrix(*parts), confidence(*parts), truth, gm, seed=1)
    assert gate.reliable() == [] and np.isnan(gate.p).all()


def test_permutation_test_scores_a_field_only_where_it_answered():
    rng = np.random.default_rng(3)
    n_gms, per = 30, 4
    gm = np.repeat(np.arange(n_gms), per)
    gt = {
        "cont": rng.uniform(0, 1, (n_gms, NC)),
        "disc": rng.integers(0, 3, (n_gms, ND)),
        "loss": rng.integers(0, 2, (n_gms, len(LOSS_TYPES))).astype(float),
    }
    answered = np.zeros((len(gm), N_FIELDS), bool)
    answered[gm < 15, NC] = True  # norm_type answers for the first 15 GMs only
    disc = [rng.integers(0, 3, len(gm)) for _ in DISCRETE]
    disc[0] = np.where(gm < 15, gt["disc"][gm, 0], (gt["disc"][gm, 0] + 1) % 3)  # wrong elsewhere
    pred = {
        "cont": rng.uniform(0, 1, (len(gm), NC)),
        "disc": disc,
        "loss": rng.uniform(size=(len(gm), len(LOSS_TYPES))) > 0.5,
    }
    folds = np.zeros(n_gms, int)
    whole = permutation_test(pred, gt, gm, folds, 50, 0)
    masked = permutation_test(pred, gt, gm, folds, 50, 0, answered)
    assert masked["fields"]["acc"]["actual"][0] == 1.0
    assert whole["fields"]["acc"]["actual"][0] == 0.5
    assert masked["fields"]["macro_f1"]["p"][0] < 0.05
    # a field that never answers has no score and no test
    assert np.isnan(masked["fields"]["l1"]["actual"][0]) and np.isnan(
        masked["fields"]["l1"]["p"][0]
    )


def _groups(seed: int, noise: float, sizes=(8, 8, 8), per_gm: int = 10, constant=False):
    """Validation answers of groups (folds, codebases) of `sizes` GMs: the first five
    counts right up to per-image noise of `noise` (weak where it is large), the rest
    of the fields noise, or one constant answer where `constant` (no confidence to
    rank by and the same score against any shuffle of the GMs: no rule opens them)."""
    rng = np.random.default_rng(seed)
    group_of_gm = np.repeat(np.arange(len(sizes)), sizes)
    g_total = len(group_of_gm)
    gm = np.repeat(np.arange(g_total), per_gm)
    group = group_of_gm[gm]
    n = len(gm)
    t_cont = rng.uniform(0, 1, (g_total, NC))
    t_disc = rng.integers(0, 3, (g_total, ND))
    t_loss = rng.integers(0, 2, (g_total, len(LOSS_TYPES))).astype(float)
    cont = rng.uniform(0, 1, (n, NC))
    cont[:, :5] = t_cont[gm, :5] + rng.normal(0, noise, (n, 5))
    disc_prob = [rng.dirichlet(np.ones(f.n_classes), n) for f in DISCRETE]
    loss = rng.uniform(0.3, 0.7, (n, len(LOSS_TYPES)))
    if constant:
        cont[:, 5:] = 0.5
        disc_prob = [np.full_like(p, 1.0 / p.shape[1]) for p in disc_prob]
        loss = np.full_like(loss, 0.4)
    return (cont, disc_prob, loss), truth_matrix(t_cont, t_disc, t_loss), gm, group


def test_the_rule_asks_less_evidence_where_weak_fields_carry_to_the_group_left_out():
    """Counts weakly right in every group: on the two small groups' 8 GMs they rarely
    reach p <= 0.05, yet on the large group left out they stand well above shuffled
    truth. The rule chosen with each group left out in turn asks less evidence than
    the strict one, and opens them where the strict one does not."""
    parts, truth, gm, group = _groups(seed=4, noise=0.6, sizes=(4, 4, 16), constant=True)
    pred, conf = field_matrix(*parts), confidence(*parts)
    rule, scores = choose_rule(pred, conf, truth, gm, group, seed=0, permutations=100)
    assert set(scores) == {r.word for r in GATE_RULES}
    assert rule.alpha > STRICT.alpha and scores[rule.word] > scores[STRICT.word]
    gate, chosen, again = ParseGate.fit_nested(pred, conf, truth, gm, group, 0, permutations=100)
    assert chosen == rule and again == scores
    weak = FIELD_NAMES[:5]
    small = group < 2
    args = (pred[small], conf[small], truth, gm[small], 0, 100)
    strict = ParseGate.fit(*args, STRICT, group[small]).reliable()
    lenient = ParseGate.fit(*args, rule, group[small]).reliable()
    assert sum(f in lenient for f in weak) > sum(f in strict for f in weak)
    assert gate.reliable() == list(weak)


def test_answering_noise_costs_what_a_guess_does():
    """Noise fields open by chance under a lenient rule, and each costs
    `GUESS_COST` where it answers: with counts right in every group and the other
    fields noise, the rule chosen is not the most lenient, and its gate opens the
    counts and few of the noise fields."""
    parts, truth, gm, group = _groups(seed=3, noise=0.05)
    pred, conf = field_matrix(*parts), confidence(*parts)
    rule, scores = choose_rule(pred, conf, truth, gm, group, seed=0, permutations=100)
    lenient = GATE_RULES[-2]  # by confidence, the most lenient p
    assert lenient.alpha == max(r.alpha for r in GATE_RULES) and len(lenient.coverages) > 1
    assert scores[rule.word] > scores[lenient.word]
    gate = ParseGate.fit(pred, conf, truth, gm, 0, 100, rule, group)
    assert all(f in gate.reliable() for f in FIELD_NAMES[:5])
    noise = [f for f in gate.reliable() if f not in FIELD_NAMES[:5]]
    wide = ParseGate.fit(pred, conf, truth, gm, 0, 100, lenient, group)
    assert len(noise) < len([f for f in wide.reliable() if f not in FIELD_NAMES[:5]])


def test_where_every_rule_draws_the_same_gate_the_strict_one_is_chosen():
    """Counts right to a hair pass every rule's test in every group, and no rule
    opens the other fields: every rule draws the same gate, delivers the same, and
    the tie goes to the strict rule."""
    parts, truth, gm, group = _groups(seed=2, noise=0.01, constant=True)
    pred, conf = field_matrix(*parts), confidence(*parts)
    rule, scores = choose_rule(pred, conf, truth, gm, group, seed=0, permutations=50)
    assert rule == STRICT
    assert len(set(scores.values())) == 1 and scores[STRICT.word] > 0
    assert ParseGate.fit(pred, conf, truth, gm, 0, 50).reliable() == list(FIELD_NAMES[:5])


def test_one_group_has_nothing_to_leave_out_and_the_shuffles_stay_within_groups():
    parts, truth, gm, group = _groups(seed=1, noise=0.05)
    pred, conf = field_matrix(*parts), confidence(*parts)
    gate, rule, scores = ParseGate.fit_nested(pred, conf, truth, gm, np.zeros(len(gm)), 0, 50)
    assert rule == STRICT and scores == {}
    # a count that knows only its group's mean truth beats truth shuffled across the
    # groups, not truth shuffled within each: the gate shuffles as the protocol does
    j = FIELD_NAMES.index("n_pool")
    means = np.array([truth[np.unique(gm[group == g]), j].mean() for g in range(3)])
    truth = truth.copy()
    truth[:, j] = truth[:, j] + 3.0 * np.repeat(np.arange(3), len(truth) // 3)
    pred = pred.copy()
    pred[:, j] = means[group] + 3.0 * group
    across = ParseGate.fit(pred, conf, truth, gm, 0, 100)
    within = ParseGate.fit(pred, conf, truth, gm, 0, 100, group_of_row=group)
    assert "n_pool" in across.reliable() and "n_pool" not in within.reliable()
