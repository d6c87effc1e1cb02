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

A description is modelled in parts (`selfdesc.BLOCKS`: the pixels' prediction and
periodicity, 180 numbers; the residual's spectrum, 4): one mixture each (`Density`),
fitted on the same photographs, their unlikenesses on the same held-out ones. An
image's parts are combined as independent p-values are by Fisher's method (the sum
of -log(1 - unlikeness), each kept above half a reference step), and the combined
`unlikeness` is again the share of held-out photographs whose sum is smaller: a
part that tells a kind of image apart is not drowned by a larger one that does not
(docs/realmodel.md, "The residual's spectrum"). A model of one part (what
`fit` makes without `blocks`, and what gmtrace saved before the spectrum part) is
its part's unlikeness itself.

The photographs a model is fitted on may first be varied as the supervised network's
training varies its images (`data.augment.VARIATIONS`, `varied`): re-encoded as JPEG at a
random quality, and blurred and flipped too, so that a photograph a user's platform
compressed is as typical as the camera's own; which one a fused model's real part is
fitted with is chosen on its inner validation codebases
(`methods.fused.choose_variation`; docs/realmodel.md, "Photographs varied as the
network's training varies them").

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
class Density:
    """A Gaussian mixture over one part of the descriptions, with the held-out
    photographs' negative log-likelihoods as its reference."""

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
        cls, desc: np.ndarray, ref: np.ndarray, seed: int, dims: int, max_components: int
    ) -> Density:
        """Fit on descriptions [N, D] of photographs; `ref` [M, D], other photographs,
        give the reference."""
        from sklearn.mixture import GaussianMixture

        center = np.median(desc, axis=0)
        mad = np.median(np.abs(desc - center), axis=0) * 1.4826
        scale = np.where(mad > 1e-9, mad, desc.std(axis=0) + 1e-9)
        z = _standardize(desc, center, scale)
        mean = z.mean(axis=0)
        _, sv, vt = np.linalg.svd(z - mean, full_matrices=False)
        d = int(min(dims, len(desc) // 4, vt.shape[0]))
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
        model.reference = np.sort(model.nll(ref))
        return model

    def project(self, desc: np.ndarray) -> np.ndarray:
        """[N, d] the descriptions in the model's standardized principal directions."""
        desc = np.asarray(desc, dtype=np.float64)
        if desc.ndim != 2 or desc.shape[1] != len(self.center):
            raise RealModelError(
                f"this part of a model of real photographs reads {len(self.center)} "
                f"description values, got {desc.shape[1:]}: it was fitted by another "
                "version of gmtrace (train the model again, or run `gmtrace calibrate` again)"
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
        return rank_share(self.reference, self.nll(desc))

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
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Density:
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


@dataclass
class RealPhotoModel:
    """The parts' densities (`Density`), the columns of the description each reads,
    and the held-out photographs' combined statistics (`combine`) as the reference
    of the combined unlikeness (empty for a model of one part)."""

    parts: list[Density]
    columns: list[tuple[int, int]]
    reference: np.ndarray

    @property
    def components(self) -> int:
        """The mixture components of all parts."""
        return sum(p.components for p in self.parts)

    @property
    def width(self) -> int:
        """How many description values the model reads."""
        return self.columns[-1][1]

    @classmethod
    def fit(
        cls,
        desc: np.ndarray,
        seed: int = 0,
        dims: int = 24,
        max_components: int = 8,
        held_out: float = 0.25,
        blocks: tuple[tuple[int, int], ...] | None = None,
    ) -> RealPhotoModel:
        """Fit on the self-descriptions [N, D] of real photographs only, one density
        per column range of `blocks` (default: the whole description as one)."""
        desc = np.asarray(desc, dtype=np.float64)
        if desc.ndim != 2 or len(desc) < 20:
            raise RealModelError(
                f"a model of real photographs needs at least 20 of them, got {len(desc)}"
            )
        if not np.isfinite(desc).all():
            raise RealModelError("the descriptions hold NaN or infinite values")
        columns = list(blocks) if blocks is not None else [(0, desc.shape[1])]
        if columns[-1][1] != desc.shape[1]:
            raise RealModelError(
                f"the parts read {columns[-1][1]} description values, got {desc.shape[1]}"
            )
        order = np.random.default_rng(seed).permutation(len(desc))
        n_ref = max(10, int(round(held_out * len(desc))))
        fit_rows, ref_rows = order[n_ref:], order[:n_ref]
        parts = [
            Density.fit(desc[fit_rows, a:b], desc[ref_rows, a:b], seed, dims, max_components)
            for a, b in columns
        ]
        model = cls(parts, columns, np.zeros(0))
        if len(parts) > 1:
            model.reference = np.sort(model.combine(desc[ref_rows]))
        return model

    def part_unlikeness(self, desc: np.ndarray) -> np.ndarray:
        """[N, parts] each part's own unlikeness."""
        desc = self._check(desc)
        return np.stack(
            [
                p.unlikeness(desc[:, a:b])
                for p, (a, b) in zip(self.parts, self.columns, strict=True)
            ],
            1,
        )

    def combine(self, desc: np.ndarray) -> np.ndarray:
        """[N] Fisher's statistic of the parts' unlikenesses read as p-values of
        "real": the sum of -log(1 - u), each 1 - u kept above half a reference step."""
        u = self.part_unlikeness(desc)
        floor = np.array([0.5 / len(p.reference) for p in self.parts])
        return -np.log(np.maximum(1.0 - u, floor)).sum(1)

    def unlikeness(self, desc: np.ndarray) -> np.ndarray:
        """[N] in [0, 1]: the share of the held-out photographs more likely than each
        image (ties count half), the parts combined."""
        if len(self.parts) == 1:
            return self.part_unlikeness(desc)[:, 0]
        return rank_share(self.reference, self.combine(desc))

    def project(self, desc: np.ndarray) -> np.ndarray:
        """[N, d] the descriptions in the first part's standardized principal
        directions (the pixels' prediction: the grouping embedding of the ablation)."""
        a, b = self.columns[0]
        return self.parts[0].project(self._check(desc)[:, a:b])

    def _check(self, desc: np.ndarray) -> np.ndarray:
        desc = np.asarray(desc, dtype=np.float64)
        if desc.ndim != 2 or desc.shape[1] < self.width:
            raise RealModelError(
                f"this model of real photographs reads descriptions of {self.width} "
                f"values, got {desc.shape[1:]}: it was fitted by another version of gmtrace "
                "(train the model again, or run `gmtrace calibrate` again)"
            )
        return desc

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The first part's arrays under their own names (as a model of one part was
        saved before there were parts), the others' prefixed `part{i}_`, then the
        columns and the combined reference."""
        arrays = dict(self.parts[0].to_arrays())
        for i, p in enumerate(self.parts[1:], 1):
            arrays |= {f"part{i}_{k}": v for k, v in p.to_arrays().items()}
        if len(self.parts) > 1:
            arrays["part_columns"] = np.array(self.columns, dtype=np.float64)
            arrays["combined_reference"] = self.reference
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> RealPhotoModel:
        first = Density.from_arrays(arrays)
        if "part_columns" not in arrays:  # one part: the whole description it was fitted on
            return cls([first], [(0, len(first.center))], np.zeros(0))
        columns = [(int(a), int(b)) for a, b in np.asarray(arrays["part_columns"]).reshape(-1, 2)]
        parts = [first]
        for i in range(1, len(columns)):
            prefix = f"part{i}_"
            parts.append(
                Density.from_arrays(
                    {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
                )
            )
        reference = np.asarray(arrays.get("combined_reference", np.zeros(0)), dtype=np.float64)
        if any(len(p.center) != b - a for p, (a, b) in zip(parts, columns, strict=True)) or not len(
            reference
        ):
            raise RealModelError("a saved model of real photographs has inconsistent parts")
        return cls(parts, columns, np.sort(reference))


def rank_share(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """[N] the share of the sorted `reference` below each value (ties count half)."""
    lo = np.searchsorted(reference, values, side="left")
    hi = np.searchsorted(reference, values, side="right")
    return (lo + hi) / (2.0 * len(reference))


def _standardize(x: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip((x - center) / scale, -CLIP, CLIP)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1)
    return m + np.log(np.exp(a - m[:, None]).sum(axis=1))
