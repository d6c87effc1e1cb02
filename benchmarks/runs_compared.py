"""Two codebase-held-out runs' fold models on one test set per fold, for a change of
the training data whose own runs test on different sets (docs/photos.md, "Native
crops": the real crops were cut again, so each run's docs/results.md figures are of
its own real test crops).

The test set of fold k: the first `--per-gm` images (by name) of each GM of the
fold's test codebases, and every real crop of the fold's test photo collections in
the zoos' real/ folders as they are now; the `native` column of real/index.csv
splits the real crops into those cut at the photograph's own resolution and those
resized. Each run's fused model of that fold (gmtrace's network and readout, its
fusion) answers every image clean and after JPEG q75 (both classes): detection AUC,
AUC against the native and the resized real crops alone, and the verdicts' shares.

    .venv/bin/python benchmarks/runs_compared.py --zoo zoo_default --zoo tiers/pretrained \\
        --zoo tiers/foreign runs/eval_codebase_inner runs/eval_codebase_native
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score

from crops_judged import answers, fold_model
from gmtrace.data.augment import jpeg
from gmtrace.product.analyze import Analyzer


def fold_set(zoos: list[Path], codebases: set[str], collections: set[str], per_gm: int):
    """The fold's test images (files), which are generated, and which real are native."""
    fake, real, native = [], [], []
    for z in zoos:
        with open(z / "models.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r.get("codebase") in codebases:
                    fake += sorted((z / "fake" / r["name"]).glob("*.png"))[:per_gm]
        with open(z / "real" / "index.csv", newline="") as f:
            for r in csv.DictReader(f):
                if r["collection"] in collections:
                    real.append(z / r["file"])
                    native.append(r.get("native") == "1")
    y = np.r_[np.ones(len(fake)), np.zeros(len(real))].astype(bool)
    return fake + real, y, np.array(native, bool)


def figures(res, res_q75, y: np.ndarray, native: np.ndarray) -> dict:
    p = np.array([r.p_generated for r in res])
    pq = np.array([r.p_generated for r in res_q75])
    v = np.array([r.verdict for r in res])
    real_v = v[~y]

    def auc_with(mask):  # generated against the real crops in mask
        return roc_auc_score(np.r_[y[y], y[~y][mask]], np.r_[p[y], p[~y][mask]])

    return {
        "generated": int(y.sum()),
        "real": int((~y).sum()),
        "real native": int(native.sum()),
        "AUC": roc_auc_score(y, p),
        "AUC JPEG q75": roc_auc_score(y, pq),
        "AUC, native real": auc_with(native),
        "AUC, resized real": auc_with(~native),
        "generated called generated": float(np.mean(v[y] == "generated")),
        "generated called unsure": float(np.mean(v[y] == "unsure")),
        "native real called real": float(np.mean(real_v[native] == "real")),
        "native real called unsure": float(np.mean(real_v[native] == "unsure")),
        "resized real called real": float(np.mean(real_v[~native] == "real")),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--zoo", type=Path, action="append", required=True)
    ap.add_argument("--per-gm", type=int, default=30)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    split = json.loads((args.runs[0] / "results.json").read_text())["split"]
    table: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp())
    try:
        for fold, codebases in enumerate(split["test_codebases"]):
            files, y, native = fold_set(
                args.zoo, set(codebases), set(split["test_collections"][fold]), args.per_gm
            )
            images = [np.asarray(Image.open(p).convert("RGB")) for p in files]
            q75 = [jpeg(x, 75) for x in images]
            names = [str(p) for p in files]
            for i, run in enumerate(args.runs):
                (tmp / str(i)).mkdir(exist_ok=True)
                a = Analyzer(fold_model(run, fold, "fused", tmp / str(i)))
                f = figures(answers(a, images, names), answers(a, q75, names), y, native)
                table[f"fold {fold}, {run}"] = f
                print(
                    f"fold {fold}, {run}: "
                    + ", ".join(
                        f"{k} {x:.3f}" if isinstance(x, float) else f"{k} {x}" for k, x in f.items()
                    ),
                    flush=True,
                )
    finally:
        shutil.rmtree(tmp)
    if args.out:
        record = {"args": {k: str(v) for k, v in vars(args).items()}, "figures": table}
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
