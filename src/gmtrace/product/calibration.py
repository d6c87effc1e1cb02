"""`gmtrace calibrate`: a fused model's model of real photographs and its threshold
refitted on a user's own photographs (their camera, their platform's JPEG), kept in
the user's data folder, never inside the package (docs/realmodel.md).

A calibration belongs to one model (its folder is named by the model id) and, once
written, is the active one for that model: the analyzer uses it unless told
otherwise (`Analyzer(calibration="none")`, `--calibration none`), and its rows
name it in the model id (`...+cal-NAME-HASH`), so a scan never mixes rows of two
calibrations. The stacker and the band are the model's: only the real model (the
reference the unlikeness is read against) and the threshold change. The threshold
is the larger of 0.5 and the lowest threshold that at most 5 % of the user's
photographs reach."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_write_text, data_dir, file_sha256
from gmtrace.data.images import ImageError, find_images, read_bytes
from gmtrace.readout.fused import Fusion, fit_real
from gmtrace.readout.saved import FUSION
from gmtrace.realmodel.density import RealModelError

MIN_PHOTOS = 20  # readable photographs a calibration needs
FALSE_ALARMS = 0.05  # the share of the user's photographs the threshold may call generated
RECORD = "calibration.json"
ACTIVE = "active"  # the file naming a model's active calibration


class CalibrationError(ValueError):
    """A calibration that cannot be made or read (one line)."""


def model_folder(model_id: str) -> Path:
    return data_dir() / "calibrations" / model_id


@dataclass
class Calibration:
    name: str
    fusion: Fusion  # the model's fusion with the refitted real model
    threshold: float
    sha256: str  # of its fusion file
    record: dict

    @property
    def tag(self) -> str:
        return f"cal-{self.name}-{self.sha256[:8]}"


def calibrate(
    analyzer, paths: list[str | Path], name: str = "default", console=None
) -> Calibration:
    """Refit `analyzer`'s real model and threshold on the photographs under `paths`
    and make the result the model's active calibration. Raises `CalibrationError`
    (nothing written) when the model has no fusion or fewer than `MIN_PHOTOS`
    photographs are readable."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        raise CalibrationError(f"calibration name {name!r}: letters, digits, '.', '_', '-' only")
    base = getattr(analyzer, "base_fusion_", None)
    if base is None:
        raise CalibrationError(
            f"{analyzer.model_dir_}: the model has no fusion (train it with --fuse): "
            "there is no real-photo model to calibrate"
        )
    files, errors = find_images(paths)
    crops, owner, unreadable = [], [], list(errors.values())
    for f in files:
        try:
            decoded, cut = analyzer.decode_crops(read_bytes(f), f)
        except ImageError as e:
            unreadable.append(str(e))
            continue
        if cut is None:
            unreadable.append(decoded.error or f"{f}: unreadable")
            continue
        crops.append(cut.grid)
        owner += [len(crops) - 1] * len(cut.grid)
    if len(crops) < MIN_PHOTOS:
        raise CalibrationError(
            f"{len(crops)} readable photograph(s) under {', '.join(map(str, paths))} "
            f"({len(unreadable)} unreadable); a calibration needs at least {MIN_PHOTOS}: "
            "the model's own calibration stays in force"
        )
    grid = np.concatenate(crops)
    try:
        # the parts the model's own fusion was fitted with, so its stacker reads the
        # unlikeness it was made for
        parts = tuple(base.real.columns)
        # and the user's photographs varied as the model's own were (`Fusion.real_variation`)
        real = fit_real(grid, base.real_variation, 0, base.real.width, parts)
    except RealModelError as e:
        raise CalibrationError(f"the photographs could not be modelled: {e}") from None
    fusion = replace(base, real=real)

    p = fusion.answer(grid, analyzer.supervised_p, np.array(owner)).p_generated
    threshold = max(0.5, false_alarm_threshold(p, FALSE_ALARMS))
    folder = model_folder(analyzer.base_model_id_) / name
    folder.mkdir(parents=True, exist_ok=True)
    fusion.save(folder)
    sha = file_sha256(folder / FUSION)
    record = {
        "name": name,
        "model_id": analyzer.base_model_id_,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "photographs": len(crops),
        "crops": int(len(grid)),
        "unreadable": unreadable[:20],
        "threshold": threshold,
        "called_generated_at_0.5": float(np.mean(p >= 0.5)),
        "fusion_sha256": sha,
    }
    atomic_write_text(folder / RECORD, json.dumps(record, indent=1) + "\n")
    atomic_write_text(model_folder(analyzer.base_model_id_) / ACTIVE, name + "\n")
    return Calibration(name, fusion, threshold, sha, record)


def false_alarm_threshold(p: np.ndarray, rate: float) -> float:
    """The lowest threshold at which at most `rate` of the photographs' `p` reach it
    (a verdict is "generated" at p >= threshold)."""
    allowed = int(np.floor(rate * len(p)))  # photographs that may reach it
    ordered = np.sort(np.asarray(p, dtype=np.float64))[::-1]
    return float(np.nextafter(ordered[allowed], np.inf)) if allowed < len(p) else 0.0


def load_calibration(model_id: str, name: str | None = None) -> Calibration | None:
    """The calibration `name` of the model `model_id` (None: its active one, if
    any; "none": no calibration)."""
    if name == "none":
        return None
    folder = model_folder(model_id)
    if name is None:
        active = folder / ACTIVE
        if not active.is_file():
            return None
        name = active.read_text().strip()
    where = folder / name
    try:
        record = json.loads((where / RECORD).read_text())
        fusion = Fusion.load(where)
    except FileNotFoundError:
        raise CalibrationError(f"{where}: no calibration {name!r} for model {model_id}") from None
    except (json.JSONDecodeError, ValueError) as e:
        raise CalibrationError(f"{where}: unreadable calibration ({e})") from None
    if fusion is None:
        raise CalibrationError(f"{where}: no calibration {name!r} for model {model_id}")
    sha = file_sha256(where / FUSION)
    if sha != record.get("fusion_sha256"):
        raise CalibrationError(f"{where / FUSION}: changed since it was written")
    return Calibration(name, fusion, float(record["threshold"]), sha, record)


def calibrated_digest(weights_sha256: str, cal: Calibration) -> str:
    """The hash that names a model with a calibration."""
    return hashlib.sha256((weights_sha256 + cal.sha256).encode()).hexdigest()
