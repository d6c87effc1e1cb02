"""Where a scan's time goes, stage by stage (issue 23's profile after the work).

    .venv/bin/python benchmarks/scan_profile.py [--size 128] [--images 200]
        [--engines torch,compile+bf16] [--model MODEL_DIR] [--write]

The same folder as `benchmarks/throughput.py` makes (`--images` crops of the
embedded photographs at `--size` px, PNG) is scanned once as a warm-up and once
measured, per engine ("runtime" or "runtime+bf16"). The stages are timed by
wrapping the functions a scan calls in its main thread (wall seconds, summed):

* the network and readout on every crop (`infer`: every output of a row);
* the self-description of every crop, and of the re-encoded ones (`describe`);
* the re-encodings themselves (JPEG q95 / q75, the 0.75 resize);
* p(generated) alone of the re-encoded crops (`detect`);
* each row's answers from the network's outputs (`Analyzer._result`: the open-set
  score, the parse read out, the gate);
* the rest: waiting for the decoding threads, writing and syncing the rows, Python.

Prints the table; with --write puts it in docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (make_files, split_engine)
import zoo_build  # noqa: E402  (machine, write_section)

STAGES = (
    ("infer", "network and readout, every crop (every output of a row)"),
    ("describe", "self-description, every crop and the re-encoded ones"),
    ("reencoded", "the re-encodings (JPEG q95, q75, 0.75 resize)"),
    ("detect", "p(generated) alone of the re-encoded crops"),
    ("_result", "each row's answers from the outputs (open-set score, parse, gate)"),
)


def profile(folder: Path, engine: str, model: str | None) -> tuple[float, dict[str, float]]:
    """(images/s, seconds per stage) of one measured scan of `folder` in `engine`."""
    import gmtrace.product.analyze as analyze_mod
    import gmtrace.readout.fused as fused_mod
    from gmtrace.product.analyze import Analyzer

    spent: dict[str, float] = defaultdict(float)

    def timed(name, f):
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - t0

        return run

    saved = {
        (analyze_mod, "infer"): analyze_mod.infer,
        (analyze_mod, "detect"): analyze_mod.detect,
        (fused_mod, "describe"): fused_mod.describe,
        (fused_mod, "reencoded"): fused_mod.reencoded,
        (Analyzer, "_result"): Analyzer._result,
    }
    try:
        for (owner, name), f in saved.items():
            setattr(owner, name, timed(name, f))
        a = throughput.engine_analyzer(engine, model)
        out = folder.parent / "rows.jsonl"
        throughput.scan_rate(a, folder, out)  # warm-up (compiles where it compiles)
        spent.clear()
        t0 = time.perf_counter()
        rate = throughput.scan_rate(a, folder, out)
        wall = time.perf_counter() - t0
    finally:
        for (owner, name), f in saved.items():
            setattr(owner, name, f)
    spent["rest"] = wall - sum(spent.values())
    return rate, dict(spent) | {"wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--engines", default="torch,compile+bf16")
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    engines = a.engines.split(",")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "case"
        folder.mkdir()
        throughput.make_files(folder, a.size, a.images)
        for engine in engines:
            results[engine] = profile(folder, engine, a.model)
            rate, spent = results[engine]
            print(
                f"{engine}: {rate:.0f} images/s; "
                + ", ".join(f"{k} {v:.2f} s" for k, v in spent.items()),
                flush=True,
            )
    head = " | ".join(f"{e}: s (share)" for e in engines)
    table = [f"| stage | {head} |", "|---|" + "---|" * len(engines)]
    for key, label in (
        *STAGES,
        ("rest", "the rest: decoding threads' waits, rows written, Python"),
    ):
        cells = []
        for e in engines:
            _, spent = results[e]
            cells.append(f"{spent.get(key, 0.0):.2f} ({spent.get(key, 0.0) / spent['wall']:.0%})")
        table.append(f"| {label} | {' | '.join(cells)} |")
    walls = " | ".join(
        f"{results[e][1]['wall']:.2f} s, {results[e][0]:.0f} images/s" for e in engines
    )
    table.append(f"| all ({a.images} images of {a.size} px) | {walls} |")
    text = "\n".join(table)
    print(text)
    if a.write:
        cmd = zoo_build.command()
        zoo_build.write_section(
            "scan-profile",
            f"## Where a scan's time goes (issue 23)\n\n{cmd}, one measured scan after a "
            f"warm-up, {zoo_build.machine()}:\n\n{text}",
        )
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
