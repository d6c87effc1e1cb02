"""What a cheaper fingerprint network could give a scan, and int8's trial (issue 23).

    .venv/bin/python benchmarks/fen_bound.py --zoo zoo_default --zoo tiers/pretrained \\
        --zoo tiers/foreign [--per-zoo 300] [--size 128] [--images 200] [--repeats 3]
        [--engines torch,torch+bf16] [--model MODEL_DIR] [--write]

Two measurements on the shipped model (or `--model`), each figure the median of
`--repeats` runs after a warm-up:

1. **int8.** The FEN's body (its convolutions; batch norm folded, as a scan holds
   it) quantized to int8 by torch's post-training static quantization (FX, the x86
   backend: weights per channel, each activation's range from a histogram of 256
   calibration crops drawn from the zoos' images). Speed, crops/s on 64-px crops in
   batches of 32 (the scan's layout: `data.images.to_float`): the body alone and the
   scan's forward pass (`engine.ScanGraph`, network and readout) in float32,
   bfloat16 (torch's autocast) and with the int8 body (the rest in float32, or in
   bfloat16). Agreement with float32, on `--per-zoo` images of each zoo's generated
   and real folders (the calibration crops left out): mean and largest |p - p_fp32|,
   verdicts at 0.5 that flip, and the detection AUC of generated against real.
2. **The bound.** The scan (`Analyzer.scan`, file to row, every output on) of
   `--images` files of `--size` px in each engine, once as shipped and once with the
   FEN's body taking no time (its output replaced by zeros: the fingerprint is then
   the 3x3 residual alone, so only the speed is read, not the answers). No cheaper
   FEN (a distilled student, int8, pruning) can make a scan faster than the second
   figure.

Prints the tables; with --write puts them in docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (make_files, median_rate, scan_rate, split_engine)
import zoo_build  # noqa: E402  (command, machine, write_section)

BATCH = 32
N_CALIBRATION = 256


class NoBody(torch.nn.Module):
    """A FEN body that takes no time: zeros of the input's shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def zoo_images(zoos: list[str], per_zoo: int, seed: int = 0):
    """(uint8 images [N, 64, 64, 3], 1 for generated / 0 for real): up to `per_zoo`
    of each zoo's generated and of its real images, drawn at random."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for zoo in zoos:
        for label, part in ((1, "fake"), (0, "real")):
            files = sorted(Path(zoo, part).glob("*/*.png"))
            for i in rng.permutation(len(files))[:per_zoo]:
                a = np.asarray(Image.open(files[i]).convert("RGB"))
                if min(a.shape[:2]) >= 64:
                    images.append(a[:64, :64])
                    labels.append(label)
    if not images:
        raise SystemExit(f"no 64-px images under {zoos} (fake/*/*.png, real/*/*.png)")
    return np.stack(images), np.array(labels)


def quantized_body(body: torch.nn.Module, calibration: torch.Tensor) -> torch.nn.Module:
    """`body` in int8 (FX post-training static quantization, x86 backend), its
    activations' ranges observed on `calibration`."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(
            copy.deepcopy(body).eval(), get_default_qconfig_mapping("x86"), (calibration[:8],)
        )
        with torch.no_grad():
            for i in range(0, len(calibration), BATCH):
                prepared(calibration[i : i + BATCH])
        return convert_fx(prepared)


def crops_per_second(module, x: np.ndarray, precision: str, repeats: int) -> float:
    """Crops/s of `module` in torch in `precision`, as throughput.py measures it."""
    engine = "torch" if precision == "fp32" else f"torch+{precision}"
    run = throughput._runner(module, x[:BATCH], engine)
    return throughput.median_rate(partial(throughput.batches_rate, run, x, BATCH), repeats)


def p_generated(graph, x: np.ndarray, precision: str) -> np.ndarray:
    from gmtrace.core.precision import precision_scope

    i = graph.names.index("p_generated")
    out = []
    with torch.no_grad(), precision_scope(precision):
        for s in range(0, len(x), BATCH):
            out.append(graph(torch.from_numpy(x[s : s + BATCH]))[i].float().numpy())
    return np.concatenate(out)


def int8_trial(analyzer, zoos: list[str], per_zoo: int, repeats: int, bf16: bool):
    """(speed rows, agreement rows) of measurement 1."""
    from sklearn.metrics import roc_auc_score

    from gmtrace.data.images import to_float
    from gmtrace.engine.graph import ScanGraph

    images, labels = zoo_images(zoos, per_zoo)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(images))
    calib, test = order[:N_CALIBRATION], order[N_CALIBRATION:]
    x = to_float(images[test])
    model = analyzer.model_
    body8 = quantized_body(model.fen.body, torch.from_numpy(to_float(images[calib])))
    model8 = copy.deepcopy(model)
    model8.fen.body = body8
    graph = ScanGraph(model, analyzer.readout_)
    graph8 = ScanGraph(model8, analyzer.readout_)
    speed_x = x[: 8 * BATCH]
    ways = [("float32", model.fen.body, graph, "fp32")]
    ways += [("bfloat16 (autocast)", model.fen.body, graph, "bf16")] if bf16 else []
    ways += [("int8 body, the rest float32", body8, graph8, "fp32")]
    ways += [("int8 body, the rest bfloat16", body8, graph8, "bf16")] if bf16 else []
    speed, agree = [], []
    reference = p_generated(graph, x, "fp32")
    for name, body, g, precision in ways:
        fen = crops_per_second(body, speed_x, precision, repeats)
        whole = crops_per_second(g, speed_x, precision, repeats)
        speed.append((name, fen, whole))
        p = reference if g is graph and precision == "fp32" else p_generated(g, x, precision)
        d = np.abs(p - reference)
        flips = int(np.sum((p >= 0.5) != (reference >= 0.5)))
        agree.append((name, float(d.mean()), float(d.max()), flips, roc_auc_score(labels[test], p)))
        print(f"{name}: FEN {fen:.0f}, forward {whole:.0f} crops/s; mean |dp| {d.mean():.4f}")
    return speed, agree, len(test)


def bound(analyzers: dict, size: int, n: int, repeats: int) -> list[tuple[str, float, float]]:
    """(engine, scan images/s as shipped, with a FEN body that takes no time)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "case"
        folder.mkdir()
        throughput.make_files(folder, size, n)
        for engine, a in analyzers.items():
            rates = []
            body = a.model_.fen.body
            for fen in (body, NoBody()):
                a.model_.fen.body = fen
                rate = throughput.median_rate(
                    partial(throughput.scan_rate, a, folder, Path(tmp) / "rows.jsonl"), repeats
                )
                rates.append(rate)
            a.model_.fen.body = body
            out.append((engine, *rates))
            print(f"scan at {size} px, {engine}: {rates[0]:.0f} images/s, no FEN {rates[1]:.0f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", action="append", required=True)
    ap.add_argument("--per-zoo", type=int, default=300)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="torch,torch+bf16")
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    from gmtrace.core.precision import bf16_supported

    bf16 = bf16_supported()
    engines = [e for e in a.engines.split(",") if bf16 or not e.endswith("+bf16")]
    analyzers = {e: throughput.engine_analyzer(e, a.model) for e in engines}
    base = next(iter(analyzers.values()))
    speed, agree, n_test = int8_trial(base, a.zoo, a.per_zoo, a.repeats, bf16)
    scans = bound(analyzers, a.size, a.images, a.repeats)
    table = [
        "| FEN body | FEN body alone (crops/s) | forward pass, network and readout (crops/s) |",
        "|---|---|---|",
    ]
    table += [f"| {name} | {fen:.0f} | {whole:.0f} |" for name, fen, whole in speed]
    table += [
        "",
        f"| FEN body | mean abs(p - p float32) | largest | verdicts flipped (of {n_test}) "
        "| detection AUC |",
        "|---|---|---|---|---|",
    ]
    table += [
        f"| {name} | {m:.4f} | {mx:.3f} | {flips} | {auc:.4f} |"
        for name, m, mx, flips, auc in agree
    ]
    table += [
        "",
        f"| engine | scan at {a.size} px, as shipped (images/s) | the same, FEN body taking no "
        "time (images/s) | the most any cheaper FEN could give |",
        "|---|---|---|---|",
    ]
    table += [f"| {e} | {s:.0f} | {b:.0f} | {b / s:.2f}x |" for e, s, b in scans]
    text = "\n".join(table)
    print(text)
    if a.write:
        block = (
            f"## What a cheaper FEN could give, and int8 (issue 23)\n\n{zoo_build.command()}, "
            f"model {base.model_id_}, each figure the median of {a.repeats} runs after a "
            f"warm-up, {zoo_build.machine()}, {torch.get_num_threads()} threads "
            f"(method: the script's docstring):\n\n{text}"
        )
        zoo_build.write_section("fen-bound", block)
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
