"""Open-set scores of an evaluation run's gmtrace networks, fold by fold: the
shipped gallery score against scores read from the training GMs' images in the
grouping embedding (docs/realmodel.md, "The open-set score as each training GM's
density").

    .venv/bin/python scripts/open_set_variants.py runs/eval_codebase_gate

For each fold it reloads the run's gmtrace network (resumed, not retrained: the
run folder must hold it), embeds the first `gallery_per_gm` training images of
each training GM (the reference), the held-out images of the training GMs and
the unseen GMs' test images (its cached answers where the run kept them), and
prints the AUROC of each score, unseen against held-out, per fold and their mean.
These are the run's test folds: a score picked from this table is picked on them,
which is why the shipped model chooses its rule on inner validation codebases
instead (`methods.fused.choose_open_rule`)."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
from rich.console import Console
from sklearn.metrics import roc_auc_score

from gmtrace.data.dataset import GMDataset
from gmtrace.evaluation import protocol as P
from gmtrace.evaluation.config import EvalConfig
from gmtrace.readout.embedding import GMDensity


def unit(e: np.ndarray) -> np.ndarray:
    return e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)


def per_gm_nll(ref: np.ndarray, label: np.ndarray, x: np.ndarray, diag_share: float) -> np.ndarray:
    """[N] the smallest negative log-density over the reference GMs of a Gaussian
    per GM whose variance per dimension is `diag_share` its own per dimension and
    the rest its mean over dimensions (0: isotropic)."""
    out = []
    for g in np.unique(label):
        r = ref[label == g]
        mu = r.mean(0)
        iso = ((r - mu) ** 2).mean()
        v = diag_share * (r - mu).var(0) + (1 - diag_share) * iso + 1e-6
        out.append((((x - mu) ** 2) / (2 * v)).sum(1) + 0.5 * np.log(v).sum())
    return np.min(np.stack(out, 1), 1)


def variants(ref, label, attr_x, x) -> dict[str, np.ndarray]:
    """Each candidate score [N] of embeddings `x` (unit length) with attribution
    probabilities `attr_x`, against the reference embeddings `ref` of GMs `label`."""
    n_gms = int(label.max()) + 1
    centre = np.zeros((n_gms, ref.shape[1]))
    np.add.at(centre, label, ref)
    centre = unit(centre)
    sim = x @ centre.T
    spread = []  # each GM's mean distance to its centre, over its reference images
    for g in range(n_gms):
        spread.append(max(float((1 - ref[label == g] @ centre[g]).mean()), 1e-6))
    density = GMDensity.fit(ref, label, n_gms)
    means = np.stack([ref[label == g].mean(0) for g in range(n_gms)])
    return {
        "1 - max attribution probability": 1 - attr_x.max(1),
        "nearest gallery entry": 1 - sim.max(1),
        "nearest gallery entry over the GM's spread": ((1 - sim) / np.array(spread)).min(1),
        "nearest reference image": -(x @ ref.T).max(1),
        "5 nearest reference images": -np.sort(x @ ref.T, 1)[:, -5:].mean(1),
        "density per GM, isotropic (GMDensity)": density.score(x),
        "density per GM, a quarter per dimension": per_gm_nll(ref, label, x, 0.25),
        "density per GM, half per dimension": per_gm_nll(ref, label, x, 0.5),
        "nearest GM mean, one spread for all": ((x[:, None, :] - means[None]) ** 2).sum(-1).min(1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="an evaluation run's folder (results.json)")
    args = ap.parse_args()
    saved = json.loads((args.run / "results.json").read_text())
    c = saved["config"] | {"methods": ["gmtrace"]}
    cfg = EvalConfig(**{f.name: c[f.name] for f in fields(EvalConfig) if f.name in c})
    con = Console()
    ds = GMDataset.combine([GMDataset.from_zoo(z) for z in saved["zoos"]])
    ds, folds, sfolds, split_info = P._plan_run(ds, None, cfg, con)
    bank = P._load_images(ds, cfg, con)
    plans = P.fold_plans(ds, bank, folds, sfolds, cfg)
    arch, bits = ds.arch_matrix(), ds.loss_matrix()
    table: dict[str, list[float]] = {}
    for k, plan in enumerate(plans):
        held = P._held_out(split_info, sfolds, k)
        x = P._fold_inputs(bank, plan, arch, bits, held, cfg)
        m = P.make_methods(cfg)[0]
        m.fit(ds, x.train_bank, x.targets, args.run / f"fold{k}", con)
        ref_images = [bank.fake[i][: cfg.gallery_per_gm] for i in plan.train_gms]
        label = np.repeat(np.arange(len(ref_images)), [len(a) for a in ref_images])
        ref = unit(m.predict(np.concatenate(ref_images)).embedding)
        seen, unseen = m.predict(x.seen), m.predict(x.unseen)
        y = np.r_[np.zeros(len(seen.open_score)), np.ones(len(unseen.open_score))]
        scores = {"shipped gallery score": np.r_[seen.open_score, unseen.open_score]}
        parts = [
            variants(ref, label, inf.attribution, unit(inf.embedding)) for inf in (seen, unseen)
        ]
        scores |= {name: np.r_[parts[0][name], parts[1][name]] for name in parts[0]}
        for name, s in scores.items():
            table.setdefault(name, []).append(float(roc_auc_score(y, s)))
    con.print(f"\nopen-set AUROC of {args.run}'s gmtrace networks (unseen vs held-out known)")
    head = " | ".join(f"fold {k}" for k in range(len(plans)))
    print(f"| score | {head} | mean |")
    print("|---|" + "---|" * (len(plans) + 1))
    for name, v in table.items():
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in v) + f" | {np.mean(v):.3f} |")


if __name__ == "__main__":
    main()
