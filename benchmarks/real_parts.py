"""The model of real photographs by part, each tier held out whole: how well each
part of the self-description, alone and combined, tells a tier's generated images
from its own photographs when the model is fitted on the other tiers' photographs
only (no generated image anywhere in the fit).

    .venv/bin/python benchmarks/real_parts.py [--zoo zoo_default --zoo tiers/pretrained
        --zoo tiers/foreign] [--per-gm 40] [--size 64] [--write]

For each zoo (a tier) as the test: a model of real photographs fitted on the crops
of every other zoo's photographs, read at `--size` px as the evaluation reads them;
its unlikeness scores the test zoo's generated images (at most `--per-gm` per GM,
a seeded subset) and the test zoo's own photographs' crops, clean and with both
classes JPEG q75. Rows: the pixels' part alone (`selfdesc.BLOCKS[0]`: prediction
filters, residual statistics, periodicity), the residual's spectrum alone
(`BLOCKS[1]`), the cross-scale prediction alone (`BLOCKS[2]`), one density over the
first two parts (what they were before they were modelled apart), the first two
combined by Fisher's method (what gmtrace fits), and all three so combined (what
`--cross-scale` fits). AUC of the unlikeness, generated against
real. With --write, the table goes to docs/benchmarks.md (section real_parts).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gmtrace.data.augment import jpeg  # noqa: E402
from gmtrace.data.dataset import GMDataset  # noqa: E402
from gmtrace.data.loader import load_bank  # noqa: E402
from gmtrace.realmodel.density import RealPhotoModel  # noqa: E402
from gmtrace.realmodel.selfdesc import BLOCKS, describe  # noqa: E402
from zoo_build import command, machine, write_section  # noqa: E402

ZOOS = ("zoo_default", "tiers/pretrained", "tiers/foreign")
CONDITIONS = ("clean", "JPEG q75")
# (row label, the columns it models, the parts it models them in)
VARIANTS = (
    ("pixels' part alone", BLOCKS[0], None),
    ("residual spectrum alone", BLOCKS[1], None),
    ("cross-scale prediction alone", BLOCKS[2], None),
    ("one density over the first two parts' 184", (0, BLOCKS[1][1]), None),
    ("pixels and spectrum, Fisher-combined (fitted by gmtrace)", (0, BLOCKS[1][1]), BLOCKS[:2]),
    ("all three parts, Fisher-combined (`--cross-scale`)", (0, BLOCKS[2][1]), BLOCKS),
)


def q75(images: np.ndarray) -> np.ndarray:
    return np.stack([jpeg(a, 75) for a in images]) if len(images) else images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", action="append", help="zoos, each held out in turn")
    ap.add_argument("--per-gm", type=int, default=40)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    zoos = args.zoo or list(ZOOS)
    t0 = time.perf_counter()
    desc: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for z in zoos:
        bank = load_bank(GMDataset.from_zoo(z), per_gm=args.per_gm, size=args.size)
        fake = np.concatenate([a for a in bank.fake if len(a)])
        desc[z, "clean"] = describe(fake), describe(bank.real)
        desc[z, "JPEG q75"] = describe(q75(fake)), describe(q75(bank.real))
        print(f"{z}: {len(fake)} generated, {len(bank.real)} real crops", flush=True)
    auc: dict[tuple[str, str, str], float] = {}
    for test in zoos:
        photos = np.concatenate([desc[z, "clean"][1] for z in zoos if z != test])
        for label, (a, b), parts in VARIANTS:
            blocks = None if parts is None else tuple((lo - a, hi - a) for lo, hi in parts)
            model = RealPhotoModel.fit(photos[:, a:b], seed=0, blocks=blocks)
            for cond in CONDITIONS:
                fake, real = desc[test, cond]
                y = np.r_[np.ones(len(fake)), np.zeros(len(real))]
                u = model.unlikeness(np.r_[fake, real][:, a:b])
                auc[test, label, cond] = float(roc_auc_score(y, u))
        print(test, {k[1:]: round(v, 3) for k, v in auc.items() if k[0] == test}, flush=True)
    heads = [f"{z} held out, {c}" for z in zoos for c in CONDITIONS]
    lines = [
        "| model of real photographs | " + " | ".join(heads) + " | mean |",
        "|---" * (len(heads) + 2) + "|",
    ]
    for label, _, _ in VARIANTS:
        vals = [auc[z, label, c] for z in zoos for c in CONDITIONS]
        cells = " | ".join(f"{v:.3f}" for v in vals)
        lines.append(f"| {label} | {cells} | {np.mean(vals):.3f} |")
    minutes = (time.perf_counter() - t0) / 60
    body = "\n".join(
        [
            "### The model of real photographs by part, each tier held out whole",
            "",
            f"{command()} ({machine()}; {minutes:.1f} min). AUC of the unlikeness, "
            "a tier's generated images against its own photographs' crops, the model "
            "fitted on the other tiers' photographs only; JPEG q75: both classes. "
            "Method: the script's docstring; why: docs/realmodel.md, "
            '"The residual\'s spectrum".',
            "",
            *lines,
        ]
    )
    print(body)
    if args.write:
        write_section("real_parts", body)
    print(f"done: {len(zoos)} tiers held out in turn, {minutes:.1f} min")


if __name__ == "__main__":
    main()
