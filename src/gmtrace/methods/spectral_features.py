"""The spectral baseline: azimuthally averaged log spectrum of the high-pass
residual, standardized, then logistic regression (scikit-learn).

Detection, attribution and per-field parsing all go through the same features:
a classic, training-cheap reference that the learned model must beat.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gmtrace.core.spectrum import azimuthal_average, log_spectra


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


class SpectralBaseline:
    """Logistic regression on `spectral_features` (scikit-learn estimator style:
    constructor arguments kept verbatim, learned state with a trailing underscore)."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000):
        self.C = C
        self.max_iter = max_iter

    def fit(self, images: np.ndarray, y: np.ndarray) -> SpectralBaseline:
        self.model_ = make_pipeline(
            StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter)
        )
        self.model_.fit(spectral_features(images), np.asarray(y))
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(spectral_features(images))

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(images), axis=1)]
