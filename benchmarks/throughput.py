"""Scan throughput end to end (file to row), next to RED's FEN and a decode floor.

    .venv/bin/python benchmarks/throughput.py [--sizes 64,128,256] [--images 400]
                                              [--model MODEL_DIR] [--write]

For each size: `--images` PNG files of that size (crops of the embedded
photographs, so real image statistics) are written to a temporary folder, then

* decode floor: `load_rgb` of every file on one thread (read + PNG decode + RGB);
* scan: `Analyzer.scan` of the folder into a fresh .jsonl (find, read, sha256,
  decode and crop in threads, batched inference, rows written and synced),
  images/s, with the default crops per image (up to 9) and with `--max-crops 1`;
* RED's FEN: the forward pass of RED's fingerprint network (DnCNN-17) alone on
  the same images at their size, batched, images/s.

Then the network's forward pass alone on 64-px crops, once per optimization
(crops/s): as trained (batch norm as its own pass, the 3x3 residual made twice),
the residual made once, and batch norm folded into the convolutions (what
`Analyzer` runs).

Prints the tables, and with --write puts them in docs/benchmarks.md between
markers, with the command and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_build  # noqa: E402  (machine())


def make_files(folder: Path, size: int, n: int, seed: int = 0) -> list[Path]:
    from gmtrace.zoo.real import load_embedded

    rng = np.random.default_rng(seed)
    photos = [p.pixels for p in load_embedded() if min(p.pixels.shape[:2]) >= size]
    out = []
    for i in range(n):
        a = photos[i % len(photos)]
        y = rng.integers(0, a.shape[0] - size + 1)
        x = rng.integers(0, a.shape[1] - size + 1)
        p = folder / f"{i:05d}.png"
        Image.fromarray(a[y : y + size, x : x + size]).save(p)
        out.append(p)
    return out


def decode_floor(files: list[Path]) -> float:
    from gmtrace.data.images import load_rgb

    t0 = time.perf_counter()
    for f in files:
        load_rgb(f)
    return len(files) / (time.perf_counter() - t0)


def scan_rate(analyzer, folder: Path, out: Path) -> float:
    if out.exists():
        out.unlink()
    t0 = time.perf_counter()
    s = analyzer.scan([folder], out)
    wall = time.perf_counter() - t0
    assert s.analyzed == s.files, (s.analyzed, s.files)
    return s.files / wall


@torch.no_grad()
def red_fen_rate(files: list[Path], batch: int = 16) -> float:
    from gmtrace.data.images import load_rgb, to_float
    from gmtrace.nets.config import red_config
    from gmtrace.nets.model import GMTraceModel

    fen = GMTraceModel(red_config()).fen.eval()
    x = torch.from_numpy(to_float(np.stack([load_rgb(f) for f in files])))
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        fen(x[i : i + batch])
    return len(x) / (time.perf_counter() - t0)


@torch.no_grad()
def forward_rates(analyzer, n: int = 256, batch: int = 64, repeats: int = 3) -> list[tuple]:
    """Crops/s of the forward pass per optimization (see the module doc)."""
    from gmtrace.data.images import to_float
    from gmtrace.readout.saved import load_model

    trained = load_model(analyzer.model_dir_, device=torch.device("cpu")).model.eval()
    rng = np.random.default_rng(1)
    x = torch.from_numpy(to_float(rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)))

    def twice(m, xb):  # the residual recomputed inside the FEN and for the spectrum
        m.features(m.fen(xb), xb)

    ways = [
        ("as trained: batch norm a pass of its own, the 3x3 residual made twice", trained, twice),
        ("the residual made once (`GMTraceModel.forward`)", trained, lambda m, xb: m(xb)),
        (
            "batch norm folded into the convolutions (`fold_batch_norm`)",
            analyzer.model_,
            lambda m, xb: m(xb),
        ),
    ]
    out = []
    for name, m, fn in ways:
        fn(m, x[:batch])  # warm-up
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                fn(m, x[i : i + batch])
            best = min(best, time.perf_counter() - t0)
        out.append((name, n / best))
        print(f"forward, {name}: {n / best:.0f} crops/s")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    from gmtrace.data.crops import crop_count
    from gmtrace.product.analyze import Analyzer

    analyzer = Analyzer(a.model)
    one = Analyzer(a.model, max_crops=1)
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "case"
            folder.mkdir()
            files = make_files(folder, size, a.images)
            floor = decode_floor(files)
            scan = scan_rate(analyzer, folder, Path(tmp) / "rows.jsonl")
            scan1 = scan_rate(one, folder, Path(tmp) / "rows.jsonl")
            red = red_fen_rate(files[: max(32, a.images // 4)])
        rows.append((size, scan, scan1, red, floor))
        print(
            f"{size} px: scan {scan:.0f}/s ({scan1:.0f}/s with one crop), RED FEN {red:.1f}/s, "
            f"decode {floor:.0f}/s"
        )
    forward = forward_rates(analyzer)
    crops = {s: crop_count(s, s, analyzer.image_size_, analyzer.max_crops) for s, *_ in rows}
    table = [
        "| image size | crops read | scan, end to end (images/s) | scan, `--max-crops 1` "
        "| RED's FEN forward alone (images/s) | scan / RED | decode floor, one thread "
        "(images/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [
        f"| {s} px | {crops[s]} | {sc:.0f} | {sc1:.0f} | {r:.1f} | {sc / r:.0f}x | {f:.0f} |"
        for s, sc, sc1, r, f in rows
    ]
    table += [
        "",
        "| the network's forward pass, 64-px crops, batches of 64 | crops/s |",
        "|---|---|",
    ]
    table += [f"| {name} | {rate:.0f} |" for name, rate in forward]
    cmd = "`.venv/bin/python benchmarks/throughput.py " + " ".join(sys.argv[1:]) + "`"
    text = "\n".join(table)
    print(text)
    if a.write:
        block = (
            f"## Scan throughput\n\n{cmd}, model {analyzer.model_id_}, {a.images} images per size, "
            f"{zoo_build.machine()}, "
            f"{torch.get_num_threads()} threads:\n\n{text}"
        )
        zoo_build.write_section("throughput", block)
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
