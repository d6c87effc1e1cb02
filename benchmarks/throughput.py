"""Scan throughput end to end (file to row), next to RED's FEN and a decode floor.

    .venv/bin/python benchmarks/throughput.py [--sizes 64,128,256] [--images 400]
        [--photos 60] [--model MODEL_DIR] [--repeats 3]
        [--runtimes torch,compile,onnxruntime,openvino,torch+bf16,...] [--write]

For each size: `--images` PNG files of that size (crops of the embedded
photographs, so real image statistics) are written to a temporary folder, then

* decode floor: `load_rgb` of every file on one thread (read + PNG decode + RGB);
* scan: `Analyzer.scan` of the folder into a fresh .jsonl (find, read, sha256,
  decode and crop in threads, batched inference, rows written and synced),
  images/s, with the default crops per image (up to 9); once per inference engine
  (`--runtime`: torch, torch.compile, ONNX Runtime, OpenVINO; torch.compile compiles
  in the warm-up run; "+bf16": with `--precision bf16`, where the CPU has bfloat16
  instructions); then with `--max-crops 1` in the
  engine measured fastest at that size;
* RED's FEN: the forward pass of RED's fingerprint network (DnCNN-17) alone on
  the same images at their size, batched, in that same engine, images/s.

`--photos N`: the same on N of the project's own photographs at full size (the
files of src/gmtrace/zoo/photo_catalog.csv installed here, spread over its
collections: wallpapers and the like, 0.3-12 MP JPEGs and PNGs, copied to the
temporary folder), without RED (whose FEN reads a whole image at its size: a
12-MP forward pass is not a scan's).

Then the scan's forward pass alone (network and readout, `engine.ScanGraph`) on
the model's crops, in each engine (crops/s), beside the
network as trained (batch norm a pass of its own); for a fused model, each part of
its answer (`fused_rates`: the network, p(generated) alone, the self-description, and
`Fusion.answer` with the band's re-encodings) on crops of the embedded photographs.
Every figure is the median of `--repeats` runs after a warm-up run.

Prints the tables, and with --write puts them in docs/benchmarks.md between
markers, with the command and the machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
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


def catalog_photos(folder: Path, n: int) -> list[Path]:
    """Up to `n` of the project's photographs at full size (the catalog's files
    installed here), taken in turn from each collection, copied into `folder`."""
    import shutil

    from gmtrace.data.images import ImageError
    from gmtrace.zoo.photos import catalog, resolve

    by: dict[str, list[Path]] = {}
    for entry in catalog():
        try:
            path = resolve(entry)
        except ImageError:
            continue
        if path.suffix.lower() in (".jpg", ".jpeg", ".png") and path.is_file():
            by.setdefault(entry.collection, []).append(path)
    turns = zip(*[sorted(v) for v in by.values()], strict=False)
    order = [p for turn in turns for p in turn]
    order += [p for v in by.values() for p in sorted(v) if p not in set(order)]
    out = []
    for i, src in enumerate(order[:n]):
        dst = folder / f"{i:05d}{src.suffix.lower()}"
        shutil.copyfile(src, dst)
        out.append(dst)
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


def median_rate(rate, repeats: int) -> float:
    """The median of `repeats` calls of `rate()` (each returns items/s) after one
    warm-up call."""
    rate()
    return float(np.median([rate() for _ in range(repeats)]))


def batches_rate(run, x: np.ndarray, batch: int) -> float:
    """Items/s of `run` over `x` in batches."""
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        run(x[i : i + batch])
    return len(x) / (time.perf_counter() - t0)


def red_fen_rate(files: list[Path], runtime: str, repeats: int, batch: int = 16) -> float:
    """RED's fingerprint network (DnCNN-17) alone on the images at their size, in
    torch or through an exporting runtime (the same engine the scan runs)."""
    from gmtrace.data.images import load_rgb, to_float
    from gmtrace.nets.config import red_config
    from gmtrace.nets.model import GMTraceModel

    fen = GMTraceModel(red_config()).fen.eval()
    x = to_float(np.stack([load_rgb(f) for f in files]))
    return median_rate(partial(batches_rate, _runner(fen, x[:batch], runtime), x, batch), repeats)


def split_engine(engine: str) -> tuple[str, str]:
    """(runtime, precision) of an engine named "runtime" or "runtime+precision"."""
    runtime, _, precision = engine.partition("+")
    return runtime, precision or "fp32"


def engine_analyzer(engine: str, model: str | None, **options):
    """`Analyzer(model, **options)` scanning in `engine` (its runtime and precision)."""
    from gmtrace.product.analyze import Analyzer

    runtime, precision = split_engine(engine)
    return Analyzer(model, runtime=runtime, precision=precision, **options)


def _runner(module: torch.nn.Module, example: np.ndarray, engine: str):
    """A callable float32 batch -> outputs of `module` in `engine` (torch, compile,
    onnxruntime or openvino, "+bf16" for bfloat16; the ONNX graphs exported with a
    free batch size)."""
    from gmtrace.core.precision import precision_scope

    runtime, precision = split_engine(engine)
    if runtime in ("torch", "compile"):

        def call(xb):
            with precision_scope(precision):
                return module(xb)

        m = torch.compile(call) if runtime == "compile" else call

        def run(xb):
            with torch.no_grad():
                return m(torch.from_numpy(xb))

        return run
    import warnings

    from gmtrace.engine.graph import OPSET

    path = Path(tempfile.mkdtemp()) / "graph.onnx"
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.from_numpy(example),),
            dynamo=True,
            input_names=["x"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=OPSET,
            verbose=False,
        ).save(str(path))
    if runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda xb: sess.run(None, {"x": xb})
    import openvino as ov

    hint = "f32" if precision == "fp32" else precision
    cfg = {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    req = ov.Core().compile_model(str(path), "CPU", cfg).create_infer_request()
    return lambda xb: req.infer({0: xb})


def forward_rates(analyzer, runtimes: list[str], repeats: int, n: int = 256, batch: int = 64):
    """Crops/s of the scan's forward pass (network and readout, `engine.ScanGraph`) on
    64-px crops in each runtime, and of the network alone as trained (batch norm a
    pass of its own) in torch."""
    from gmtrace.data.images import to_float
    from gmtrace.engine.graph import ScanGraph
    from gmtrace.readout.saved import load_model

    rng = np.random.default_rng(1)
    x = to_float(
        rng.integers(0, 256, (n, analyzer.image_size_, analyzer.image_size_, 3), dtype=np.uint8)
    )
    trained = load_model(analyzer.model_dir_, device=torch.device("cpu")).model.eval()
    graph = ScanGraph(analyzer.model_, analyzer.readout_)
    out = []
    ways = [
        (
            "torch eager, the network alone as trained (no readout, batch norm unfolded)",
            trained,
            "torch",
        )
    ]
    ways += [(engine_label(r), graph, r) for r in runtimes]
    for name, m, runtime in ways:
        try:
            rate = median_rate(
                partial(batches_rate, _runner(m, x[:batch], runtime), x, batch), repeats
            )
        except Exception as e:  # an engine that cannot run here is reported, not fatal
            print(f"forward, {name}: failed ({str(e).splitlines()[0][:120]})")
            continue
        out.append((name, rate))
        print(f"forward, {name}: {rate:.0f} crops/s")
    return out


def fused_rates(analyzer, repeats: int, n: int = 512) -> tuple[list, float]:
    """Crops/s of each part of a fused model's answer on `n` crops of the embedded
    photographs at the model's input size, in the analyzer's engine, and the share of
    them the unsure band reads again; ([], 0) for a model without a fusion."""
    from threadpoolctl import threadpool_limits

    from gmtrace.readout.inference import infer
    from gmtrace.realmodel.selfdesc import describe
    from gmtrace.zoo.real import load_embedded

    f = analyzer.fusion_
    if f is None:
        return [], 0.0
    size = analyzer.image_size_
    rng = np.random.default_rng(0)
    photos = [p.pixels for p in load_embedded() if min(p.pixels.shape[:2]) >= 2 * size]
    crops = []
    for i in range(n):
        a = photos[i % len(photos)]
        y, x = rng.integers(0, a.shape[0] - size), rng.integers(0, a.shape[1] - size)
        crops.append(a[y : y + size, x : x + size])
    grid = np.stack(crops)
    p_sup = analyzer.supervised_p(grid)
    unl = f.real.unlikeness(describe(grid))
    flagged = float(np.mean(f.band.flagged(f.fused(p_sup, unl), f.disagree(p_sup, unl))))

    def network(x):
        return infer(analyzer.model_, analyzer.readout_, x, runtime=analyzer.runtime_)

    def answer(x):  # as a scan calls it: the network's p of x at hand
        return f.answer(x, lambda a: p_sup if a is x else analyzer.supervised_p(a))

    parts = [
        ("network and readout, every output of a row (`infer`)", network),
        ("p(generated) alone (`inference.detect`, the band's re-encodings)", analyzer.supervised_p),
        ("the self-description (`realmodel.selfdesc.describe`)", describe),
        (
            "`Fusion.answer` given the network's p: the self-description, the band, "
            f"the re-encodings of the {flagged:.0%} of crops it reads again",
            answer,
        ),
    ]
    out = []
    with threadpool_limits(limits=1, user_api="blas"):  # as `Analyzer.analyze_crops` runs
        for name, run in parts:
            out.append((name, median_rate(partial(batches_rate, run, grid, len(grid)), repeats)))
            print(f"fused, {name}: {out[-1][1]:.0f} crops/s")
    return out, flagged


_ENGINE_LABEL = {
    "torch": "torch eager (batch norm folded: the scan's torch runtime)",
    "compile": "torch.compile (inductor)",
    "onnxruntime": "ONNX Runtime, CPU provider",
    "openvino": "OpenVINO, CPU",
}


def engine_label(engine: str) -> str:
    runtime, precision = split_engine(engine)
    return f"{_ENGINE_LABEL[runtime]}, {'float32' if precision == 'fp32' else 'bfloat16'}"


def measure(folder: Path, files: list[Path], analyzers: dict, one: dict, a, red: bool):
    """One row: the decode floor, the scan in every engine, then `--max-crops 1`
    and RED's FEN in the engine measured fastest here."""
    floor = median_rate(partial(decode_floor, files), a.repeats)
    out = folder.parent / "rows.jsonl"
    scans = {
        r: median_rate(partial(scan_rate, an, folder, out), a.repeats)
        for r, an in analyzers.items()
    }
    fast = max(scans, key=scans.get)
    scan1 = median_rate(partial(scan_rate, one[fast], folder, out), a.repeats)
    fen = red_fen_rate(files[: max(32, a.images // 4)], fast, a.repeats) if red else None
    return scans, fast, scan1, fen, floor


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="64,128,256")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--photos", type=int, default=60, help="full-size photographs (0: none)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--runtimes",
        default="torch,compile,onnxruntime,openvino,torch+bf16,compile+bf16,openvino+bf16",
        help="engines: runtime or runtime+bf16 (bf16 ones are left out where the CPU "
        "lacks bfloat16 instructions)",
    )
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    from gmtrace.core.precision import bf16_supported
    from gmtrace.data.crops import crop_count
    from gmtrace.engine.runtimes import installed

    def runs_here(engine: str) -> bool:
        runtime, precision = split_engine(engine)
        ok = runtime in ("torch", "compile") or installed(runtime)
        return ok and (precision == "fp32" or bf16_supported())

    runtimes = [r for r in a.runtimes.split(",") if runs_here(r)]
    engines = runtimes  # every one is a scan's (`--runtime`, `--precision`)

    analyzers = {r: engine_analyzer(r, a.model) for r in engines}
    one = {r: engine_analyzer(r, a.model, max_crops=1) for r in engines}
    base = analyzers[engines[0]]
    rows = []
    cases = [(f"{s} px", int(s)) for s in a.sizes.split(",")]
    cases += [("photographs, full size", 0)] if a.photos else []
    for label, size in cases:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "case"
            folder.mkdir()
            if size:
                files = make_files(folder, size, a.images)
                crops = str(crop_count(size, size, base.image_size_, base.max_crops))
            else:
                files = catalog_photos(folder, a.photos)
                mp = [np.prod(Image.open(f).size) / 1e6 for f in files]
                label += f" ({len(files)} files, median {np.median(mp):.1f} MP)"
                crops = str(base.max_crops)
            scans, fast, scan1, fen, floor = measure(folder, files, analyzers, one, a, bool(size))
        rows.append((label, crops, scans, fast, scan1, fen, floor))
        rates = ", ".join(f"{r} {v:.0f}/s" for r, v in scans.items())
        red = f"; RED FEN {fen:.1f}/s" if fen else ""
        print(f"{label}: scan {rates}; one crop ({fast}) {scan1:.0f}/s{red}", flush=True)
    forward = forward_rates(base, runtimes, a.repeats)
    fused, _ = fused_rates(base, a.repeats)
    head = " | ".join(f"scan, {r} (images/s)" for r in engines)
    table = [
        f"| images | crops read | {head} | fastest engine here | scan, fastest, "
        "`--max-crops 1` | RED's FEN alone, fastest (images/s) | scan / RED "
        "| decode floor, one thread (images/s) |",
        "|---|---|" + "---|" * len(engines) + "---|---|---|---|---|",
    ]
    for label, crops, scans, fast, sc1, fen, f in rows:
        cells = " | ".join(f"{scans[e]:.0f}" for e in engines)
        red = f"{fen:.1f} | {scans[fast] / fen:.0f}x" if fen else "- | -"
        table.append(f"| {label} | {crops} | {cells} | {fast} | {sc1:.0f} | {red} | {f:.0f} |")
    table += [
        "",
        f"| the scan's forward pass (network + readout), {base.image_size_}-px crops, "
        "batches of 64 | crops/s |",
        "|---|---|",
    ]
    table += [f"| {name} | {rate:.0f} |" for name, rate in forward]
    if fused:
        table += [
            "",
            f"| a fused model's answer, parts, in the {engines[0]} engine: "
            f"{base.image_size_}-px crops of the embedded photographs, one batch | crops/s |",
            "|---|---|",
        ]
        table += [f"| {name} | {rate:.0f} |" for name, rate in fused]
    cmd = zoo_build.command()
    text = "\n".join(table)
    print(text)
    if a.write:
        block = (
            f"## Scan throughput\n\n{cmd}, model {base.model_id_}, {a.images} images per size, "
            f"each figure the median of {a.repeats} runs after a warm-up, "
            f"{zoo_build.machine()}, "
            f"{torch.get_num_threads()} threads:\n\n{text}"
        )
        zoo_build.write_section("throughput", block)
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
