"""How often each model calls the embedded real photographs (scikit-image, scikit-learn,
matplotlib; whole images at native resolution, as `gmtrace analyze` reads them) real:
the bar `tests/test_shipped_model.py` holds the shipped model to (at least 80 %).

    .venv/bin/python scripts/real_photo_check.py src/gmtrace/models/default runs/ship
"""

from __future__ import annotations

import sys

import numpy as np

from gmtrace.product.analyze import Analyzer
from gmtrace.zoo.real import load_embedded


def main(model_dirs: list[str]) -> None:
    if not model_dirs:
        sys.exit(__doc__)
    photos = load_embedded()
    for d in model_dirs:
        a = Analyzer(d)
        p = np.array([a.analyze_array(ph.pixels, ph.name).p_generated for ph in photos])
        print(f"{d}: {np.mean(p < 0.5):.0%} of {len(photos)} photographs called real")
        print("  " + ", ".join(f"{ph.name} {x:.2f}" for ph, x in zip(photos, p, strict=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
