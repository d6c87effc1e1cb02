"""Regression forests held as tensors, so that a fitted forest is saved with the
model's weights (safetensors, no pickle) and runs where the network runs.

A forest of `T` trees for each of `K` outputs is five arrays of shape [K, T, M]
(M: the most nodes a tree may have): the feature each node tests, its threshold,
its two children and its value. A sample goes left where its feature is at most
the threshold (scikit-learn's rule). A leaf, and every unused slot, is its own
child, so walking `depth` steps from the root ends on the leaf whatever the path's
length; the output is the mean of the trees' leaf values, and their spread (the standard
deviation over the trees) is how unsure the forest is of an image's value: the
per-image confidence of a count (`readout.abstain`).
"""

from __future__ import annotations

import numpy as np
import torch

FOREST_ARRAYS = ("feature", "threshold", "left", "right", "value")


def pack_forests(forests: list, nodes: int) -> tuple[dict[str, np.ndarray], int]:
    """Fitted scikit-learn forests (one per output, each with `estimators_` of the
    same count) as the arrays above, and the depth a walk needs."""
    k, t = len(forests), len(forests[0].estimators_)
    out = {
        "feature": np.zeros((k, t, nodes), dtype=np.int32),
        "threshold": np.zeros((k, t, nodes), dtype=np.float32),
        "left": np.tile(np.arange(nodes, dtype=np.int32), (k, t, 1)),
        "right": np.tile(np.arange(nodes, dtype=np.int32), (k, t, 1)),
        "value": np.zeros((k, t, nodes), dtype=np.float32),
    }
    depth = 0
    for i, forest in enumerate(forests):
        if len(forest.estimators_) != t:
            raise ValueError("every forest needs the same number of trees")
        for j, est in enumerate(forest.estimators_):
            tree = est.tree_
            n = tree.node_count
            if n > nodes:
                raise ValueError(f"a tree has {n} nodes, more than the {nodes} allowed")
            inner = tree.children_left[:n] >= 0
            out["feature"][i, j, :n] = np.where(inner, tree.feature[:n], 0)
            out["threshold"][i, j, :n] = np.where(inner, tree.threshold[:n], 0.0)
            out["left"][i, j, :n] = np.where(inner, tree.children_left[:n], np.arange(n))
            out["right"][i, j, :n] = np.where(inner, tree.children_right[:n], np.arange(n))
            out["value"][i, j, :n] = tree.value[:n, 0, 0]
            depth = max(depth, int(tree.max_depth))
    return out, depth


def forest_leaves(x: torch.Tensor, arrays: dict[str, torch.Tensor], depth: int) -> torch.Tensor:
    """[B, features] -> [B, K, T]: the leaf value each tree of each output's forest
    gives. Written without the batch size as a number, so an exported graph keeps it
    free."""
    k, t, m = arrays["feature"].shape
    flat = {n: a.reshape(-1) for n, a in arrays.items()}
    base = torch.arange(k * t, device=x.device) * m  # each tree's first node, flat
    node = torch.zeros_like(x[:, :1], dtype=torch.long).expand(-1, k * t)
    for _ in range(depth):
        at = base + node
        go_left = x.gather(1, flat["feature"][at].long()) <= flat["threshold"][at]
        node = torch.where(go_left, flat["left"][at], flat["right"][at]).long()
    return flat["value"][base + node].reshape(-1, k, t)
