"""The grouping embedding and the open-set score, fitted on the training GMs after
training: discriminant directions of the head features by GM, a gallery of the
training GMs in that embedding, and the score of how unlike every training GM an
image is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def discriminant_projection(
    z: np.ndarray, gm: np.ndarray, dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linear discriminant analysis of features `z` [N, D] by GM label `gm`
    (scikit-learn, eigen solver, Ledoit-Wolf shrinkage of the within-GM covariance):
    returns (m [D], W [D, dims]) for the embedding (z - m) W, where m is the mean of
    `z` and W's columns the `dims` leading directions maximizing between-GM over
    within-GM variance (columns beyond the number of GMs - 1 are zero)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    w = np.zeros((z.shape[1], dims))
    n_gms = len(np.unique(gm))
    if n_gms < 2:
        return z.mean(0), np.eye(z.shape[1])[:, :dims]
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(z, gm)
    n = min(dims, lda.scalings_.shape[1], n_gms - 1)
    w[:, :n] = lda.scalings_[:, :n]
    return z.mean(0), w


def gm_gallery(emb: np.ndarray, gm: np.ndarray, n_gms: int) -> np.ndarray:
    """[n_gms, D] each GM's entry in a gallery: the unit-length mean of its images'
    unit-length embeddings `emb` [N, D] (`gm` [N]: each image's GM); a GM without
    images gets a zero row (it is never the nearest)."""
    x = _unit(emb)
    out = np.zeros((n_gms, x.shape[1]))
    np.add.at(out, np.asarray(gm, dtype=int), x)
    return _unit(out)


def open_set_score(
    attribution: np.ndarray, embedding: np.ndarray, gallery: np.ndarray | None
) -> np.ndarray:
    """[N] how unlike every training GM images are (higher: more likely an unknown
    GM), from their attribution probabilities [N, G] and unit-length embeddings
    [N, D]: the geometric mean of 1 - the largest probability (maximum softmax
    probability) and (1 - the cosine similarity to the nearest `gallery` entry) / 2
    (`gm_gallery`): together they reject unseen GMs better than either alone
    (docs/architecture.md). Without a gallery, 1 - the
    largest probability alone (also when every entry is a zero row: not fitted)."""
    msp = 1.0 - np.asarray(attribution, dtype=np.float64).max(axis=-1)
    if gallery is None:
        return msp
    g = np.asarray(gallery, dtype=np.float64)
    g = g[np.linalg.norm(g, axis=1) > 0]  # GMs without images
    if not len(g):
        return msp
    far = (1.0 - (_unit(embedding) @ g.T).max(axis=-1)) / 2
    return np.sqrt(msp.clip(0, None) * far.clip(0, None))


# how an image's open-set score is read: `open_set_score` ("gallery") or the training
# GMs' densities (`GMDensity`, "density"); a fused model chooses on its inner
# validation codebases (`methods.fused.choose_open_rule`, docs/architecture.md)
OPEN_RULES = ("gallery", "density")
DENSITY_ACCEPT = 0.95  # share of held-out images of the training GMs called known
_VAR_FLOOR = 1e-6  # a GM whose images coincide still has a spread


@dataclass
class GMDensity:
    """Each training GM's images in the unit-length grouping embedding as an
    isotropic Gaussian of its own spread (its mean and its variance per dimension,
    fitted on images the network trained on), and the score of how unlike every
    one of them an image is: the smallest negative log-density over the GMs, up to
    a constant,

        score(u) = min_g |u - c_g|^2 / (2 v_g) + D / 2 log v_g.

    A GM whose images spread widely (an upscaler: its images are near the
    photographs they were made from) accepts far images; a tight one does not. The
    gallery score (`open_set_score`) reads one distance for every GM, and its
    maximum-probability part is low wherever the training GMs are hard to tell
    apart, which calls their own images unknown. `threshold`: the `DENSITY_ACCEPT`
    quantile of the score over held-out images of the training GMs."""

    center: np.ndarray  # [G, D]
    var: np.ndarray  # [G]; 0: a GM without images (never the nearest)
    threshold: float

    @classmethod
    def fit(
        cls, emb: np.ndarray, gm: np.ndarray, n_gms: int, held_out: np.ndarray | None = None
    ) -> GMDensity:
        """The densities of `n_gms` GMs from the embeddings `emb` [N, D] of their
        images (`gm` [N]: each image's GM), the threshold on the embeddings of
        held-out images of the same GMs `held_out` (the fitting images where none)."""
        x = _unit(emb)
        gm = np.asarray(gm, dtype=int)
        center = np.zeros((n_gms, x.shape[1]))
        var = np.zeros(n_gms)
        for g in np.unique(gm):
            rows = x[gm == g]
            center[g] = rows.mean(axis=0)
            var[g] = max(float(((rows - center[g]) ** 2).mean()), _VAR_FLOOR)
        out = cls(center, var, 0.0)
        scores = out.score(x if held_out is None or not len(held_out) else held_out)
        out.threshold = float(np.quantile(scores, DENSITY_ACCEPT))
        return out

    def score(self, emb: np.ndarray) -> np.ndarray:
        """[N] the score of embeddings [N, D] (scaled to unit length here: the mean
        of an image's crops may not be): higher, less like any training GM."""
        x = _unit(emb)
        known = self.var > 0
        c, v = self.center[known], self.var[known]
        d2 = (x**2).sum(1)[:, None] - 2 * x @ c.T + (c**2).sum(1)[None, :]
        nll = d2.clip(0, None) / (2 * v) + 0.5 * x.shape[1] * np.log(v)
        return nll.min(axis=1)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}center": self.center,
            f"{prefix}var": self.var,
            f"{prefix}threshold": np.array(self.threshold),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> GMDensity:
        return cls(
            np.asarray(arrays[f"{prefix}center"], dtype=np.float64),
            np.asarray(arrays[f"{prefix}var"], dtype=np.float64).reshape(-1),
            float(np.asarray(arrays[f"{prefix}threshold"]).reshape(-1)[0]),
        )


def _unit(emb: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, in float64 (a zero row stays zero)."""
    x = np.asarray(emb, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)
