"""Parsing network: shapes, hierarchical gating, balanced losses, GM aggregation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmtrace.core.schema import DISCRETE, GROUP_NAMES, LOSS_TYPES
from gmtrace.nets.parser import (
    GROUP_INDEX,
    Balance,
    ParserConfig,
    ParsingNet,
    parsing_loss,
)

CFG = ParserConfig(width=8, stages=3, embed=16, dropout=0.0)


def test_shapes_at_any_size():
    net = ParsingNet(CFG).eval()
    for size in (32, 64, 48):
        out = net(torch.randn(2, 3, size, size))
        assert out.continuous.shape == (2, 9)
        assert [d.shape for d in out.discrete] == [(2, f.n_classes) for f in DISCRETE]
        assert out.coarse.shape == (2, 3) and out.fine.shape == (2, 10)
        assert out.embedding.shape == (2, 16)
        assert ((out.continuous > 0) & (out.continuous < 1)).all()


def test_group_gates_fine_types():
    assert [GROUP_NAMES[i] for i in GROUP_INDEX] == ["pixel"] * 4 + ["adversarial"] * 5 + [
        "likelihood"
    ]
    net = ParsingNet(CFG).eval()
    out = net(torch.randn(3, 3, 32, 32))
    p_group = out.group_prob[:, GROUP_INDEX]
    assert (out.loss_prob <= p_group + 1e-7).all()
    with torch.no_grad():
        out.coarse[:, GROUP_NAMES.index("likelihood")] = -50.0
    assert out.loss_prob[:, LOSS_TYPES.index("ce")].max().item() < 1e-10


def test_balance_weights():
    disc = np.zeros((6, 6), dtype=int)
    disc[:, 0] = [0, 0, 0, 0, 1, 2]  # norm_type: class 3 absent
    bal = Balance.fit(disc, np.array([[1, 0, 0]] * 5 + [[0, 1, 0]]), np.array([[1] + [0] * 9] * 6))
    w = bal.discrete[0].numpy()
    # inverse frequencies 1/4, 1, 1 normalized to mean 1 over present classes; absent -> 1
    assert w == pytest.approx(
        np.array([0.25, 1, 1, 1]) / np.mean([0.25, 1, 1]) * [1, 1, 1, 0] + [0, 0, 0, 1]
    )
    assert bal.coarse_pos.numpy() == pytest.approx([1 / 5, 5, 1])  # third group never fires
    assert bal.fine_pos[0].item() == 1.0  # always fires


def test_parsing_loss_trains():
    """On a fixed tiny task the loss falls and the heads learn the targets."""
    torch.manual_seed(0)
    net = ParsingNet(CFG)
    x = torch.randn(8, 3, 32, 32)
    cont = torch.rand(8, 9)
    disc = torch.stack([torch.randint(0, f.n_classes, (8,)) for f in DISCRETE], dim=1)
    losses = torch.zeros(8, 10)
    losses[:4, LOSS_TYPES.index("adv")] = 1
    losses[4:, LOSS_TYPES.index("l1")] = 1
    groups = torch.zeros(8, 3)
    groups[:4, 1] = 1
    groups[4:, 0] = 1
    bal = Balance.fit(disc.numpy(), groups.numpy(), losses.numpy())
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        terms = parsing_loss(net(x), cont, disc, groups, losses, bal)
        first = first if first is not None else terms["total"].item()
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    assert terms["total"].item() < 0.3 * first
    net.eval()
    out = net(x)
    pred = (out.loss_prob > 0.5).float()
    assert (pred == losses).float().mean().item() > 0.95
