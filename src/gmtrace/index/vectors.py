"""The nearest-neighbour structure of a fingerprint index: one approximate index
(HNSW, usearch; cosine distance on the unit-length embeddings) per model id, in the
store's folder's `ann/` (the index folder; for a PostgreSQL store, this client's
cache folder), keyed by the row ids of the database (`store`).

It is a cache of the database: its sidecar records the highest row id it holds
(the watermark), and every open adds the rows the database gained since (another
writer's, or an add killed before the cache was saved), then saves it atomically
under a lock when it grew. Deleting `ann/` loses nothing: it is rebuilt.
Embeddings of different models never share one (their distances do not compare).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_path, atomic_write_text

ANN = "ann"
# rows gained before a cache is written back (fewer: added in memory at each open)
SAVE_AFTER = 1000
# up to this many rows a search is exact (brute force over the cache's vectors): a
# small index answers the true nearest, the same before and after a rebuild (the
# graph's approximate search missed a true 3rd nearest among 45 rows once in 40
# rebuilds); beyond it, the graph (docs/benchmarks.md: 0.98 recall@10 at 10^6)
EXACT_BELOW = 20_000


def model_key(model_id: str) -> str:
    return hashlib.sha256(model_id.encode()).hexdigest()[:16]


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class VectorCache:
    """The approximate index of model `model_id`'s rows in `store`, brought up to
    date with the database on open."""

    def __init__(self, store, model_id: str) -> None:
        from usearch.index import Index

        self.store, self.model_id = store, model_id
        base = store.folder / ANN / model_key(model_id)
        self.file, self.meta_file = base.with_suffix(".usearch"), base.with_suffix(".json")
        self.lock = base.with_suffix(".lock")
        self.index, self.watermark, self.dim, self.unsaved = None, 0, 0, 0
        with _locked(self.lock):
            meta = self._read_meta()
            if meta is not None:
                self.index = Index.restore(str(self.file))
                self.watermark, self.dim = int(meta["watermark"]), int(meta["dim"])
            self.unsaved = self._catch_up()
            if self.unsaved >= SAVE_AFTER or (self.unsaved and meta is None):
                self._save()

    def refresh(self) -> None:
        """Take the rows the database gained since (written back once it grew by
        `SAVE_AFTER` since its file was saved)."""
        with _locked(self.lock):
            self.unsaved += self._catch_up()
            if self.unsaved >= SAVE_AFTER:
                self._save()

    def _read_meta(self) -> dict | None:
        """The sidecar, if it and the index file agree; else None (rebuilt)."""
        try:
            meta = json.loads(self.meta_file.read_text())
            ok = (
                meta.get("model_id") == self.model_id
                and meta.get("instance") == self.store.instance  # not another database's
                and self.file.is_file()
            )
            return meta if ok else None
        except (OSError, ValueError):
            return None

    def _catch_up(self) -> int:
        from usearch.index import Index

        grew = 0
        for ids, vecs in self.store.vectors_after(self.model_id, self.watermark):
            if self.index is None:
                self.dim = vecs.shape[1]
                self.index = Index(ndim=self.dim, metric="cos", dtype="f32")
            if vecs.shape[1] != self.dim:
                raise ValueError(
                    f"{self.store.path}: model {self.model_id} has embeddings of "
                    f"{vecs.shape[1]} and {self.dim} values"
                )
            self.index.add(ids, vecs)
            self.watermark = int(ids[-1])
            grew += len(ids)
        return grew

    def _save(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.file) as tmp:
            self.index.save(str(tmp))
        meta = {
            "model_id": self.model_id,
            "instance": self.store.instance,
            "watermark": self.watermark,
            "dim": self.dim,
        }
        atomic_write_text(self.meta_file, json.dumps(meta) + "\n")
        self.unsaved = 0

    def __len__(self) -> int:
        return 0 if self.index is None else len(self.index)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """[N, k] row ids and cosine distances of the nearest rows (id -1, distance
        inf where fewer than k are indexed)."""
        n = len(vectors)
        ids = np.full((n, k), -1, dtype=np.int64)
        dist = np.full((n, k), np.inf)
        if self.index is None or not len(self.index) or not n or not k:
            return ids, dist
        exact = len(self.index) <= EXACT_BELOW
        m = self.index.search(
            np.asarray(vectors, dtype=np.float32), min(k, len(self.index)), exact=exact
        )
        keys = np.asarray(m.keys, dtype=np.int64).reshape(n, -1)
        d = np.asarray(m.distances, dtype=np.float64).reshape(n, -1)
        # one query comes back as one `Matches` (no counts), several as `BatchMatches`
        counts = np.asarray(m.counts if hasattr(m, "counts") else [len(m.keys)]).reshape(n)
        for i in range(n):
            c = int(counts[i])
            ids[i, :c], dist[i, :c] = keys[i, :c], d[i, :c]
        return ids, dist
