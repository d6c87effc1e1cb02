"""A density over real photographs' self-descriptions (`selfdesc`), fitted on real
images only, and the score it gives an image: how unlike a real photograph it is.

The descriptions are standardized robustly (median, and 1.4826 x the median absolute
deviation, each value then clipped to +-`CLIP` scales: a flat image's residual
statistics are extreme, and one such value must not dominate), projected on
their leading principal directions, and modelled by a Gaussian mixture whose
number of components is chosen by BIC (real images only). The mixture is fitted
on a seeded share of the photographs; the rest, never seen by the fit, give the
reference: an image's `unlikeness` is the share of those held-out photographs that
the model finds more likely than it (0: as typical as the most typical
photograph, 1: less likely than every one). Under the real class it is about
uniform by construction, whatever the photographs, so a threshold on it is a
false-alarm rate on real photographs like them (`gmtrace calibrate` refits it on a
user's own).

Everything is kept as arrays (`to_arrays` / `from_arrays`, safetensors beside the
model); nothing is pickled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLIP = 8.0


class RealModelError(ValueError):
    pass


@dataclass
class RealPhotoModel:
    center: np.ndarray  # [D] median of each description value
    scale: np.ndarray  # [D] its robust spread
    mean: np.ndarray  # [D] of the standardized values (the PCA's centre)
    basis: np.ndarray  # [D, d] leading principal directions
    means: np.ndarray  # [k, d] the mixture's components
    prec_chol: np.ndarray  # [k, d, d] Cholesky factors of their precisions
    log_weights: np.ndarray  # [k]
    reference: np.ndarray  # [m] sorted negative log-likelihoods of held-out photographs

    @property
    def components(self) -> int:
        return len(self.means)

    @classmethod
    def fit(
        cls,
        desc: np.ndarray,
        seed: int = 0,
        dims: int = 24,
        max_components: int = 8,
        held_out: float = 0.25,
    ) -> RealPhotoModel:
        """Fit on the self-descriptions [N, D] of real photographs only."""
        from sklearn.mixture import GaussianMixture

        desc = np.asarray(desc, dtype=np.float64)
        if desc.ndim != 2 or len(desc) < 20:
            raise RealModelError(
                f"a model of real photographs needs at least 20 of them, got {len(desc)}"
            )
        if not np.isfinite(desc).all():
            raise RealModelError("the descriptions hold NaN or infinite values")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(desc))
        n_ref = max(10, int(round(held_out * len(desc))))
        fit_rows, ref_rows = order[n_ref:], order[:n_ref]
        center = np.median(desc[fit_rows], axis=0)
        mad = np.median(np.abs(desc[fit_rows] - center), axis=0) * 1.4826
        scale = np.where(mad > 1e-9, mad, desc[fit_rows].std(axis=0) + 1e-9)
        z = _standardize(desc[fit_rows], center, scale)
        mean = z.mean(axis=0)
        _, sv, vt = np.linalg.svd(z - mean, full_matrices=False)
        d = int(min(dims, len(fit_rows) // 4, vt.shape[0]))
        basis = vt[:d].T
        y = (z - mean) @ basis
        best, best_bic = None, np.inf
        for k in range(1, max_components + 1):
            if len(y) < 10 * k:
                break
            gm = GaussianMixture(
                k, covariance_type="full", reg_covar=1e-3, random_state=seed, n_init=2
            ).fit(y)
            bic = gm.bic(y)
            if bic < best_bic:
                best, best_bic = gm, bic
        model = cls(
            center=center,
            scale=scale,
            mean=mean,
            basis=basis,
            means=best.means_,
            prec_chol=best.precisions_cholesky_,
            log_weights=np.log(best.weights_),
            reference=np.zeros(0),
        )
        model.reference = np.sort(model.nll(desc[ref_rows]))
        return model

    def project(self, desc: np.ndarray) -> np.ndarray:
        """[N, d] the descriptions in the model's standardized principal directions."""
        desc = np.asarray(desc, dtype=np.float64)
        if desc.ndim != 2 or desc.shape[1] != len(self.center):
            raise RealModelError(
                f"this model of real photographs reads descriptions of {len(self.center)} "
                f"values, got {desc.shape[1:]}: it was fitted by another version of gmtrace "
                "(train the model again, or run `gmtrace calibrate` again)"
            )
        z = _standardize(desc, self.center, self.scale)
        return (z - self.mean) @ self.basis

    def nll(self, desc: np.ndarray) -> np.ndarray:
        """[N] negative log-likelihood of each description under the mixture."""
        y = self.project(desc)
        d = y.shape[1]
        logs = []
        for mu, pc, lw in zip(self.means, self.prec_chol, self.log_weights, strict=True):
            u = (y - mu) @ pc
            logdet = np.log(np.diagonal(pc)).sum()
            logs.append(lw + logdet - 0.5 * (u**2).sum(1) - 0.5 * d * np.log(2 * np.pi))
        return -_logsumexp(np.stack(logs, 1))

    def unlikeness(self, desc: np.ndarray) -> np.ndarray:
        """[N] in [0, 1]: the share of the held-out photographs more likely than each
        image (ties count half)."""
        nll = self.nll(desc)
        lo = np.searchsorted(self.reference, nll, side="left")
        hi = np.searchsorted(self.reference, nll, side="right")
        return (lo + hi) / (2.0 * len(self.reference))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "center": self.center,
            "scale": self.scale,
            "mean": self.mean,
            "basis": self.basis,
            "means": self.means,
            "prec_chol": self.prec_chol,
            "log_weights": self.log_weights,
            "reference": self.reference,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RealPhotoModel:
        try:
            m = cls(
                **{k: np.asarray(arrays[k], dtype=np.float64) for k in cls.__dataclass_fields__}
            )
        except KeyError as e:
            raise RealModelError(f"a saved model of real photographs lacks {e}") from None
        d = m.basis.shape[1] if m.basis.ndim == 2 else -1
        if (
            m.center.shape != m.scale.shape
            or m.basis.shape[0] != len(m.center)
            or m.means.shape[1:] != (d,)
            or m.prec_chol.shape != (len(m.means), d, d)
            or len(m.reference) == 0
        ):
            raise RealModelError("a saved model of real photographs has inconsistent shapes")
        return m


def _standardize(x: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip((x - center) / scale, -CLIP, CLIP)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1)
    return m + np.log(np.exp(a - m[:, None]).sum(axis=1))
