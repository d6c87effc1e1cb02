"""Fewer crops and early exit, judged by the evaluation's figures on images larger
than one crop (issue 23). Every image of the zoos and tiers the codebase protocol
runs on is 64 px, one crop of the model's input, so reading fewer crops of a larger
image cannot be judged there. The pretrained tier's generators (super-resolution
and restoration networks, fully convolutional) make images of any size: built at
128 px (`gmtrace zoo pretrained --preset large --out tiers/pretrained_large`), each
image is four crops of the model's input. Here each fold's networks of a
codebase-held-out run (`gmtrace evaluate ... --holdout codebase --out RUN`) read
those images of the GMs of the fold's own test codebases, against the tier's
128-px crops of the fold's own test photo collections (code and photographs the
fold's networks never saw), in three ways:

- `grid`: the scan's default, every crop (4 at 128 px), answers averaged;
- `one`: the centre crop alone (`--max-crops 1`);
- `exit@c`: the centre crop first; where its p(generated) is at least c from 0.5
  (c = 0.4: p <= 0.1 or p >= 0.9), its answer stands, else the image is read as
  `grid` (the centre crop is not one of the grid's, so an image read both ways
  costs 1 + 4 crops).

For each: detection AUC clean and with both classes JPEG q75, the share right at
0.5, the share called unsure (fused models), grouping ARI of the test GMs' images
with the number of GMs unknown (`Analyzer.group`), and the crops read per image.
Each fold's figures are for its own networks on its own test codebases.

    .venv/bin/python benchmarks/crops_judged.py --run runs/eval_codebase_inner \\
        --tier tiers/pretrained_large --method fused --per-gm 40 --real 400
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import adjusted_rand_score, roc_auc_score

from gmtrace.data.augment import jpeg
from gmtrace.product.analyze import Analyzer
from gmtrace.readout.readout import READOUT
from gmtrace.readout.saved import CONFIG, FUSION, FUSION_RECORD, WEIGHTS

EXITS = (0.3, 0.4, 0.45)


def fold_model(run: Path, fold: int, method: str, tmp: Path) -> Path:
    """A model folder of the fold's networks: gmtrace's network and readout, with the
    fused method's fusion beside them for `fused`."""
    net = run / f"fold{fold}" / "gmtrace"
    if method == "gmtrace":
        return net
    d = tmp / f"fold{fold}-{method}"
    d.mkdir()
    for f in (WEIGHTS, READOUT, CONFIG):
        (d / f).symlink_to((net / f).resolve())
    for f in (FUSION, FUSION_RECORD):
        (d / f).symlink_to((run / f"fold{fold}" / method / f).resolve())
    return d


def fold_images(tier: Path, split: dict, fold: int, per_gm: int, n_real: int, seed: int):
    """The tier's images of the fold's test codebases (`per_gm` each) and its real
    crops of the fold's test collections (`n_real`, drawn at random)."""
    codebases = set(split["test_codebases"][fold])
    collections = set(split["test_collections"][fold])
    with open(tier / "models.csv", newline="") as f:
        gms = [r["name"] for r in csv.DictReader(f) if r["codebase"] in codebases]
    fake = [
        (p, gm) for gm in sorted(gms) for p in sorted((tier / "fake" / gm).glob("*.png"))[:per_gm]
    ]
    with open(tier / "real" / "index.csv", newline="") as f:
        real = [tier / r["file"] for r in csv.DictReader(f) if r["collection"] in collections]
    rng = np.random.default_rng(seed)
    real = [real[i] for i in sorted(rng.permutation(len(real))[:n_real])]
    return fake, real


def answers(a: Analyzer, images: list[np.ndarray], names: list[str], chunk: int = 256):
    out = []
    for i in range(0, len(images), chunk):
        out += a.analyze_arrays(images[i : i + chunk], names[i : i + chunk])
    return out


def judge(model: Path, images: list[np.ndarray], names: list[str]):
    """Every setting's answers and figures for one fold's model on its images."""
    grid_a, one_a = Analyzer(model, max_crops=9), Analyzer(model, max_crops=1)
    q75 = [jpeg(x, 75) for x in images]
    got = {
        key: (answers(a, images, names), answers(a, q75, names))
        for key, a in (("grid", grid_a), ("one", one_a))
    }
    rows = {}
    for key in ("grid", "one", *(f"exit@{c}" for c in EXITS)):
        if key.startswith("exit@"):
            c = float(key[5:])
            pick = [
                [o if abs(o.p_generated - 0.5) >= c else g for o, g in zip(one, grid, strict=True)]
                for one, grid in zip(got["one"], got["grid"], strict=True)
            ]
            exited = np.array([abs(o.p_generated - 0.5) >= c for o in got["one"][0]])
            crops = 1 + np.where(exited, 0, [g.crops for g in got["grid"][0]])
        else:
            pick = got[key]
            crops = np.array([r.crops for r in pick[0]])
        rows[key] = (pick, crops)
    return rows, grid_a


def figures(pick, crops, fake, gm_of, grouper: Analyzer) -> dict:
    clean, q75 = pick
    p = np.array([r.p_generated for r in clean])
    pq = np.array([r.p_generated for r in q75])
    verdict = np.array([r.verdict for r in clean])
    right = np.where(fake, p >= 0.5, p < 0.5)
    gen = [r for r, f in zip(clean, fake, strict=True) if f]
    grouped = [replace(r) for r in gen]  # `group` writes each result's group
    grouper.group(grouped, generated_only=False)
    truth = [gm_of[r.path] for r in gen]
    return {
        "auc_clean": roc_auc_score(fake, p),
        "auc_q75": roc_auc_score(fake, pq),
        "right": float(right.mean()),
        "unsure": float((verdict == "unsure").mean()),
        "ari": adjusted_rand_score(truth, [r.group for r in grouped]),
        "crops": float(np.mean(crops)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--tier", type=Path, required=True)
    ap.add_argument("--method", default="fused", choices=("gmtrace", "fused"))
    ap.add_argument("--per-gm", type=int, default=40)
    ap.add_argument("--real", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    split = json.loads((args.run / "results.json").read_text())["split"]
    res = json.loads((args.tier / "zoo.json").read_text())["resolution"]
    tmp = Path(tempfile.mkdtemp())
    table: dict[str, dict] = {}
    try:
        for fold in range(len(split["test_codebases"])):
            fake_f, real_f = fold_images(args.tier, split, fold, args.per_gm, args.real, args.seed)
            if not fake_f or not real_f:
                continue
            names = [str(p) for p, _ in fake_f] + [str(p) for p in real_f]
            gm_of = {str(p): gm for p, gm in fake_f}
            images = [np.asarray(Image.open(n).convert("RGB")) for n in names]
            fake = np.array([n in gm_of for n in names])
            model = fold_model(args.run, fold, args.method, tmp)
            rows, grouper = judge(model, images, names)
            for key, (pick, crops) in rows.items():
                table[f"fold {fold}, {key}"] = figures(pick, crops, fake, gm_of, grouper)
            n_gm = len({gm for _, gm in fake_f})
            print(f"fold {fold}: {n_gm} GMs x {args.per_gm}, {len(real_f)} real crops, {res} px")
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(table, indent=1))
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "args": vars(args)
                    | {"run": str(args.run), "tier": str(args.tier), "out": str(args.out)},
                    "figures": table,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
