"""Fitting a trained network's heads and calibration (after training, before saving).

`fit_heads`: the linear-probe refit of the detection and attribution heads on
frozen features, and the grouping embedding (discriminant directions);
`calibrate`: Platt scaling, the open-set threshold and the learned grouping
threshold from held-out images. `nets/` holds the modules; this is the fitting
that `train` runs on them (and the evaluation's spectral baseline reuses
`fit_logistic`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gmtrace.nets.model import GMTraceModel, infer


def _unstandardize(coef: np.ndarray, intercept: np.ndarray, mu, sd):
    """A linear model fitted on standardized features (x - mu) / sd, as weights and
    bias on the raw features x."""
    w = coef / sd[None, :]
    b = intercept - (coef * (mu / sd)[None, :]).sum(axis=1)
    return w, b


def _set_linear(layer: nn.Linear, coef: np.ndarray, intercept: np.ndarray, mu, sd) -> None:
    """Load a linear model fitted on standardized features into `layer`."""
    w, b = _unstandardize(coef, intercept, mu, sd)
    layer.weight.data.copy_(torch.from_numpy(w).float())
    layer.bias.data.copy_(torch.from_numpy(b).float())


@torch.no_grad()
def fit_heads(
    model: GMTraceModel, fake: list[np.ndarray], real: np.ndarray, C: float = 0.5
) -> dict:
    """Linear-probe refit of the detection and attribution heads on the frozen
    features of clean training images (`fake`: one array per training GM, in
    attribution order): multinomial and binary logistic regression (L2, strength
    1/C, balanced classes) on standardized features, folded back into the heads.
    SGD over a few hundred steps leaves these linear heads far from their optimum;
    the probe reaches it (the features keep what training learned).

    Also fills the grouping embedding: the feature mean and std, and the leading
    `group_dims` linear discriminant directions of the standardized features by GM
    (`grouping.discriminant_projection`): directions that separate the training GMs
    and vary little within one, which is what tells GMs never seen apart too."""
    from gmtrace.grouping import discriminant_projection

    feats = [infer(model, a, features=True).embedding if len(a) else None for a in fake]
    xf = np.concatenate([f for f in feats if f is not None]).astype(np.float64)
    yf = np.concatenate([[i] * len(f) for i, f in enumerate(feats) if f is not None])
    xr = infer(model, real, features=True).embedding.astype(np.float64)
    x_all = np.concatenate([xf, xr])
    mu, sd = x_all.mean(0), x_all.std(0) + 1e-6
    z_all = (x_all - mu) / sd
    zf = z_all[: len(xf)]
    model.feature_mean.copy_(torch.from_numpy(mu).float())
    model.feature_std.copy_(torch.from_numpy(sd).float())
    attr = fit_logistic(zf, yf, C=C, max_iter=300, balanced=False)
    coef = np.zeros((model.cfg.n_gms, xf.shape[1]))
    icpt = np.full(model.cfg.n_gms, -1e4)  # a GM without images is never predicted
    coef[attr.classes_], icpt[attr.classes_] = attr.coef_, attr.intercept_
    _set_linear(model.attribute, coef, icpt, mu, sd)
    m, w = discriminant_projection(zf, yf, model.group_dims)
    model.group_mean.copy_(torch.from_numpy(m).float())
    model.group_projection.copy_(torch.from_numpy(w).float())
    y = np.r_[np.ones(len(xf)), np.zeros(len(xr))]
    det = fit_logistic(z_all, y, C=C, max_iter=300, balanced=True)
    out = {"attribution_train_acc": float(attr.score(zf, yf))}
    if not model.cfg.spectrum_expert:
        _set_linear(model.detect, det.coef_, det.intercept_, mu, sd)
        return out | {"detection_train_acc": float(det.score(z_all, y))}
    # two experts, each logit scaled to unit spread over these images, summed
    r = model.image_spectrum_part
    zs = r(z_all)
    spec = fit_logistic(zs, y, C=C, max_iter=1000, balanced=True)
    s_all, s_spec = det.decision_function(z_all), spec.decision_function(zs)
    a, b = 1 / s_all.std(), 1 / s_spec.std()
    _set_linear(model.detect, a * det.coef_, a * det.intercept_, mu, sd)
    w, icpt = _unstandardize(b * spec.coef_, b * spec.intercept_, r(mu), r(sd))
    model.detect_spectrum.copy_(torch.from_numpy(np.r_[w[0], icpt]).float())
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


GROUP_CALIBRATION_GMS = 200  # more than any trained zoo preset's training GMs


@torch.no_grad()
def calibrate(
    model: GMTraceModel,
    fake: list[np.ndarray],
    real: np.ndarray,
    accept: float = 0.95,
    group_gms: int = GROUP_CALIBRATION_GMS,
) -> dict:
    """Fill the calibration buffers from held-out images of the training GMs
    (`fake`, one array per GM) and real images:

    * Platt scaling p = sigmoid(a z + b) of the detection logit z, fitted by
      logistic regression (scikit-learn, L2, C=1) on those images;
    * open-set threshold: the `accept` quantile of the open-set score over the
      held-out fake images, so that share of known-GM images is accepted;
    * grouping threshold: the clustering cut that best groups the held-out fake
      images by GM (`grouping.choose_threshold`), over at most `group_gms` GMs (an
      even spread of them): exact clustering holds an N x N distance matrix, and a
      zoo with thousands of synthesized GMs would need gigabytes for it.
    """
    from sklearn.linear_model import LogisticRegression

    from gmtrace.grouping import choose_threshold

    model.platt.copy_(torch.tensor([1.0, 0.0]))
    fakes = [a for a in fake if len(a)]
    inf_fake = infer(model, np.concatenate(fakes))
    inf_real = infer(model, real) if len(real) else None
    z_f = _logit(inf_fake.p_generated)
    z = np.concatenate([z_f, _logit(inf_real.p_generated)]) if inf_real else z_f
    y = np.r_[np.ones(len(z_f)), np.zeros(len(z) - len(z_f))]
    if len(set(y)) == 2:
        lr = LogisticRegression(C=1.0, class_weight="balanced").fit(z[:, None], y)
        model.platt.copy_(torch.tensor([float(lr.coef_[0, 0]), float(lr.intercept_[0])]))
    thr = float(np.quantile(inf_fake.open_score, accept))
    model.open_threshold.fill_(thr)
    gm = np.concatenate([[i] * len(a) for i, a in enumerate(fake) if len(a)])
    kept = np.unique(gm)
    kept = kept[np.linspace(0, len(kept) - 1, min(group_gms, len(kept))).round().astype(int)]
    on = np.isin(gm, kept)
    group = choose_threshold(inf_fake.embedding[on], gm[on])
    model.group_threshold.fill_(group)
    return {"platt": model.platt.tolist(), "open_threshold": thr, "group_threshold": group}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))
