r"""The readout: everything fitted on a trained network's head features after
training, kept apart from the network and saved as its own safetensors file.

    h (head features) -> detection:   z = h w + b [+ r w_r + b_r]  ->  p = sigmoid(a z + c)
                      -> attribution: softmax(h W + b) over the training GMs
                      -> grouping:    u = unit(((h - mu) / sd - m) P)
                      -> open set:    score(attribution, u, gallery)  > threshold: unknown
    pixel statistics  -> parsing:     the probe's linear map [+ forests for the counts]

r is the image's residual spectrum within h (its last `spectrum_bins` columns). The
fitting itself (`readout.fit`) is scikit-learn's (logistic and ridge regression,
linear discriminants, extremely randomized trees); what it learns lives in the
attributes with a trailing underscore, as torch tensors, so the readout answers in
torch on whatever device the network runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from gmtrace.core.files import atomic_path
from gmtrace.core.schema import CONTINUOUS, GROUP_NAMES, parse_widths
from gmtrace.nets.parser import ParseOutput
from gmtrace.readout.forest import FOREST_ARRAYS, forest_leaves
from gmtrace.readout.pixel_stats import pixel_statistics

READOUT = "readout.safetensors"
# the probe answers each loss type directly: its group gates are held open
OPEN_GATE = 30.0
# leaves per tree of the probe's forests, and the nodes a tree holds then
PROBE_TREE_LEAVES = 64
PROBE_TREE_NODES = 2 * PROBE_TREE_LEAVES - 1
# the learned tensors (names without the trailing underscore) of every readout, and
# those only a parsing probe (and its forests) brings
REQUIRED = (
    "detect_weight",
    "detect_bias",
    "platt",
    "attribute_weight",
    "attribute_bias",
    "feature_mean",
    "feature_std",
    "group_mean",
    "group_projection",
    "open_threshold",
)
OPTIONAL = (
    "probe_mean",
    "probe_std",
    "probe_weight",
    "probe_bias",
    *(f"forest_{n}" for n in FOREST_ARRAYS),
    "forest_depth",
    "forest_share",
    "detect_spectrum",
    "gallery",
)


@dataclass
class ReadoutOutput:
    logit: torch.Tensor  # [B] calibrated detection logit, > 0 means generated
    attribution: torch.Tensor  # [B, n_gms] probabilities
    embedding: torch.Tensor  # [B, group_dims] unit length, for grouping
    parse: ParseOutput | None  # the probe's parse; None where it has none

    @property
    def p_generated(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)


class Readout:
    """The fitted readout of one network (scikit-learn habits: constructor arguments
    kept verbatim, learned state in attributes with a trailing underscore, set by
    `readout.fit` or `load`).

    `n_features`: the network's head features; `n_gms`: its training GMs;
    `group_dims`: the grouping embedding's size; `spectrum_bins`: with
    `spectrum_expert`, detection adds a probe on the last `spectrum_bins` features;
    `parse_probe`: parsing read by the GM-level probe on the pixel statistics (else the
    network's own parsing heads answer); `probe_trees`: forests for its counts;
    `open_gallery`: the open-set score reads the nearest training GM too."""

    def __init__(
        self,
        n_features: int,
        n_gms: int,
        group_dims: int,
        spectrum_bins: int = 48,
        spectrum_expert: bool = True,
        parse_probe: bool = True,
        probe_trees: int = 64,
        open_gallery: bool = True,
    ):
        self.n_features = n_features
        self.n_gms = n_gms
        self.group_dims = group_dims
        self.spectrum_bins = spectrum_bins
        self.spectrum_expert = spectrum_expert
        self.parse_probe = parse_probe
        self.probe_trees = probe_trees
        self.open_gallery = open_gallery

    @classmethod
    def for_model(cls, model) -> Readout:
        """The readout a `GMTraceModel` gets, shaped by its config."""
        c = model.cfg
        return cls(
            n_features=model.n_features,
            n_gms=c.n_gms,
            group_dims=model.group_dims,
            spectrum_bins=c.spectrum_bins,
            spectrum_expert=c.spectrum_expert,
            parse_probe=c.parse_probe,
            probe_trees=c.probe_trees if c.parse_probe else 0,
            open_gallery=c.open_gallery,
        )

    def config(self) -> dict:
        return {k: getattr(self, k) for k in _CONFIG}

    # -- learned state ------------------------------------------------------------

    def state(self) -> dict[str, torch.Tensor]:
        """The learned tensors by name (without the trailing underscore)."""
        return {k[:-1]: v for k, v in vars(self).items() if k.endswith("_") and v is not None}

    def to(self, device: str | torch.device) -> Readout:
        """This readout with its learned tensors on `device` (in place; fitting
        creates them on the CPU, and the network may run on CUDA)."""
        for k, v in vars(self).items():
            if k.endswith("_") and isinstance(v, torch.Tensor) and v.device != torch.device(device):
                setattr(self, k, v.to(device))
        return self

    def has_probe(self) -> bool:
        return getattr(self, "probe_weight_", None) is not None

    def save(self, out_dir: str | Path) -> Path:
        """`readout.safetensors` in `out_dir`, its config in the file's metadata."""
        path = Path(out_dir) / READOUT
        state = {k: v.detach().cpu().contiguous() for k, v in self.state().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"config": json.dumps(self.config())})
        return path

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device = "cpu") -> Readout:
        """The readout saved by `save` (safetensors: no code runs on load)."""
        path = Path(model_dir) / READOUT
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; is {model_dir} a gmtrace model folder?")
        try:
            with safe_open(str(path), framework="pt") as f:
                cfg = json.loads((f.metadata() or {})["config"])
            state = load_file(str(path), device=str(device))
            readout = cls(**cfg)
        except Exception as e:
            raise ValueError(f"{path}: not a gmtrace readout ({e})") from None
        missing = sorted(set(readout.required()) - set(state))
        unknown = sorted(set(state) - set(readout.required()) - set(OPTIONAL))
        if missing or unknown:
            why = f"missing {missing}, unknown {unknown}"
            raise ValueError(f"{path}: not a gmtrace readout ({why})")
        for k, v in state.items():
            setattr(readout, k + "_", v)
        return readout

    def required(self) -> list[str]:
        """The learned tensors every fitted readout of this config holds."""
        return [
            *REQUIRED,
            *(["detect_spectrum"] if self.spectrum_expert else []),
            *(["gallery"] if self.open_gallery else []),
        ]

    # -- answers ------------------------------------------------------------------

    def __call__(self, h: torch.Tensor, x: torch.Tensor) -> ReadoutOutput:
        """The answers for head features h [B, D] of images x [B, 3, H, W]."""
        u = (h - self.feature_mean_) / self.feature_std_
        u = (u - self.group_mean_) @ self.group_projection_
        return ReadoutOutput(
            logit=self.logit(h),
            attribution=torch.softmax(h @ self.attribute_weight_.T + self.attribute_bias_, dim=1),
            embedding=F.normalize(u, dim=1),
            parse=self.probe_parse(h, x) if self.has_probe() else None,
        )

    def logit(self, h: torch.Tensor) -> torch.Tensor:
        """The calibrated detection logit [B] of head features h [B, D] (> 0: generated)."""
        z = h @ self.detect_weight_ + self.detect_bias_
        if self.spectrum_expert:
            w = self.detect_spectrum_
            z = z + h[:, -self.spectrum_bins :] @ w[:-1] + w[-1]
        a, b = self.platt_
        return a * z + b

    def probe_parse(self, h: torch.Tensor, x: torch.Tensor) -> ParseOutput:
        """Parsing by the fitted probe from the pixel statistics of images x (h: their
        head features, kept as the parse's embedding): continuous
        values clipped to [0, 1], the discrete fields' logits, and each loss type's
        logit (its gate open); with forests, each count's spread over their trees."""
        s = pixel_statistics(x).to(self.probe_mean_.dtype)
        u = ((s - self.probe_mean_) / self.probe_std_).clamp(-5, 5)
        out = u @ self.probe_weight_ + self.probe_bias_
        depth = int(getattr(self, "forest_depth_", 0))
        spread = None
        if depth > 0:
            arrays = {n: getattr(self, f"forest_{n}_") for n in FOREST_ARRAYS}
            leaves = forest_leaves(u, arrays, depth).to(out.dtype)
            w, nc = self.forest_share_, len(CONTINUOUS)
            counts = w * leaves.mean(-1) + (1 - w) * out[:, :nc]
            spread = w * leaves.std(-1, correction=0)
            out = torch.cat([counts, out[:, nc:]], dim=1)
        parts = torch.split(out, parse_widths(), dim=1)
        return ParseOutput(
            continuous=parts[0].clamp(0, 1),
            discrete=list(parts[1:-1]),
            coarse=torch.full_like(out[:, : len(GROUP_NAMES)], OPEN_GATE),
            fine=parts[-1],
            embedding=h,
            linear=out,
            spread=spread,
        )


_CONFIG = (
    "n_features",
    "n_gms",
    "group_dims",
    "spectrum_bins",
    "spectrum_expert",
    "parse_probe",
    "probe_trees",
    "open_gallery",
)
