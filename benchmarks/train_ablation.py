"""Short training runs on a zoo, varying one setting at a time; prints the last
logged metrics of each. A quick look at what helps, not the evaluation protocol.

    .venv/bin/python benchmarks/train_ablation.py --zoo zoo_default --steps 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from gmtrace.data.dataset import GMDataset
from gmtrace.train.config import TrainConfig
from gmtrace.train.loop import train

VARIANTS = {
    "baseline": {},
    "no_augment": {"augment": False},
    "no_fingerprint_constraints": {"w_fp": 0.0},
    "lr_3e-4": {"lr": 3e-4},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = ap.parse_args()
    ds = GMDataset.from_zoo(args.zoo)
    base = TrainConfig(steps=args.steps, ckpt_every=10**9)
    console = Console(quiet=True)
    for name in args.variants:
        with tempfile.TemporaryDirectory() as d:
            r = train(ds, d, replace(base, **VARIANTS[name]), console=console)
        keep = ("total", "parse_continuous_l1", "detect_acc", "attribute_acc", "fingerprint")
        print(
            json.dumps(
                {
                    "variant": name,
                    "steps": args.steps,
                    "seconds": round(r["seconds"]),
                    **{k: round(r["final"][k], 4) for k in keep},
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
