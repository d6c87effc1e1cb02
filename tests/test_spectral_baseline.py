"""The spectral baseline separates a periodic up-sampling artifact from smooth noise."""

from __future__ import annotations

import numpy as np

from gmtrace.core.spectrum import log_spectra, log_spectrum
from gmtrace.methods.spectral_features import SpectralBaseline, spectral_features


def images(n: int, artifact: bool, rng) -> np.ndarray:
    out = []
    for _ in range(n):
        base = rng.normal(128, 30, (32, 32, 3))
        base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1)) / 3  # smooth content
        if artifact:
            y, x = np.mgrid[:32, :32]
            base += 12 * (((x + y) % 2) * 2 - 1)[..., None]  # period-2 checkerboard
        out.append(np.clip(base, 0, 255).astype(np.uint8))
    return np.stack(out)


def test_batch_spectra_match_single():
    rng = np.random.default_rng(0)
    imgs = images(3, True, rng)
    batch = log_spectra(imgs, chunk=2)
    for i in range(3):
        assert np.allclose(batch[i], log_spectrum(imgs[i]))
    assert spectral_features(imgs).shape == (3, 24)  # rings 0..23 reach the corners


def test_spectral_baseline_separates_artifacts():
    rng = np.random.default_rng(1)
    x = np.concatenate([images(40, False, rng), images(40, True, rng)])
    y = np.array([0] * 40 + [1] * 40)
    model = SpectralBaseline().fit(x, y)
    tx = np.concatenate([images(20, False, rng), images(20, True, rng)])
    ty = np.array([0] * 20 + [1] * 20)
    assert (model.predict(tx) == ty).mean() >= 0.95
    assert model.predict_proba(tx).shape == (40, 2)
