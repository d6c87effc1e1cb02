"""The spectral baseline: the radially averaged log spectrum of the image's
high-pass residual (corners kept), standardized, with logistic regression for
detection, attribution and every discrete field and loss type, ridge regression for
the continuous ones, and the same discriminant grouping embedding and open-set score
as the networks. A classic, training-cheap reference the learned model must beat."""

from __future__ import annotations

import json
import time

import numpy as np

from gmtrace.core.schema import DISCRETE, UNKNOWN_CLASS
from gmtrace.core.spectrum import azimuthal_average, log_spectra
from gmtrace.methods.base import Method
from gmtrace.nets.config import ModelConfig
from gmtrace.readout.embedding import discriminant_projection, gm_gallery, open_set_score
from gmtrace.readout.fit import fit_logistic
from gmtrace.readout.inference import Inference

GROUP_DIMS = ModelConfig.group_dims  # the same grouping embedding size as the networks'


def spectral_features(images: np.ndarray, n_bins: int | None = None) -> np.ndarray:
    """[N, H, W, 3] uint8 -> radial log-spectrum profiles [N, K], corners included
    (the diagonal Nyquist corner holds transposed-convolution checkerboards). With
    `n_bins`, each profile is resampled (linearly) to that many rings over the same
    normalized frequencies, so images of another size give comparable features."""
    x = np.stack([azimuthal_average(s, corners=True) for s in log_spectra(images)])
    if n_bins is None or x.shape[1] == n_bins:
        return x
    src, dst = np.linspace(0, 1, x.shape[1]), np.linspace(0, 1, n_bins)
    return np.stack([np.interp(dst, src, row) for row in x])


def _logreg(x: np.ndarray, y: np.ndarray, balanced: bool = True, default: int = 0):
    if len(np.unique(y)) < 2:  # a constant: the one class seen in training (or none)
        return int(y[0]) if len(y) else default
    return fit_logistic(x, y, C=1.0, max_iter=500, balanced=balanced)


def _proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(x), n_classes))
    if isinstance(model, int):
        out[:, model] = 1.0
        return out
    out[:, model.classes_.astype(int)] = model.predict_proba(x)
    return out


class SpectralMethod(Method):
    name = "spectral"

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        from sklearn.linear_model import Ridge

        t0 = time.perf_counter()
        xf = [spectral_features(a) for a in bank.fake]
        gm = np.concatenate([[i] * len(f) for i, f in enumerate(xf)])
        xf = np.concatenate(xf)
        xr = spectral_features(bank.real)
        allx = np.concatenate([xf, xr])
        self.mu_, self.sd_ = allx.mean(0), allx.std(0) + 1e-9
        zf, zr = (xf - self.mu_) / self.sd_, (xr - self.mu_) / self.sd_
        self.n_gms_ = len(bank.fake)
        self.group_mean_, self.group_w_ = discriminant_projection(zf, gm, GROUP_DIMS)
        self.detect_ = _logreg(np.concatenate([zf, zr]), np.r_[np.ones(len(zf)), np.zeros(len(zr))])
        self.attribute_ = _logreg(zf, gm, balanced=False)
        self.gallery_ = gm_gallery((zf - self.group_mean_) @ self.group_w_, gm, self.n_gms_)
        # each field on the images of the GMs whose value of it is known
        cont, disc, bits = targets.continuous[gm], targets.discrete[gm], targets.losses[gm]
        self.continuous_ = []
        for y in cont.T:
            known = ~np.isnan(y)
            self.continuous_.append(
                Ridge(alpha=1.0).fit(zf[known], y[known]) if known.any() else 0.5
            )
        self.discrete_ = [
            _logreg(zf[y != UNKNOWN_CLASS], y[y != UNKNOWN_CLASS], default=0) for y in disc.T
        ]
        rows = ~np.isnan(bits).any(axis=1)
        self.losses_ = [_logreg(zf[rows], y[rows].astype(int), default=0) for y in bits.T]
        seconds = time.perf_counter() - t0
        (out_dir / self.name).mkdir(parents=True, exist_ok=True)
        (out_dir / self.name / "fit.json").write_text(json.dumps({"train_seconds": seconds}))
        return {"train_seconds": seconds, "steps": 0, "probe_seconds": 0.0}

    def predict(self, images: np.ndarray) -> Inference:
        z = (spectral_features(images, len(self.mu_)) - self.mu_) / self.sd_
        attr = _proba(self.attribute_, z, self.n_gms_)
        g = (z - self.group_mean_) @ self.group_w_
        return Inference(
            p_generated=_proba(self.detect_, z, 2)[:, 1],
            attribution=attr,
            open_score=open_set_score(attr, g, self.gallery_),
            embedding=g / np.linalg.norm(g, axis=1, keepdims=True).clip(1e-9),
            continuous=np.clip(
                np.stack(
                    [
                        np.full(len(z), m) if isinstance(m, float) else m.predict(z)
                        for m in self.continuous_
                    ],
                    axis=1,
                ),
                0,
                1,
            ),
            discrete_prob=[
                _proba(m, z, f.n_classes) for m, f in zip(self.discrete_, DISCRETE, strict=True)
            ],
            loss_prob=np.stack([_proba(m, z, 2)[:, 1] for m in self.losses_], axis=1),
        )
