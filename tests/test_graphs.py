"""`describe` of graph files: ncnn `.param` and ONNX `.onnx` (zoo/graphs.py)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.core.schema import ARCH_NAMES, UNKNOWN, arch_dict, arch_row, loss_bits
from gmtrace.zoo.graphs import describe_graph
from gmtrace.zoo.introspect import describe
from gmtrace.zoo.ncnn import GraphError

onnx = pytest.importorskip("onnx")


class Res(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1)
        self.norm = nn.InstanceNorm2d(c, affine=True)
        self.act = nn.LeakyReLU(0.2)
        self.c2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return x + self.c2(self.act(self.norm(self.c1(x))))


class Generator(nn.Module):
    """Batch norm, a strided conv, residual blocks, a transposed conv, pixel shuffle,
    pooling and a tanh: every field has something to find."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.down = nn.Conv2d(16, 16, 4, 2, 1)
        self.blocks = nn.Sequential(Res(16), Res(16), Res(16))
        self.up = nn.ConvTranspose2d(16, 8, 4, 2, 1)
        self.ps = nn.Conv2d(8, 12, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.pool = nn.AvgPool2d(2)
        self.out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = self.blocks(torch.relu(self.down(x)))
        return torch.tanh(self.out(self.pool(self.shuffle(self.ps(self.up(x))))))


def _export(module: nn.Module, path, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, torch.randn(1, 3, 16, 16), str(path), dynamo=False, **kwargs)


def test_onnx_export_of_a_torch_module_gives_the_modules_values(tmp_path):
    g = Generator().eval()
    truth = describe(g, torch.randn(1, 3, 16, 16))
    path = tmp_path / "g.onnx"
    _export(g, path, do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    got = describe_graph(path)
    assert got.values == truth.values
    assert got.extra["upsampling_kind"] == truth.extra["upsampling_kind"] == "transposed"
    assert got.notes == []  # a batch norm after a conv: nothing was folded


def test_folded_norms_are_unknown_not_none(tmp_path):
    g = Generator().eval()
    truth = describe(g, torch.randn(1, 3, 16, 16)).values
    path = tmp_path / "g.onnx"
    _export(g, path)  # torch's default export folds the batch norm into `stem`
    got = describe_graph(path)
    assert got.values["n_norm"] == got.values["norm_type"] == UNKNOWN
    assert "folded" in got.notes[0]
    same = [n for n in ARCH_NAMES if n not in ("n_norm", "norm_type", "n_params")]
    assert {n: got.values[n] for n in same} == {n: truth[n] for n in same}
    assert got.values["n_params"] == truth["n_params"] - 2 * 16  # the norm's affine pair
    # unknown values stay unknown through the raw row
    row = got.row()
    assert math.isnan(row[ARCH_NAMES.index("norm_type")])
    assert arch_dict(row)["norm_type"] == UNKNOWN and arch_dict(row)["n_conv"] == 11
    assert describe_graph(path, norms_kept=True).values["norm_type"] == "instance"


# A Real-CUGAN-like U-Net step written by hand: a fused leaky conv, a strided conv,
# a squeeze-excitation branch (global pool, two fc, a channel multiply), a transposed
# conv, a crop of the earlier map added back, an output conv and a tanh.
UNET = """7767517
15 19
Input         in      0 1 data 0=32 1=32 2=3
Convolution   c1      1 1 data a 0=16 1=3 5=1 6=432 9=2 -23310=1,0.1
Split         s1      1 2 a a0 a1
Convolution   down    1 1 a1 b 0=32 1=2 3=2 5=1 6=2048 9=1
Split         s2      1 2 b b0 b1
Pooling       gap     1 1 b1 p 0=1 4=1
InnerProduct  fc1     1 1 p q 0=4 1=1 2=128 9=1
InnerProduct  fc2     1 1 q r 0=32 1=1 2=128 9=4
BinaryOp      se      2 1 b0 r m 0=2
Deconvolution up      1 1 m u 0=16 1=2 3=2 5=1 6=2048 9=2 -23310=1,0.1
Split         s3      1 2 u u0 u1
Crop          crop    2 1 a0 u0 c 0=1 1=1
BinaryOp      add     2 1 c u1 y 0=0
Convolution   out     1 1 y z 0=3 1=3 5=1 6=432
TanH          tanh    1 1 z o
"""


def test_ncnn_graph_values_computed_by_hand(tmp_path):
    path = tmp_path / "unet.param"
    path.write_text(UNET)
    a = describe_graph(path)
    assert a.values == {
        "n_layers": 6,
        "n_conv": 4,  # c1, down, up, out
        "n_fc": 2,
        "n_pool": 1,
        "n_norm": UNKNOWN,
        "n_filters": 16 + 32 + 16 + 3,
        "n_blocks": 1,  # the add joins `a` with the branch through down..up
        "n_layers_per_block": 4.0,
        "n_params": (432 + 16) + (2048 + 32) + (128 + 4) + (128 + 32) + (2048 + 16) + (432 + 3),
        "norm_type": UNKNOWN,
        "last_activation": "tanh",
        "block_activation": "relu",  # down, fc1 relu; up leaky; fc2 sigmoid
        "upsampling": "learned",
        "skip_connection": "yes",
        "downsampling": "yes",
    }
    assert a.extra["upsampling_kind"] == "transposed"
    # the same graph without the add back: no skip, no block
    no_skip = UNET.replace(
        "BinaryOp      add     2 1 c u1 y 0=0", "BinaryOp      add     2 1 u1 u1 y 0=2"
    )
    path.write_text(no_skip)
    b = describe_graph(path)
    assert (b.values["skip_connection"], b.values["n_blocks"]) == ("no", 0)


def test_unsupported_layers_name_the_file_and_the_layer(tmp_path):
    path = tmp_path / "odd.param"
    path.write_text(UNET.replace("TanH          tanh", "Weird         tanh"))
    with pytest.raises(
        GraphError, match=r"odd\.param: line 17: layer tanh: unsupported layer type Weird"
    ):
        describe_graph(path)
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    node = helper.make_node("FooBar", ["x"], ["y"], name="mystery")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]))
    bad = tmp_path / "odd.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(GraphError, match=r"odd\.onnx: node mystery: unsupported operator FooBar"):
        describe_graph(bad)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not a model")
    with pytest.raises(GraphError, match="junk.onnx: not a readable ONNX model"):
        describe_graph(junk)
    with pytest.raises(GraphError, match="not a graph file"):
        describe_graph(_touch(tmp_path / "model.bin"))


def _touch(path):
    path.write_bytes(b"")
    return path


def test_silu_exported_as_sigmoid_times_input_is_one_smooth_activation(tmp_path):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 3, padding=1))
    path = tmp_path / "silu.onnx"
    _export(net.eval(), path)
    a = describe_graph(path)
    assert a.values["block_activation"] == "smooth"
    assert a.extra["block_activation_fn"] == "silu"
    assert a.values == describe(net, torch.randn(1, 3, 16, 16)).values | {
        "n_norm": UNKNOWN,
        "norm_type": UNKNOWN,
    }


def test_cli_describes_a_graph_file(tmp_path):
    path = tmp_path / "unet.param"
    path.write_text(UNET)
    r = CliRunner().invoke(app, ["describe", str(path), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["values"]["n_conv"] == 4 and out["values"]["norm_type"] == UNKNOWN
    assert "folded" in out["notes"][0]
    r = CliRunner().invoke(app, ["describe", str(path), "--norms-kept"])
    assert r.exit_code == 0 and "none" in r.output  # declared kept: no norm layers
    bad = tmp_path / "bad.param"
    bad.write_text(UNET.replace("0=16 1=3 5=1 6=432", "0=sixteen"))
    r = CliRunner().invoke(app, ["describe", str(bad)])
    assert r.exit_code == 2 and "bad.param: line 4" in r.output


def test_unknown_losses_are_nan_bits():
    assert np.isnan(loss_bits(None)).all()
    assert math.isnan(arch_row(dict.fromkeys(ARCH_NAMES, UNKNOWN))[0])
