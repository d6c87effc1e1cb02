"""The hyperparameter schema: names, encoding, normalization and decoding."""

from __future__ import annotations

import numpy as np
import pytest

from gmtrace.core.schema import (
    ARCH_FIELDS,
    ARCH_NAMES,
    CONTINUOUS,
    DISCRETE,
    GROUP_NAMES,
    LOSS_GROUPS,
    LOSS_TYPES,
    Normalizer,
    arch_dict,
    arch_row,
    class_index,
    decode,
    encode,
    format_count,
    group_bits,
    group_of,
    loss_bits,
    loss_names,
    orders_of_magnitude,
)
from gmtrace.data.dataset import MODELS_COLUMNS, DatasetError, GMDataset, write_csv


def test_shape_of_schema():
    assert len(ARCH_FIELDS) == 15 and len(CONTINUOUS) == 9 and len(DISCRETE) == 6
    assert ARCH_NAMES[:9] == tuple(f.name for f in CONTINUOUS)
    assert [f.n_classes for f in DISCRETE] == [4, 4, 4, 2, 2, 2]
    assert len(LOSS_TYPES) == 10 and GROUP_NAMES == ("pixel", "adversarial", "likelihood")
    assert sorted(m for g in LOSS_GROUPS.values() for m in g) == sorted(LOSS_TYPES)
    assert group_of("mmd") == "pixel" and group_of("kl") == "adversarial"
    assert group_of("ce") == "likelihood"
    with pytest.raises(ValueError, match="unknown loss type 'vgg'"):
        group_of("vgg")


def example_arch(**over) -> dict:
    d = {
        "n_layers": 12,
        "n_conv": 10,
        "n_fc": 2,
        "n_pool": 0,
        "n_norm": 8,
        "n_filters": 960,
        "n_blocks": 4,
        "n_layers_per_block": 2.5,
        "n_params": 3_500_000,
        "norm_type": "batch",
        "last_activation": "tanh",
        "block_activation": "leaky_relu",
        "upsampling": "learned",
        "skip_connection": "yes",
        "downsampling": "no",
    }
    d.update(over)
    return d


def test_arch_row_round_trip():
    row = arch_row(example_arch())
    assert row[ARCH_NAMES.index("norm_type")] == 1
    assert row[ARCH_NAMES.index("block_activation")] == 1
    assert row[ARCH_NAMES.index("n_params")] == 3_500_000
    assert arch_dict(row) == {
        **example_arch(),
        **{k: float(v) for k, v in example_arch().items() if isinstance(v, int | float)},
    }
    # discrete values may be given as indices too
    assert arch_row(example_arch(norm_type=2))[ARCH_NAMES.index("norm_type")] == 2


def test_class_index_errors():
    with pytest.raises(ValueError, match="norm_type: 'weird' is not one of"):
        class_index("norm_type", "weird")
    with pytest.raises(ValueError, match="outside 0..1"):
        class_index("skip_connection", 2)
    with pytest.raises(ValueError, match="not a whole number"):
        class_index("upsampling", 0.5)
    with pytest.raises(KeyError, match="n_pool"):
        arch_row({k: v for k, v in example_arch().items() if k != "n_pool"})


def test_loss_bits_and_groups():
    bits = loss_bits(["l1", "hinge", "ce"])
    assert bits.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert group_bits(bits).tolist() == [1, 1, 1]
    assert group_bits(loss_bits(["kl"])).tolist() == [0, 1, 0]
    assert loss_names([0.2, 0.9, 0.5, 0, 0, 0, 0, 0, 0, 0.49]) == ["l2", "mse"]
    with pytest.raises(ValueError, match="unknown loss type"):
        loss_bits(["perceptual"])


def test_normalizer_log_and_linear():
    raw = np.stack(
        [
            arch_row(example_arch(n_params=p, n_layers=n, n_layers_per_block=b))
            for p, n, b in [(1e3, 2, 1.0), (1e6, 20, 3.0), (1e9, 200, 5.0)]
        ]
    )
    norm = Normalizer().fit(raw)
    z = norm.transform(raw)
    assert z.shape == (3, 9)
    j_params = [f.name for f in CONTINUOUS].index("n_params")
    j_lpb = [f.name for f in CONTINUOUS].index("n_layers_per_block")
    # log scale: 1e6 sits near the middle of 1e3..1e9; linear field exactly in the middle
    assert z[:, j_params] == pytest.approx([0, 0.5, 1], abs=0.01)
    assert z[:, j_lpb] == pytest.approx([0, 0.5, 1])
    # constant fields map to 0, not NaN
    assert np.all(z[:, [f.name for f in CONTINUOUS].index("n_pool")] == 0)
    back = norm.inverse(z)
    assert back[:, j_params] == pytest.approx([1e3, 1e6, 1e9], rel=1e-4)
    again = Normalizer.from_json(norm.to_json())
    assert np.allclose(again.transform(raw), z)


def test_encode_decode():
    raw = np.stack(
        [arch_row(example_arch()), arch_row(example_arch(norm_type="none", n_params=10_000))]
    )
    losses = np.stack([loss_bits(["adv"]), loss_bits(["kl", "mse"])])
    norm = Normalizer().fit(raw)
    t = encode(raw, losses, norm)
    assert t.discrete[:, 0].tolist() == [1, 0]
    assert t.groups.tolist() == [[0, 1, 0], [1, 1, 0]]
    probs = [np.eye(f.n_classes)[t.discrete[:, i]] for i, f in enumerate(DISCRETE)]
    out = decode(t.continuous, probs, t.losses, norm)
    assert out[0]["norm_type"] == "batch" and out[1]["norm_type"] == "none"
    assert out[1]["n_params"] == pytest.approx(10_000, rel=1e-4)
    assert out[1]["losses"] == ["mse", "kl"]
    assert out[0]["norm_type_confidence"] == 1.0


def test_format_and_orders():
    assert format_count("n_params", 3_500_000) == "3.5M"
    assert format_count("n_params", 950) == "950"
    assert format_count("n_layers_per_block", 2.5) == "2.5"
    assert orders_of_magnitude([0, 10, 1000]) == pytest.approx(2.0)
    assert orders_of_magnitude([0, 5]) == 0.0


def _row(name: str, **over) -> dict:
    row = {c: 0 for c in MODELS_COLUMNS}
    row.update(example_arch(), name=name, family="dcgan", config="{}", loss_l1=1)
    row.update(over)
    return row


def test_dataset_from_zoo_errors(tmp_path):
    with pytest.raises(DatasetError, match="models.csv: missing"):
        GMDataset.from_zoo(tmp_path)
    write_csv(tmp_path / "models.csv", MODELS_COLUMNS, [_row("a")])
    with pytest.raises(DatasetError, match="fake/a: missing, but models.csv lists GM 'a'"):
        GMDataset.from_zoo(tmp_path)
    (tmp_path / "fake" / "a").mkdir(parents=True)
    ds = GMDataset.from_zoo(tmp_path)
    assert ds.names == ["a"] and ds.gms[0].losses == ("l1",)
    assert ds.arch_matrix().shape == (1, 15)
    write_csv(tmp_path / "models.csv", MODELS_COLUMNS, [_row("a", loss_kl=0.5)])
    with pytest.raises(DatasetError, match="loss bits must be 0 or 1"):
        GMDataset.from_zoo(tmp_path)
    write_csv(tmp_path / "models.csv", MODELS_COLUMNS, [_row("a", norm_type="fancy")])
    with pytest.raises(DatasetError, match="bad row for 'a'"):
        GMDataset.from_zoo(tmp_path)
