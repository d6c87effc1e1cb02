"""Fitting a trained network's readout (after training, before saving).

`fit_readout` runs the three steps on a `Readout`: `fit_heads`, the linear probes
of detection and attribution on the frozen head features and the grouping
embedding (discriminant directions, the gallery of training GMs); with a parsing
probe, `fit_parse_probe`; then `calibrate`, Platt scaling and the open-set
threshold from held-out images. The network is not changed (the evaluation's
spectral baseline reuses `fit_logistic`).
"""

from __future__ import annotations

import numpy as np
import torch

from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_TYPES, UNKNOWN_CLASS
from gmtrace.data.images import to_float
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.embedding import discriminant_projection, gm_gallery
from gmtrace.readout.inference import head_features, infer
from gmtrace.readout.pixel_stats import pixel_statistics
from gmtrace.readout.readout import PROBE_TREE_LEAVES, PROBE_TREE_NODES, Readout

_FIELD_NAMES = (
    *(f.name for f in CONTINUOUS),
    *(f.name for f in DISCRETE),
    *(f"loss_{t}" for t in LOSS_TYPES),
)


def _unstandardize(coef: np.ndarray, intercept: np.ndarray, mu, sd):
    """A linear model fitted on standardized features (x - mu) / sd, as weights and
    bias on the raw features x."""
    w = coef / sd[None, :]
    b = intercept - (coef * (mu / sd)[None, :]).sum(axis=1)
    return w, b


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).float()


def _linear(coef: np.ndarray, intercept: np.ndarray, mu, sd) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear model fitted on standardized features, as (weight, bias) tensors on
    the raw features."""
    w, b = _unstandardize(coef, intercept, mu, sd)
    return _tensor(w), _tensor(b)


def fit_readout(
    model: GMTraceModel,
    fake: list[np.ndarray],
    real: np.ndarray,
    calib_fake: list[np.ndarray],
    calib_real: np.ndarray,
    targets=None,
    families: list[str] | None = None,
) -> tuple[Readout, dict]:
    """The readout of a trained `model` (`Readout.for_model`) and the record of its
    fit: the probes on clean training images (`fake`, one array per training GM in
    attribution order, and `real`), the parsing probe where the model's config asks
    for one (`targets` and `families` of those GMs), and the calibration on held-out
    images of the same GMs and photographs (`calib_fake`, `calib_real`)."""
    readout = Readout.for_model(model)
    feats = [head_features(model, a) if len(a) else None for a in fake]
    record = fit_heads(readout, model, fake, real, features=feats)
    if readout.parse_probe:
        record |= fit_parse_probe(readout, fake, targets, families)
    return readout, calibrate(readout, model, calib_fake, calib_real) | record


def fit_heads(
    readout: Readout,
    model: GMTraceModel,
    fake: list[np.ndarray],
    real: np.ndarray,
    C: float = 0.5,
    features: list[np.ndarray | None] | None = None,
) -> dict:
    """The linear probes of detection and attribution on the frozen head features of
    `model` for clean training images (`fake`: one array per training GM, in
    attribution order): multinomial and binary logistic regression (L2, strength
    1/C, balanced classes) on standardized features, into `readout`. SGD over a few
    hundred steps leaves the network's own linear heads far from their optimum; the
    probe reaches it (the features keep what training learned).

    Also fills the grouping embedding: the feature mean and std, and the leading
    `group_dims` linear discriminant directions of the standardized features by GM
    (`grouping.discriminant_projection`): directions that separate the training GMs
    and vary little within one, which is what tells GMs never seen apart too; and
    (with `open_gallery`) the gallery of the training GMs in that embedding, which
    the open-set score reads (`embedding.gm_gallery`, `embedding.open_set_score`).
    `features`: the head features of `fake` when the caller has them."""
    feats = features
    if feats is None:
        feats = [head_features(model, a) if len(a) else None for a in fake]
    xf = np.concatenate([f for f in feats if f is not None]).astype(np.float64)
    yf = np.concatenate([[i] * len(f) for i, f in enumerate(feats) if f is not None])
    xr = head_features(model, real).astype(np.float64)
    x_all = np.concatenate([xf, xr])
    mu, sd = x_all.mean(0), x_all.std(0) + 1e-6
    z_all = (x_all - mu) / sd
    zf = z_all[: len(xf)]
    readout.feature_mean_, readout.feature_std_ = _tensor(mu), _tensor(sd)
    attr = fit_logistic(zf, yf, C=C, max_iter=300, balanced=False)
    coef = np.zeros((readout.n_gms, xf.shape[1]))
    icpt = np.full(readout.n_gms, -1e4)  # a GM without images is never predicted
    coef[attr.classes_], icpt[attr.classes_] = attr.coef_, attr.intercept_
    readout.attribute_weight_, readout.attribute_bias_ = _linear(coef, icpt, mu, sd)
    m, w = discriminant_projection(zf, yf, readout.group_dims)
    readout.group_mean_, readout.group_projection_ = _tensor(m), _tensor(w)
    if readout.open_gallery:
        readout.gallery_ = _tensor(gm_gallery((zf - m) @ w, yf, readout.n_gms))
    y = np.r_[np.ones(len(xf)), np.zeros(len(xr))]
    det = fit_logistic(z_all, y, C=C, max_iter=300, balanced=True)
    out = {"attribution_train_acc": float(attr.score(zf, yf))}
    if not readout.spectrum_expert:
        weight, bias = _linear(det.coef_, det.intercept_, mu, sd)
        readout.detect_weight_, readout.detect_bias_ = weight[0], bias[0]
        return out | {"detection_train_acc": float(det.score(z_all, y))}
    # two experts, each logit scaled to unit spread over these images, summed
    bins = readout.spectrum_bins
    zs = z_all[:, -bins:]  # the image's residual spectrum, where the network puts it
    spec = fit_logistic(zs, y, C=C, max_iter=1000, balanced=True)
    s_all, s_spec = det.decision_function(z_all), spec.decision_function(zs)
    a, b = 1 / s_all.std(), 1 / s_spec.std()
    weight, bias = _linear(a * det.coef_, a * det.intercept_, mu, sd)
    readout.detect_weight_, readout.detect_bias_ = weight[0], bias[0]
    w, icpt = _unstandardize(b * spec.coef_, b * spec.intercept_, mu[-bins:], sd[-bins:])
    readout.detect_spectrum_ = _tensor(np.r_[w[0], icpt])
    logit = a * s_all + b * s_spec
    return out | {
        "detection_train_acc": float(np.mean((logit > 0) == y)),
        "detection_expert_train_acc": {
            "features": float(det.score(z_all, y)),
            "image_spectrum": float(spec.score(zs, y)),
        },
    }


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float, max_iter: int, balanced: bool):
    """scikit-learn LogisticRegression (L2, strength 1/C) fitted on x, y; `max_iter`
    caps the cost, so its convergence warning is silenced here (and only here)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced" if balanced else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        return lr.fit(x, y)


@torch.no_grad()
def calibrate(
    readout: Readout,
    model: GMTraceModel,
    fake: list[np.ndarray],
    real: np.ndarray,
    accept: float = 0.95,
) -> dict:
    """Calibrate `readout` on held-out images of the training GMs (`fake`, one array
    per GM) and real images:

    * Platt scaling p = sigmoid(a z + b) of the detection logit z, fitted by
      logistic regression (scikit-learn, L2, C=1) on those images;
    * open-set threshold: the `accept` quantile of the open-set score over the
      held-out fake images, so that share of known-GM images is accepted.
    """
    from sklearn.linear_model import LogisticRegression

    readout.platt_ = torch.tensor([1.0, 0.0])
    readout.open_threshold_ = torch.tensor(1.0)
    fakes = [a for a in fake if len(a)]
    inf_fake = infer(model, readout, np.concatenate(fakes))
    inf_real = infer(model, readout, real) if len(real) else None
    z_f = _logit(inf_fake.p_generated)
    z = np.concatenate([z_f, _logit(inf_real.p_generated)]) if inf_real else z_f
    y = np.r_[np.ones(len(z_f)), np.zeros(len(z) - len(z_f))]
    if len(set(y)) == 2:
        lr = LogisticRegression(C=1.0, class_weight="balanced").fit(z[:, None], y)
        readout.platt_ = torch.tensor([float(lr.coef_[0, 0]), float(lr.intercept_[0])])
    thr = float(np.quantile(inf_fake.open_score, accept))
    readout.open_threshold_ = torch.tensor(thr)
    return {"platt": readout.platt_.tolist(), "open_threshold": thr}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


PROBE_C = (0.003, 0.01, 0.03, 0.1, 0.3)  # inverse L2 strengths the inner folds choose from
# a count's answer: this share its forest's, the rest its linear model's (why:
# docs/architecture.md, the parsing probe)
PROBE_FOREST_SHARE = 0.5
_NEVER = -1e4  # bias of a class training never saw
_SURE = 30.0  # logit of a loss bit that every training GM shares (or none)


def _pixel_rows(images: np.ndarray, batch: int = 64) -> np.ndarray:
    """[N, N_STATS] pixel statistics (`readout.pixel_stats`) of uint8 images."""
    return np.concatenate(
        [
            pixel_statistics(torch.from_numpy(to_float(images[i : i + batch]))).numpy()
            for i in range(0, len(images), batch)
        ]
    ).astype(np.float64)


def _field_models(z: np.ndarray, targets, C: float) -> list:
    """One fitted model per parsing field on GM rows z, fitted on the GMs whose value
    of that field is known: ridge per continuous field, multinomial logistic per
    discrete field, binary logistic per loss type (classes balanced); a constant
    (float or class index) where training holds a single value, or none."""
    from sklearn.linear_model import Ridge

    models: list = []
    for y in targets.continuous.T:
        known = ~np.isnan(y)
        if known.sum() >= 2:
            models.append(Ridge(alpha=1 / C).fit(z[known], y[known]))
        else:
            models.append(float(y[known].mean()) if known.any() else 0.5)
    rows = ~np.isnan(targets.losses).any(axis=1)
    columns = [
        *((y, y != UNKNOWN_CLASS) for y in targets.discrete.T),
        *(((y > 0.5).astype(int), rows) for y in targets.losses.T),
    ]
    for y, known in columns:
        y = y[known]
        if len(set(y.tolist())) > 1:
            models.append(fit_logistic(z[known], y, C, 500, True))
        else:
            models.append(int(y[0]) if len(y) else 0)
    return models


def _field_predictions(models: list, z: np.ndarray) -> list[np.ndarray]:
    out = []
    for j, m in enumerate(models):
        if isinstance(m, int | float):
            out.append(np.full(len(z), m))
        else:
            p = m.predict(z)
            out.append(np.clip(p, 0, 1) if j < len(CONTINUOUS) else p)
    return out


def _field_scores(pred: list[np.ndarray], targets) -> np.ndarray:
    """Per field, higher is better: -L1, macro-F1, F1 (the evaluation's
    `metrics.parsing_scores`)."""
    from gmtrace.core.metrics import parsing_scores

    nc, nd = len(CONTINUOUS), len(DISCRETE)
    s = parsing_scores(
        np.stack(pred[:nc], axis=1),
        pred[nc : nc + nd],
        np.stack(pred[nc + nd :], axis=1).astype(bool),
        targets.continuous,
        targets.discrete,
        targets.losses,
    )
    return np.r_[-s["l1"], s["macro_f1"], s["loss_f1"]]


def fit_parse_probe(
    readout: Readout,
    fake: list[np.ndarray],
    targets,
    families: list[str],
    grid: tuple[float, ...] = PROBE_C,
) -> dict:
    """Fit the GM-level parsing probe (parsing that aggregates over a GM's images)
    into `readout`, which then parses in place of the network's parsing heads.

    Each training GM is one row: the mean over its images (`fake`, one array per GM,
    in `targets`' order) of their pixel statistics, rows standardized. Each field
    gets a linear model (`_field_models`) on the pixel statistics (recorded as the
    view "pixels"), with an L2 strength from `grid`
    chosen per field by leave-one-family-out prediction over the training GMs (by
    GM where fewer than three families train), scored as the evaluation scores a
    field. So a field is read with the strength that parsed the training families
    it did not see best, not with the one that fits the zoo best.

    The network's head features are not read: the network trained on every
    training family, the one an inner fold leaves out included, so leaving it out
    cannot say how the learned features parse a family nobody trained on
    (docs/architecture.md).
    The models are folded into one linear map on the statistics. With
    `probe_trees`, each continuous field also gets a regression forest on the same
    rows (`_fit_forests`), and its answer is the mean of the forest's and the linear
    model's (recorded as the view "forest")."""
    keep = [i for i, a in enumerate(fake) if len(a)]
    x = np.stack([_pixel_rows(fake[i]).mean(0) for i in keep])
    t = _subset(targets, keep)
    fam = np.array([families[i] for i in keep])
    if len(set(fam)) < 3:
        fam = np.arange(len(keep)).astype(str)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    zp = np.clip((x - mu) / sd, -5, 5)
    n_fields = len(_FIELD_NAMES)
    scores = []
    for C in grid:
        pred = [np.zeros(len(zp)) for _ in range(n_fields)]
        for f in np.unique(fam):
            out = fam == f
            models = _field_models(zp[~out], _subset(t, ~out), C)
            for j, p in enumerate(_field_predictions(models, zp[out])):
                pred[j][out] = p
        scores.append(_field_scores(pred, t))
    scores = np.array(scores)
    best = np.argmax(scores, axis=0)
    fitted = {b: _field_models(zp, t, grid[b]) for b in set(best.tolist())}
    weight, bias = _pack([fitted[b][j] for j, b in enumerate(best)], zp.shape[1])
    readout.probe_mean_, readout.probe_std_ = _tensor(mu), _tensor(sd)
    view = dict.fromkeys(_FIELD_NAMES, "pixels")
    forests = {}
    if readout.probe_trees:
        forests = _fit_forests(readout, zp, t.continuous)
        view |= {f.name: "forest" for f in CONTINUOUS}
    readout.probe_weight_, readout.probe_bias_ = _tensor(weight), _tensor(bias)
    return forests | {
        "probe_gms": len(keep),
        "probe_inner_groups": len(set(fam)),
        "probe_view": view,
        "probe_C": dict(zip(_FIELD_NAMES, (grid[b] for b in best), strict=True)),
        "probe_inner_score": dict(
            zip(_FIELD_NAMES, (float(scores[b, j]) for j, b in enumerate(best)), strict=True)
        ),
    }


def _fit_forests(readout: Readout, z: np.ndarray, continuous: np.ndarray) -> dict:
    """One extremely randomized regression forest per continuous field on the GM rows
    z (the standardized pixel statistics), into the readout's forest arrays; a
    count's answer is then the mean of its forest's and its linear model's
    (`PROBE_FOREST_SHARE`)."""
    from sklearn.ensemble import ExtraTreesRegressor

    from gmtrace.readout.forest import FOREST_ARRAYS, pack_forests

    forests = [
        ExtraTreesRegressor(
            n_estimators=readout.probe_trees,
            min_samples_leaf=2,
            max_features=0.3,
            max_leaf_nodes=PROBE_TREE_LEAVES,
            random_state=0,
            n_jobs=1,
        ).fit(z[~np.isnan(y)], y[~np.isnan(y)])
        for y in continuous.T
    ]
    arrays, depth = pack_forests(forests, PROBE_TREE_NODES)
    for name in FOREST_ARRAYS:
        setattr(readout, f"forest_{name}_", torch.from_numpy(arrays[name]))
    readout.forest_depth_ = torch.tensor(depth)
    readout.forest_share_ = torch.tensor(PROBE_FOREST_SHARE)
    return {
        "probe_forest_trees": readout.probe_trees,
        "probe_forest_depth": depth,
        "probe_forest_share": PROBE_FOREST_SHARE,
    }


def _subset(targets, rows):
    return type(targets)(
        continuous=targets.continuous[rows],
        discrete=targets.discrete[rows],
        losses=targets.losses[rows],
        groups=targets.groups[rows],
    )


def _pack(models: list, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-field models as one [n_in, outputs] weight matrix and bias, in the
    order of `schema.parse_widths`."""
    weight, bias = [], []
    nc, nd = len(CONTINUOUS), len(DISCRETE)
    cols = np.arange(n_in)
    for j, m in enumerate(models):
        k = 1 if j < nc or j >= nc + nd else DISCRETE[j - nc].n_classes
        w, b = np.zeros((n_in, k)), np.full(k, _NEVER)
        if j < nc and isinstance(m, float):  # no GM's value varied (or was known)
            b[0] = m
        elif j < nc:
            w[cols, 0], b[0] = m.coef_, m.intercept_
        elif k == 1:  # a loss bit: its logit
            if isinstance(m, int):
                b[0] = _SURE if m else -_SURE
            else:
                w[cols, 0], b[0] = m.coef_[0], m.intercept_[0]
        elif isinstance(m, int):
            b[m] = 0.0
        elif len(m.classes_) == 2:  # scikit-learn keeps one row: the second class's logit
            w[cols, m.classes_[1]], b[m.classes_[1]] = m.coef_[0], m.intercept_[0]
            b[m.classes_[0]] = 0.0
        else:
            w[np.ix_(cols, m.classes_)], b[m.classes_] = m.coef_.T, m.intercept_
        weight.append(w)
        bias.append(b)
    return np.concatenate(weight, axis=1), np.concatenate(bias)
