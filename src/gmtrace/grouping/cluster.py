"""Grouping images by their source GM when the number of GMs is unknown.

The embedding: standardized features projected on the leading linear discriminant
directions of the training GMs (`readout.embedding.discriminant_projection`), so
that what varies between GMs counts and what varies within one (image content) does
not.

`group` (what analyze and the evaluation use): Ward-linkage agglomerative
clustering of the unit-length embeddings, cut at the finest partition whose mean
silhouette is within 5 % of the highest (`SILHOUETTE_TOLERANCE`); no threshold
learned elsewhere and no number of GMs given. One group when no cut reaches
`SILHOUETTE_FLOOR` (one Gaussian blob scores about 0.1).

The silhouette is read off the case itself, whatever its size and spread; a
distance learned on the training GMs (`choose_threshold`, `cluster`: the
evaluation's comparison) over-splits GMs never seen (docs/architecture.md).
"""

from __future__ import annotations

import math

import numpy as np

THRESHOLDS = np.linspace(0.02, 1.2, 40)
SILHOUETTE_FLOOR = 0.25
CANDIDATE_CUTS = 80  # numbers of groups tried, spread geometrically from 2 to N / 2
# the cut taken: the finest whose mean silhouette is at least this share of the
# best one's (the silhouette is flat near its peak, and there splitting a GM costs
# less than merging two; chosen on training GMs' images: docs/architecture.md)
SILHOUETTE_TOLERANCE = 0.95


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


def group(emb: np.ndarray, max_groups: int | None = None) -> np.ndarray:
    """Group labels [N] (0, 1, ...) of embeddings [N, D] without a number of groups:
    Ward linkage on the unit-length rows, cut at the largest number of groups (of
    up to `CANDIDATE_CUTS` tried between 2 and `max_groups`, default N // 2) whose
    mean silhouette (Euclidean) is within `SILHOUETTE_TOLERANCE` of the highest;
    all in one group when none reaches `SILHOUETTE_FLOOR`. Exact: memory grows as
    N^2 (pairwise distances)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist, squareform
    from sklearn.metrics import silhouette_score

    n = len(emb)
    if n < 3:
        return np.zeros(n, dtype=int)
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    condensed = pdist(x)
    if not np.any(condensed > 1e-9):
        return np.zeros(n, dtype=int)
    tree = linkage(condensed, "ward")
    dist = squareform(condensed)
    top = max(2, min(n - 1, max_groups or n // 2))
    cuts: list[tuple[float, np.ndarray]] = []
    for k in np.unique(np.geomspace(2, top, CANDIDATE_CUTS).round().astype(int)):
        labels = fcluster(tree, int(k), "maxclust")
        if not 2 <= len(np.unique(labels)) < n:
            continue
        cuts.append((float(silhouette_score(dist, labels, metric="precomputed")), labels - 1))
    best = max((s for s, _ in cuts), default=-1.0)
    if best < SILHOUETTE_FLOOR:
        return np.zeros(n, dtype=int)
    # the finest cut whose silhouette is near the best (cuts run coarse to fine)
    return [lab for s, lab in cuts if s >= SILHOUETTE_TOLERANCE * best][-1]


EXACT_MAX = 4000  # images grouped exactly (the N x N distances: 4000^2 doubles = 128 MB)


def group_scalable(
    emb: np.ndarray, exact_max: int = EXACT_MAX, seed: int = 0, _depth: int = 0
) -> np.ndarray:
    """`group` for cases of any size in bounded memory: up to `exact_max` images
    exactly; beyond, `group` on a random sample of `exact_max` images, and every
    image to the group with the nearest centroid (distances in chunks, never N x N).
    An image farther from that centroid than the group's sampled images are (their
    median distance + 4 median absolute deviations) is an outlier; the outliers are
    grouped again the same way among themselves; a group of them whose centroid lies
    within an existing group's limit is that group's stragglers and joins it, any
    other is a new group: a GM too small to be sampled more than once or twice is
    found there. Memory is O(exact_max^2 + N D)."""
    from scipy.spatial.distance import cdist

    n = len(emb)
    if n <= exact_max:
        return group(emb)
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, exact_max, replace=False))
    lab_s = group(x[sample])
    ids = np.unique(lab_s)
    centroids = np.stack([x[sample][lab_s == g].mean(0) for g in ids])
    d_own = np.linalg.norm(x[sample] - centroids[np.searchsorted(ids, lab_s)], axis=1)
    limit = np.zeros(len(ids))
    for j, g in enumerate(ids):
        d = d_own[lab_s == g]
        med = np.median(d)
        limit[j] = med + 4 * np.median(np.abs(d - med)) + 1e-9
    labels = np.empty(n, dtype=int)
    far = np.zeros(n, dtype=bool)
    for i in range(0, n, 4096):
        d = cdist(x[i : i + 4096], centroids)
        j = d.argmin(axis=1)
        labels[i : i + 4096] = ids[j]
        far[i : i + 4096] = d[np.arange(len(j)), j] > limit[j]
    far = np.flatnonzero(far)
    if len(far) >= 3 and _depth < 3:
        sub = group_scalable(x[far], exact_max, seed + 1, _depth + 1)
        for s in np.unique(sub):
            members = far[sub == s]
            d = np.linalg.norm(centroids - x[members].mean(0), axis=1)
            j = int(d.argmin())
            # a group's own stragglers: their centroid lies within the group
            labels[members] = ids[j] if d[j] <= limit[j] else labels.max() + 1
    return np.unique(labels, return_inverse=True)[1]


def number_groups(labels: np.ndarray) -> np.ndarray:
    """Group numbers 1, 2, ... for cluster labels [N]: the largest group is 1, and
    groups of the same size are numbered in the order their first image comes (the
    one numbering of analyze, scan groups, the server and the report)."""
    labels = np.asarray(labels)
    first = {lab: i for i, lab in reversed(list(enumerate(labels.tolist())))}
    sizes = {lab: int(np.sum(labels == lab)) for lab in first}
    order = sorted(first, key=lambda lab: (-sizes[lab], first[lab]))
    number = {lab: k for k, lab in enumerate(order, 1)}
    return np.array([number[lab] for lab in labels.tolist()], dtype=int)


def density_group(emb: np.ndarray, min_size: int, min_samples: int | None = None) -> np.ndarray:
    """Density clustering (HDBSCAN, Euclidean on the unit-length embedding): the
    number of groups is the data's, and an image that fits no group is left
    ungrouped, each such image a group of its own (labels 0..G-1, then one per
    ungrouped image). `min_size`: the smallest group; `min_samples` (default
    `min_size`): how dense a group's core must be."""
    from sklearn.cluster import HDBSCAN

    n = len(emb)
    if n < max(2, min_size):
        return np.arange(n, dtype=int) if n else np.zeros(0, dtype=int)
    labels = HDBSCAN(
        min_cluster_size=max(2, min_size),
        min_samples=min_samples or min_size,
        copy=True,
    ).fit_predict(np.asarray(emb, dtype=np.float64))
    out = labels.copy()
    alone = np.flatnonzero(labels < 0)
    out[alone] = labels.max() + 1 + np.arange(len(alone))
    return np.unique(out, return_inverse=True)[1]


def first_half(labels: np.ndarray) -> np.ndarray:
    """[N] bool: the first half (rounded down, at least one) of each label's images,
    in their order: the case halved, for the grouping's stability in case size."""
    labels = np.asarray(labels)
    keep = np.zeros(len(labels), bool)
    for g in np.unique(labels):
        idx = np.flatnonzero(labels == g)
        keep[idx[: max(1, len(idx) // 2)]] = True
    return keep


# the density grouping's candidate settings (min group size), chosen on inner
# validation codebases (`methods.fused`); 0 stands for the silhouette cut (`group`)
DENSITY_SIZES = (0, 5, 10, 20, 40)


def group_with(emb: np.ndarray, min_size: int) -> np.ndarray:
    """`group` (the silhouette cut) for `min_size` 0, else `density_group`."""
    return group(emb) if min_size == 0 else density_group(emb, min_size)


# the self-description's weight in the features a case is grouped on
# (`grouping_features`): chosen with the grouping on inner validation codebases
# (`methods.fused.choose_grouping`; `--no-group-description`: 0 only); 0, the embedding
# alone. An infinite weight (the self-description alone, `grouping_features`) was
# measured as a third candidate and not kept: docs/realmodel.md, "Grouping on the
# self-description alone"
DESCRIPTION_WEIGHTS = (0.0, 1.0)


def grouping_key(min_size: int, weight: float) -> str:
    """How a grouping candidate is named in a fusion's record (its validation ARI's
    key, `methods.fused.choose_grouping`): the group size, and the self-description's
    weight after a "d" where it is not 0 ("0", "5 d1", "5 dinf")."""
    return str(min_size) + (f" d{weight:g}" if weight else "")


def grouping_words(weight: float) -> str:
    """What a case is grouped on, in words, for the self-description's `weight`."""
    if not weight:
        return "the embedding"
    if math.isinf(weight):
        return "the self-description alone"
    return f"the embedding and the self-description (weight {weight:g})"


def grouping_features(
    emb: np.ndarray, description: np.ndarray | None = None, weight: float = 0.0
) -> np.ndarray:
    """The features a case of images is grouped on. Weight 0 (or no description):
    the embedding [N, D] as it is. Otherwise the unit-length embedding beside the
    images' self-descriptions [N, K] (`realmodel.selfdesc.describe`), every column
    standardized over the case itself (no statistics from elsewhere: the case is
    the user's), the description's block scaled to `weight`^2 times the
    embedding's total variance (an infinite `weight`: the standardized
    description alone); what the network learned to tell training GMs
    apart by, and how each image's own pixels are predicted from their
    neighbours, which needs no generator seen (docs/realmodel.md, "Grouping on the
    self-description too")."""
    if not weight or description is None:
        return np.asarray(emb)
    if math.isinf(weight):  # the description alone, standardized over the case
        return _standardized(np.asarray(description, dtype=np.float64))
    e = np.asarray(emb, dtype=np.float64)
    e = e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)
    d = np.asarray(description, dtype=np.float64)
    scale = weight * np.sqrt(e.shape[1] / d.shape[1])
    return np.concatenate([_standardized(e), scale * _standardized(d)], axis=1)


def _standardized(x: np.ndarray) -> np.ndarray:
    """Each column of `x` [N, K] less its mean, over its standard deviation (a
    constant column: zeros)."""
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 1e-12, sd, 1.0)
