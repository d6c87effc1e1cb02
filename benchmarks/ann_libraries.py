"""Which nearest-neighbour library the fingerprint index uses: usearch, faiss-cpu and
hnswlib, each an HNSW graph of the same shape, on the same synthetic embeddings.

    .venv/bin/python benchmarks/ann_libraries.py [--sizes 100000,1000000]
        [--libraries usearch,faiss,hnswlib] [--write]

Only usearch is a dependency of gmtrace; the others are measured where installed
(`pip install faiss-cpu hnswlib`; hnswlib has no wheel for Python 3.11 and compiles).
The embeddings are `index_scale.vectors` (32 values, 300 GMs, Zipf sizes: synthetic,
said so). Every library gets the same graph: 16 links per node, 128 candidates while
building, 64 while searching, cosine distance (faiss: inner product on the unit
vectors), built with every core; each (library, size) runs in its own process.

* build: every vector added, in chunks of 50,000, seconds;
* save + load: written to a file and read back, seconds, and the file's size;
* query: one vector at a time, k = 10, 1,000 of them, one thread: median and 99th
  percentile, ms (the library alone: the index's own query adds the rows fetched
  from the database, `index_scale.py`);
* recall@10 against exact search on 200 queries;
* peak RSS of the process after build, save, load and queries, MB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from index_scale import DIM, in_child, vectors

M, EF_ADD, EF_SEARCH, K = 16, 128, 64, 10


class Usearch:
    def __init__(self, n: int) -> None:
        from usearch.index import Index

        self.ix = Index(
            ndim=DIM,
            metric="cos",
            dtype="f32",
            connectivity=M,
            expansion_add=EF_ADD,
            expansion_search=EF_SEARCH,
        )

    def add(self, ids, x) -> None:
        self.ix.add(ids, x.astype(np.float32))

    def search(self, q) -> np.ndarray:
        return np.asarray(self.ix.search(q.astype(np.float32), K, threads=1).keys).reshape(-1)

    def save_load(self, path: str) -> None:
        from usearch.index import Index

        self.ix.save(path)
        self.ix = Index.restore(path)


class Faiss:
    def __init__(self, n: int) -> None:
        import faiss

        self.faiss = faiss
        self.graph = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
        self.graph.hnsw.efConstruction = EF_ADD
        self.graph.hnsw.efSearch = EF_SEARCH
        self.ix = faiss.IndexIDMap2(self.graph)

    def add(self, ids, x) -> None:
        self.ix.add_with_ids(x.astype(np.float32), ids.astype(np.int64))

    def search(self, q) -> np.ndarray:
        self.faiss.omp_set_num_threads(1)
        return self.ix.search(q.astype(np.float32)[None], K)[1][0]

    def save_load(self, path: str) -> None:
        self.faiss.write_index(self.ix, path)
        self.ix = self.faiss.read_index(path)
        self.graph = self.faiss.downcast_index(self.ix.index)
        self.graph.hnsw.efSearch = EF_SEARCH


class Hnswlib:
    def __init__(self, n: int) -> None:
        import hnswlib

        self.hnswlib, self.n = hnswlib, n
        self.ix = hnswlib.Index(space="cosine", dim=DIM)
        self.ix.init_index(max_elements=n, ef_construction=EF_ADD, M=M)
        self.ix.set_ef(EF_SEARCH)

    def add(self, ids, x) -> None:
        self.ix.add_items(x.astype(np.float32), ids, num_threads=os.cpu_count() or 1)

    def search(self, q) -> np.ndarray:
        return self.ix.knn_query(q.astype(np.float32)[None], k=K, num_threads=1)[0][0]

    def save_load(self, path: str) -> None:
        self.ix.save_index(path)
        self.ix = self.hnswlib.Index(space="cosine", dim=DIM)
        self.ix.load_index(path, max_elements=self.n)
        self.ix.set_ef(EF_SEARCH)


LIBRARIES = {"usearch": Usearch, "faiss": Faiss, "hnswlib": Hnswlib}
MODULES = {"usearch": "usearch", "faiss": "faiss", "hnswlib": "hnswlib"}


def one(library: str, n: int, queries: int) -> dict:
    ix = LIBRARIES[library](n)
    t0 = time.perf_counter()
    for lo, x in vectors(n):
        ix.add(np.arange(lo, lo + len(x), dtype=np.int64), x)
    build = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "index")
        t0 = time.perf_counter()
        ix.save_load(path)
        save_load = time.perf_counter() - t0
        size = Path(path).stat().st_size
    rng = np.random.default_rng(1)
    q = rng.normal(size=(queries, DIM))
    # queries near the data: a stored vector moved a little (a new image of a known GM)
    picks = rng.choice(n, queries, replace=False)
    base = np.zeros((queries, DIM))
    for lo, x in vectors(n):
        inside = (picks >= lo) & (picks < lo + len(x))
        base[inside] = x[picks[inside] - lo]
    q = base + 0.05 * q
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    lat, found = [], []
    for v in q:
        t = time.perf_counter()
        found.append(ix.search(v))
        lat.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # recall@10 against exact search (the harness's memory, after the peak is read)
    nq = min(200, queries)
    best = np.full((nq, K), -np.inf)
    best_id = np.zeros((nq, K), dtype=np.int64)
    for lo, x in vectors(n):
        sim = q[:nq] @ x.T
        allsim = np.concatenate([best, sim], axis=1)
        allid = np.concatenate([best_id, np.broadcast_to(lo + np.arange(len(x)), sim.shape)], 1)
        top = np.argpartition(-allsim, K - 1, axis=1)[:, :K]
        best = np.take_along_axis(allsim, top, 1)
        best_id = np.take_along_axis(allid, top, 1)
    recall = float(
        np.mean(
            [
                len(set(f.tolist()) & set(e.tolist())) / K
                for f, e in zip(found, best_id, strict=False)
            ]
        )
    )
    return {
        "library": library,
        "rows": n,
        "build_s": build,
        "save_load_s": save_load,
        "file_mb": size / 1e6,
        "query_p50_ms": 1000 * float(np.median(lat)),
        "query_p99_ms": 1000 * float(np.quantile(lat, 0.99)),
        "recall_at_10": recall,
        "peak_rss_mb": peak,
    }


def table(results: list[dict]) -> str:
    head = (
        "| library | rows | build (s) | save + load (s) | file (MB) | query p50 (ms) | "
        "query p99 (ms) | recall@10 vs exact | peak RSS (MB) |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    return head + "".join(
        f"| {r['library']} | {r['rows']:,} | {r['build_s']:.1f} | {r['save_load_s']:.2f} | "
        f"{r['file_mb']:.0f} | {r['query_p50_ms']:.3f} | {r['query_p99_ms']:.3f} | "
        f"{r['recall_at_10']:.3f} | {r['peak_rss_mb']:.0f} |\n"
        for r in results
    )


def main() -> None:
    import importlib.util

    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--libraries", default="usearch,faiss,hnswlib")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if a.one:
        lib, n = a.one.split(":")
        print(json.dumps(one(lib, int(n), a.queries)))
        return
    results, missing = [], []
    for lib in a.libraries.split(","):
        if importlib.util.find_spec(MODULES[lib]) is None:
            missing.append(lib)
            print(f"{lib}: not installed, not measured", flush=True)
            continue
        for n in [int(s) for s in a.sizes.split(",")]:
            args = [__file__, "--one", f"{lib}:{n}", "--queries", str(a.queries)]
            results.append(in_child(args))
            print(json.dumps(results[-1]), flush=True)
    text = table(results)
    print(text)
    if a.write:
        import zoo_build  # benchmarks/: machine(), write_section(); it imports torch

        cmd = (
            f"`.venv/bin/python benchmarks/ann_libraries.py --sizes {a.sizes} "
            f"--libraries {a.libraries}`"
        )
        versions = []
        for lib in a.libraries.split(","):
            if lib not in missing:
                from importlib.metadata import version

                dist = {"faiss": "faiss-cpu"}.get(lib, lib)
                versions.append(f"{dist} {version(dist)}")
        body = (
            f"## Nearest-neighbour libraries for the index (issue 24)\n\n{cmd} "
            f"({zoo_build.machine()}; {', '.join(versions)}). The same HNSW graph in each "
            f"({M} links, {EF_ADD} candidates building, {EF_SEARCH} searching, cosine), the same "
            "synthetic 32-value embeddings (said so), each (library, size) in its own "
            "process; queries are stored vectors moved a little, one at a time on one "
            "thread, the library alone.\n\n"
            f"{text}"
        )
        zoo_build.write_section("ann-libraries", body)


if __name__ == "__main__":
    main()
