"""One dataset object for every source of GMs: our zoo and RED116-format data.

A `GMDataset` is a list of GMs, each with its raw architecture values (the 15
of the schema), its loss types and the folder of its images, plus the real
photographs (each crop traceable to its source photograph).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_path
from gmtrace.core.schema import (
    ARCH_FIELDS,
    ARCH_NAMES,
    LOSS_TYPES,
    UNKNOWN,
    arch_row,
    class_index,
    loss_bits,
)
from gmtrace.data.images import list_images

# a GM's training recipe (gmtrace.zoo.recipe.Recipe), after its loss columns
RECIPE_COLUMNS: tuple[str, ...] = (
    "steps",
    "batch",
    "optimizer",
    "lr",
    "betas",
    "init",
    "norm_eps",
    "norm_momentum",
    "latent",
    "truncation",
    "sample_mode",
    "to_8bit",
)
LOSS_COLUMNS: tuple[str, ...] = tuple(f"loss_{n}" for n in LOSS_TYPES)
# the GM's training recipe (zoo/recipe.py) and how varied its images are
TRAINING_COLUMNS: tuple[str, ...] = (*RECIPE_COLUMNS, "diversity", "collapsed", "redraws")
MODELS_COLUMNS: tuple[str, ...] = (
    "name",
    "family",
    "seed",
    "domain",
    "resolution",
    "n_images",
    *ARCH_NAMES,
    "upsampling_kind",
    "task",
    *LOSS_COLUMNS,
    *TRAINING_COLUMNS,
    "codebase",
    "loss_source",
    "config",
)
# The codebase of every GM gmtrace's own code built and trained (its zoo and its
# synthesized tier alike), and of the GMs of zoos written before codebases were kept;
# a GM of another package's code names that package and its version.
GMTRACE_CODEBASE = "gmtrace"
# native: 1 where the crop was cut at the file's own resolution (x, y, size in the file's
# pixels), 0 where it was a larger square resized to the crop's size (in the photograph's
# pixels as loaded: `zoo.photos` downscales a short side over 1024 px)
REAL_COLUMNS: tuple[str, ...] = (
    "file",
    "domain",
    "source",
    "collection",
    "x",
    "y",
    "size",
    "native",
)
# zoos written before real photographs had collections used the embedded photos only
LEGACY_COLLECTION = "embedded"


class DatasetError(ValueError):
    """A dataset folder or file that cannot be read; the message names it."""


@dataclass
class GMRecord:
    """One generative model: its hyperparameters and where its images are."""

    name: str
    family: str
    arch: dict[str, float | str]  # the 15 raw values; discrete ones as class names
    losses: tuple[str, ...] | None  # None: unknown (not published)
    image_dir: Path
    extra: dict = field(default_factory=dict)

    @property
    def codebase(self) -> str:
        """The package (and version) whose code built and trained this GM."""
        return str(self.extra.get("codebase") or GMTRACE_CODEBASE)

    @property
    def tier(self) -> str:
        """gmtrace's own GMs, the pretrained tier or the foreign-code tier."""
        return str(self.extra.get("tier") or GMTRACE_CODEBASE)

    def images(self) -> list[Path]:
        return list_images(self.image_dir)

    @property
    def pair_dir(self) -> Path | None:
        """Where a translator's aligned real inputs are (ZOO/pairs/<name>/, the same
        file names as its images), or None."""
        d = self.image_dir.parent.parent / "pairs" / self.name
        return d if d.is_dir() else None


@dataclass
class RealRecord:
    """One real image: the file, its content domain and its source photograph."""

    path: Path
    domain: str
    source: str
    collection: str = LEGACY_COLLECTION  # the photo collection: what the protocol holds out


@dataclass
class GMDataset:
    gms: list[GMRecord]
    real: list[RealRecord] = field(default_factory=list)
    root: Path | None = None
    origin: str = "zoo"

    def __len__(self) -> int:
        return len(self.gms)

    @property
    def names(self) -> list[str]:
        return [g.name for g in self.gms]

    def arch_matrix(self) -> np.ndarray:
        """[N, 15] raw values, discrete fields as class indices."""
        if not self.gms:
            return np.zeros((0, len(ARCH_FIELDS)))
        return np.stack([arch_row(g.arch) for g in self.gms])

    def loss_matrix(self) -> np.ndarray:
        """[N, 10] loss bits in `LOSS_TYPES` order."""
        if not self.gms:
            return np.zeros((0, len(LOSS_TYPES)), dtype=np.float32)
        return np.stack([loss_bits(g.losses) for g in self.gms])

    @property
    def tiers(self) -> list[str]:
        return [g.tier for g in self.gms]

    @classmethod
    def combine(cls, parts: list[GMDataset]) -> GMDataset:
        """Several zoos as one dataset (the zoo, the synthesized tier, the outside
        tiers): their GMs and their real crops. GM names must not repeat; a
        photograph cropped in two zoos is one source (its crops go together)."""
        if len(parts) == 1:
            return parts[0]
        seen: dict[str, Path | None] = {}
        for part in parts:
            for name in part.names:
                if name in seen:
                    raise DatasetError(
                        f"GM {name!r} is in both {seen[name]} and {part.root}; "
                        "zoos combined must name their GMs apart"
                    )
                seen[name] = part.root
        return cls(
            gms=[g for part in parts for g in part.gms],
            real=[r for part in parts for r in part.real],
            root=parts[0].root,
            origin="+".join(str(p.root) for p in parts),
        )

    @classmethod
    def from_zoo(cls, root: str | Path) -> GMDataset:
        """Read a zoo folder (`models.csv`, `fake/<gm>/`, `real/index.csv`)."""
        root = Path(root)
        models = root / "models.csv"
        if not models.is_file():
            raise DatasetError(f"{models}: missing; is {root} a gmtrace zoo?")
        gms = [_record_from_row(row, root) for row in read_csv(models)]
        tier = _tier(root)
        for g in gms:
            g.extra.setdefault("tier", tier)
        real = []
        index = root / "real" / "index.csv"
        if index.is_file():
            real = [
                RealRecord(
                    root / r["file"],
                    r["domain"],
                    r["source"],
                    r.get("collection") or LEGACY_COLLECTION,
                )
                for r in read_csv(index)
            ]
        return cls(gms=gms, real=real, root=root, origin="zoo")


def _tier(root: Path) -> str:
    """A zoo's tier, as its zoo.json records it: "pretrained", "foreign", or gmtrace's
    own (its zoo and its synthesized tier)."""
    try:
        state = json.loads((root / "zoo.json").read_text())
    except (OSError, json.JSONDecodeError):
        return GMTRACE_CODEBASE
    return str(state.get("tier") or GMTRACE_CODEBASE)


def read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None


def _record_from_row(row: dict[str, str], root: Path) -> GMRecord:
    try:
        arch: dict[str, float | str] = {}
        for f in ARCH_FIELDS:
            v = row[f.name]
            if v == UNKNOWN:
                arch[f.name] = UNKNOWN
            else:
                arch[f.name] = (
                    f.classes[class_index(f.name, v)] if f.kind == "discrete" else float(v)
                )
        cells = [row[c] for c in LOSS_COLUMNS]
        losses: tuple[str, ...] | None = None  # every cell "unknown": unknown losses
        if any(c != UNKNOWN for c in cells):
            bits = {n: float(c) for n, c in zip(LOSS_TYPES, cells, strict=True)}
            if any(b not in (0.0, 1.0) for b in bits.values()):
                raise ValueError(f"loss bits must be 0 or 1 (or all unknown), got {bits}")
            losses = tuple(n for n, b in bits.items() if b == 1.0)
        extra = {
            k: row[k]
            for k in (
                "seed",
                "domain",
                "resolution",
                "n_images",
                "upsampling_kind",
                "task",
                *TRAINING_COLUMNS,
                "codebase",
                "loss_source",
            )
            if row.get(k) not in (None, "")
        }
        if row.get("config"):
            extra["config"] = json.loads(row["config"])
    except (KeyError, ValueError) as e:
        raise DatasetError(
            f"{root / 'models.csv'}: bad row for {row.get('name')!r} ({e})"
        ) from None
    image_dir = root / "fake" / row["name"]
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: missing, but models.csv lists GM {row['name']!r}")
    return GMRecord(
        name=row["name"],
        family=row["family"],
        arch=arch,
        losses=losses,
        image_dir=image_dir,
        extra=extra,
    )


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    """Write a CSV atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def real_records(folder: str | Path) -> list[RealRecord]:
    """Real photographs in a folder: subfolders are content domains (files directly
    in `folder` get the domain "user", as in zoo.real); each file is its own source photograph."""
    from gmtrace.data.images import images_by_domain

    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder of real photographs")
    files = images_by_domain(folder)
    if not files:
        raise DatasetError(f"{folder}: holds no image files")
    return [
        RealRecord(path=f, domain=domain, source=str(rel), collection=f"folder:{folder.name}")
        for f, rel, domain in files
    ]
