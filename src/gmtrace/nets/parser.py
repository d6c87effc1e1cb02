"""Parsing network: fingerprint -> embedding -> the 15 hyperparameters and 10 loss types.

    fingerprint F [B,3,H,W] -> conv stages -> global average pool -> embedding e
      e -> continuous head  (9 values in [0,1], the Normalizer's scale)
      e -> discrete heads   (one softmax per discrete field)
      e -> coarse head      (3 loss groups)      p(group)
      e -> fine head        (10 loss types)      p(type) = p(group of type) * s(fine logit)

The coarse group's probability gates its fine types (hierarchical learning, as in
RED); unlike RED's code, the gate multiplies a probability, so it changes the
prediction (RED scales both entries of a 2-way score, which leaves the arg max
unchanged). Global pooling makes the trunk work at any image size.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmtrace.core.schema import (
    CONTINUOUS,
    DISCRETE,
    GROUP_NAMES,
    LOSS_TYPES,
    UNKNOWN_CLASS,
    group_of,
)
from gmtrace.nets.config import ParserConfig

GROUP_INDEX = torch.tensor([GROUP_NAMES.index(group_of(t)) for t in LOSS_TYPES])


@dataclass
class ParseOutput:
    continuous: torch.Tensor  # [B, 9] in (0, 1)
    discrete: list[torch.Tensor]  # per discrete field, logits [B, C]
    coarse: torch.Tensor  # [B, 3] logits
    fine: torch.Tensor  # [B, 10] logits (before gating)
    embedding: torch.Tensor  # [B, embed]
    # the parsing probe's linear outputs [B, probe outputs] (continuous values before
    # clipping, then the logits), where the probe answers; see `Inference.parse_of`
    linear: torch.Tensor | None = None
    # [B, 9] how unsure the probe's forests are of each count (their trees' standard
    # deviation, weighed by the forests' share of the count), where they answer
    spread: torch.Tensor | None = None

    def first(self, n: int) -> ParseOutput:
        """The outputs of the first n images of the batch (same output type)."""
        return self.rows(slice(0, n))

    def rows(self, sl: slice) -> ParseOutput:
        """The outputs of the images `sl` of the batch (same output type)."""
        return type(self)(
            **{
                f.name: [t[sl] for t in v] if isinstance(v, list) else v if v is None else v[sl]
                for f in fields(self)
                for v in [getattr(self, f.name)]
            }
        )

    def discrete_prob(self) -> list[torch.Tensor]:
        """Class probabilities per discrete field."""
        return [torch.softmax(d, dim=1) for d in self.discrete]

    @property
    def group_prob(self) -> torch.Tensor:
        return torch.sigmoid(self.coarse)

    @property
    def loss_prob(self) -> torch.Tensor:
        """p(type) = p(its group) * sigmoid(fine logit)."""
        return self.group_prob[:, GROUP_INDEX.to(self.fine.device)] * torch.sigmoid(self.fine)


class Trunk(nn.Module):
    """Conv-BN-ReLU stages, each halving the map, then global average pooling."""

    def __init__(self, cfg: ParserConfig):
        super().__init__()
        layers, ch = [], cfg.in_ch
        for i in range(cfg.stages):
            out = cfg.width * 2**i
            layers += [
                nn.Conv2d(ch, out, 3, 1, 1),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.Conv2d(out, out, 3, 2, 1),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            ch = out
        self.body = nn.Sequential(*layers)
        self.proj = nn.Sequential(
            nn.Dropout(cfg.dropout), nn.Linear(ch, cfg.embed), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x).mean(dim=(2, 3)))


class ParsingNet(nn.Module):
    """The trunk makes a `cfg.embed` embedding; the heads read `head_in` features
    (default the embedding; the full model appends its spectrum features)."""

    def __init__(self, cfg: ParserConfig = ParserConfig(), head_in: int | None = None):
        super().__init__()
        self.cfg = cfg
        n = head_in or cfg.embed
        self.trunk = Trunk(cfg)
        self.continuous = nn.Linear(n, len(CONTINUOUS))
        self.discrete = nn.ModuleList([nn.Linear(n, f.n_classes) for f in DISCRETE])
        self.coarse = nn.Linear(n, len(GROUP_NAMES))
        self.fine = nn.Linear(n, len(LOSS_TYPES))

    def forward_features(self, fp: torch.Tensor) -> torch.Tensor:
        return self.trunk(fp)

    def forward_head(self, e: torch.Tensor) -> ParseOutput:
        return ParseOutput(
            continuous=torch.sigmoid(self.continuous(e)),
            discrete=[h(e) for h in self.discrete],
            coarse=self.coarse(e),
            fine=self.fine(e),
            embedding=e,
        )

    def forward(self, fp: torch.Tensor) -> ParseOutput:
        return self.forward_head(self.forward_features(fp))


@dataclass
class Balance:
    """Class weights from the training GMs: inverse class frequency per discrete
    field (mean 1 over present classes, absent classes 1), and positive weights
    n_neg / n_pos for the group and type bits (1 when a bit never or always fires).
    GMs whose value is unknown count for neither."""

    discrete: list[torch.Tensor]
    coarse_pos: torch.Tensor
    fine_pos: torch.Tensor

    @classmethod
    def fit(cls, discrete: np.ndarray, groups: np.ndarray, losses: np.ndarray) -> Balance:
        weights = []
        for j, f in enumerate(DISCRETE):
            known = discrete[:, j][discrete[:, j] != UNKNOWN_CLASS].astype(int)
            counts = np.bincount(known, minlength=f.n_classes).astype(float)
            w = np.ones(f.n_classes)
            present = counts > 0
            w[present] = 1.0 / counts[present]
            w[present] /= w[present].mean()
            weights.append(torch.tensor(w, dtype=torch.float32))

        def pos(bits: np.ndarray) -> torch.Tensor:
            bits = bits[~np.isnan(bits).any(axis=1)]
            p = bits.sum(axis=0)
            n = len(bits) - p
            w = np.where((p > 0) & (n > 0), n / np.maximum(p, 1), 1.0)
            return torch.tensor(w, dtype=torch.float32)

        return cls(weights, pos(groups), pos(losses))


def known_ce(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over the rows whose class is known (`UNKNOWN_CLASS` rows left
    out); zero, still in the graph, when no row is known."""
    known = target != UNKNOWN_CLASS
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], target[known], weight=weight)


def known_rows(values: torch.Tensor) -> torch.Tensor:
    """Rows of a [B, K] target without unknown (NaN) entries."""
    return ~torch.isnan(values).any(dim=1)


def parsing_loss(
    out: ParseOutput,
    continuous: torch.Tensor,
    discrete: torch.Tensor,
    groups: torch.Tensor,
    losses: torch.Tensor,
    balance: Balance | None = None,
) -> dict[str, torch.Tensor]:
    """Sum of four terms, each averaged over the batch:
    L1 on the normalized continuous values; class-weighted cross-entropy per discrete
    field (summed over fields); BCE on the coarse groups; BCE on the gated fine
    probabilities, positives weighted by n_neg / n_pos. Unknown targets (NaN values,
    `UNKNOWN_CLASS`) are left out of their term."""
    dev = continuous.device
    known = ~torch.isnan(continuous)
    err = (out.continuous - continuous.nan_to_num()).abs()
    cont = err[known].mean() if bool(known.any()) else err.sum() * 0.0
    disc = sum(
        known_ce(logits, discrete[:, j], balance.discrete[j].to(dev) if balance else None)
        for j, logits in enumerate(out.discrete)
    )
    rows = known_rows(losses)
    if bool(rows.any()):
        coarse = F.binary_cross_entropy_with_logits(
            out.coarse[rows],
            groups[rows],
            pos_weight=balance.coarse_pos.to(dev) if balance else None,
        )
        p = out.loss_prob[rows].clamp(1e-6, 1 - 1e-6)
        w_pos = balance.fine_pos.to(dev) if balance else torch.ones(len(LOSS_TYPES), device=dev)
        bits = losses[rows]
        fine = -(w_pos * bits * torch.log(p) + (1 - bits) * torch.log(1 - p)).mean()
    else:
        coarse = fine = out.coarse.sum() * 0.0
    total = cont + disc + coarse + fine
    return {"total": total, "continuous": cont, "discrete": disc, "coarse": coarse, "fine": fine}
