"""Parsing that abstains: per field of the 25 (nine counts, six discrete choices, ten
loss types), a threshold on the parse's own confidence below which the field answers
`unknown` (docs/realmodel.md, "Parsing that abstains").

The thresholds are chosen where the network that parses cannot help itself: on the
images of codebases it never saw (the inner validation of `methods.fused`, or other
folds' test codebases: `protocol._gate_across_folds`, `evaluation.adopt`). For each
field and each candidate coverage (the most confident 100 %, 75 %, 50 % or 30 % of
the validation images), the answered images' score is tested against the same
answers scored on the validation GMs' truth shuffled among them (within each group:
a fold, a held-back codebase). A rule (`GateRule`) says how much of that evidence a
field needs: the permutation p its answers must reach, and whether a coverage under
100 % may be taken (only where the confidence is shown to rank the answers too: the
answered images score better than as many validation images drawn at random). Of
the coverages that pass, one under 100 % that ranks and stands furthest above the
shuffles (in their standard deviations) is kept; where none does, the largest that
passes; a field no coverage passes never answers.

The rule is itself chosen on the validation answers, never on test answers
(`choose_rule`): with each group left out in turn, the gate every rule draws from
the other groups is scored on the group left out by what it delivers there (per
field, the answered images' score above shuffled truth in standard deviations, less
the cost of a guess, times the share answered), and the rule that delivers most
over the groups wins
(docs/realmodel.md, "The gate's rule, chosen nested"). A discrete field's confidence
is its top class probability, a loss type's the probability of the answer given (p
or 1 - p), a count's one minus its forest's spread over its trees
(`readout.forest`); a parse without forests has no confidence for its counts, which
then answer for all images or none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gmtrace.core.metrics import binary_f1, macro_f1
from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_THRESHOLD, LOSS_TYPES, UNKNOWN_CLASS

FIELD_NAMES: tuple[str, ...] = (
    *(f.name for f in CONTINUOUS),
    *(f.name for f in DISCRETE),
    *(f"loss {t}" for t in LOSS_TYPES),
)
N_FIELDS = len(FIELD_NAMES)
KINDS: tuple[str, ...] = (
    *("continuous",) * len(CONTINUOUS),
    *("discrete",) * len(DISCRETE),
    *("loss",) * len(LOSS_TYPES),
)
COVERAGES = (1.0, 0.75, 0.5, 0.3)  # the shares of validation images a field may answer
PERMUTATIONS = 200
MIN_GMS = 3  # validation GMs with answered images below which a coverage is not tested
# scores this close count as equal: a constant answer scores the same against every
# shuffle, up to the rounding of a mean taken in another order
TIE = 1e-12


def field_matrix(
    cont: np.ndarray, disc_prob: list[np.ndarray], loss_prob: np.ndarray
) -> np.ndarray:
    """[N, 25] the answers as numbers: counts on the normalized scale, the discrete
    fields' class indices, the loss types' 0/1 decisions."""
    disc = np.stack([p.argmax(axis=1) for p in disc_prob], axis=1)
    loss = np.asarray(loss_prob) >= LOSS_THRESHOLD
    return np.concatenate([np.asarray(cont, float), disc.astype(float), loss.astype(float)], 1)


def confidence(
    cont: np.ndarray,
    disc_prob: list[np.ndarray],
    loss_prob: np.ndarray,
    spread: np.ndarray | None = None,
) -> np.ndarray:
    """[N, 25] how sure the parse is of each field: for the counts one minus their
    spread [N, 9] (`Inference.count_spread`; 1 without one: no per-image measure), the
    top class probability, the probability of the loss decision."""
    lp = np.asarray(loss_prob, float)
    counts = np.ones((len(lp), len(CONTINUOUS)))
    if spread is not None:
        counts = 1.0 - np.clip(np.asarray(spread, float), 0.0, 1.0)
    return np.concatenate(
        [
            counts,
            np.stack([p.max(axis=1) for p in disc_prob], axis=1),
            np.maximum(lp, 1.0 - lp),
        ],
        axis=1,
    )


def truth_matrix(continuous: np.ndarray, discrete: np.ndarray, losses: np.ndarray) -> np.ndarray:
    """[G, 25] encoded targets (`schema.Targets` parts) as numbers, NaN where unknown."""
    disc = np.where(discrete == UNKNOWN_CLASS, np.nan, discrete.astype(float))
    return np.concatenate([np.asarray(continuous, float), disc, np.asarray(losses, float)], 1)


def field_score(j: int, pred: np.ndarray, truth: np.ndarray) -> float:
    """Field j's score of answers against truth (rows where the truth is known),
    higher is better: minus the mean L1 of a count, macro-F1 of a discrete field,
    F1 of a loss type (the evaluation's metrics)."""
    known = ~np.isnan(truth)
    if not known.any():
        return np.nan
    p, t = pred[known], truth[known]
    if KINDS[j] == "continuous":
        return -float(np.abs(p - t).mean())
    if KINDS[j] == "discrete":
        n_classes = DISCRETE[j - len(CONTINUOUS)].n_classes
        return macro_f1(p.astype(int), t.astype(int), n_classes)
    return binary_f1(p > 0.5, t > 0.5)


def _ranking_p(j, pred, tj, gm_of_row, known, rows, actual: float, rng, draws: int) -> float:
    """How well field j's confidence ranks its answers: the share of `draws` sets of
    as many `known` rows drawn at random that score at least as well as the
    answered `rows` (scoring `actual`), as a permutation p."""
    pool, k = np.flatnonzero(known), int(rows.sum())
    rand = np.empty(draws)
    for i in range(draws):
        pick = rng.choice(pool, k, replace=False)
        rand[i] = field_score(j, pred[pick, j], tj[gm_of_row[pick]])
    return float((1 + np.sum(rand >= actual - TIE)) / (1 + draws))


@dataclass(frozen=True)
class GateRule:
    """How much evidence a field needs to answer: the coverages it may answer (the
    most confident shares of the validation images) and the permutation p its
    answers must reach there."""

    coverages: tuple[float, ...]
    alpha: float

    @property
    def word(self) -> str:
        kind = "by confidence" if len(self.coverages) > 1 else "all or none"
        return f"{kind}, p <= {self.alpha:g}"


# the rules a gate is chosen among (`choose_rule`), strictest first: the rule gmtrace
# used alone before (`STRICT`), then weaker evidence asked, up to a field that is at
# least as likely better than shuffled truth as not; and each with the coverage
# fixed at all or none (a confidence that ranks answers on the validation codebases
# may not on other code, docs/realmodel.md)
ALPHAS = (0.05, 0.1, 0.2, 0.35, 0.5)
GATE_RULES: tuple[GateRule, ...] = tuple(
    GateRule(c, a) for a in ALPHAS for c in (COVERAGES, COVERAGES[:1])
)
STRICT = GATE_RULES[0]
# what an answer no better than chance costs, in the shuffles' standard deviations:
# a field is worth answering on code its network never saw where its answers stand
# at least one standard deviation above shuffled truth there (`delivered`); without
# a cost, a rule that opens every noise field would lose nothing by it
GUESS_COST = 1.0


@dataclass
class _Tested:
    """One coverage of one field, tested on validation answers."""

    share: float  # of the COVERAGES
    cut: float  # the confidence threshold
    coverage: float  # share of the field's known validation images answered
    p: float  # against shuffled truth
    z: float  # the score above the shuffles', in their standard deviations
    ranking_p: float  # the confidence's ranking test (`_ranking_p`); NaN at 100 %


def _shuffles(gm_of_row, group_of_row, n_truth: int, rng, permutations: int) -> np.ndarray:
    """[permutations, N] each row's GM in truth shuffled among the GMs of its group."""
    perms = np.empty((permutations, len(gm_of_row)), int)
    code = np.unique(np.asarray(group_of_row), return_inverse=True)[1].reshape(-1)
    pairs = np.unique(np.c_[code, np.asarray(gm_of_row, int)], axis=0)
    for i in range(permutations):
        perm = np.arange(n_truth)
        for g in np.unique(pairs[:, 0]):
            gms = pairs[pairs[:, 0] == g, 1]
            perm[gms] = gms[rng.permutation(len(gms))]
        perms[i] = perm[gm_of_row]
    return perms


def _against_shuffles(j, pred, tj, gm_of_row, rows, perms) -> tuple[float, np.ndarray, float]:
    """Field j's answers on `rows` scored against their GMs' truth `tj` and against
    each shuffle of `perms` (`_shuffles`): the score, the shuffles' scores, and how
    far the score stands above them in their standard deviations."""
    actual = field_score(j, pred[rows, j], tj[gm_of_row[rows]])
    rand = np.array([field_score(j, pred[rows, j], tj[q[rows]]) for q in perms])
    return actual, rand, float((actual - rand.mean()) / max(rand.std(), 1e-9))


def _evidence(pred, conf, truth, gm_of_row, group_of_row, seed: int, permutations: int):
    """Per field, every coverage that can be tested (at least `MIN_GMS` GMs answered)
    with its permutation p, z and ranking p (`_Tested`); the shuffles keep each GM
    among the GMs of its group (a fold, a held-back codebase)."""
    rng = np.random.default_rng(seed)
    perms = _shuffles(gm_of_row, group_of_row, len(truth), rng, permutations)
    out: list[list[_Tested]] = []
    for j in range(N_FIELDS):
        tj = truth[:, j]
        known = ~np.isnan(tj[gm_of_row])
        tested: list[_Tested] = []
        out.append(tested)
        if not known.any():
            continue
        # a field whose confidence is the same for every image (counts without
        # forests) can only answer for all of them
        levels = COVERAGES if np.ptp(conf[known, j]) > 0 else COVERAGES[:1]
        for share in levels:
            cut = -np.inf if share >= 1.0 else np.quantile(conf[known, j], 1.0 - share)
            rows = known & (conf[:, j] >= cut)
            if len(np.unique(gm_of_row[rows])) < MIN_GMS:
                continue
            actual, rand, z = _against_shuffles(j, pred, tj, gm_of_row, rows, perms)
            p = float((1 + np.sum(rand >= actual - TIE)) / (1 + permutations))
            ranking = np.nan
            if share < 1.0:
                ranking = _ranking_p(j, pred, tj, gm_of_row, known, rows, actual, rng, permutations)
            tested.append(_Tested(share, cut, rows.mean() / known.mean(), p, z, ranking))
    return out


def _select(evidence: list[list[_Tested]], rule: GateRule) -> ParseGate:
    """The gate a rule draws from the evidence: per field, among its coverages that
    pass (p <= alpha), one under 100 % whose confidence ranks the answers too
    (ranking p <= alpha over the number of such coverages) and stands furthest
    above the shuffles; else the widest that passes; else the field never answers."""
    threshold = np.full(N_FIELDS, np.inf)
    coverage = np.zeros(N_FIELDS)
    p_best = np.full(N_FIELDS, np.nan)
    n_under = max(len(rule.coverages) - 1, 1)
    for j, tested in enumerate(evidence):
        cands = [t for t in tested if t.share in rule.coverages]
        if cands:
            p_best[j] = min(t.p for t in cands)  # the best a field that never answers reached
        passing = [t for t in cands if t.p <= rule.alpha]
        ranked = [t for t in passing if t.share < 1.0 and t.ranking_p <= rule.alpha / n_under]
        chosen = max(ranked, key=lambda t: t.z) if ranked else (passing or [None])[0]
        if chosen is not None:
            threshold[j], coverage[j], p_best[j] = chosen.cut, chosen.coverage, chosen.p
    return ParseGate(threshold, coverage, p_best)


def delivered(gate: ParseGate, pred, conf, truth, gm_of_row, perms: np.ndarray) -> float:
    """What a gate gives on answers it was not fitted on: per field, how far its
    answered rows score above the same answers against shuffled truth (`perms`,
    `_shuffles` of `gm_of_row`; in the shuffles' standard deviations), less
    `GUESS_COST`, times the share of the field's known rows answered, summed over
    the fields. A field answering no better than chance costs what a guess does; a
    field that stays shut, nothing."""
    ans = gate.open(conf)
    total = 0.0
    for j in range(N_FIELDS):
        tj = truth[:, j]
        known = ~np.isnan(tj[gm_of_row])
        rows = ans[:, j] & known
        if len(np.unique(gm_of_row[rows])) < 2:
            continue
        actual, rand, z = _against_shuffles(j, pred, tj, gm_of_row, rows, perms)
        if np.isnan(actual) or np.isnan(rand).any():
            continue
        total += (z - GUESS_COST) * rows.sum() / known.sum()
    return float(total)


def choose_rule(
    pred,
    conf,
    truth,
    gm_of_row,
    group_of_row,
    seed: int,
    permutations: int = PERMUTATIONS,
    within: bool = True,
) -> tuple[GateRule, dict[str, float]]:
    """The gate rule (`GATE_RULES`) whose gates, fitted with each group (a fold, a
    held-back codebase) left out in turn, deliver the most on the group left out
    (`delivered`, summed over the groups); ties go to the stricter. `within`: the
    gates' shuffles keep each GM within its group (else among all the rest's GMs).
    Returns the rule and every rule's score, by `GateRule.word`."""
    group_of_row = np.asarray(group_of_row)
    scores = dict.fromkeys((r.word for r in GATE_RULES), 0.0)
    for g in np.unique(group_of_row):
        rest, out = group_of_row != g, group_of_row == g
        shuffle = group_of_row[rest] if within else np.zeros(int(rest.sum()), int)
        evidence = _evidence(
            pred[rest], conf[rest], truth, gm_of_row[rest], shuffle, seed, permutations
        )
        # the left-out group's shuffles, drawn once for every rule's gate
        gm_out = gm_of_row[out]
        rng = np.random.default_rng(seed)
        perms = _shuffles(gm_out, np.zeros(len(gm_out), int), len(truth), rng, permutations)
        for rule in GATE_RULES:
            gate = _select(evidence, rule)
            scores[rule.word] += delivered(gate, pred[out], conf[out], truth, gm_out, perms)
    best = max(GATE_RULES, key=lambda r: scores[r.word])  # the first of equals
    return best, scores


@dataclass
class ParseGate:
    """Field j answers an image where its confidence is at least `threshold[j]`
    (inf: never). `coverage`, `p`: what the chosen threshold gave on validation."""

    threshold: np.ndarray  # [25]
    coverage: np.ndarray  # [25] share of validation images answered
    p: np.ndarray  # [25] permutation p on validation (NaN: untestable)

    def answered(self, cont, disc_prob, loss_prob, spread=None) -> np.ndarray:
        """[N, 25] bool: which fields answer for each image (or GM); `spread`: the
        counts' (`confidence`)."""
        return self.open(confidence(cont, disc_prob, loss_prob, spread))

    def open(self, conf: np.ndarray) -> np.ndarray:
        """[N, 25] bool: which fields answer at confidences `conf` [N, 25]."""
        return np.asarray(conf) >= self.threshold[None, :]

    def reliable(self) -> list[str]:
        """The fields that answer at all."""
        return [n for n, t in zip(FIELD_NAMES, self.threshold, strict=True) if t < np.inf]

    @classmethod
    def fit(
        cls,
        pred: np.ndarray,
        conf: np.ndarray,
        truth: np.ndarray,
        gm_of_row: np.ndarray,
        seed: int,
        permutations: int = PERMUTATIONS,
        rule: GateRule = STRICT,
        group_of_row: np.ndarray | None = None,
    ) -> ParseGate:
        """Thresholds by `rule` from validation answers `pred` [N, 25]
        (`field_matrix`) with confidences `conf` [N, 25], against `truth` [G, 25]
        (`truth_matrix`) of the GMs `gm_of_row` [N] (indices into its rows), the
        truth shuffled among the GMs of each group of `group_of_row` (one group
        where None)."""
        gm_of_row = np.asarray(gm_of_row)
        group = np.zeros(len(gm_of_row), int) if group_of_row is None else np.asarray(group_of_row)
        return _select(_evidence(pred, conf, truth, gm_of_row, group, seed, permutations), rule)

    @classmethod
    def fit_nested(
        cls,
        pred,
        conf,
        truth,
        gm_of_row,
        group_of_row,
        seed: int,
        permutations: int = PERMUTATIONS,
        within: bool = True,
    ) -> tuple[ParseGate, GateRule, dict[str, float]]:
        """The gate by the rule chosen with each group left out in turn
        (`choose_rule`), fitted on all the answers; with fewer than two groups,
        the strict rule (nothing to leave out). `within`: the truth is shuffled
        among the GMs of each group (folds, as the evaluation's random truth is),
        else among all (groups too small to shuffle within: a held-back codebase of
        one GM). Returns the gate, its rule and every rule's score (empty with one
        group)."""
        gm_of_row, group_of_row = np.asarray(gm_of_row), np.asarray(group_of_row)
        if len(np.unique(group_of_row)) < 2:
            rule, scores = STRICT, {}
        else:
            rule, scores = choose_rule(
                pred, conf, truth, gm_of_row, group_of_row, seed, permutations, within
            )
        shuffle = group_of_row if within else None
        gate = cls.fit(pred, conf, truth, gm_of_row, seed, permutations, rule, shuffle)
        return gate, rule, scores

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "gate_threshold": self.threshold,
            "gate_coverage": self.coverage,
            "gate_p": self.p,
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> ParseGate | None:
        """The gate in a saved fusion, or None where it has none (fitted before)."""
        if "gate_threshold" not in arrays:
            return None
        return cls(
            *(
                np.asarray(arrays[k], float).reshape(-1)
                for k in ("gate_threshold", "gate_coverage", "gate_p")
            )
        )
