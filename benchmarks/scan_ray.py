"""`gmtrace scan` on Ray Data (`--engine ray`) against the local engine, by case size.

    .venv/bin/python benchmarks/scan_ray.py [--size 128] [--cases 64,256,1024,2048]
        [--workers 2] [--repeats 2] [--model MODEL_DIR] [--write]

For each case size N: N PNG files of `--size` px (crops of the embedded
photographs) are scanned into a fresh .jsonl

* by the local engine (decoding threads beside one process's network);
* by `--engine ray` on a local cluster the scan starts itself (`ray.init` with
  `--workers` CPUs, one actor per CPU, each loading the model and running its
  network on one thread; the cluster is shut down at the end): what a user gets
  from `gmtrace scan --engine ray` on one machine;
* by `--engine ray --ray-address` on a cluster started beforehand on this machine
  (`ray start --head --num-cpus WORKERS`): what a user's own cluster costs to
  join, its start-up not counted.

Each wall time is the median of `--repeats` runs (after one warm-up scan of the
smallest case per engine). A straight line wall = o + N / r fitted to each engine's
times gives its fixed cost o (seconds: start-up, model loads, the first batches)
and its rate r (images/s once running); from them, the case size above which Ray
is faster than the local engine on this machine, if any. Every Ray output is
checked against the local one (`scan.results_differ`, floats to 1e-4).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (make_files)
import zoo_build  # noqa: E402  (machine(), write_section())
from gmtrace.product.analyze import Analyzer  # noqa: E402
from gmtrace.product.scan import results_differ  # noqa: E402


def wall(analyzer, folder: Path, out: Path, workers: int, engine: str, address: str | None):
    if out.exists():
        out.unlink()
    t0 = time.perf_counter()
    s = analyzer.scan([folder], out, workers=workers, engine=engine, ray_address=address)
    seconds = time.perf_counter() - t0
    assert s.analyzed == s.files, (s.analyzed, s.files, s.errors[:3])
    return seconds


def fit(ns: list[int], seconds: list[float]) -> tuple[float, float]:
    """(fixed cost o in s, rate r in images/s) of wall = o + N / r, least squares."""
    slope, intercept = np.polyfit(np.array(ns, float), np.array(seconds, float), 1)
    return float(intercept), float(1.0 / slope) if slope > 0 else float("nan")


def break_even(local: tuple[float, float], ray: tuple[float, float]) -> str:
    """The case size above which the Ray line lies under the local one."""
    (o_l, r_l), (o_r, r_r) = local, ray
    if not (r_l > 0 and r_r > 0):
        return "no line fits the times (the machine was busy?)"
    gain = 1.0 / r_l - 1.0 / r_r  # seconds saved per image once running
    if gain <= 0:
        return "never on this machine (its rate is not above the local engine's)"
    return f"{max(0.0, (o_r - o_l) / gain):,.0f} images"


def ray_cli() -> str:
    """The `ray` command: on the PATH, else beside this Python (a venv not activated)."""
    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def ray_cluster(workers: int) -> str | None:
    """Start a Ray head on this machine (`ray start`); its address, or None when
    the command is missing or fails."""
    cmd = [ray_cli(), "start", "--head", f"--num-cpus={workers}", "--include-dashboard=false"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        print(f"ray start failed ({e}); the cluster column is left out", flush=True)
        return None
    return "auto"


def ray_stop() -> None:
    subprocess.run([ray_cli(), "stop", "--force"], capture_output=True, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--cases", default="64,256,1024,2048")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    ns = [int(n) for n in a.cases.split(",")]
    analyzer = Analyzer(a.model)
    engines = [("local", "local", None), ("ray, started by the scan", "ray", None)]
    times: dict[str, list[float]] = {label: [] for label, _, _ in engines}
    address = ray_cluster(a.workers)
    if address:
        engines.append(("ray, a running cluster (`--ray-address`)", "ray", address))
        times[engines[-1][0]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            for n in ns:
                folder = root / f"case{n}"
                folder.mkdir()
                throughput.make_files(folder, a.size, n)
                for label, engine, addr in engines:
                    out = root / f"{engine}{'-' + addr if addr else ''}-{n}.jsonl"
                    if n == ns[0]:
                        wall(analyzer, folder, out, a.workers, engine, addr)  # warm-up
                    runs = [
                        wall(analyzer, folder, out, a.workers, engine, addr)
                        for _ in range(a.repeats)
                    ]
                    times[label].append(float(np.median(runs)))
                    if engine == "ray":
                        ref = root / f"local-{n}.jsonl"
                        if diff := results_differ(ref, out):
                            raise SystemExit(f"{label}, {n} images: rows differ: {diff}")
                    print(f"{n} images, {label}: {times[label][-1]:.1f} s", flush=True)
                shutil.rmtree(folder)
    finally:
        if address:
            ray_stop()
    fits = {label: fit(ns, t) for label, t in times.items()}
    head = " | ".join(f"{n} images" for n in ns)
    table = [
        f"| engine | {head} | fixed cost (s) | rate once running (images/s) "
        "| faster than local from |",
        "|---|" + "---|" * len(ns) + "---|---|---|",
    ]
    local = fits["local"]
    for label, t in times.items():
        cells = " | ".join(f"{s:.1f} s ({n / s:.0f}/s)" for n, s in zip(ns, t, strict=True))
        o, r = fits[label]
        even = "-" if label == "local" else break_even(local, fits[label])
        table.append(f"| {label} | {cells} | {o:.1f} | {r:.0f} | {even} |")
    text = "\n".join(table)
    print(text)
    if a.write:
        cmd = zoo_build.command()
        block = (
            f"## Scan on Ray against the local engine (issue 23)\n\n{cmd}, model "
            f"{analyzer.model_id_}, {a.size}-px images, {a.workers} workers, each time the "
            f"median of {a.repeats} runs after a warm-up, {zoo_build.machine()}; every Ray "
            f"output equal to the local one's rows (floats to 1e-4):\n\n{text}"
        )
        zoo_build.write_section("scan-ray", block)
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
