"""A model's scan answers on a tier of upscalers no model was trained on (e.g.
`gmtrace zoo pretrained --package pyanime4k --out tiers/pretrained_a4k`): every
image of every GM against the very photograph crop it was made from (the tier's
pairs) and against the tier's own real crops (the same collections), clean and with
both classes JPEG q75 (quality 75, Pillow). The answers are the product's
(`Analyzer.analyze_arrays`: the fused p, the unsure band), so the figures are what a
user scanning such images would get. Prints, per GM and pooled: AUC against the
pairs and against the real crops, and the shares called generated / unsure / real.

    .venv/bin/python scripts/unseen_tier_check.py --tier tiers/pretrained_a4k \\
        [--model MODEL_DIR] [--per-gm 100] [--real 600]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.progress import track

from gmtrace.core.metrics import detection_scores
from gmtrace.data.augment import jpeg
from gmtrace.data.images import load_rgb
from gmtrace.product.analyze import Analyzer

BATCH = 64


def answers(analyzer: Analyzer, images: list[np.ndarray], what: str) -> tuple[np.ndarray, ...]:
    """(p, verdicts) of the product for each image, in batches."""
    p, verdict = [], []
    for i in track(range(0, len(images), BATCH), description=what):
        batch = images[i : i + BATCH]
        for r in analyzer.analyze_arrays(batch, [f"{what}{i + k}" for k in range(len(batch))]):
            p.append(r.p_generated)
            verdict.append(r.verdict)
    return np.asarray(p), np.asarray(verdict)


def shares(verdict: np.ndarray) -> str:
    return " / ".join(f"{np.mean(verdict == v):.2f}" for v in ("generated", "unsure", "real"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", type=Path, required=True)
    ap.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    ap.add_argument("--per-gm", type=int, default=100, help="images of each GM (its first)")
    ap.add_argument("--real", type=int, default=600, help="real crops of the tier, drawn")
    a = ap.parse_args()
    gms = sorted(d for d in (a.tier / "fake").iterdir() if d.is_dir())
    reals = sorted((a.tier / "real").glob("*/*.png"))
    if not gms or not reals:
        raise SystemExit(f"{a.tier}: needs fake/<gm>/*.png, pairs/<gm>/*.png and real/*/*.png")
    analyzer = Analyzer(a.model) if a.model else Analyzer()
    pick = np.random.default_rng(0).permutation(len(reals))[: a.real]
    real = [load_rgb(reals[i]) for i in sorted(pick)]
    fakes, pairs, owner = [], [], []
    for g in gms:
        files = sorted(g.glob("*.png"))[: a.per_gm]
        for f in files:
            pair = a.tier / "pairs" / g.name / f.name
            if not pair.is_file():
                raise SystemExit(f"{pair}: missing (the tier keeps each image's photograph)")
            fakes.append(load_rgb(f))
            pairs.append(load_rgb(pair))
            owner.append(g.name)
    owner = np.asarray(owner)
    print(
        f"model {analyzer.model_id_}; {a.tier}: {len(gms)} GMs x {a.per_gm} images, "
        f"their {len(pairs)} photographs, {len(real)} real crops"
    )
    rows = []
    for cond, quality in (("clean", None), ("JPEG q75", 75)):
        shown = [
            xs if quality is None else [jpeg(x, quality) for x in xs] for xs in (fakes, pairs, real)
        ]
        pf, vf = answers(analyzer, shown[0], f"{cond} generated ")
        pp, _ = answers(analyzer, shown[1], f"{cond} photographs ")
        pr, vr = answers(analyzer, shown[2], f"{cond} real crops ")
        for name in [g.name for g in gms] + ["pooled"]:
            m = np.ones(len(owner), bool) if name == "pooled" else owner == name
            rows.append(
                f"| {name} | {cond} | {detection_scores(pf[m], pp[m])['auc']:.3f} "
                f"| {detection_scores(pf[m], pr)['auc']:.3f} "
                f"| {shares(vf[m])} |"
            )
        rows.append(f"| real crops | {cond} | - | - | {shares(vr)} |")
    print(
        "| GM | images | AUC vs own photographs | AUC vs the tier's real crops "
        "| generated / unsure / real |"
    )
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
