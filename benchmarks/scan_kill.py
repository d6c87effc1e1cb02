"""`gmtrace scan` killed with SIGKILL at random points, then resumed.

    .venv/bin/python benchmarks/scan_kill.py [--images 600] [--kills 10] [--format csv]
                                             [--model MODEL_DIR] [--write]

Writes `--images` PNG files (crops of the embedded photographs, 64 to 160 px, a
few broken files among them), scans them once uninterrupted, then runs the same
command again and again on a second output, the k-th killed with SIGKILL once the
output has grown past a random size between (k - 0.9) / K and (k - 0.1) / K of
its final size (K = `--kills`), often in the middle of a write; a last run
finishes it. Passes when the
finished file holds the uninterrupted one's rows (one row per file, none lost, none
duplicated, in the same order, same values; floats to 1e-4, `scan.results_differ`);
whether it is also identical byte for byte is reported beside.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gmtrace.product.scan import results_differ

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_build  # noqa: E402  (machine())


def make_case(folder: Path, n: int, seed: int = 0) -> None:
    from gmtrace.zoo.real import load_embedded

    rng = np.random.default_rng(seed)
    photos = [p.pixels for p in load_embedded()]
    for i in range(n):
        a = photos[i % len(photos)]
        size = int(rng.integers(64, 161))
        y = rng.integers(0, a.shape[0] - size + 1)
        x = rng.integers(0, a.shape[1] - size + 1)
        sub = folder / f"d{i % 7}"
        sub.mkdir(exist_ok=True)
        if i % 50 == 49:
            (sub / f"{i:05d}.png").write_bytes(b"not a png")
        else:
            Image.fromarray(a[y : y + size, x : x + size]).save(sub / f"{i:05d}.png")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--format", default="csv", choices=["jsonl", "csv", "parquet"])
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        case = Path(tmp) / "case"
        case.mkdir()
        make_case(case, a.images)
        cmd = [sys.executable, "-m", "gmtrace.cli", "scan", str(case)]
        cmd += ["--model", a.model] if a.model else []
        full, out = Path(tmp) / f"full.{a.format}", Path(tmp) / f"killed.{a.format}"
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--out", str(full)], check=True, capture_output=True)
        once = time.perf_counter() - t0
        # what grows while a scan runs, and how large it ends: the output itself, or
        # for parquet its journal (as large as a .jsonl of the same scan)
        grows, size = out, full.stat().st_size
        if a.format == "parquet":
            ref = Path(tmp) / "ref.jsonl"
            subprocess.run([*cmd, "--out", str(ref)], check=True, capture_output=True)
            grows, size = out.with_name(out.name + ".partial.jsonl"), ref.stat().st_size
        kills, runs, t0 = 0, 0, time.perf_counter()
        while kills < a.kills:  # run k is killed once the output passes a random size
            runs += 1
            cut = (kills + rng.uniform(0.1, 0.9)) / a.kills * size
            proc = subprocess.Popen(
                [*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while proc.poll() is None and (not grows.exists() or grows.stat().st_size < cut):
                time.sleep(0.001)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            if runs > 4 * a.kills:
                break
        subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
        resumed = time.perf_counter() - t0
        bytewise = out.read_bytes() == full.read_bytes()
        differ = results_differ(out, full)
    same = differ is None
    text = (
        f"{a.images} files ({a.images // 50} broken), {a.format}: {kills} SIGKILLs over "
        f"{runs} runs, then one more run; finished file holds the uninterrupted one's rows "
        f"(floats to 1e-4): {'yes' if same else 'NO, ' + differ}; byte for byte: "
        f"{'yes' if bytewise else 'no'} (uninterrupted {once:.0f} s; killed and resumed "
        f"{resumed:.0f} s in all, start-up of each run included)"
    )
    print(text)
    if a.write:
        block = (
            f"## Scan killed and resumed\n\n{zoo_build.command()}, {zoo_build.machine()}:\n\n{text}"
        )
        zoo_build.write_section("scan-kill", block)
    if not same or kills < a.kills:
        raise SystemExit("FAILED: " + text)


if __name__ == "__main__":
    main()
