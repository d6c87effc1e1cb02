"""The fingerprint index at scale: add throughput, query latency and memory.

    .venv/bin/python benchmarks/index_scale.py [--sizes 10000,100000,1000000]
        [--queries 1000] [--postgres] [--write]

Each size runs in its own process on a fresh index folder (peak resident memory
from ru_maxrss is that process's). The rows are synthetic, said so: embeddings of
32 values (the model's grouping dimension) drawn as Gaussian blobs around 300 GMs
whose sizes follow a Zipf law, spread over cases of 5,000 rows; each row carries
what a scan row's index entry needs (path, sha256, verdict, model id, embedding).

`--postgres`: the same on the PostgreSQL store, against a throwaway local server
(Debian's, started as the tests start it: tests/pgserver.py; Unix socket, fsync
off, so the add is the client's and the server's work, not the disk's).

* add: the store's `add` of every row, 500 per transaction (rows/s);
* build: the first open of the nearest-neighbour cache (usearch HNSW over every
  row, saved to disk), seconds;
* reopen: a later open (the cache restored from its file), seconds;
* query: `FingerprintIndex.query` of one image at a time (k = 10 nearest outside its
  own case, the rows fetched from SQLite, re-posts looked up), `--queries` of them:
  median and 99th-percentile latency, ms;
* recall@10 of the approximate search against exact search on 200 queries;
* peak RSS of the process (rows made, added, indexed, queried), MB, read before
  the recall check (whose exact search is the harness's, not the index's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 32
CASE = 5000


def vectors(n: int, seed: int = 0):
    """Synthetic unit-length embeddings, (start, [m, DIM]) in chunks of 50,000: Gaussian
    blobs around 300 GMs whose sizes follow a Zipf law."""
    rng = np.random.default_rng(seed)
    gms = 300
    w = 1.0 / np.arange(1, gms + 1) ** 0.8
    centres = rng.normal(size=(gms, DIM))
    for lo in range(0, n, 50_000):
        m = min(50_000, n - lo)
        gm = rng.choice(gms, m, p=w / w.sum())
        x = centres[gm] + 0.35 * rng.normal(size=(m, DIM))
        yield lo, x / np.linalg.norm(x, axis=1, keepdims=True)


def rows(n: int, seed: int = 0):
    """Synthetic index rows (`vectors` as scan rows), in chunks of 50,000 (memory
    stays flat)."""
    for lo, x in vectors(n, seed):
        yield [
            {
                "path": f"case{(lo + i) // CASE}/{lo + i}.png",
                "sha256": f"{lo + i:064x}",
                "ok": True,
                "verdict": "generated",
                "embedding": x[i].tolist(),
                "model_id": "bench",
                "case": f"case{(lo + i) // CASE}",
            }
            for i in range(len(x))
        ]


def one(n: int, queries: int, postgres: bool = False) -> dict:
    from gmtrace.index.index import FingerprintIndex
    from gmtrace.index.store import open_store

    folder = Path(tempfile.mkdtemp(prefix="gmtrace_index_"))
    server = None
    if postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from pgserver import Server, server_bin

        os.environ["GMTRACE_CACHE"] = str(folder / "cache")
        server = Server(Path(tempfile.mkdtemp(prefix="gmtrace-pg-")), server_bin())
        where: str | Path = server.create_database("bench")
    else:
        where = folder
    t0 = time.perf_counter()
    with open_store(where, create=True) as store:
        for chunk in rows(n):
            by_case: dict[str, list] = {}
            for r in chunk:
                by_case.setdefault(r["case"], []).append(r)
            for case, rs in by_case.items():
                store.add(case, rs)
    add_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with FingerprintIndex(where) as index:
        index.cache("bench")
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = FingerprintIndex(where)
    cache = index.cache("bench")
    reopen_s = time.perf_counter() - t0
    rng = np.random.default_rng(1)
    picks = rng.choice(n, queries, replace=False)
    sample = {}
    for lo, chunk in zip(range(0, n, 50_000), rows(n), strict=False):
        for i in picks[(picks >= lo) & (picks < lo + len(chunk))]:
            sample[int(i)] = chunk[i - lo]
    lat = []
    for i in picks:
        r = dict(sample[int(i)])
        r["sha256"] = "q" + r["sha256"][1:]  # a new file of a known generator
        t = time.perf_counter()
        index.query([r], k=10, exclude_case=r["case"])
        lat.append(time.perf_counter() - t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the check below
    # recall@10 of the approximate search against exact search (no case excluded),
    # the exact one a few queries at a time (the harness's memory, not the index's)
    ids, vecs = index.store.vectors("bench")
    q = np.array([sample[int(i)]["embedding"] for i in picks[:200]], dtype=np.float32)
    approx, _ = cache.search(q, 10)
    hits = []
    for lo in range(0, len(q), 10):
        top = np.argpartition(-(vecs @ q[lo : lo + 10].T), 9, axis=0)[:10].T
        hits += [
            len(set(x) & set(ids[e])) / 10 for x, e in zip(approx[lo : lo + 10], top, strict=True)
        ]
    recall = float(np.mean(hits))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    index.close()
    if server is not None:
        size += sum(f.stat().st_size for f in server.data.rglob("*") if f.is_file())
        server.stop()
    return {
        "store": "postgresql" if postgres else "sqlite",
        "rows": n,
        "add_rows_per_s": n / add_s,
        "build_s": build_s,
        "reopen_s": reopen_s,
        "query_p50_ms": 1000 * float(np.median(lat)),
        "query_p99_ms": 1000 * float(np.quantile(lat, 0.99)),
        "recall_at_10": recall,
        "peak_rss_mb": peak,
        "folder_mb": size / 1e6,
    }


def table(results: list[dict]) -> str:
    head = (
        "| store | indexed rows | add (rows/s) | cache build (s) | reopen (s) | query p50 (ms) | "
        "query p99 (ms) | recall@10 vs exact | peak RSS (MB) | on disk (MB) |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    return head + "".join(
        f"| {r.get('store', 'sqlite')} | {r['rows']:,} | {r['add_rows_per_s']:,.0f} | "
        f"{r['build_s']:.1f} | "
        f"{r['reopen_s']:.2f} | {r['query_p50_ms']:.1f} | {r['query_p99_ms']:.1f} | "
        f"{r['recall_at_10']:.3f} | {r['peak_rss_mb']:.0f} | {r['folder_mb']:.0f} |\n"
        for r in results
    )


def in_child(args: list[str]) -> dict:
    """A script's `--one` measurement in a fresh process (its peak memory its own):
    the JSON of its last line."""
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--postgres", action="store_true", help="the PostgreSQL store")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.queries, a.postgres)))
        return
    results = []
    for n in [int(s) for s in a.sizes.split(",")]:
        pg = ["--postgres"] if a.postgres else []
        results.append(in_child([__file__, "--one", str(n), "--queries", str(a.queries), *pg]))
        print(json.dumps(results[-1]), flush=True)
    text = table(results)
    print(text)
    if a.write:
        import zoo_build  # benchmarks/: machine(), write_section(); it imports torch

        store = "PostgreSQL (a throwaway local server)" if a.postgres else "SQLite"
        pg = " --postgres" if a.postgres else ""
        cmd = f"`.venv/bin/python benchmarks/index_scale.py --sizes {a.sizes}{pg}`"
        body = (
            f"## Fingerprint index at scale, {store} (issue 24)\n\n{cmd} "
            f"({zoo_build.machine()}). Synthetic rows, said so: 32-value embeddings around "
            f"300 GMs (Zipf sizes), cases of {CASE:,} rows; each size in its own process, "
            "on a fresh index. A query is one image, its 10 nearest outside its own case, "
            f"end to end (nearest-neighbour search, rows fetched from {store.split()[0]}, "
            f"re-posts looked up).\n\n{text}"
        )
        zoo_build.write_section("index-scale-postgres" if a.postgres else "index-scale", body)


if __name__ == "__main__":
    main()
