"""Time and peak memory of `gmtrace group`'s clustering on large cases.

    .venv/bin/python benchmarks/group_scale.py [--sizes 1000,10000,100000] [--gms 300]

Each case is synthetic: `--gms` GMs as Gaussian blobs in a 32-dimensional
embedding (the model's grouping dimension), GM sizes drawn from a Zipf law (a few
large GMs and many small ones, down to 3 images), spread chosen so that the exact
clustering is not trivially perfect. Each size runs in its own process, so the
peak resident memory (ru_maxrss) is that of the grouping alone. Prints time, peak
memory, groups found, and ARI against the truth; for sizes up to 4,000 (exact
clustering) also that `group_scalable` equals `group`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def case(n: int, gms: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, gms + 1) ** 0.8
    sizes = np.maximum(3, np.round(w / w.sum() * n)).astype(int)
    truth = np.repeat(np.arange(gms), sizes)[:n]
    centers = rng.normal(size=(gms, 32))
    x = centers[truth] + rng.normal(size=(len(truth), 32)) * 0.35
    return x, truth


def one(n: int, gms: int) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from gmtrace.grouping.cluster import EXACT_MAX, group, group_scalable

    x, truth = case(n, gms)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    labels = group_scalable(x)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "images": len(x),
        "true_gms": int(len(np.unique(truth))),
        "groups": int(len(np.unique(labels))),
        "ari": float(adjusted_rand_score(truth, labels)),
        "seconds": seconds,
        "peak_mb": peak / 1024,
        "grouping_mb": (peak - base) / 1024,
    }
    if len(x) <= EXACT_MAX:
        out["same_as_exact"] = bool(np.array_equal(labels, group(x)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--gms", type=int, default=300)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.gms)))
        return
    print("| images | GMs | groups found | ARI | seconds | peak RSS (MB) | of it grouping |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(s) for s in a.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--gms", str(a.gms)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        exact = " (= exact)" if r.get("same_as_exact") else ""
        print(
            f"| {r['images']} | {r['true_gms']} | {r['groups']} | {r['ari']:.3f}{exact} | "
            f"{r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['grouping_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
