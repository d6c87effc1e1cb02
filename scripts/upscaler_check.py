"""How well each model's network tells the pretrained tier's upscaled photographs from
real crops: images its training did not read (the last 50 of each GM's 300: training
reads at most the first 200 and 20 more to calibrate) against 600 real crops of
gmtrace's own zoo, drawn with a fixed seed. The network's p(generated) alone (no
fusion, no unsure band), so models with and without a fusion compare.

    .venv/bin/python scripts/upscaler_check.py [--tier tiers/pretrained] \\
        [--real zoo_default] MODEL_DIR...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from gmtrace.data.images import load_rgb
from gmtrace.product.analyze import Analyzer

HELD_OUT = slice(250, 300)
N_REAL = 600
SIZE = 64


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--tier", type=Path, default=Path("tiers/pretrained"))
    ap.add_argument("--real", type=Path, default=Path("zoo_default"))
    a = ap.parse_args()
    fakes = [
        f for g in sorted((a.tier / "fake").iterdir()) for f in sorted(g.glob("*.png"))[HELD_OUT]
    ]
    reals = sorted((a.real / "real").glob("*/*.png"))
    if not fakes or len(reals) < N_REAL:
        raise SystemExit(f"need {a.tier}/fake/*/*.png and {N_REAL} of {a.real}/real/*/*.png")
    pick = np.random.default_rng(0).choice(len(reals), N_REAL, replace=False)
    files = fakes + [reals[i] for i in pick]
    x = np.stack([load_rgb(f)[:SIZE, :SIZE] for f in files])
    y = np.r_[np.ones(len(fakes)), np.zeros(N_REAL)]
    print(
        f"{len(fakes)} upscaled images of {a.tier} (each GM's {HELD_OUT.start}-"
        f"{HELD_OUT.stop - 1}), {N_REAL} real crops of {a.real}"
    )
    for d in a.models:
        p = Analyzer(d).supervised_p(x)
        called = np.mean(p[y == 1] >= 0.5)
        print(
            f"{d}: AUC {roc_auc_score(y, p):.3f}, upscaled called generated {called:.0%}, "
            f"real called real {np.mean(p[y == 0] < 0.5):.0%}"
        )


if __name__ == "__main__":
    main()
