"""Metrics, one place for all: F1 scores, parsing scores against shuffled ground
truth, detection (AUC, AP, accuracy, calibration error), grouping (ARI, NMI,
purity). Used by the evaluation, `gmtrace check` and the benchmarks; they depend
on numpy and scikit-learn only."""

from __future__ import annotations

import numpy as np

from gmtrace.core.schema import DISCRETE, LOSS_TYPES, UNKNOWN_CLASS


def nanmean(a, axis=None):
    """Mean over the values that are not NaN; NaN, without a warning, where none is
    (a field no GM's truth is known for)."""
    a = np.asarray(a, dtype=np.float64)
    known = ~np.isnan(a)
    total = np.where(known, a, 0.0).sum(axis=axis)
    count = known.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def binary_f1(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of boolean predictions; 1 when there are no positives either way."""
    tp = float(np.sum(pred & truth))
    denom = float(np.sum(pred) + np.sum(truth))
    return 1.0 if denom == 0 else 2 * tp / denom


def macro_f1(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in `truth` or `pred`."""
    scores = [
        binary_f1(pred == c, truth == c)
        for c in range(n_classes)
        if np.any(truth == c) or np.any(pred == c)
    ]
    return float(np.mean(scores)) if scores else 1.0


def parsing_scores(
    cont: np.ndarray,
    disc: list[np.ndarray],
    loss: np.ndarray,
    gt_cont: np.ndarray,
    gt_disc: np.ndarray,
    gt_loss: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-field scores of predictions against a ground truth (rows aligned):
    L1 per continuous field, accuracy and macro-F1 per discrete field, F1 per loss
    type. Each field is scored over the rows whose truth is known (NaN values,
    `UNKNOWN_CLASS`); NaN where no row's is."""
    gt_cont = np.asarray(gt_cont, dtype=np.float64)
    gt_loss = np.asarray(gt_loss, dtype=np.float64)
    l1 = []
    for j in range(gt_cont.shape[1]):
        known = ~np.isnan(gt_cont[:, j])
        l1.append(np.abs(cont[known, j] - gt_cont[known, j]).mean() if known.any() else np.nan)
    acc, mf1 = [], []
    for j, (d, f) in enumerate(zip(disc, DISCRETE, strict=True)):
        known = gt_disc[:, j] != UNKNOWN_CLASS
        acc.append(np.mean(d[known] == gt_disc[known, j]) if known.any() else np.nan)
        mf1.append(macro_f1(d[known], gt_disc[known, j], f.n_classes) if known.any() else np.nan)
    loss_f1 = []
    for j in range(len(LOSS_TYPES)):
        known = ~np.isnan(gt_loss[:, j])
        f1 = binary_f1(loss[known, j], gt_loss[known, j] > 0.5) if known.any() else np.nan
        loss_f1.append(f1)
    return {
        "l1": np.array(l1, dtype=np.float64),
        "acc": np.array(acc, dtype=np.float64),
        "macro_f1": np.array(mf1, dtype=np.float64),
        "loss_f1": np.array(loss_f1, dtype=np.float64),
    }


def _summary(s: dict[str, np.ndarray]) -> dict[str, float]:
    l1, mf1, lf1 = (float(nanmean(s[k])) for k in ("l1", "macro_f1", "loss_f1"))
    return {
        "mean_l1": l1,
        "mean_macro_f1": mf1,
        "mean_loss_f1": lf1,
        "composite": (1 - l1 + mf1 + lf1) / 3,
    }


def permutation_test(
    pred: dict,
    gt: dict,
    gm_of_row: np.ndarray,
    fold_of_gm: np.ndarray,
    n: int,
    seed: int,
    answered: np.ndarray | None = None,
) -> dict:
    """Score `pred` against the true rows and against `n` random ground truths (GM
    rows shuffled within each fold). Returns actual scores, mean random scores and
    p-values per field and for the summaries (lower L1 / higher F1 is better). With
    `answered` [rows, 25] (continuous, discrete, loss-type fields in schema order),
    each field is scored on the rows where it answered only (the mask stays with
    the answers; the truth is shuffled)."""
    rng = np.random.default_rng(seed)
    n_c, n_d = gt["cont"].shape[1], gt["disc"].shape[1]

    def score(perm: np.ndarray) -> dict:
        rows = perm[gm_of_row]
        g_cont = np.asarray(gt["cont"][rows], dtype=np.float64)
        g_disc, g_loss = gt["disc"][rows], np.asarray(gt["loss"][rows], dtype=np.float64)
        if answered is not None:
            g_cont = np.where(answered[:, :n_c], g_cont, np.nan)
            g_disc = np.where(answered[:, n_c : n_c + n_d], g_disc, UNKNOWN_CLASS)
            g_loss = np.where(answered[:, n_c + n_d :], g_loss, np.nan)
        return parsing_scores(pred["cont"], pred["disc"], pred["loss"], g_cont, g_disc, g_loss)

    ident = np.arange(len(fold_of_gm))
    actual = score(ident)
    act_sum = _summary(actual)
    rand = {k: [] for k in actual}
    rand_sum = {k: [] for k in act_sum}
    for _ in range(n):
        perm = ident.copy()
        for f in np.unique(fold_of_gm):
            idx = np.flatnonzero(fold_of_gm == f)
            perm[idx] = idx[rng.permutation(len(idx))]
        s = score(perm)
        for k, v in s.items():
            rand[k].append(v)
        for k, v in _summary(s).items():
            rand_sum[k].append(v)
    out: dict = {"n_permutations": n, "fields": {}, "summary": {}}
    for k, v in actual.items():
        r = np.array(rand[k])
        better = r <= v[None, :] if k == "l1" else r >= v[None, :]
        p = (1 + better.sum(axis=0)) / (1 + n)
        out["fields"][k] = {
            "actual": v.tolist(),
            "random": nanmean(r, axis=0).tolist(),
            "p": np.where(np.isnan(v), np.nan, p).tolist(),  # no known truth: no test
        }
    for k, v in act_sum.items():
        r = np.array(rand_sum[k])
        better = r <= v if k == "mean_l1" else r >= v
        out["summary"][k] = {
            "actual": v,
            "random": float(r.mean()),
            "p": float((1 + better.sum()) / (1 + n)),
        }
    return out


def loss_auc(prob: np.ndarray, gt: np.ndarray) -> list[float | None]:
    from sklearn.metrics import roc_auc_score

    out: list[float | None] = []
    known = ~np.isnan(np.asarray(gt, dtype=np.float64)).any(axis=1)  # losses known
    for j in range(prob.shape[1]):
        y = gt[known, j] > 0.5
        auc = 0 < y.sum() < len(y)
        out.append(float(roc_auc_score(y, prob[known, j])) if auc else None)
    return out


def family_prior_loss_f1(
    names: list[str], families: list[str], bits: np.ndarray, folds: list[list[str]]
) -> dict:
    """What knowing a GM's family alone gives for loss types: for each unseen GM of
    each fold, the share q of its family's training GMs that used each loss type
    (all training GMs where the family has none). Scored as F1 per type over all
    unseen GMs, predicting a type where q >= 0.5 ("majority") or where q exceeds the
    type's share among all training GMs ("above prevalence", the class-balanced
    decision). An oracle: the true family is given, images are not looked at. GMs
    whose losses are unknown are neither counted nor scored."""
    fam, gt_rows, pred = np.asarray(families), [], {"majority": [], "above_prevalence": []}
    known = ~np.isnan(np.asarray(bits, dtype=np.float64)).any(axis=1)
    for test in folds:
        unseen = np.isin(names, test)
        prevalence = bits[~unseen & known].mean(0) if (~unseen & known).any() else 0 * bits[0]
        for g in np.flatnonzero(unseen & known):
            same = ~unseen & known & (fam == fam[g])
            q = bits[same].mean(0) if same.any() else prevalence
            pred["majority"].append(q >= 0.5)
            pred["above_prevalence"].append(q > prevalence)
            gt_rows.append(g)
    gt = bits[gt_rows] > 0.5
    out = {}
    for k, rows in pred.items():
        p = np.array(rows).reshape(len(gt_rows), bits.shape[1])
        f1 = [binary_f1(p[:, j], gt[:, j]) for j in range(bits.shape[1])]
        out[k] = {"per_type": f1, "mean": float(np.mean(f1))}
    return out


def detection_scores(p_fake: np.ndarray, p_real: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.r_[np.ones(len(p_fake)), np.zeros(len(p_real))]
    p = np.r_[p_fake, p_real]
    tpr, tnr = float(np.mean(p_fake >= 0.5)), float(np.mean(p_real < 0.5))
    return {
        "auc": float(roc_auc_score(y, p)),
        "ap": float(average_precision_score(y, p)),
        "acc": float(np.mean((p >= 0.5) == (y == 1))),
        "balanced_acc": (tpr + tnr) / 2,
        "ece": calibration_error(p, y),
        "ece_balanced": calibration_error(p, y, balanced=True),
    }


def calibration_error(
    p: np.ndarray, y: np.ndarray, bins: int = 10, balanced: bool = False
) -> float:
    """Expected calibration error of probabilities `p` for binary labels `y`: the
    mean over `bins` equal-width probability bins of |mean p - share of positives|,
    weighted by the share of images in each bin. With `balanced`, each class weighs
    half whatever its count (the error at the 50/50 prior a detector's p states,
    not at the mix of one test set)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    w = np.ones(len(p))
    if balanced:
        pos = y > 0.5
        if pos.all() or not pos.any():
            raise ValueError("calibration_error(balanced=True) needs both classes")
        w = np.where(pos, 0.5 / pos.sum(), 0.5 / (~pos).sum())
    w = w / w.sum()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in np.unique(which):
        m = which == b
        wb = w[m]
        total += wb.sum() * abs(np.average(p[m], weights=wb) - np.average(y[m], weights=wb))
    return float(total)


def purity(labels: np.ndarray, truth: np.ndarray) -> float:
    total = 0
    for c in np.unique(labels):
        total += np.bincount(truth[labels == c]).max()
    return total / len(truth)


def grouping_scores(labels: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    return {
        "ari": float(adjusted_rand_score(truth, labels)),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
        "purity": float(purity(labels, truth)),
        "clusters": int(len(np.unique(labels))),
        "gms": int(len(np.unique(truth))),
    }
