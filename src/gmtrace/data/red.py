"""RED116 ground truth: read it into a `GMDataset`, and write a `GMDataset` in its format.

RED116 (Asnani et al., TPAMI 2023) ships its ground truth in two forms:

- numpy arrays: architecture [N, 15] and loss bits [N, 10], columns in the order of
  `gmtrace.core.schema.ARCH_NAMES` and `LOSS_TYPES`, rows paired with the image folders
  under an image root sorted in natural order (GM_2 before GM_10);
- text: `net_arch.txt` with one line per GM, `NAME` and the 15 values separated by
  whitespace, and a loss file with one line of 10 bits per GM in the same order.
  Loss files found in the wild may be RTF; the reader strips RTF markup and keeps
  the lines that hold numbers.

Discrete columns are class indices in gmtrace's schema order. Every reader checks
its input once, here, and raises `DatasetError` with one line naming the file.
Nothing is unpickled: arrays are loaded with `allow_pickle=False`.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_dir, atomic_path, atomic_write_text
from gmtrace.core.schema import (
    ARCH_FIELDS,
    LOSS_TYPES,
    arch_row,
    class_index,
    group_bits,
    loss_bits,
    loss_names,
)
from gmtrace.data.dataset import DatasetError, GMDataset, GMRecord

ARCH_NPY = "ground_truth_net_15dim.npy"
LOSS_NPY = "ground_truth_loss_10dim.npy"
GROUPS_NPY = "ground_truth_loss_3dim.npy"
ARCH_TXT = "net_arch.txt"
LOSS_TXT = "loss.txt"
NAMES_TXT = "names.txt"
FOLDER_ORDERS = ("natural", "lexical")

_N_ARCH = len(ARCH_FIELDS)
_N_LOSS = len(LOSS_TYPES)
# RTF markup: hex escapes (\'e9), control words with an optional number and their
# delimiting space (\cf0 ), control symbols and a line-ending backslash (\\, \*, \).
_RTF = re.compile(r"\\'[0-9a-fA-F]{2}|\\[a-zA-Z]+-?\d* ?|\\.?")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value: GM_2 before GM_10."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(p) if p.isdigit() else p.lower() for p in parts), name


def list_gm_folders(image_root: str | Path, order: str = "natural") -> list[str]:
    """Names of the GM folders under `image_root` (hidden ones skipped), sorted in
    `order`: "natural" (GM_2 before GM_10) or "lexical" (plain string order, as
    torchvision's ImageFolder sorts them)."""
    root = Path(image_root)
    if order not in FOLDER_ORDERS:
        raise ValueError(f"folder order {order!r} is not one of {', '.join(FOLDER_ORDERS)}")
    if not root.is_dir():
        raise DatasetError(f"{root}: image root missing or not a folder")
    names = [p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(names, key=natural_key) if order == "natural" else sorted(names)


def read_names(path: str | Path) -> list[str]:
    """GM names from a names file: one per line, blank lines skipped."""
    return [line.strip() for line in _read_lines(Path(path)) if line.strip()]


def read_red_npy(
    arch_npy: str | Path,
    loss_npy: str | Path,
    image_root: str | Path,
    names: Sequence[str] | str | os.PathLike | None = None,
    *,
    folder_order: str = "natural",
) -> GMDataset:
    """Read RED116 ground truth from numpy arrays.

    `arch_npy` holds [N, 15] raw architecture values, `loss_npy` [N, 10] loss bits.
    Row i belongs to GM `names[i]`, whose images are in `image_root/names[i]`;
    `names` is a list, or the path of a names file (one per line, as `export_red`
    writes it); without it, the GM folders under `image_root` sorted in
    `folder_order` give the names (RED's convention).
    """
    arch_npy, loss_npy, image_root = Path(arch_npy), Path(loss_npy), Path(image_root)
    arch = _load_npy(arch_npy, _N_ARCH, "architecture values")
    bits = _load_npy(loss_npy, _N_LOSS, "loss bits")
    if len(arch) != len(bits):
        raise DatasetError(f"{loss_npy}: {len(bits)} rows but {arch_npy} has {len(arch)}")
    if names is None:
        gm_names = list_gm_folders(image_root, folder_order)
        if len(gm_names) != len(arch):
            raise DatasetError(
                f"{image_root}: {len(gm_names)} GM folders but {arch_npy} has {len(arch)} rows"
            )
    else:
        if isinstance(names, str | os.PathLike):
            names_src, gm_names = Path(names), read_names(names)
        else:
            names_src, gm_names = arch_npy, [str(n) for n in names]
        if len(gm_names) != len(arch):
            raise DatasetError(
                f"{names_src}: {len(gm_names)} names but {arch_npy} has {len(arch)} rows"
            )
    where = [f"{arch_npy}: row {i} ({n})" for i, n in enumerate(gm_names)]
    loss_where = [f"{loss_npy}: row {i} ({n})" for i, n in enumerate(gm_names)]
    return _dataset(gm_names, arch, bits, image_root, where, loss_where, arch_npy)


def read_red_text(arch_txt: str | Path, loss_txt: str | Path, image_root: str | Path) -> GMDataset:
    """Read RED116 ground truth from text files.

    `arch_txt`: one line per GM, `NAME` and the 15 values, whitespace separated
    (for example `DM_1 134 122 12 0 0 5000 8 12 554000000 1 1 1 1 1 1`).
    `loss_txt`: one line of 10 bits (0 or 1) per GM, in the same order. RTF markup
    is stripped from both; lines without a digit (headers, markup) are skipped, as
    are lines starting with `#`. Images are in `image_root/NAME`.
    """
    arch_txt, loss_txt, image_root = Path(arch_txt), Path(loss_txt), Path(image_root)
    names, rows, where = _parse_arch_text(arch_txt)
    bits, loss_where = _parse_loss_text(loss_txt)
    if len(bits) != len(rows):
        raise DatasetError(
            f"{loss_txt}: {len(bits)} loss lines but {arch_txt} lists {len(rows)} GMs"
        )
    arch = np.array(rows, dtype=np.float64).reshape(len(rows), _N_ARCH)
    loss = np.array(bits, dtype=np.float64).reshape(len(bits), _N_LOSS)
    return _dataset(names, arch, loss, image_root, where, loss_where, arch_txt)


def export_red(
    dataset: GMDataset, out_dir: str | Path, *, copy_images: bool = False
) -> dict[str, Path]:
    """Write `dataset` in RED116's format under `out_dir`.

    Writes `ground_truth_net_15dim.npy` ([N, 15] float64), `ground_truth_loss_10dim.npy`
    and `ground_truth_loss_3dim.npy` ([N, 10] and [N, 3] float32, the coarse groups
    of `schema.group_bits`), `net_arch.txt`, `loss.txt` and `names.txt`, rows in the
    dataset's order. With `copy_images`, each GM's images go to `out_dir/images/NAME/`.
    Returns the paths written, by key: arch_npy, loss_npy, groups_npy, arch_txt,
    loss_txt, names_txt (and images).
    """
    out = Path(out_dir)
    if not dataset.gms:
        raise DatasetError(f"{out}: nothing to export, the dataset has no GMs")
    names = [g.name for g in dataset.gms]
    for g in dataset.gms:
        _check_name(g.name, f"GM {g.name!r}")
    _check_unique(names, "dataset")
    arch = np.zeros((len(names), _N_ARCH), dtype=np.float64)
    loss = np.zeros((len(names), _N_LOSS), dtype=np.float32)
    for i, g in enumerate(dataset.gms):
        try:
            arch[i] = arch_row(g.arch)
            loss[i] = loss_bits(g.losses)
        except (KeyError, ValueError, TypeError) as e:
            raise DatasetError(f"GM {g.name!r}: cannot export ({e})") from None
        _arch_values(arch[i], f"GM {g.name!r}")  # finite, non-negative counts
    if names != sorted(names, key=natural_key):
        warnings.warn(
            f"{out}: GM names are not in natural order; readers that pair rows "
            f"with sorted folders need {NAMES_TXT}",
            stacklevel=2,
        )
    groups = np.stack([group_bits(r) for r in loss])

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "arch_npy": out / ARCH_NPY,
        "loss_npy": out / LOSS_NPY,
        "groups_npy": out / GROUPS_NPY,
        "arch_txt": out / ARCH_TXT,
        "loss_txt": out / LOSS_TXT,
        "names_txt": out / NAMES_TXT,
    }
    _save_npy(paths["arch_npy"], arch)
    _save_npy(paths["loss_npy"], loss)
    _save_npy(paths["groups_npy"], groups.astype(np.float32))
    _write_text(
        paths["arch_txt"],
        [
            " ".join([n, *(_format_value(v) for v in row)])
            for n, row in zip(names, arch, strict=True)
        ],
    )
    _write_text(paths["loss_txt"], [" ".join(str(int(b)) for b in row) for row in loss])
    _write_text(paths["names_txt"], names)
    if copy_images:
        paths["images"] = out / "images"
        for g in dataset.gms:
            _copy_images(g, paths["images"] / g.name)
    return paths


# --- reading helpers -------------------------------------------------------------


def _load_npy(path: Path, n_cols: int, what: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read as a .npy array ({e})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise DatasetError(f"{path}: is an .npz archive, expected one .npy array")
    if arr.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: {what} are not numeric (dtype {arr.dtype})")
    if arr.ndim != 2 or arr.shape[1] != n_cols:
        raise DatasetError(f"{path}: {what} have shape {arr.shape}, expected [N, {n_cols}]")
    if len(arr) == 0:
        raise DatasetError(f"{path}: no rows")
    return arr.astype(np.float64)


def _read_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(f"{path}: missing")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.splitlines()


def _tokens(line: str) -> list[str]:
    """Whitespace-separated tokens of a line, RTF markup and braces removed."""
    if line.lstrip().startswith("#"):
        return []
    return _RTF.sub(" ", line).replace("{", " ").replace("}", " ").split()


def _parse_arch_text(path: Path) -> tuple[list[str], list[list[float]], list[str]]:
    names, rows, where = [], [], []
    for lineno, line in enumerate(_read_lines(path), 1):
        tokens = _tokens(line)
        if not any(c.isdigit() for t in tokens for c in t):
            continue
        if len(tokens) != 1 + _N_ARCH:
            raise DatasetError(
                f"{path}: line {lineno}: expected a name and {_N_ARCH} "
                f"values, found {len(tokens)} fields"
            )
        name, values = tokens[0], tokens[1:]
        row = []
        for f, tok in zip(ARCH_FIELDS, values, strict=True):
            if not _NUMBER.fullmatch(tok):
                raise DatasetError(
                    f"{path}: line {lineno} ({name}): {f.name} value {tok!r} is not a number"
                )
            row.append(float(tok))
        names.append(name)
        rows.append(row)
        where.append(f"{path}: line {lineno} ({name})")
    if not rows:
        raise DatasetError(f"{path}: no GM lines found")
    return names, rows, where


def _parse_loss_text(path: Path) -> tuple[list[list[float]], list[str]]:
    rows, where = [], []
    for lineno, line in enumerate(_read_lines(path), 1):
        numbers = [t for t in _tokens(line) if _NUMBER.fullmatch(t)]
        if not numbers:
            continue
        if len(numbers) != _N_LOSS:
            raise DatasetError(
                f"{path}: line {lineno}: expected {_N_LOSS} loss bits, found {len(numbers)}"
            )
        rows.append([float(t) for t in numbers])
        where.append(f"{path}: line {lineno}")
    return rows, where


def _dataset(
    names: list[str],
    arch: np.ndarray,
    bits: np.ndarray,
    image_root: Path,
    where: list[str],
    loss_where: list[str],
    source: Path,
) -> GMDataset:
    for name, w in zip(names, where, strict=True):
        _check_name(name, w)
    _check_unique(names, str(source))
    if not image_root.is_dir():
        raise DatasetError(f"{image_root}: image root missing or not a folder")
    gms = []
    for i, name in enumerate(names):
        values = _arch_values(arch[i], where[i])
        losses = _losses(bits[i], loss_where[i])
        image_dir = image_root / name
        if not image_dir.is_dir():
            raise DatasetError(f"{image_dir}: image folder of GM {name!r} missing ({where[i]})")
        gms.append(
            GMRecord(
                name=name,
                family="red",
                arch=values,
                losses=losses,
                image_dir=image_dir,
                extra={"row": i},
            )
        )
    return GMDataset(gms=gms, root=image_root, origin="red")


def _arch_values(row: np.ndarray, where: str) -> dict[str, float | str]:
    """Check one raw row of 15 and return it by name, discrete fields as class names."""
    values: dict[str, float | str] = {}
    for f, v in zip(ARCH_FIELDS, row, strict=True):
        v = float(v)
        if not math.isfinite(v):
            raise DatasetError(f"{where}: {f.name} is {v}, not a finite number")
        if f.kind == "continuous":
            if v < 0:
                raise DatasetError(f"{where}: {f.name} is negative ({v:g})")
            values[f.name] = v
            continue
        if not v.is_integer():
            raise DatasetError(f"{where}: {f.name} class index {v:g} is not an integer")
        try:
            values[f.name] = f.classes[class_index(f.name, int(v))]
        except ValueError as e:
            raise DatasetError(f"{where}: {e}") from None
    return values


def _losses(bits: np.ndarray, where: str) -> tuple[str, ...]:
    for name, b in zip(LOSS_TYPES, bits, strict=True):
        if b not in (0.0, 1.0):
            raise DatasetError(f"{where}: loss bit {name} is {float(b):g}, not 0 or 1")
    return tuple(loss_names(bits))


def _check_name(name: str, where: str) -> None:
    """A GM name must be one folder name and one whitespace-free token."""
    bad = (
        not name
        or name in (".", "..")
        or any(c.isspace() for c in name)
        or "/" in name
        or "\\" in name
    )
    if bad:
        raise DatasetError(f"{where}: GM name {name!r} cannot be a folder name without spaces")


def _check_unique(names: list[str], where: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DatasetError(f"{where}: GM name {n!r} appears more than once")
        seen.add(n)


# --- writing helpers -------------------------------------------------------------


def _format_value(v: float) -> str:
    """Integers without a decimal point, other values exactly (repr round-trips)."""
    v = float(v)
    return str(int(v)) if v.is_integer() else repr(v)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def _write_text(path: Path, lines: list[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def _copy_images(gm: GMRecord, dest: Path) -> None:
    """Copy a GM's image files (relative paths kept) to `dest`, which appears only
    when complete (write elsewhere, then rename)."""
    src = Path(gm.image_dir)
    if not src.is_dir():
        raise DatasetError(f"{src}: image folder of GM {gm.name!r} missing")
    with atomic_dir(dest) as tmp:
        for image in gm.images():
            target = tmp / image.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(image, target)
