"""What every method the evaluation compares answers to (PhotoHolmes style): `fit`
on the training GMs of a fold, `predict` uint8 images -> `Inference`; and the cache
of a fitted method's answers."""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

import numpy as np
from rich.console import Console

from gmtrace.core.files import atomic_path
from gmtrace.core.schema import Targets
from gmtrace.data.dataset import GMDataset
from gmtrace.data.loader import ImageBank
from gmtrace.grouping.cluster import group
from gmtrace.readout.inference import Inference


class Method:
    """Base class: `name`, `fit(...) -> info dict`, `predict(images) -> Inference`;
    `fingerprints(images)` returns [N, H, W, 3] or None for methods without one."""

    name = "method"
    parses = True  # False: the method answers no parse (its parsing is never scored)

    def fit(
        self,
        ds: GMDataset,
        bank: ImageBank,
        targets: Targets,
        out_dir: Path,
        console: Console,
    ) -> dict:
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> Inference:
        raise NotImplementedError

    def fingerprints(self, images: np.ndarray) -> np.ndarray | None:
        return None

    def group(self, embedding: np.ndarray, description: np.ndarray | None = None) -> np.ndarray:
        """Group images by their embedding (and, for a method that chose to, their
        self-descriptions `description`: `Inference.description`), the number of
        groups unknown: the silhouette cut (`grouping.group`) unless the method
        chose otherwise."""
        return group(embedding)


# what a cached answer file holds: 2 added the counts' spread (`Inference.count_spread`);
# a file of another layout is computed again
CACHE_LAYOUT = 2


class PredictionCache:
    """A fitted network's answers on image sets, kept as .npz files beside its
    weights: a rerun of the evaluation (a resumed fold, a change of scoring) reads
    them instead of running the network again. A file is keyed by the sha256 of
    the images and holds the weights' sha256; answers of other weights are not
    used (and are overwritten). Read without pickle."""

    def __init__(self, folder: Path, weights_sha256: str):
        self.folder, self.weights = Path(folder), weights_sha256

    def get(self, images: np.ndarray, compute) -> Inference:
        h = hashlib.sha256(str((images.shape, images.dtype.str)).encode())
        h.update(np.ascontiguousarray(images).data)
        path = self.folder / f"{h.hexdigest()[:24]}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    same = str(z["weights_sha256"]) == self.weights
                    if same and int(z.get("layout", 1)) == CACHE_LAYOUT:
                        return _inference_from(z)
            except (OSError, ValueError, KeyError):
                pass  # unreadable or of an older layout: computed again
        inf = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {"weights_sha256": np.array(self.weights), "layout": np.array(CACHE_LAYOUT)}
        for f in fields(Inference):
            v = getattr(inf, f.name)
            if f.name == "discrete_prob":
                arrays |= {f"discrete_prob_{j}": d for j, d in enumerate(v)}
            elif v is not None:
                arrays[f.name] = v
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return inf


def _inference_from(z) -> Inference:
    n_disc = sum(1 for k in z.files if k.startswith("discrete_prob_"))
    plain = {f.name for f in fields(Inference)} - {"discrete_prob"}
    return Inference(
        discrete_prob=[z[f"discrete_prob_{j}"] for j in range(n_disc)],
        **{k: z[k] for k in plain if k in z.files},
    )
