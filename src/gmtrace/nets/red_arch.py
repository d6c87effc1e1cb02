"""RED's parsing network and losses, as a baseline (see docs/red_notes.md, section 3).

    fingerprint [B,3,64,64] -> 5 x [conv3x3 pad 2, ReLU, maxpool 2]  (3->32->...->512, 3x3 map)
      -> dropout 0.5 -> fc 4608->512 -> 256 -> 64 (ReLU each) = embedding e
      e -> 9 continuous (sigmoid), one head per discrete field, 3 coarse 2-way heads,
           10 fine 2-way heads; every head ends in a sigmoid, and each fine 2-vector is
           multiplied by its group's positive sigmoid (RED's gating)

Losses as RED codes them, all weighted 10: MSE on the continuous values, and
class-weighted cross-entropy applied to the *sigmoid outputs* of every other head.
RED's trunk assumes 64x64 input; other sizes are adaptively pooled to the 3x3 map.
Reimplemented from the paper's description and notes on its code, not copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gmtrace.core.schema import CONTINUOUS, DISCRETE, GROUP_NAMES, LOSS_TYPES, UNKNOWN_CLASS
from gmtrace.nets.parser import GROUP_INDEX, Balance, ParseOutput, known_ce, known_rows

EMBED = 64


@dataclass
class RedParseOutput(ParseOutput):
    """coarse [B, 3, 2] and fine [B, 10, 2] hold RED's sigmoid 2-vectors (fine ones
    already gated); probabilities are their softmax, as RED's cross-entropy reads them."""

    @property
    def group_prob(self) -> torch.Tensor:
        return torch.softmax(self.coarse, dim=-1)[..., 1]

    @property
    def loss_prob(self) -> torch.Tensor:
        return torch.softmax(self.fine, dim=-1)[..., 1]


class RedParsingNet(nn.Module):
    embed = EMBED

    def __init__(self, head_in: int | None = None):
        super().__init__()
        chans = [3, 32, 64, 128, 256, 512]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:], strict=True):
            layers += [nn.Conv2d(c_in, c_out, 3, 1, 2), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Sequential(
            nn.Dropout(0.5),
            nn.Linear(512 * 3 * 3, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, EMBED),
            nn.ReLU(inplace=True),
        )
        n = head_in or EMBED
        self.continuous = nn.Linear(n, len(CONTINUOUS))
        self.discrete = nn.ModuleList([nn.Linear(n, f.n_classes) for f in DISCRETE])
        self.coarse = nn.Linear(n, 2 * len(GROUP_NAMES))
        self.fine = nn.Linear(n, 2 * len(LOSS_TYPES))

    def forward_features(self, fp: torch.Tensor) -> torch.Tensor:
        x = self.body(fp)
        if x.shape[-2:] != (3, 3):
            x = F.adaptive_avg_pool2d(x, 3)
        return self.fc(x.flatten(1))

    def forward_head(self, e: torch.Tensor) -> RedParseOutput:
        b = e.shape[0]
        coarse = torch.sigmoid(self.coarse(e)).view(b, len(GROUP_NAMES), 2)
        gate = coarse[:, GROUP_INDEX.to(e.device), 1:]
        fine = torch.sigmoid(self.fine(e)).view(b, len(LOSS_TYPES), 2) * gate
        return RedParseOutput(
            continuous=torch.sigmoid(self.continuous(e)),
            discrete=[torch.sigmoid(h(e)) for h in self.discrete],
            coarse=coarse,
            fine=fine,
            embedding=e,
        )


def red_parsing_loss(
    out: RedParseOutput,
    continuous: torch.Tensor,
    discrete: torch.Tensor,
    groups: torch.Tensor,
    losses: torch.Tensor,
    balance: Balance | None = None,
) -> dict[str, torch.Tensor]:
    """RED's objective: 10 MSE(continuous) + 10 sum_fields CE_w(sigmoid outputs)
    + 10 sum_groups CE_w(coarse 2-vector) + 10 sum_types CE_w(gated fine 2-vector),
    CE_w weighted by inverse class frequency over the training GMs."""
    dev = continuous.device
    known = ~torch.isnan(continuous)
    sq = (out.continuous - continuous.nan_to_num()) ** 2
    cont = 10 * (sq[known].mean() if bool(known.any()) else sq.sum() * 0.0)
    disc = 10 * sum(
        known_ce(s, discrete[:, j], balance.discrete[j].to(dev) if balance else None)
        for j, s in enumerate(out.discrete)
    )
    rows = known_rows(losses)

    def two_way(scores: torch.Tensor, bits: torch.Tensor, pos: torch.Tensor | None):
        total = scores.new_zeros(())
        for k in range(scores.shape[1]):
            w = None if pos is None else torch.stack([torch.ones_like(pos[k]), pos[k]]).to(dev)
            target = torch.where(rows, bits[:, k].nan_to_num(), UNKNOWN_CLASS).long()
            total = total + known_ce(scores[:, k], target, w)
        return 10 * total

    coarse = two_way(out.coarse, groups, balance.coarse_pos if balance else None)
    fine = two_way(out.fine, losses, balance.fine_pos if balance else None)
    total = cont + disc + coarse + fine
    return {"total": total, "continuous": cont, "discrete": disc, "coarse": coarse, "fine": fine}
