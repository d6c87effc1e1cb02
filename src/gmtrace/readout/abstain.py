"""Parsing that abstains: per field of the 25 (nine counts, six discrete choices, ten
loss types), a threshold on the parse's own confidence below which the field answers
`unknown` (docs/realmodel.md, "Parsing that abstains").

The thresholds are chosen where the network that parses cannot help itself: on the
images of codebases its inner twin never saw (the inner validation of
`methods.fused`). For each field and each candidate coverage (the most confident
100 %, 75 %, 50 % or 30 % of the validation images), the answered images' score is
tested against the same answers scored on the validation GMs' truth shuffled among
them. A coverage under 100 % is a candidate only where the confidence is shown to
rank the answers too (the answered images score better than as many validation
images drawn at random, at p <= `ALPHA` over the three such coverages); of those
passing both tests, the one whose score stands furthest above the shuffles' (in
their standard deviations) is kept; where none does, the largest coverage whose
answers pass, so a field answers as widely as its evidence on unseen code carries
(docs/realmodel.md: the rule before this one let a coverage under 100 % win on the
shuffle test alone, and on unseen code, where the confidences did not rank, shut
fields down to 13 to 30 % of the images by chance); a field no coverage passes
never answers. A discrete field's confidence is its top class probability, a loss type's the
probability of the answer given (p or 1 - p), a count's one minus its forest's spread
over its trees (`readout.forest`); a parse without forests has no confidence for its
counts, which then answer for all images or none.
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
ALPHA = 0.05  # the permutation p a field's answers must reach on validation
PERMUTATIONS = 200
MIN_GMS = 3  # validation GMs with answered images below which a coverage is not tested


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


def _confidence_ranks(
    j, pred, tj, gm_of_row, known, rows, actual: float, rng, draws: int = PERMUTATIONS
) -> bool:
    """Whether field j's confidence ranks its answers: the answered `rows`, scoring
    `actual`, score better than as many of the `known` rows drawn at random, at
    p <= ALPHA over the number of coverages that may be tested."""
    pool, k = np.flatnonzero(known), int(rows.sum())
    rand = np.empty(draws)
    for i in range(draws):
        pick = rng.choice(pool, k, replace=False)
        rand[i] = field_score(j, pred[pick, j], tj[gm_of_row[pick]])
    # one test per coverage under 100 %: Bonferroni over them
    return (1 + np.sum(rand >= actual)) / (1 + draws) <= ALPHA / (len(COVERAGES) - 1)


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
    ) -> ParseGate:
        """Thresholds from validation answers `pred` [N, 25] (`field_matrix`) with
        confidences `conf` [N, 25], against `truth` [G, 25] (`truth_matrix`) of
        the GMs `gm_of_row` [N] (indices into its rows)."""
        gm_of_row = np.asarray(gm_of_row)
        rng = np.random.default_rng(seed)
        gms = np.unique(gm_of_row)
        perms = []
        for _ in range(permutations):
            perm = np.arange(len(truth))
            perm[gms] = gms[rng.permutation(len(gms))]
            perms.append(perm[gm_of_row])
        threshold = np.full(N_FIELDS, np.inf)
        coverage = np.zeros(N_FIELDS)
        p_best = np.full(N_FIELDS, np.nan)
        for j in range(N_FIELDS):
            tj = truth[:, j]
            known = ~np.isnan(tj[gm_of_row])
            if not known.any():
                continue
            # a field whose confidence is the same for every image (counts without
            # forests) can only answer for all of them
            levels = COVERAGES if np.ptp(conf[known, j]) > 0 else COVERAGES[:1]
            widest, ranked = None, []  # (cut, share answered, p, z)
            for share in levels:
                cut = -np.inf if share >= 1.0 else np.quantile(conf[known, j], 1.0 - share)
                rows = known & (conf[:, j] >= cut)
                if len(np.unique(gm_of_row[rows])) < MIN_GMS:
                    continue
                actual = field_score(j, pred[rows, j], tj[gm_of_row[rows]])
                rand = np.array([field_score(j, pred[rows, j], tj[q[rows]]) for q in perms])
                p = (1 + np.sum(rand >= actual)) / (1 + permutations)
                if np.isnan(p_best[j]) or p < p_best[j]:
                    p_best[j] = p  # the best a field that never answers reached
                if p > ALPHA:
                    continue
                z = (actual - rand.mean()) / max(rand.std(), 1e-9)
                found = (cut, rows.mean() / known.mean(), p, z)
                widest = widest or found
                if share < 1.0 and _confidence_ranks(
                    j, pred, tj, gm_of_row, known, rows, actual, rng
                ):
                    ranked.append(found)
            chosen = max(ranked, key=lambda f: f[3]) if ranked else widest
            if chosen is not None:
                threshold[j], coverage[j], p_best[j] = chosen[:3]
        return cls(threshold, coverage, p_best)

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
