"""Cut the small committed set of held-out images (tests/data/heldout/) and record the
shipped model's answers on it (tests/data/heldout/reference.json).

The generated images come from a demo zoo built with another seed than the shipped
model's training zoo (`gmtrace zoo build --preset demo --seed 7 --out ZOO`): GMs the
model never trained on, one per family. The real images are 64 px crops of catalog
photographs that are not among the model's `real_sources` (photographs it never
trained on; for the fused model shipped on 2026-12-05, photographs of stellarium-data
and endless-sky-data, the collections its training capped); each one's collection,
file and licence are in real_licences.json.

    python scripts/make_heldout_set.py --zoo ZOO            # cut the set and record
    python scripts/make_heldout_set.py --record-only        # record answers again
    python scripts/make_heldout_set.py --real-only          # cut the real crops again
                                                            # (a model trained on
                                                            # other photographs)

The answers were recorded once, before the package was restructured (docs/
architecture.md); the restructure had to reproduce them to 1e-4. Only the public
API is used, so the script runs on any version of the package.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

import gmtrace
from gmtrace import Analyzer

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "heldout"
PER_GM = 6
REAL_PHOTOS = 12
CROPS_PER_PHOTO = 2
SIZE = 64


def cut(zoo: Path) -> None:
    for gm in sorted(p for p in (zoo / "fake").iterdir() if p.is_dir()):
        dst = OUT / "fake" / gm.name
        dst.mkdir(parents=True, exist_ok=True)
        for src in sorted(gm.glob("*.png"))[:PER_GM]:
            (dst / src.name).write_bytes(src.read_bytes())
    cut_real()


def cut_real() -> None:
    """24 crops of 12 catalog photographs outside the default model's training
    sources, replacing the ones there (a newly shipped model may have trained on
    some of them)."""
    from gmtrace.zoo.photos import catalog, load_catalog, photo_names  # not public API

    seen = set(json.loads((Analyzer().model_dir_ / "config.json").read_text())["real_sources"])
    entries = catalog()
    entry_of = dict(zip(photo_names(entries), entries, strict=True))
    names = [n for n in entry_of if n not in seen]
    photos, _ = load_catalog()
    unseen = sorted((p for p in photos if p.name in names), key=lambda p: p.name)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(unseen), size=min(REAL_PHOTOS, len(unseen)), replace=False)
    dst = OUT / "real"
    dst.mkdir(parents=True, exist_ok=True)
    for old in dst.glob("*.png"):
        old.unlink()
    sources = {}
    for i in sorted(pick.tolist()):
        ph = unseen[i]
        h, w = ph.pixels.shape[:2]
        for k in range(CROPS_PER_PHOTO):
            y, x = rng.integers(0, h - SIZE + 1), rng.integers(0, w - SIZE + 1)
            name = f"{ph.name}_{k}.png"
            Image.fromarray(ph.pixels[y : y + SIZE, x : x + SIZE]).save(dst / name)
            sources[name] = ph.name
    (OUT / "real_sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    # where each photograph comes from and under which licence (the crops are committed)
    origin = {
        n: {
            "collection": entry_of[n].collection,
            "file": entry_of[n].path,
            "licence": entry_of[n].licence,
        }
        for n in sorted(set(sources.values()))
    }
    (OUT / "real_licences.json").write_text(json.dumps(origin, indent=1) + "\n")


def files() -> list[Path]:
    return sorted(OUT.glob("fake/*/*.png")) + sorted(OUT.glob("real/*.png"))


def record() -> None:
    a = Analyzer()
    paths = files()
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    results = a.analyze_arrays(images, [str(p.relative_to(OUT)) for p in paths])
    rows = []
    for r in results:
        rows.append(
            {
                "file": r.path,
                "p_generated": r.p_generated,
                "open_set_score": r.open_set_score,
                "unknown_gm": r.unknown_gm,
                "known_gms": r.top_gms,
                "hyperparameters": r.hyperparameters,
                "loss_probabilities": r.loss_probabilities,
                "embedding": [float(v) for v in r.embedding],
                "parse_linear": [float(v) for v in r.parse_linear],
            }
        )
    meta = {"gmtrace": gmtrace.__version__, "model_id": a.model_id_}
    (OUT / "reference.json").write_text(json.dumps({"meta": meta, "rows": rows}) + "\n")
    print(f"recorded {len(rows)} answers of {a.model_id_} in {OUT / 'reference.json'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", type=Path, help="a demo zoo built with --seed 7")
    ap.add_argument("--record-only", action="store_true")
    ap.add_argument("--real-only", action="store_true")
    args = ap.parse_args()
    if args.real_only:
        cut_real()
    elif not args.record_only:
        if args.zoo is None:
            ap.error("--zoo is needed to cut the set")
        cut(args.zoo)
    record()
