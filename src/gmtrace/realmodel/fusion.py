"""The fusion of the supervised detector with the model of real photographs, and the
"unsure" band (docs/realmodel.md).

Both are fitted on images of codebases the network that scores them never saw (the
inner validation codebases of `methods.fused`): fitted on the network's own training
GMs, a stacker would learn to trust it fully, which is what fails on unseen code.
numpy only (and scikit-learn's AUC to choose the rule): a logistic regression of two
or three numbers needs no solver."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# the unlikeness is a share of reference photographs: kept off 0 and 1 before its logit
UNLIKENESS_FLOOR = 0.002


def logit(p: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p))


def scalar(v) -> float:
    """A number kept as an array of one value (or none: a 0-d array)."""
    return float(np.asarray(v, dtype=np.float64).reshape(-1)[0])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))


def stack_features(p_supervised: np.ndarray | None, unlikeness: np.ndarray | None) -> np.ndarray:
    """[N, F] the stacker's inputs: the logit of the supervised detector's calibrated
    probability and the logit of the real model's unlikeness (either may be left
    out, for the ablations)."""
    cols = []
    if p_supervised is not None:
        cols.append(logit(p_supervised))
    if unlikeness is not None:
        cols.append(logit(unlikeness, UNLIKENESS_FLOOR))
    if not cols:
        raise ValueError("stack_features: no input")
    return np.stack(cols, axis=1)


@dataclass
class Stacker:
    """p(generated) = sigmoid(x . weights + bias), fitted by a class-balanced,
    lightly L2-penalized logistic regression (Newton's method): the calibrated
    probability of a 50/50 prior."""

    weights: np.ndarray
    bias: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> Stacker:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"Stacker.fit: x {x.shape} and y {y.shape} do not match")
        n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
        if n_pos == 0 or n_neg == 0:
            raise ValueError("Stacker.fit needs images of both classes")
        w_row = np.where(y > 0.5, 0.5 / n_pos, 0.5 / n_neg)  # each class weighs 1/2
        a = np.c_[x, np.ones(len(x))]
        theta = np.zeros(a.shape[1])
        penalty = np.full(a.shape[1], l2)
        penalty[-1] = 0.0  # the bias is not shrunk
        for _ in range(iters):
            p = sigmoid(a @ theta)
            grad = a.T @ (w_row * (p - y)) + penalty * theta
            hess = (a * (w_row * p * (1 - p))[:, None]).T @ a + np.diag(penalty + 1e-9)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(weights=theta[:-1], bias=float(theta[-1]))

    def decision(self, x: np.ndarray) -> np.ndarray:
        """The logit of `prob`."""
        return np.asarray(x, dtype=np.float64) @ self.weights + self.bias

    def prob(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.decision(x))

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}weights": self.weights, f"{prefix}bias": np.array(self.bias)}

    @classmethod
    def from_arrays(cls, arrays: dict, prefix: str) -> Stacker:
        weights = np.asarray(arrays[f"{prefix}weights"], dtype=np.float64).reshape(-1)
        return cls(weights, scalar(arrays[f"{prefix}bias"]))


# how the two parts' answers become one p: a stacker fitted on both logits, or a fixed
# rule on the two calibrated logits (the supervised one, and the real model's through
# its own calibration) followed by a Platt map of the rule's score; chosen per fold
# by leaving inner validation codebases out in turn (`choose_rule`)
RULES = ("stacker", "sum", "mean", "max")
RULE_WORDS = {
    "stacker": "stacker of both logits",
    "sum": "sum of the two calibrated logits",
    "mean": "mean of the two calibrated p",
    "max": "larger of the two calibrated logits",
}


def rule_features(
    rule: str, p_supervised: np.ndarray, unlikeness: np.ndarray, real_cal: Stacker
) -> np.ndarray:
    """[N, F] what `rule`'s fitted map reads: both logits for the stacker; for a
    fixed rule, its one score of the supervised logit and the real model's
    calibrated logit (their sum, the logit of their p's mean, or their maximum)."""
    if rule == "stacker":
        return stack_features(p_supervised, unlikeness)
    z_sup = logit(p_supervised)
    z_real = real_cal.decision(stack_features(None, unlikeness))
    if rule == "sum":
        score = z_sup + z_real
    elif rule == "mean":
        score = logit((sigmoid(z_sup) + sigmoid(z_real)) / 2)
    elif rule == "max":
        score = np.maximum(z_sup, z_real)
    else:
        raise ValueError(f"unknown fusion rule {rule!r} (known: {', '.join(RULES)})")
    return score[:, None]


def fit_rule(
    rule: str,
    p_supervised: np.ndarray,
    unlikeness: np.ndarray,
    y: np.ndarray,
    real_cal: Stacker | None = None,
) -> tuple[Stacker, Stacker]:
    """(the rule's map, the real model's own calibration), both fitted class-balanced
    on validation answers with labels `y`; `real_cal`, where given, is that
    calibration already fitted on the same answers (it does not depend on the rule)."""
    if real_cal is None:
        real_cal = Stacker.fit(stack_features(None, unlikeness), y)
    return Stacker.fit(rule_features(rule, p_supervised, unlikeness, real_cal), y), real_cal


def choose_rule(
    p_supervised: np.ndarray,
    unlikeness: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    reading: np.ndarray,
    rules: tuple[str, ...] = RULES,
) -> tuple[str, dict[str, float], float]:
    """The rule of `rules` whose answers on validation groups it was not fitted on
    rank best: each group of `group` [N] (an inner validation codebase with its
    share of the photographs) is left out in turn, every rule fitted on the rest
    answers it; the score is the AUC of those answers over all groups, averaged over
    the readings of `reading` [N] (as given, JPEG q75). Ties go to the rule listed
    first among the fixed ones. The stacker, which fits a weight per part, is kept
    only where it beats the best fixed rule by more than the standard error of their
    difference over the groups (the AUC within each left-out group, paired): a
    one-standard-error rule, since with a handful of codebases a small win says
    more about which codebases were held back than about unseen code
    (docs/realmodel.md, "The fusion rule's margin"). Returns the rule, each rule's
    score and that margin: NaN where the stacker did not score best, inf where
    fewer than two groups give an AUC to measure it by (a fixed rule is kept)."""
    from sklearn.metrics import roc_auc_score

    y, group, reading = np.asarray(y), np.asarray(group), np.asarray(reading)
    out = {rule: np.full(len(y), np.nan) for rule in rules}
    for g in np.unique(group):
        test, train = group == g, group != g
        if len(np.unique(y[train])) < 2:
            continue
        real_cal = None  # fitted once per group, shared by the rules
        for rule in rules:
            fitted, real_cal = fit_rule(
                rule, p_supervised[train], unlikeness[train], y[train], real_cal
            )
            x = rule_features(rule, p_supervised[test], unlikeness[test], real_cal)
            out[rule][test] = fitted.prob(x)

    def auc(rule: str, within: np.ndarray) -> float:
        aucs = [
            roc_auc_score(y[m], out[rule][m])
            for r in np.unique(reading)
            if len(np.unique(y[m := within & (reading == r) & ~np.isnan(out[rule])])) == 2
        ]
        return float(np.mean(aucs)) if aucs else float("nan")

    everywhere = np.ones(len(y), bool)
    scores = {rule: round(auc(rule, everywhere), 4) for rule in rules}
    known = [r for r in rules if not np.isnan(scores[r])]
    if not known:
        raise ValueError("choose_rule: no validation group could be left out")
    best = max(known, key=lambda r: (scores[r], -rules.index(r)))
    fixed = [r for r in known if r != "stacker"]
    if best != "stacker" or not fixed:
        return best, scores, float("nan")
    runner = max(fixed, key=lambda r: (scores[r], -rules.index(r)))
    diffs = np.array(
        [auc("stacker", group == g) - auc(runner, group == g) for g in np.unique(group)]
    )
    diffs = diffs[~np.isnan(diffs)]
    margin = float(diffs.std(ddof=1) / np.sqrt(len(diffs))) if len(diffs) >= 2 else float("inf")
    margin = round(margin, 4)
    return ("stacker" if scores["stacker"] - scores[runner] > margin else runner), scores, margin


def fit_recalibration(p: np.ndarray, y: np.ndarray) -> Stacker:
    """Platt scaling of a detector's p: a class-balanced logistic map of its logit,
    fitted on answers whose labels the detector never trained on (other folds' test
    images in an evaluation; a run's out-of-fold answers for a shipped model,
    `gmtrace evaluate adopt`)."""
    return Stacker.fit(logit(p)[:, None], y)


def recalibrated(cal: Stacker | None, p: np.ndarray) -> np.ndarray:
    """p read through a recalibration (`fit_recalibration`); unchanged (its dtype
    too) without one."""
    return np.asarray(p) if cal is None else cal.prob(logit(p)[:, None])


@dataclass
class UnsureBand:
    """An image is looked at again when its fused logit is within `width` of 0 or
    when the two parts' verdicts disagree; looked at again (re-encoded), it is
    `unsure` where its verdicts under the re-encodings differ or the mean fused
    logit stays within `width` of 0. Without `disagreement`, the parts' disagreement
    alone does not flag an image (where it would spend the budget by itself)."""

    width: float
    reencodings: tuple[str, ...]
    disagreement: bool = True

    def flagged(self, p: np.ndarray, disagree: np.ndarray) -> np.ndarray:
        flag = np.abs(logit(p)) < self.width
        return flag | np.asarray(disagree, bool) if self.disagreement else flag

    def decide(self, p_versions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For flagged images: `p_versions` [1 + R, N] (the image as given, then each
        of `reencodings`) -> (unsure [N] bool, reason [N] str; empty where sure)."""
        p_versions = np.atleast_2d(p_versions)
        verdicts = p_versions > 0.5
        flips = verdicts != verdicts[0]
        mean = logit(p_versions).mean(axis=0)
        in_band = np.abs(mean) < self.width
        unsure = flips.any(axis=0) | in_band
        reason = np.full(p_versions.shape[1], "", dtype=object)
        for j in np.flatnonzero(unsure):
            changed = [self.reencodings[i - 1] for i in np.flatnonzero(flips[:, j])]
            if changed:
                reason[j] = "the verdict changes under " + ", ".join(changed)
            else:
                reason[j] = f"p stays near 0.5 under {', '.join(self.reencodings)}"
        return unsure, reason.astype(str)


def choose_width(
    p_versions: np.ndarray,
    disagree: np.ndarray,
    budget: float,
    reencodings: tuple[str, ...],
    grid: np.ndarray | None = None,
    also: tuple[tuple[np.ndarray, np.ndarray], ...] = (),
) -> UnsureBand:
    """The widest band (of `grid`, logit units) whose share of `unsure` images on the
    validation images `p_versions` [1 + R, N] stays within `budget`: the room for
    "don't know" goes where the fused probability is least sure. `also`: further
    readings of validation images (p_versions, disagree), such as images of several
    crops each read as the mean of their crops' (`owner_means`), on each of which
    the budget must hold too."""
    grid = np.linspace(0.0, 3.0, 31) if grid is None else np.asarray(grid)
    readings = ((p_versions, disagree), *also)
    best = UnsureBand(0.0, reencodings, disagreement=False)
    for w in np.sort(grid):
        for use in (False, True):  # at one width, flagging disagreement too is preferred
            band = UnsureBand(float(w), reencodings, use)
            if all(unsure_share(band, v, d) <= budget for v, d in readings):
                best = band
    return best


def owner_means(values: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """[..., M] the mean of `values` [..., N] over each owner's columns (`owner` [N]:
    0..M-1), as the analyzer averages an image's crops."""
    owner = np.asarray(owner, dtype=int)
    counts = np.bincount(owner)
    rows = np.atleast_2d(values)
    out = np.stack([np.bincount(owner, weights=r, minlength=len(counts)) for r in rows]) / counts
    return out if np.ndim(values) > 1 else out[0]


def unsure_share(band: UnsureBand, p_versions: np.ndarray, disagree: np.ndarray) -> float:
    """The share of images [1 + R, N] that `band` calls unsure."""
    flag = band.flagged(p_versions[0], disagree)
    unsure = np.zeros(p_versions.shape[1], bool)
    if flag.any():
        unsure[flag] = band.decide(p_versions[:, flag])[0]
    return float(unsure.mean())
