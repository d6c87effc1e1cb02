"""Real photographs: the embedded default (photos shipped inside scikit-image,
scikit-learn and matplotlib, grouped into content domains) or a user's folder,
cut into random crops: half at the file's own resolution, as a scan reads a
photograph, half random-size squares resized (docs/photos.md, "Native crops").
Every crop records its source photograph, so evaluation can split real data by
photograph, never by crop.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from gmtrace.core.files import atomic_dir, atomic_write_text
from gmtrace.data.dataset import REAL_COLUMNS, read_csv, write_csv
from gmtrace.data.images import ImageError, images_by_domain, load_rgb, save_png, to_float
from gmtrace.zoo.photos import Photo, load_catalog

# (package, path inside the package, content domain). Photographs only: no
# drawings, logos, charts or synthetic test patterns.
EMBEDDED: tuple[tuple[str, str, str], ...] = (
    ("skimage", "data/astronaut.png", "people"),
    ("skimage", "data/camera.png", "people"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "people"),
    ("skimage", "data/chelsea.png", "animals"),
    ("skimage", "data/coffee.png", "objects"),
    ("skimage", "data/rocket.jpg", "objects"),
    ("skimage", "data/motorcycle_left.png", "objects"),
    ("skimage", "data/motorcycle_right.png", "objects"),
    ("skimage", "data/coins.png", "objects"),
    ("sklearn", "datasets/images/china.jpg", "scenes"),
    ("sklearn", "datasets/images/flower.jpg", "scenes"),
    ("skimage", "data/grass.png", "textures"),
    ("skimage", "data/gravel.png", "textures"),
    ("skimage", "data/brick.png", "textures"),
    ("skimage", "data/hubble_deep_field.jpg", "science"),
    ("skimage", "data/retina.jpg", "science"),
    ("skimage", "data/ihc.png", "science"),
    ("skimage", "data/moon.png", "science"),
)


class RealImageError(ValueError):
    """No usable real photographs; the message names the folder."""


@dataclass(frozen=True)
class RealSource:
    """Where real photographs come from: the embedded default or a folder.

    Picklable and cheap, so build workers (processes, Ray tasks) load the photos
    themselves.
    """

    folder: str | None = None
    catalog: bool = True  # the default source: add the catalog's Debian collections

    def describe(self) -> str:
        if self.folder:
            return f"folder {self.folder}"
        embedded = "embedded (scikit-image, scikit-learn, matplotlib)"
        if self.catalog:
            return embedded + " and the Debian photo collections of zoo/photo_catalog.csv"
        return embedded

    def load(self, min_side: int = 32) -> tuple[list[Photo], list[str]]:
        """The photos and a list of one-line failures (files skipped). The default
        is the embedded photos plus the catalog's Debian collections that are
        installed (`scripts/install_photos.sh`; `make setup` runs it)."""
        if self.folder:
            return load_folder(Path(self.folder), min_side)
        if not self.catalog:
            return load_embedded(min_side), []
        return _embedded_and_catalog(min_side)


@functools.cache
def _embedded_and_catalog(min_side: int) -> tuple[list[Photo], list[str]]:
    """Decoded once per process (about 20 s for the whole catalog)."""

    photos, failures = load_catalog(min_side)
    return load_embedded(min_side) + photos, failures


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RealImageError(f"package {name} is not installed; it ships the embedded photos")
    return Path(list(spec.submodule_search_locations)[0])


def load_embedded(min_side: int = 32) -> list[Photo]:
    """The photographs shipped inside scikit-image, scikit-learn and matplotlib."""
    photos = []
    for package, rel, domain in EMBEDDED:
        path = _package_dir(package) / rel
        if not path.is_file():
            continue
        pixels = load_rgb(path, min_side=min_side)
        photos.append(Photo(f"{package}.{Path(rel).stem}", domain, pixels, "embedded", str(path)))
    if not photos:
        raise RealImageError(
            "none of the embedded photographs was found in the installed packages; pass --real DIR"
        )
    return photos


def load_folder(folder: Path, min_side: int = 32) -> tuple[list[Photo], list[str]]:
    """Photos under `folder`; the first-level subfolder names the domain
    (files directly inside go to domain "user"). Unreadable files are skipped and
    reported; a folder with no usable image is an error naming it."""
    folder = Path(folder)
    if not folder.exists():
        raise RealImageError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise RealImageError(f"{folder}: not a folder")
    files = images_by_domain(folder)
    if not files:
        raise RealImageError(
            f"{folder}: no image files (looked for .png, .jpg, .jpeg, .bmp, .tif, .webp)"
        )
    photos, failures = [], []
    for path, rel, domain in files:
        try:
            pixels = load_rgb(path, min_side=min_side)
        except ImageError as e:
            failures.append(str(e))
            continue
        name = str(rel.with_suffix("")).replace("/", ".")
        photos.append(Photo(name, _clean(domain), pixels, f"folder:{folder.name}", str(path)))
    if not photos:
        raise RealImageError(
            f"{folder}: none of its {len(files)} image files could be read (first: {failures[0]})"
        )
    return photos, failures


def _clean(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "user"


def domains(photos: list[Photo]) -> list[str]:
    return sorted({p.domain for p in photos})


def random_crop(
    photo: Photo, res: int, rng: np.random.Generator, max_scale: float = 1.0
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A square crop of random size (log-uniform between `res` and the photo's short
    side times `max_scale`) at a random place, resized to res x res.
    Returns the crop and its box (x, y, size) in the photograph."""
    h, w = photo.pixels.shape[:2]
    short = min(h, w)
    lo = min(res, short)
    hi = max(lo, int(short * max_scale))
    size = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi))))) if hi > lo else lo
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    patch = photo.pixels[y : y + size, x : x + size]
    if size != res:
        patch = np.asarray(Image.fromarray(patch).resize((res, res), Image.Resampling.LANCZOS))
    return patch, (x, y, size)


CLASSES = 8  # classes of a conditional GM: its photographs, modulo this


class CropPool:
    """A pool of random crops of some photos, for training a GM: `batch(n)` draws
    crops from the pool with random horizontal flips, as floats in [-1, 1]."""

    def __init__(self, photos: list[Photo], res: int, size: int, rng: np.random.Generator):
        if not photos:
            raise RealImageError("no photographs to crop")
        self.rng = rng
        picks = rng.integers(0, len(photos), size=size)
        crops = [random_crop(photos[i], res, rng)[0] for i in picks]
        self.pixels = np.stack(crops)  # uint8 [N, res, res, 3]
        self.labels = picks % CLASSES  # a crop's class for conditional GMs: its photograph
        self.sources = [(photos[i].name, photos[i].collection) for i in picks]

    def batch(self, n: int) -> np.ndarray:
        return self.batch_with_labels(n)[0]

    def batch_with_labels(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n random crops (floats [n, 3, res, res], randomly flipped) and their classes."""
        idx = self.rng.integers(0, len(self.pixels), size=n)
        x = self.pixels[idx]
        flip = self.rng.random(n) < 0.5
        x[flip] = x[flip, :, ::-1]
        return np.ascontiguousarray(to_float(x)), self.labels[idx].astype(np.int64)


def crop_order(photos: list[Photo], n: int, rng: np.random.Generator) -> list[int]:
    """Indices of the photos to crop, n in all: collections take turns, and within a
    collection its photos take turns in a shuffled order, so a collection of 300
    telescope images does not outweigh one of 20 scenes."""
    by: dict[str, list[int]] = {}
    for i, p in enumerate(photos):
        by.setdefault(p.collection, []).append(i)
    cycles = [np.resize(rng.permutation(v), n) for _, v in sorted(by.items())]
    return [int(cycles[j % len(cycles)][j // len(cycles)]) for j in range(n)]


NATIVE_SHARE = 0.5  # of a zoo's real crops, those cut at the file's own resolution


def native_crop(
    pixels: np.ndarray, res: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[int, int, int]] | None:
    """A res x res crop at a random place, not resized (the pixels as a scan reads a
    photograph of that size), and its box (x, y, res); None when the image is smaller."""
    h, w = pixels.shape[:2]
    if h < res or w < res:
        return None
    y = int(rng.integers(0, h - res + 1))
    x = int(rng.integers(0, w - res + 1))
    return pixels[y : y + res, x : x + res].copy(), (x, y, res)


def full_size(photo: Photo) -> np.ndarray:
    """The photograph at its file's own resolution (loaded photos may be downscaled:
    `zoo.photos.MAX_SHORT_SIDE`); its loaded pixels when the file cannot be read again."""
    if not photo.file:
        return photo.pixels
    try:
        return load_rgb(photo.file)
    except ImageError:
        return photo.pixels


def real_crops(
    photos: list[Photo], res: int, n: int, seed: int, native_share: float = NATIVE_SHARE
) -> list[tuple[Photo, np.ndarray, tuple[int, int, int], bool]]:
    """`n` real crops (photograph, pixels, box, native) in `crop_order`: a share
    `native_share` cut at the file's own resolution, as a scan reads a photograph
    (docs/photos.md, "Native crops"), the rest `random_crop`s (a random-size square
    resized). Each photograph that gives native crops is decoded at full size once."""
    rng = np.random.default_rng(seed)
    order = crop_order(photos, n, rng)
    native = rng.random(n) < native_share
    out: dict[int, tuple] = {}
    wanted: dict[int, list[int]] = {}
    for i in np.flatnonzero(native):
        wanted.setdefault(order[i], []).append(int(i))
    for k, rows in sorted(wanted.items()):
        full = full_size(photos[k])
        for i in rows:
            cut = native_crop(full, res, rng)
            if cut is not None:
                out[i] = (photos[k], cut[0], cut[1], True)
    for i, k in enumerate(order):
        if i not in out:
            crop, box = random_crop(photos[k], res, rng)
            out[i] = (photos[k], crop, box, False)
    return [out[i] for i in range(n)]


def write_real(
    zoo: Path,
    photos: list[Photo],
    res: int,
    n: int,
    seed: int,
    native_share: float = NATIVE_SHARE,
    replace: bool = False,
) -> int:
    """Write `n` real crops (`real_crops`) to zoo/real/<domain>/ with real/index.csv,
    atomically: a complete real/ folder appears or none does; an existing one is
    kept unless `replace`. Returns the number written."""
    final = zoo / "real"
    if (final / "index.csv").is_file() and not replace:
        return 0
    rows = []
    with atomic_dir(final, zoo / ".partial" / "real") as tmp:
        for i, (photo, crop, (x, y, size), native) in enumerate(
            real_crops(photos, res, n, seed, native_share)
        ):
            rel = Path("real") / photo.domain / f"{photo.name}_{i:05d}.png"
            (tmp / photo.domain).mkdir(exist_ok=True)
            save_png(crop, tmp / photo.domain / rel.name)
            rows.append(
                {
                    "file": str(rel),
                    "domain": photo.domain,
                    "source": photo.name,
                    "collection": photo.collection,
                    "x": x,
                    "y": y,
                    "size": size,
                    "native": int(native),
                }
            )
        write_csv(tmp / "index.csv", REAL_COLUMNS, rows)
    return len(rows)


def rewrite_real(
    zoo: Path, real: str | None = None, native_share: float = NATIVE_SHARE
) -> tuple[int, int, list[str]]:
    """Cut a zoo's or tier's real crops again (as many as it has, its seed and
    resolution from zoo.json) from the photographs of `real` (default: the embedded
    photos and the catalog), a share `native_share` of them native; the GMs' images
    stay. Records the share in zoo.json. Returns the crops written, those native,
    and the photographs skipped (one line each)."""
    zoo = Path(zoo)
    meta_path = zoo / "zoo.json"
    index = zoo / "real" / "index.csv"
    if not meta_path.is_file() or not index.is_file():
        raise RealImageError(f"{zoo}: not a zoo with real crops (no zoo.json or real/index.csv)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    n = len(read_csv(index))
    source = RealSource(str(Path(real).resolve()) if real else None)
    photos, skipped = source.load()
    written = write_real(
        zoo, photos, int(meta["resolution"]), n, int(meta["seed"]), native_share, replace=True
    )
    native = sum(r["native"] == "1" for r in read_csv(index))
    meta["real_native_share"] = native_share
    meta["real_rewritten"] = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return written, native, skipped
