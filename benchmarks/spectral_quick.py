"""A quick look at the spectral baseline on a zoo (not the full protocol):
closed-set attribution over all GMs (half of each GM's images train, half test)
and detection of seen GMs against real crops split by source photograph.

    .venv/bin/python benchmarks/spectral_quick.py --zoo zoo_default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from gmtrace.data.dataset import GMDataset
from gmtrace.data.loader import load_bank
from gmtrace.methods.spectral_features import SpectralBaseline


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, required=True)
    ap.add_argument("--per-gm", type=int, default=200)
    args = ap.parse_args()
    ds = GMDataset.from_zoo(args.zoo)
    bank = load_bank(ds, per_gm=args.per_gm, seed=0)
    half = args.per_gm // 2
    xtr = np.concatenate([a[:half] for a in bank.fake])
    ytr = np.concatenate([[i] * len(a[:half]) for i, a in enumerate(bank.fake)])
    xte = np.concatenate([a[half:] for a in bank.fake])
    yte = np.concatenate([[i] * len(a[half:]) for i, a in enumerate(bank.fake)])
    attr = SpectralBaseline(max_iter=500).fit(xtr, ytr)
    acc = float((attr.predict(xte) == yte).mean())
    src = np.array(bank.real_sources)
    train_src = set(sorted(set(src))[::2])
    in_train = np.array([s in train_src for s in src])
    rtr, rte = bank.real[in_train], bank.real[~in_train]
    ftr, fte = xtr[::10], xte[::10]
    det = SpectralBaseline(max_iter=500).fit(
        np.concatenate([rtr, ftr]), np.array([0] * len(rtr) + [1] * len(ftr))
    )
    p = det.predict_proba(np.concatenate([rte, fte]))[:, 1]
    auc = float(roc_auc_score([0] * len(rte) + [1] * len(fte), p))
    print(
        json.dumps(
            {
                "zoo": str(args.zoo),
                "gms": len(ds),
                "closed_set_attribution_acc": round(acc, 4),
                "detection_auc_seen_gms": round(auc, 4),
                "real_train_sources": len(train_src),
                "real_test_images": int(len(rte)),
            }
        )
    )


if __name__ == "__main__":
    main()
