"""The grouping embedding and the open-set score, fitted on the training GMs after
training: discriminant directions of the head features by GM, a gallery of the
training GMs in that embedding, and the score of how unlike every training GM an
image is."""

from __future__ import annotations

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
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    out = np.zeros((n_gms, x.shape[1]))
    np.add.at(out, np.asarray(gm, dtype=int), x)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


def gm_spread(emb: np.ndarray, gm: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """[n_gms] how far each GM's images `emb` [N, D] (`gm` [N]: each image's GM) sit
    from its `gallery` entry: the mean of 1 - the cosine similarity. Read on images
    training did not see (the calibration images), it is the distance at which an
    image of that GM is typical. A GM without images gets 0 (`open_set_score` then
    leaves it out)."""
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    g = np.asarray(gallery, dtype=np.float64)
    gm = np.asarray(gm, dtype=int)
    d = 1.0 - np.sum(x * g[gm], axis=1)
    total = np.bincount(gm, weights=d, minlength=len(g))
    count = np.bincount(gm, minlength=len(g))
    return np.where(count > 0, total / count.clip(1), 0.0)


# a GM whose images are closer than this to its entry (a collapsed GM) counts as this
# spread: its own images then score near 0 and no other image is drawn to it
SPREAD_FLOOR = 1e-4


def open_set_score(
    attribution: np.ndarray,
    embedding: np.ndarray,
    gallery: np.ndarray | None,
    spread: np.ndarray | None = None,
) -> np.ndarray:
    """[N] how unlike every training GM images are (higher: more likely an unknown
    GM), from their attribution probabilities [N, G] and unit-length embeddings
    [N, D].

    With each GM's `spread` (`gm_spread` on its calibration images): the smallest,
    over the training GMs, of the image's distance to the GM's `gallery` entry (1 -
    cosine similarity) over that GM's spread. An image as far from its nearest GM as
    that GM's own unseen images typically are scores about 1. The scale matters
    because the training GMs differ in spread: the images of a super-resolution
    network vary with the photograph it enlarged and sit far from their entry,
    while one of gmtrace's small GANs is tight; without it, the images of a loose
    known GM read as more unknown than those of an unseen tight one
    (docs/realmodel.md, "The open-set score").

    Without a spread (models fitted before it was kept): the geometric mean of 1 -
    the largest probability (maximum softmax probability) and (1 - the cosine
    similarity to the nearest `gallery` entry) / 2. Without a gallery, 1 - the
    largest probability alone (also when every entry is a zero row: not fitted)."""
    msp = 1.0 - np.asarray(attribution, dtype=np.float64).max(axis=-1)
    if gallery is None:
        return msp
    g = np.asarray(gallery, dtype=np.float64)
    known = np.linalg.norm(g, axis=1) > 0  # GMs without images are left out
    if not known.any():
        return msp
    e = np.asarray(embedding, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True).clip(1e-12)
    dist = 1.0 - e @ g[known].T
    if spread is not None:
        s = np.asarray(spread, dtype=np.float64)[known].clip(SPREAD_FLOOR)
        return (dist / s).min(axis=-1)
    far = dist.min(axis=-1) / 2
    return np.sqrt(msp.clip(0, None) * far.clip(0, None))
