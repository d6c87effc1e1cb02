"""The gmtrace model: FEN -> fingerprint -> embedding -> parsing, detection,
attribution and a projection for contrastive learning; saved as safetensors plus
a JSON config (nothing is unpickled).

    image -> FEN -> F -> trunk -> e -> parsing heads (15 + 10)
                                     -> detection logit (generated vs real)
                                     -> attribution logits (training GMs)
                                     -> projection z (supervised contrastive)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from gmtrace.nets.fen import DnCNN, FENConfig
from gmtrace.nets.parser import ParseOutput, ParserConfig, ParsingNet

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    fen: FENConfig = FENConfig(depth=8, width=32, batch_norm=True)
    parser: ParserConfig = ParserConfig()
    n_gms: int = 1
    proj: int = 64

    def to_dict(self) -> dict:
        return {
            "fen": self.fen.to_dict(),
            "parser": self.parser.to_dict(),
            "n_gms": self.n_gms,
            "proj": self.proj,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(
            fen=FENConfig(**d["fen"]),
            parser=ParserConfig(**d["parser"]),
            n_gms=int(d["n_gms"]),
            proj=int(d["proj"]),
        )


@dataclass
class ModelOutput:
    fingerprint: torch.Tensor
    parse: ParseOutput
    detect: torch.Tensor  # [B] logits, > 0 means generated
    attribute: torch.Tensor  # [B, n_gms] logits
    projection: torch.Tensor  # [B, proj]


class GMTraceModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        e = cfg.parser.embed
        self.fen = DnCNN(cfg.fen)
        self.parser = ParsingNet(cfg.parser)
        self.detect = nn.Linear(e, 1)
        self.attribute = nn.Linear(e, cfg.n_gms)
        self.project = nn.Sequential(nn.Linear(e, e), nn.ReLU(inplace=True), nn.Linear(e, cfg.proj))

    def forward(self, x: torch.Tensor) -> ModelOutput:
        fp = self.fen(x)
        e = self.parser.forward_features(fp)
        return ModelOutput(
            fingerprint=fp,
            parse=self.parser.forward_head(e),
            detect=self.detect(e).squeeze(1),
            attribute=self.attribute(e),
            projection=self.project(e),
        )


@dataclass
class SavedModel:
    model: GMTraceModel
    meta: dict = field(default_factory=dict)


def save_model(model: GMTraceModel, out_dir: str | Path, meta: dict) -> Path:
    """Write model.safetensors and config.json (model config + `meta`) atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS)
    cfg = {"model": model.cfg.to_dict(), **meta}
    tmp = out / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.replace(out / CONFIG)
    return out


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Load a model written by `save_model` (safetensors: no code runs on load)."""
    d = Path(model_dir)
    for name in (CONFIG, WEIGHTS):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing; is {d} a gmtrace model folder?")
    try:
        cfg = json.loads((d / CONFIG).read_text())
        model = GMTraceModel(ModelConfig.from_dict(cfg["model"]))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{d / CONFIG}: not a gmtrace model config ({e})") from None
    state = load_file(str(d / WEIGHTS), device=str(device))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{d / WEIGHTS}: does not match its config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    model.to(device).eval()
    return SavedModel(model=model, meta={k: v for k, v in cfg.items() if k != "model"})
