"""Images of a GMDataset in memory, for training and evaluation.

A `ImageBank` holds uint8 arrays of the generated images of some GMs and of the
real crops of some source photographs, decoded once through `data.images`.
Unreadable files are skipped and listed in `failures` (one line each, naming the
file), so one bad file never stops a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gmtrace.data.augment import crop, resize
from gmtrace.data.dataset import GMDataset
from gmtrace.data.images import ImageError, load_rgb


@dataclass
class ImageBank:
    gm_names: list[str]  # index -> GM name (attribution classes)
    fake: list[np.ndarray]  # per GM: uint8 [n, H, W, 3]
    real: np.ndarray  # uint8 [m, H, W, 3]
    real_sources: list[str]  # per real image
    failures: list[str] = field(default_factory=list)

    @property
    def n_fake(self) -> int:
        return sum(len(a) for a in self.fake)


def _stack(paths, size: int | None, failures: list[str]) -> tuple[np.ndarray, list[int]]:
    """Decode `paths` into one array; returns it and the indices of the paths kept."""
    arrays, kept = [], []
    for i, p in enumerate(paths):
        try:
            a = load_rgb(p)
        except ImageError as e:
            failures.append(str(e))
            continue
        if size is not None and a.shape[:2] != (size, size):
            a = crop(resize(a, size / min(a.shape[:2])), size)
        arrays.append(a)
        kept.append(i)
    if not arrays:
        return np.zeros((0, size or 1, size or 1, 3), dtype=np.uint8), kept
    return np.stack(arrays), kept


def load_bank(
    ds: GMDataset,
    gm_names: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    per_gm: int | None = None,
    per_source: int | None = None,
    size: int | None = None,
    seed: int = 0,
) -> ImageBank:
    """Decode the images of `gm_names` (default all GMs) and the real crops of
    `sources` (default all), at most `per_gm` / `per_source` each (a seeded random
    subset), resized and centre-cropped to `size` when given."""
    rng = np.random.default_rng(seed)
    names = list(gm_names) if gm_names is not None else ds.names
    by_name = {g.name: g for g in ds.gms}
    failures: list[str] = []
    fake = []
    for n in names:
        paths = by_name[n].images()
        if per_gm is not None and len(paths) > per_gm:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), per_gm, replace=False))]
        fake.append(_stack(paths, size, failures)[0])
    wanted = set(sources) if sources is not None else None
    chosen: dict[str, list] = {}
    for r in ds.real:
        if wanted is None or r.source in wanted:
            chosen.setdefault(r.source, []).append(r.path)
    real_paths, real_src = [], []
    for src, paths in sorted(chosen.items()):
        if per_source is not None and len(paths) > per_source:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), per_source, replace=False))]
        real_paths += paths
        real_src += [src] * len(paths)
    real, kept = _stack(real_paths, size, failures)
    real_src = [real_src[i] for i in kept]
    return ImageBank(gm_names=names, fake=fake, real=real, real_sources=real_src, failures=failures)
