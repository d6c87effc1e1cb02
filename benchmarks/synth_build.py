"""Time `gmtrace zoo synth`: build --n synthesized GMs into a temporary folder.

    .venv/bin/python benchmarks/synth_build.py [--n 3000] [--workers 2]
                                               [--images-per-gm 24] [--resolution 64]

Writes to stdout the wall seconds, GMs per second and images per second of the
build, the mean seconds per GM of each kind (one worker's time), the redraws and
failures, and the machine. The progress bar goes to stderr. Nothing is kept
unless --keep names a folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console

from gmtrace.zoo.builder import finished_gms
from gmtrace.zoo.synth import synth_zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_build  # noqa: E402  (benchmarks/zoo_build.py: one machine() for both)


def machine() -> str:
    """zoo_build's machine line, and the load: this benchmark is often run beside others."""
    return f"{zoo_build.machine()}; load average {os.getloadavg()[0]:.1f} at the end"


def run(args: argparse.Namespace, out: Path) -> int:
    t0 = time.perf_counter()
    summary = synth_zoo(
        out,
        n=args.n,
        seed=args.seed,
        images_per_gm=args.images_per_gm,
        resolution=args.resolution,
        workers=args.workers,
        console=Console(stderr=True),
    )
    wall = time.perf_counter() - t0
    per_kind: dict[str, list[float]] = defaultdict(list)
    fitted: dict[bool, list[float]] = defaultdict(list)
    for meta in finished_gms(out).values():
        per_kind[meta["row"]["family"]].append(meta["seconds"])
        fitted[int(meta["row"]["steps"]) > 0].append(meta["seconds"])
    images = args.n * args.images_per_gm
    print(
        f"synth build: {args.n} GMs x {args.images_per_gm} images at {args.resolution} px, "
        f"{summary.workers} workers, seed {args.seed}"
    )
    print(f"wall seconds: {wall:.1f}")
    print(f"GMs per second: {args.n / wall:.2f}")
    print(f"images per second: {images / wall:.1f}")
    print(f"projected for 3000 GMs: {3000 / (args.n / wall) / 60:.1f} min")
    for kind, secs in sorted(per_kind.items()):
        print(f"  {kind}: {len(secs)} GMs, mean {np.mean(secs):.3f} s per GM (one worker)")
    for fit, secs in sorted(fitted.items()):
        label = "fitted" if fit else "random weights"
        print(f"  {label}: {len(secs)} GMs, mean {np.mean(secs):.3f} s per GM (one worker)")
    print(f"redraws: {summary.redraws}; failed: {len(summary.failed)}")
    print(f"machine: {machine()}")
    return 0 if summary.ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--images-per-gm", type=int, default=24)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="build here and keep it")
    args = ap.parse_args()
    if args.keep:
        return run(args, args.keep)
    with tempfile.TemporaryDirectory(prefix="gmtrace_synth_") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
