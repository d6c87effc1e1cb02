"""Real photographs installed from Debian packages, listed in photo_catalog.csv.

Each row gives a collection (the package that installs the file, `deb:NAME`, or
`pypi:NAME` with a path relative to the package's import directory), the file,
a content domain and the licence stated in the package's copyright file.
scripts/install_photos.sh installs the packages. The collections (36; see
docs/photos.md, none holds more than a third of the photographs): the largest are
stellarium-data (deep-sky telescope photographs), endless-sky-data (the game's
landscape photographs), scratch (its photographic stage backgrounds), opencv-doc
(the photographs among OpenCV's sample images), krank (underwater photographs),
coreboot-utils-doc (circuit boards) and tuxpaint-data (the templates); the rest
are wallpapers, documentation and example images of 1 to 15 photographs each.

Rule for choosing: every file was looked at, and kept only if it is a camera
photograph of the real world (astronomical images included) with a short side of
at least 256 px. Renders, illustrations, generated or abstract art, gradients,
logos, drawings, composites, photographs with drawn annotations (boxes, arrows,
labels), cutouts on a transparent or plain background, hue-shifted or inverted
colours, synthetic degradations (added blur, ELA-modified copies) and images
quantised to 256 colours or fewer (palette PNGs) were left out. Each distinct
photograph appears once: the largest file of a wallpaper shipped at several
resolutions, one frame of a stereo pair, calibration series or mosaic.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gmtrace.data.images import ImageError, load_rgb

CATALOG = Path(__file__).with_name("photo_catalog.csv")
MAX_SHORT_SIDE = 1024  # larger photos are downscaled on load


@dataclass
class Photo:
    name: str  # unique source id
    domain: str
    pixels: np.ndarray  # uint8 [H, W, 3]
    collection: str = ""  # where it comes from (a package, a folder): the unit held out
    file: str = ""  # its file, read again at full size for native crops ("" if none)


@dataclass(frozen=True)
class CatalogEntry:
    collection: str  # deb:PACKAGE or pypi:PACKAGE
    path: str  # absolute for deb:, relative to the package's import directory for pypi:
    domain: str
    licence: str


def catalog() -> list[CatalogEntry]:
    """The rows of photo_catalog.csv."""
    with CATALOG.open(newline="", encoding="utf-8") as f:
        return [CatalogEntry(**row) for row in csv.DictReader(f)]


def short_name(collection: str) -> str:
    """The package name of a collection: `deb:stellarium-data` -> `stellarium-data`."""
    return collection.split(":", 1)[-1]


def photo_names(entries: Sequence[CatalogEntry]) -> list[str]:
    """A unique, stable name for each entry: `<package>.<stem>`; stems that collide
    within a package get the first folder where their paths differ (or the suffix)."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, e in enumerate(entries):
        groups[(short_name(e.collection), Path(e.path).stem)].append(i)
    names = [""] * len(entries)
    for (package, stem), idx in groups.items():
        if len(idx) == 1:
            names[idx[0]] = f"{package}.{stem}"
            continue
        parents = [Path(entries[i].path).parent.parts for i in idx]
        common = len(os.path.commonprefix(parents))
        for i, parts in zip(idx, parents, strict=True):
            tag = parts[common] if common < len(parts) else Path(entries[i].path).suffix[1:]
            names[i] = f"{package}.{tag}.{stem}"
    return names


def resolve(entry: CatalogEntry) -> Path:
    """The file of an entry; raises ImageError when its PyPI package is missing."""
    if not entry.collection.startswith("pypi:"):
        return Path(entry.path)
    package = short_name(entry.collection)
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ImageError(f"{entry.path}: package {package} is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / entry.path


def _shrink(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape[:2]
    if min(h, w) <= MAX_SHORT_SIDE:
        return pixels
    scale = MAX_SHORT_SIDE / min(h, w)
    size = (max(MAX_SHORT_SIDE, round(w * scale)), max(MAX_SHORT_SIDE, round(h * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def load_catalog(
    min_side: int = 32,
    collections: Collection[str] | None = None,
    entries: Sequence[CatalogEntry] | None = None,
) -> tuple[list[Photo], list[str]]:
    """The catalog's photographs (of `collections`, by `deb:NAME` or `NAME`; all when
    None), downscaled to a short side of at most 1024 px, and a one-line failure for
    each file missing or unreadable. `entries` replaces the catalog (for tests)."""
    entries = catalog() if entries is None else list(entries)
    photos, failures = [], []
    for entry, name in zip(entries, photo_names(entries), strict=True):
        if collections is not None and not (
            entry.collection in collections or short_name(entry.collection) in collections
        ):
            continue
        try:
            path = resolve(entry)
            pixels = _shrink(load_rgb(path, min_side=min_side))
        except ImageError as e:
            failures.append(str(e))
            continue
        photos.append(Photo(name, entry.domain, pixels, entry.collection, str(path)))
    return photos, failures
