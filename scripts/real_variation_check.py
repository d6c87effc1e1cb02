"""The model of real photographs alone, fitted on each fold's training photographs
varied each way of `data.augment.VARIATIONS`, fold by fold of a protocol's
split: how well its unlikeness tells the fold's unseen GMs' images from its
held-out photographs (AUC as given and with both classes JPEG q75, and against the
very photographs an upscaler enlarged, where the fold has them)
(docs/realmodel.md, "Photographs varied as the network's training varies them").

    .venv/bin/python scripts/real_variation_check.py --holdout tier
    .venv/bin/python scripts/real_variation_check.py --holdout codebase

No network is trained or read: the split is the protocol's (`gmtrace evaluate` with
the same zoos, holdout and folds), the images are decoded as it decodes them. These
are the protocol's test folds: a variation picked from this table is picked on them,
which is why a fused model chooses its own on inner validation codebases instead
(`methods.fused.choose_variation`)."""

from __future__ import annotations

import argparse
import time

import numpy as np
from rich.console import Console
from sklearn.metrics import roc_auc_score

from gmtrace.data.augment import VARIATIONS
from gmtrace.data.dataset import GMDataset
from gmtrace.evaluation import protocol as P
from gmtrace.evaluation.config import EvalConfig
from gmtrace.readout.fused import fit_real
from gmtrace.realmodel.selfdesc import describe, real_parts


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", action="append", default=None, help="zoo folders (repeatable)")
    ap.add_argument("--holdout", default="tier", choices=("tier", "codebase", "family"))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="the variations' draws and the fits")
    args = ap.parse_args()
    zoos = args.zoo or ["zoo_default", "tiers/pretrained", "tiers/foreign"]
    t0 = time.perf_counter()
    quiet = Console(quiet=True)
    ds = GMDataset.combine([GMDataset.from_zoo(z) for z in zoos])
    cfg = EvalConfig(holdout=args.holdout, folds=args.folds, methods=("realphoto",))
    ds, folds, sfolds, info = P._plan_run(ds, None, cfg, quiet)
    bank = P._load_images(ds, cfg, quiet)
    plans = P.fold_plans(ds, bank, folds, sfolds, cfg)
    columns = real_parts(cfg.cross_scale)
    width = columns[-1][1]
    print(f"{args.holdout} holdout, {args.folds} folds, zoos {' '.join(zoos)}")
    print("| fold | variation | AUC | AUC JPEG q75 | AUC vs own photo |")
    print("|---|---|---|---|---|")
    for k, plan in enumerate(plans):
        held = P._held_out(info, sfolds, k)
        x = P._fold_inputs(bank, plan, ds.arch_matrix(), ds.loss_matrix(), held, cfg)
        sets = {
            "unseen": x.unseen,
            "real": x.real,
            "paired": x.paired,
            "unseen_j": x.unseen_degraded["jpeg75"],
            "real_j": x.real_degraded["jpeg75"],
        }
        described = {n: describe(a, width=width) for n, a in sets.items() if len(a)}
        for v in VARIATIONS:
            model = fit_real(x.train_bank.real, v, args.seed, width, columns)
            u = {n: model.unlikeness(d) for n, d in described.items()}
            own = f"{auc(u['unseen'][x.paired_of], u['paired']):.3f}" if "paired" in u else "n/a"
            print(
                f"| {k} | {v} | {auc(u['unseen'], u['real']):.3f} | "
                f"{auc(u['unseen_j'], u['real_j']):.3f} | {own} |",
                flush=True,
            )
    print(f"{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
