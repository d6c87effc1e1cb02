"""Build a zoo preset, time it, and write its coverage to docs/benchmarks.md.

    .venv/bin/python benchmarks/zoo_build.py [--preset default] [--out zoo_default]
                                             [--workers 2] [--fresh]

Writes, between markers in docs/benchmarks.md: the wall time of the build on this
machine, GMs per family, GMs per loss type, GMs per class of each discrete
hyperparameter, the range of each continuous one, and the contact sheet
(docs/img/<preset>_contact_sheet.png). A resumed build says so, with the time of
this run and the total recorded in zoo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_TYPES, format_count, orders_of_magnitude
from gmtrace.data.dataset import GMDataset
from gmtrace.data.images import load_rgb
from gmtrace.zoo.builder import PRESETS, build_zoo
from gmtrace.zoo.recipe import COLLAPSE_BELOW
from gmtrace.zoo.show import contact_sheet

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cores = len(os.sched_getaffinity(0))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cores} cores ({cpu}), {mem:.0f} GiB, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def collapsed(ds: GMDataset) -> str:
    """The share of mode-collapsed GMs (diversity under COLLAPSE_BELOW) and of
    diverged ones retrained (zoo/builder.py)."""
    flags = [g.extra.get("collapsed") == "1" for g in ds.gms if "collapsed" in g.extra]
    redraws = sum(int(g.extra.get("redraws", 0)) for g in ds.gms)
    if not flags:
        return "mode collapse not recorded (zoo built before it was measured)"
    return (
        f"{sum(flags)} of {len(flags)} GMs mode-collapsed ({np.mean(flags):.0%}: image "
        f"diversity under {COLLAPSE_BELOW} of the real crops'), {redraws} diverged GMs "
        "retrained"
    )


def coverage(ds: GMDataset) -> str:
    lines = []
    fam = Counter(g.family for g in ds.gms)
    lines += ["| family | GMs |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(fam.items())]
    lines += ["", "| loss type | GMs |", "|---|---|"]
    loss = ds.loss_matrix().sum(axis=0)
    lines += [f"| {n} | {int(c)} |" for n, c in zip(LOSS_TYPES, loss, strict=True)]
    lines += ["", "| discrete hyperparameter | GMs per class | smallest class |", "|---|---|---|"]
    for f in DISCRETE:
        c = Counter(str(g.arch[f.name]) for g in ds.gms)
        per = ", ".join(f"{k} {c.get(k, 0)}" for k in f.classes)
        lines.append(f"| {f.name} | {per} | {min(c.get(k, 0) for k in f.classes)} |")
    lines += [
        "",
        "| continuous hyperparameter | min | median | max | orders of magnitude "
        "(positive values) |",
        "|---|---|---|---|---|",
    ]
    for f in CONTINUOUS:
        v = np.array([float(g.arch[f.name]) for g in ds.gms])
        lines.append(
            f"| {f.name} | {format_count(f.name, v.min())} | "
            f"{format_count(f.name, float(np.median(v)))} | "
            f"{format_count(f.name, v.max())} | {orders_of_magnitude(v):.2f} |"
        )
    return "\n".join(lines)


def image_stats(ds: GMDataset, per_gm: int = 32) -> str:
    """How much each GM's images vary: within an image (spatial std per channel)
    and across samples (per-pixel std over images), on the 0-255 scale. Nearly
    flat images carry little of a fingerprint; low diversity is mode collapse."""
    within, between = {}, {}
    for g in ds.gms:
        imgs = np.stack([load_rgb(p).astype(np.float32) for p in g.images()[:per_gm]])
        within[g.name] = float(imgs.std(axis=(1, 2)).mean())
        between[g.name] = float(imgs.std(axis=0).mean())
    flat = sorted(n for n, v in within.items() if v < 5)
    collapsed = sorted(n for n, v in between.items() if v < 5)
    real = np.stack([load_rgb(r.path).astype(np.float32) for r in ds.real[:256]])
    return "\n".join(
        [
            f"Image statistics ({per_gm} images per GM, 0-255 scale): median spatial std "
            f"{np.median(list(within.values())):.1f} "
            f"(real crops {real.std(axis=(1, 2)).mean():.1f}), "
            f"median sample diversity {np.median(list(between.values())):.1f} "
            f"(real crops {real.std(axis=0).mean():.1f}).",
            f"- nearly flat images (spatial std < 5): {len(flat)} GMs"
            + (f" ({', '.join(flat)})" if flat else ""),
            f"- low sample diversity (< 5, mode collapse): {len(collapsed)} GMs"
            + (f" ({', '.join(collapsed)})" if collapsed else ""),
            "- every GM trains for the preset's few steps (a CPU budget), far from "
            "convergence; GAN families collapse most often.",
        ]
    )


def command() -> str:
    """The running benchmark's command line, as docs/benchmarks.md quotes it."""
    return f"`.venv/bin/python benchmarks/{Path(sys.argv[0]).name} {' '.join(sys.argv[1:])}`"


def write_section(name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = (
        DOC.read_text()
        if DOC.is_file()
        else "# Benchmarks\n\nFigures measured by the "
        "scripts in `benchmarks/`; each section names the command that made it.\n"
    )
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default", choices=sorted(PRESETS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="delete --out first")
    args = ap.parse_args()
    out = args.out or ROOT / f"zoo_{args.preset}"
    if args.fresh and out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    summary = build_zoo(out, preset=args.preset, seed=args.seed, workers=args.workers)
    wall = time.perf_counter() - t0
    if not summary.ok:
        print(f"{len(summary.failed)} GMs failed: {summary.failed}", file=sys.stderr)
    ds = GMDataset.from_zoo(out)
    state = json.loads((out / "zoo.json").read_text())
    img_dir = ROOT / "docs" / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    sheet = contact_sheet(ds, img_dir / f"{args.preset}_contact_sheet.png", per_gm=3, size=32)
    p = PRESETS[args.preset]
    cmd = (
        f"`.venv/bin/python benchmarks/zoo_build.py --preset {args.preset} "
        f"--workers {args.workers}{' --fresh' if args.fresh else ''}`"
    )
    total = state.get("build_seconds", wall)
    runs = state.get("runs", 1)
    timing = f"**{total / 60:.1f} min** wall in all to build the {len(ds)} GMs" + (
        f" ({runs} runs of the resumable build; this run {wall / 60:.1f} min, "
        f"{len(summary.built)} GMs built, {len(summary.relabelled)} relabelled)"
        if runs > 1
        else ""
    )
    body = "\n".join(
        [
            f"## Zoo build: preset `{args.preset}`",
            "",
            f"Command: {cmd} (seed {args.seed}). Machine: {machine()}.",
            "",
            f"- {timing}; {args.workers} workers; target for `default`: under 40 min, so "
            "that with the synthesized tier it stays under 60 min.",
            f"- {len(ds)} GMs in {len({g.family for g in ds.gms})} families, "
            f"{sum(len(g.images()) for g in ds.gms)} images at {p.resolution} px, "
            f"{len(ds.real)} real crops from {len({r.source for r in ds.real})} photographs; "
            f"training steps per GM log-uniform in {p.steps[0]}..{p.steps[1]}, batch in "
            f"{', '.join(map(str, p.batch))} (each GM's recipe in models.csv); "
            f"{collapsed(ds)}; {len(summary.failed)} failed.",
            "",
            coverage(ds),
            "",
            image_stats(ds),
            "",
            f"Contact sheet (samples and mean residual spectrum of every GM, real domains "
            f"at the bottom): ![contact sheet](img/{sheet.name})",
        ]
    )
    write_section(f"zoo_build_{args.preset}", body)
    print(body)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
