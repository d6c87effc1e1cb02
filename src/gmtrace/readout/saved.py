"""A trained model on disk: the network's weights (`model.safetensors`), its fitted
readout (`readout.safetensors`) and the JSON config that describes both
(`config.json`: the network's config and the training's metadata). Nothing is
unpickled."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gmtrace.core.files import atomic_path, atomic_write_text, file_sha256
from gmtrace.nets.config import ModelConfig
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.readout import READOUT, Readout

WEIGHTS = "model.safetensors"
FUSION = "fusion.safetensors"  # `readout.fused.Fusion`, where the model has one
FUSION_RECORD = "fusion.json"  # what the fusion chose on its inner validation, and why
ADOPTED = "adopted.json"  # what a fused model adopted from a run (`gmtrace evaluate adopt`)
CONFIG = "config.json"


@dataclass
class SavedModel:
    model: GMTraceModel
    readout: Readout
    meta: dict = field(default_factory=dict)


def read_adopted(model_dir: str | Path) -> dict:
    """A model folder's record of what it adopted (`ADOPTED`: `gmtrace evaluate
    adopt`, `gmtrace index calibrate`); {} where it has none. ValueError, naming the
    file, where it cannot be read."""
    path = Path(model_dir) / ADOPTED
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None


def save_model(model: GMTraceModel, readout: Readout, out_dir: str | Path, meta: dict) -> Path:
    """Write the network, its readout and config.json (model config + `meta`), each
    atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    readout.save(out)
    atomic_write_text(
        out / CONFIG, json.dumps({"model": model.cfg.to_dict(), **meta}, indent=2) + "\n"
    )
    return out


def load_network(
    model_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[GMTraceModel, dict]:
    """The network of a model folder (in eval mode) and its config.json."""
    d = Path(model_dir)
    for name in (CONFIG, WEIGHTS):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing; is {d} a gmtrace model folder?")
    try:
        cfg = json.loads((d / CONFIG).read_text())
        model = GMTraceModel(ModelConfig.from_dict(cfg["model"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{d / CONFIG}: not a gmtrace model config ({e})") from None
    try:
        state = load_file(str(d / WEIGHTS), device=str(device))
    except Exception as e:
        raise ValueError(f"{d / WEIGHTS}: not a readable safetensors file ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{d / WEIGHTS}: does not match its config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return model.to(device).eval(), cfg


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Load a model written by `save_model` (safetensors: no code runs on load)."""
    model, cfg = load_network(model_dir, device)
    readout = Readout.load(model_dir, device=device)
    if readout.n_features != model.n_features:
        raise ValueError(f"{Path(model_dir) / READOUT}: fitted on another network's features")
    meta = {k: v for k, v in cfg.items() if k != "model"}
    return SavedModel(model=model, readout=readout, meta=meta)


def model_id(meta: dict, digest: str) -> str:
    """The id rows carry: gmtrace's version at training and the model's digest."""
    return f"gmtrace-{meta.get('gmtrace', '?')}-{digest[:12]}"


def model_digest(model_dir: str | Path) -> str:
    """The hex sha256 that names a saved model: of its network's and its readout's
    file hashes together, and its fusion's where it has one (a refit readout or
    fusion is another model)."""
    d = Path(model_dir)
    parts = [file_sha256(d / WEIGHTS), file_sha256(d / READOUT)]
    if (d / FUSION).is_file():
        parts.append(file_sha256(d / FUSION))
    return hashlib.sha256("".join(parts).encode()).hexdigest()
