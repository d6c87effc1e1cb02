"""Images of a GMDataset in memory, for training and evaluation.

A `ImageBank` holds uint8 arrays of the generated images of some GMs and of the
real crops of some source photographs, decoded once through `data.images`.
Unreadable files are skipped and listed in `failures` (one line each, naming the
file), so one bad file never stops a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from gmtrace.data.augment import crop, resize
from gmtrace.data.dataset import DatasetError, GMDataset, read_csv
from gmtrace.data.images import ImageError, load_rgb


@dataclass
class ImageBank:
    gm_names: list[str]  # index -> GM name (attribution classes)
    fake: list[np.ndarray]  # per GM: uint8 [n, H, W, 3]
    real: np.ndarray  # uint8 [m, H, W, 3]
    real_sources: list[str]  # per real image
    failures: list[str] = field(default_factory=list)
    # per GM: the real crop each generated image was made from, aligned with `fake`
    # (translators); an empty array for GMs without pairs
    pairs: list[np.ndarray] | None = None
    # per GM and pair: (source photograph, collection) of the real crop
    pair_origins: list[list[tuple[str, str]]] | None = None
    # per GM: which pairs training may use (False where the real crop is held out)
    pair_ok: list[np.ndarray] | None = None

    @property
    def n_fake(self) -> int:
        return sum(len(a) for a in self.fake)

    def pair_of(self, gm: int) -> np.ndarray:
        """The aligned real crops of GM `gm` (empty when it has none)."""
        if self.pairs is None or len(self.pairs[gm]) != len(self.fake[gm]):
            return np.zeros((0, 1, 1, 3), np.uint8)
        return self.pairs[gm]

    def origins_of(self, gm: int) -> list[tuple[str, str]]:
        return self.pair_origins[gm] if len(self.pair_of(gm)) and self.pair_origins else []

    def usable_pairs(self, gm: int) -> np.ndarray:
        """Indices of GM `gm`'s images whose pair training may use."""
        n = len(self.pair_of(gm))
        ok = self.pair_ok[gm] if self.pair_ok is not None else np.ones(n, bool)
        return np.flatnonzero(ok[:n]) if n else np.zeros(0, int)

    def subset(self, gms: list[int], per_gm: int) -> ImageBank:
        """The first `per_gm` images (and pairs) of the GMs `gms`, with every real image."""
        return replace(
            self,
            gm_names=[self.gm_names[i] for i in gms],
            fake=[self.fake[i][:per_gm] for i in gms],
            pairs=[self.pair_of(i)[:per_gm] for i in gms],
            pair_origins=[self.origins_of(i)[:per_gm] for i in gms],
            pair_ok=None,
        )

    def without_pairs_from(self, sources: set[str], collections: set[str]) -> ImageBank:
        """This bank with the pairs whose real crop comes from a held-out source
        photograph or collection marked unusable, so held-out photographs never
        enter training as the real half of a pair."""
        ok = [
            np.array(
                [s not in sources and c not in collections for s, c in self.origins_of(g)], bool
            )
            for g in range(len(self.fake))
        ]
        return replace(self, pair_ok=ok)


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
    fake, pairs, origins = [], [], []
    for n in names:
        paths = by_name[n].images()
        if per_gm is not None and len(paths) > per_gm:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), per_gm, replace=False))]
        images, kept = _stack(paths, size, failures)
        fake.append(images)
        p, o = _pairs([paths[i] for i in kept], by_name[n].pair_dir, size, failures)
        pairs.append(p)
        origins.append(o)
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
    return ImageBank(
        gm_names=names,
        fake=fake,
        real=real,
        real_sources=real_src,
        failures=failures,
        pairs=pairs,
        pair_origins=origins,
    )


def _pairs(
    paths: list, pair_dir, size: int | None, failures: list[str]
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The aligned real crops of generated images `paths` (same file names in
    `pair_dir`) and their (source photograph, collection) from pair_dir/index.csv;
    empty unless every one of them is there and readable."""
    none = np.zeros((0, size or 1, size or 1, 3), dtype=np.uint8), []
    if pair_dir is None or not paths or not (pair_dir / "index.csv").is_file():
        return none
    try:
        index = {
            r["file"]: (r["source"], r["collection"]) for r in read_csv(pair_dir / "index.csv")
        }
    except (DatasetError, KeyError):
        return none
    files = [pair_dir / p.name for p in paths]
    if not all(f.is_file() and f.name in index for f in files):
        return none
    own: list[str] = []
    arrays, kept = _stack(files, size, own)
    failures.extend(own)
    return (arrays, [index[f.name] for f in files]) if len(kept) == len(files) else none
