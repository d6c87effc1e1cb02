"""The hyperparameter schema: what gmtrace parses out of a generative model.

Fifteen architecture hyperparameters (nine continuous counts, six discrete) and
ten loss types in three groups, shaped like the ground truth of RED116 (Asnani et
al., TPAMI 2023) so either source feeds the same trainer. This module names them,
encodes raw values to vectors a network can learn and decodes predictions back to
readable values. Raw values of a real module come from `gmtrace.describe`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Field:
    """One architecture hyperparameter."""

    name: str
    kind: str  # "continuous" or "discrete"
    meaning: str
    classes: tuple[str, ...] = ()
    log: bool = False  # normalize on a log scale (counts spanning orders of magnitude)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


ARCH_FIELDS: tuple[Field, ...] = (
    Field("n_layers", "continuous", "layers with learnable weights, norms excluded", log=True),
    Field("n_conv", "continuous", "convolution and transposed-convolution layers", log=True),
    Field("n_fc", "continuous", "fully connected layers", log=True),
    Field("n_pool", "continuous", "pooling layers", log=True),
    Field("n_norm", "continuous", "normalization layers", log=True),
    Field("n_filters", "continuous", "sum of output channels over conv layers", log=True),
    Field("n_blocks", "continuous", "repeated blocks (residual, up/down, style blocks)", log=True),
    Field("n_layers_per_block", "continuous", "weight layers per block"),
    Field("n_params", "continuous", "trainable parameters", log=True),
    Field(
        "norm_type",
        "discrete",
        "dominant normalization",
        classes=("none", "batch", "instance", "layer_group"),
    ),
    Field(
        "last_activation",
        "discrete",
        "activation on the output",
        classes=("none", "tanh", "sigmoid", "other"),
    ),
    Field(
        "block_activation",
        "discrete",
        "activation inside the blocks",
        classes=("relu", "leaky_relu", "smooth", "other"),
    ),
    Field("upsampling", "discrete", "how feature maps grow", classes=("fixed", "learned")),
    Field("skip_connection", "discrete", "any residual or U-Net skip", classes=("no", "yes")),
    Field(
        "downsampling",
        "discrete",
        "any strided conv or pooling that shrinks the map",
        classes=("no", "yes"),
    ),
)
ARCH_NAMES: tuple[str, ...] = tuple(f.name for f in ARCH_FIELDS)
CONTINUOUS: tuple[Field, ...] = tuple(f for f in ARCH_FIELDS if f.kind == "continuous")
DISCRETE: tuple[Field, ...] = tuple(f for f in ARCH_FIELDS if f.kind == "discrete")
FIELDS_BY_NAME: dict[str, Field] = {f.name: f for f in ARCH_FIELDS}

# Extra targets beyond RED's fifteen, computed by the same introspection.
UPSAMPLING_KINDS: tuple[str, ...] = ("none", "transposed", "nearest", "bilinear", "pixel_shuffle")

# Loss types in RED's column order, and their coarse groups.
LOSS_TYPES: tuple[str, ...] = ("l1", "l2", "mse", "mmd", "ls", "wgan", "kl", "adv", "hinge", "ce")
LOSS_GROUPS: dict[str, tuple[str, ...]] = {
    "pixel": ("l1", "l2", "mse", "mmd"),
    "adversarial": ("ls", "wgan", "kl", "adv", "hinge"),
    "likelihood": ("ce",),
}
GROUP_NAMES: tuple[str, ...] = tuple(LOSS_GROUPS)
LOSS_MEANING: dict[str, str] = {
    "l1": "mean absolute pixel error",
    "l2": "squared distance between feature maps",
    "mse": "mean squared pixel error",
    "mmd": "kernel maximum mean discrepancy",
    "ls": "least-squares GAN",
    "wgan": "Wasserstein GAN (gradient penalty or weight clipping)",
    "kl": "KL divergence to a prior (VAE)",
    "adv": "non-saturating / minimax BCE GAN",
    "hinge": "hinge GAN",
    "ce": "cross-entropy on quantized pixels",
}


def group_of(loss: str) -> str:
    """The coarse group a fine loss type belongs to."""
    for group, members in LOSS_GROUPS.items():
        if loss in members:
            return group
    raise ValueError(f"unknown loss type {loss!r}; known: {', '.join(LOSS_TYPES)}")


# A value the source cannot show (a normalization a converter folded into the
# convolutions, the losses of a GM nobody published): left out of training and scoring.
UNKNOWN = "unknown"


def is_unknown(value: object) -> bool:
    """True for `UNKNOWN` and for NaN (how a raw row holds it)."""
    if isinstance(value, str):
        return value == UNKNOWN
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def class_index(field_name: str, value: str | int | float) -> int:
    """Class index of a discrete value given as a name or an index."""
    f = FIELDS_BY_NAME[field_name]
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        if value not in f.classes:
            raise ValueError(f"{field_name}: {value!r} is not one of {', '.join(f.classes)}")
        return f.classes.index(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"{field_name}: class index {value!r} is not a whole number")
    index = int(number)
    if not 0 <= index < f.n_classes:
        raise ValueError(f"{field_name}: class index {index} outside 0..{f.n_classes - 1}")
    return index


def arch_row(values: Mapping[str, object]) -> np.ndarray:
    """Raw architecture values (dict by name) as a float row of 15: counts as they
    are, discrete fields as class indices, `UNKNOWN` as NaN."""
    row = np.zeros(len(ARCH_FIELDS), dtype=np.float64)
    for i, f in enumerate(ARCH_FIELDS):
        if f.name not in values:
            raise KeyError(f"missing architecture hyperparameter {f.name!r}")
        v = values[f.name]
        if is_unknown(v):
            row[i] = np.nan
        else:
            row[i] = class_index(f.name, v) if f.kind == "discrete" else float(v)
    return row


def arch_dict(row: Sequence[float]) -> dict[str, float | str]:
    """Inverse of `arch_row`: counts stay numbers, class indices become names, NaN
    becomes `UNKNOWN`."""
    out: dict[str, float | str] = {}
    for f, v in zip(ARCH_FIELDS, row, strict=True):
        if is_unknown(v):
            out[f.name] = UNKNOWN
        else:
            out[f.name] = f.classes[int(round(float(v)))] if f.kind == "discrete" else float(v)
    return out


def loss_bits(losses: Sequence[str] | None) -> np.ndarray:
    """Multi-hot vector of 10 fine loss types; all NaN when the losses are unknown
    (None)."""
    if losses is None:
        return np.full(len(LOSS_TYPES), np.nan, dtype=np.float32)
    bits = np.zeros(len(LOSS_TYPES), dtype=np.float32)
    for name in losses:
        if name not in LOSS_TYPES:
            raise ValueError(f"unknown loss type {name!r}; known: {', '.join(LOSS_TYPES)}")
        bits[LOSS_TYPES.index(name)] = 1.0
    return bits


# a loss type is predicted when its probability reaches this (analyze, group, scoring)
LOSS_THRESHOLD = 0.5


def loss_names(bits: Sequence[float], threshold: float = LOSS_THRESHOLD) -> list[str]:
    """Fine loss types whose bit (or probability) reaches `threshold`."""
    return [n for n, b in zip(LOSS_TYPES, bits, strict=True) if float(b) >= threshold]


def group_bits(fine_bits: Sequence[float]) -> np.ndarray:
    """Multi-hot vector of the 3 coarse groups: a group is on when any member is;
    NaN when the losses are unknown."""
    fine = dict(zip(LOSS_TYPES, fine_bits, strict=True))
    if any(is_unknown(b) for b in fine.values()):
        return np.full(len(GROUP_NAMES), np.nan, dtype=np.float32)
    return np.array(
        [float(any(fine[m] >= 0.5 for m in LOSS_GROUPS[g])) for g in GROUP_NAMES],
        dtype=np.float32,
    )


@dataclass
class Normalizer:
    """Min-max normalization of the continuous hyperparameters, log scale first for
    the fields marked `log`, fitted on the training GMs (scikit-learn style)."""

    lo_: dict[str, float] = field(default_factory=dict)
    hi_: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def _warp(f: Field, x: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(x, 0.0)) if f.log else x

    def fit(self, raw: np.ndarray) -> Normalizer:
        raw = np.asarray(raw, dtype=np.float64)
        for f in CONTINUOUS:
            col = self._warp(f, raw[:, ARCH_NAMES.index(f.name)])
            col = col[~np.isnan(col)]  # unknown values say nothing of the range
            if col.size == 0:
                raise ValueError(f"{f.name}: no training GM has a known value")
            self.lo_[f.name], self.hi_[f.name] = float(col.min()), float(col.max())
        return self

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """[N,15] raw rows -> [N,9] continuous values in [0,1] on the training range."""
        raw = np.atleast_2d(np.asarray(raw, dtype=np.float64))
        cols = []
        for f in CONTINUOUS:
            col = self._warp(f, raw[:, ARCH_NAMES.index(f.name)])
            span = self.hi_[f.name] - self.lo_[f.name]
            cols.append((col - self.lo_[f.name]) / span if span > 0 else np.zeros_like(col))
        return np.stack(cols, axis=1).astype(np.float32)

    def inverse(self, norm: np.ndarray) -> np.ndarray:
        """[N,9] normalized -> [N,9] raw counts."""
        norm = np.atleast_2d(np.asarray(norm, dtype=np.float64))
        cols = []
        for j, f in enumerate(CONTINUOUS):
            x = norm[:, j] * (self.hi_[f.name] - self.lo_[f.name]) + self.lo_[f.name]
            cols.append(np.expm1(x) if f.log else x)
        return np.stack(cols, axis=1)

    def to_json(self) -> str:
        return json.dumps({"lo": self.lo_, "hi": self.hi_}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Normalizer:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: Mapping) -> Normalizer:
        """The normalizer as `to_json` wrote it, already parsed (a model's config.json
        holds it under "normalizer")."""
        return cls(lo_=dict(d["lo"]), hi_=dict(d["hi"]))


@dataclass
class Targets:
    """Encoded parsing targets for a batch of GMs."""

    continuous: np.ndarray  # [N, 9] in [0, 1]; NaN where unknown
    discrete: np.ndarray  # [N, 6] class indices; UNKNOWN_CLASS where unknown
    losses: np.ndarray  # [N, 10] multi-hot; NaN rows where unknown
    groups: np.ndarray  # [N, 3] multi-hot; NaN rows where unknown


# the class index of an unknown discrete value in `Targets` (cross-entropy's ignore_index)
UNKNOWN_CLASS = -1


def encode(raw_arch: np.ndarray, loss_matrix: np.ndarray, normalizer: Normalizer) -> Targets:
    """Raw [N,15] architecture rows and [N,10] loss bits -> learnable targets."""
    raw_arch = np.atleast_2d(np.asarray(raw_arch, dtype=np.float64))
    loss_matrix = np.atleast_2d(np.asarray(loss_matrix, dtype=np.float32))
    disc = raw_arch[:, [ARCH_NAMES.index(f.name) for f in DISCRETE]]
    return Targets(
        continuous=normalizer.transform(raw_arch),
        discrete=np.where(np.isnan(disc), UNKNOWN_CLASS, np.rint(np.nan_to_num(disc))).astype(
            np.int64
        ),
        losses=loss_matrix,
        groups=np.stack([group_bits(r) for r in loss_matrix])
        if len(loss_matrix)
        else np.zeros((0, len(GROUP_NAMES)), dtype=np.float32),
    )


def parse_widths() -> list[int]:
    """Widths of the blocks of a linear parse (`read_linear`): the continuous
    fields, each discrete field's classes, the loss types."""
    return [len(CONTINUOUS), *(f.n_classes for f in DISCRETE), len(LOSS_TYPES)]


def read_linear(v: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """A linear parse [sum(parse_widths())] (the parsing probe's outputs: continuous
    values, then each discrete field's class logits, then each loss type's logit)
    read as continuous values clipped to [0, 1] (normalized scale), class
    probabilities per discrete field, and loss-type probabilities."""
    parts = np.split(np.asarray(v, dtype=np.float64), np.cumsum(parse_widths())[:-1])
    disc = [np.exp(p - p.max()) for p in parts[1:-1]]
    return (
        np.clip(parts[0], 0, 1),
        [p / p.sum() for p in disc],
        1 / (1 + np.exp(-np.clip(parts[-1], -60, 60))),
    )


def decode(
    continuous: np.ndarray,
    discrete_probs: Sequence[np.ndarray],
    loss_probs: np.ndarray,
    normalizer: Normalizer,
) -> list[dict]:
    """Network outputs -> readable predictions, one dict per row.

    `continuous` is [N,9] normalized, `discrete_probs` one [N,C] array per discrete
    field, `loss_probs` [N,10] probabilities of the fine types.
    """
    counts = normalizer.inverse(continuous)
    out = []
    for i in range(counts.shape[0]):
        d: dict = {f.name: float(counts[i, j]) for j, f in enumerate(CONTINUOUS)}
        for f, probs in zip(DISCRETE, discrete_probs, strict=True):
            k = int(np.argmax(probs[i]))
            d[f.name] = f.classes[k]
            d[f.name + "_confidence"] = float(probs[i][k])
        d["losses"] = loss_names(loss_probs[i])
        d["loss_probabilities"] = {
            n: float(p) for n, p in zip(LOSS_TYPES, loss_probs[i], strict=True)
        }
        out.append(d)
    return out


def format_count(name: str, value: float | str) -> str:
    """Human-readable count (n_params as 1.2M, others as integers or one decimal)."""
    if is_unknown(value):
        return UNKNOWN
    value = float(value)
    if name == "n_params":
        for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if value >= scale:
                return f"{value / scale:.3g}{unit}"
        return f"{value:.0f}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def orders_of_magnitude(values: Sequence[float]) -> float:
    """log10(max / min) over the positive values; 0 when fewer than two."""
    pos = [float(v) for v in values if float(v) > 0]
    return math.log10(max(pos) / min(pos)) if len(pos) >= 2 else 0.0
