"""The spectral baseline separates a periodic up-sampling artifact from smooth noise."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from gmtrace.core.schema import DISCRETE, LOSS_TYPES, Targets
from gmtrace.core.spectrum import log_spectra, log_spectrum
from gmtrace.evaluation.config import METHODS
from gmtrace.methods.catalog import METHODS as CATALOG
from gmtrace.methods.spectral import SpectralMethod, spectral_features


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


def test_spectral_baseline_separates_artifacts(tmp_path):
    """Two GMs with the checkerboard against smooth real images: detection and
    attribution by the evaluation's spectral method."""
    rng = np.random.default_rng(1)
    bank = SimpleNamespace(fake=[images(20, True, rng), images(20, True, rng)])
    bank.real = images(40, False, rng)
    targets = Targets(
        continuous=np.full((2, 9), 0.5),
        discrete=np.zeros((2, len(DISCRETE)), np.int64),
        losses=np.eye(2, len(LOSS_TYPES)),
        groups=np.zeros((2, 3)),
    )
    m = SpectralMethod()
    m.fit(None, bank, targets, tmp_path, None)
    test = np.concatenate([images(20, False, rng), images(20, True, rng)])
    inf = m.predict(test)
    assert (inf.p_generated[:20] < 0.5).mean() >= 0.95 and (
        inf.p_generated[20:] >= 0.5
    ).mean() >= 0.95
    assert inf.attribution.shape == (40, 2)
    assert np.allclose(np.linalg.norm(inf.embedding, axis=1), 1)


def test_the_evaluations_methods_are_the_catalogs():
    assert set(METHODS) == set(CATALOG)
