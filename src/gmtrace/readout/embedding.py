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
    e = np.asarray(embedding, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=-1, keepdims=True).clip(1e-12)
    far = (1.0 - (e @ g.T).max(axis=-1)) / 2
    return np.sqrt(msp.clip(0, None) * far.clip(0, None))
