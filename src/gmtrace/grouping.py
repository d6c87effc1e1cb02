"""Grouping images by their source GM when the number of GMs is unknown.

The embedding: standardized features projected on the leading linear discriminant
directions of the training GMs (`discriminant_projection`), so that what varies
between GMs counts and what varies within one (image content) does not. Images are
then grouped by average-linkage agglomerative clustering under cosine distance, cut
at a distance threshold. The threshold is learned where the answer is known: the
cut that best groups held-out images of the training GMs (by adjusted Rand index)
is kept with the model and applied to images of any GMs.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.linspace(0.02, 1.2, 40)


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


def cluster(emb: np.ndarray, threshold: float) -> np.ndarray:
    """Cluster labels [N] of embeddings [N, D], cut at cosine distance `threshold`."""
    from sklearn.cluster import AgglomerativeClustering

    if len(emb) < 2:
        return np.zeros(len(emb), dtype=int)
    return AgglomerativeClustering(
        n_clusters=None, distance_threshold=threshold, metric="cosine", linkage="average"
    ).fit_predict(emb)


def choose_threshold(emb: np.ndarray, truth: np.ndarray) -> float:
    """The cut in `THRESHOLDS` that groups these (known) GMs' images best by ARI."""
    from sklearn.metrics import adjusted_rand_score

    scores = [adjusted_rand_score(truth, cluster(emb, t)) for t in THRESHOLDS]
    return float(THRESHOLDS[int(np.argmax(scores))])
