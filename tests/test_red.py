"""RED116 ground truth: numpy and text readers, the exporter, and their round trips."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmtrace.core.schema import ARCH_NAMES, LOSS_TYPES
from gmtrace.data.dataset import DatasetError, GMDataset, GMRecord
from gmtrace.data.red import (
    export_red,
    list_gm_folders,
    natural_key,
    read_names,
    read_red_npy,
    read_red_text,
)

# name, 9 counts, 6 discrete values (class names), losses
GMS = [
    (
        "GM_1",
        [12, 10, 2, 0, 8, 1984, 4, 2, 3_500_000],
        ["none", "tanh", "relu", "learned", "no", "no"],
        ("adv",),
    ),
    (
        "GM_2",
        [134, 122, 12, 0, 0, 5000, 8, 12, 554_000_000],
        ["batch", "sigmoid", "leaky_relu", "fixed", "yes", "yes"],
        ("l1", "ls", "wgan"),
    ),
    (
        "GM_10",
        [7, 7, 0, 3, 5, 448, 3, 2.5, 123_457],
        ["instance", "none", "smooth", "learned", "yes", "no"],
        (),
    ),
    (
        "VQ_3",
        [40, 36, 4, 1, 20, 9001, 6, 6, 61_234_567.25],
        ["layer_group", "other", "other", "fixed", "no", "yes"],
        ("mse", "kl", "hinge", "ce"),
    ),
]
DM1_LINE = "DM_1 134 122 12 0 0 5000 8 12 554000000 1 1 1 1 1 1"
RTF_LOSS = (
    "{\\rtf1\\ansi\\ansicpg1252\\cocoartf2757\n"
    "{\\fonttbl\\f0\\fswiss\\fcharset0 Helvetica;}\n"
    "{\\colortbl;\\red255\\green255\\blue255;}\n"
    "\\margl1440\\margr1440\\vieww11520\\viewh8400\\viewkind0\n"
    "\\pard\\tx720\\tx1440\\pardirnatural\\partightenfactor0\n"
    "\n"
    "\\f0\\fs24 \\cf0 0 0 1 0 0 0 0 0 0 1\\\n"
    "\\pard\\tx720\\tx1440\\pardirnatural\\partightenfactor0\n"
    "\\cf0 0 0 1 0 0 0 0 0 0 0\\\n"
    "1 0 1 0 0 0 0 0 0 0\\\n"
    "\\cf0 0 0 1 1 0 0 0 0 0 1}"
)


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (value, 255 - value, value // 2)).save(path)


def _image_root(root: Path, names: list[str]) -> Path:
    for k, name in enumerate(names):
        _png(root / name / "000.png", 10 * k)
        _png(root / name / "001.png", 10 * k + 5)
    return root


def _dataset(tmp_path: Path, order: list[int] | None = None) -> GMDataset:
    root = _image_root(tmp_path / "images", [g[0] for g in GMS])
    gms = []
    for name, counts, classes, losses in (GMS[i] for i in (order or range(len(GMS)))):
        arch = dict(zip(ARCH_NAMES, [float(c) for c in counts] + classes, strict=True))
        gms.append(
            GMRecord(name=name, family="test", arch=arch, losses=losses, image_dir=root / name)
        )
    return GMDataset(gms=gms, root=root)


def _same(a: GMDataset, b: GMDataset) -> None:
    assert a.names == b.names
    np.testing.assert_array_equal(a.arch_matrix(), b.arch_matrix())
    np.testing.assert_array_equal(a.loss_matrix(), b.loss_matrix())
    assert [g.arch for g in a.gms] == [g.arch for g in b.gms]
    assert [g.losses for g in a.gms] == [g.losses for g in b.gms]


def _error(fn, *args, expect=(), **kwargs) -> str:
    """Call fn, expect a one-line DatasetError naming each of `expect`; return it."""
    with pytest.raises(DatasetError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    for n in expect:
        assert str(n) in msg, (n, msg)
    return msg


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- export -----------------------------------------------------------------------


def test_export_writes_red_files(tmp_path):
    ds = _dataset(tmp_path)
    paths = export_red(ds, tmp_path / "out")
    assert set(paths) == {"arch_npy", "loss_npy", "groups_npy", "arch_txt", "loss_txt", "names_txt"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "ground_truth_loss_10dim.npy",
        "ground_truth_loss_3dim.npy",
        "ground_truth_net_15dim.npy",
        "loss.txt",
        "names.txt",
        "net_arch.txt",
    ]

    arch = np.load(paths["arch_npy"], allow_pickle=False)
    assert arch.shape == (4, 15) and arch.dtype == np.float64
    assert arch[1].tolist() == [134, 122, 12, 0, 0, 5000, 8, 12, 554_000_000, 1, 2, 1, 0, 1, 1]
    assert arch[3, 8] == 61_234_567.25
    loss = np.load(paths["loss_npy"], allow_pickle=False)
    assert loss.shape == (4, 10)
    assert loss[1].tolist() == [1, 0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert loss[2].tolist() == [0] * 10
    groups = np.load(paths["groups_npy"], allow_pickle=False)
    assert groups.tolist() == [[0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]]

    arch_lines = paths["arch_txt"].read_text().splitlines()
    assert arch_lines[1] == "GM_2 134 122 12 0 0 5000 8 12 554000000 1 2 1 0 1 1"
    assert arch_lines[2] == "GM_10 7 7 0 3 5 448 3 2.5 123457 2 0 2 1 1 0"
    assert arch_lines[3].split()[9] == "61234567.25"
    assert paths["loss_txt"].read_text().splitlines() == [
        "0 0 0 0 0 0 0 1 0 0",
        "1 0 0 0 1 1 0 0 0 0",
        "0 0 0 0 0 0 0 0 0 0",
        "0 0 1 0 0 0 1 0 1 1",
    ]
    assert paths["names_txt"].read_text().split() == ["GM_1", "GM_2", "GM_10", "VQ_3"]
    assert read_names(paths["names_txt"]) == ["GM_1", "GM_2", "GM_10", "VQ_3"]
    assert not (tmp_path / "out" / "images").exists()


def test_export_copies_images_when_asked(tmp_path):
    ds = _dataset(tmp_path)
    paths = export_red(ds, tmp_path / "out", copy_images=True)
    assert paths["images"] == tmp_path / "out" / "images"
    assert sorted(p.name for p in paths["images"].iterdir()) == ["GM_1", "GM_10", "GM_2", "VQ_3"]
    for g in ds.gms:
        copied = paths["images"] / g.name
        assert [p.name for p in sorted(copied.iterdir())] == ["000.png", "001.png"]
        assert (copied / "001.png").read_bytes() == (g.image_dir / "001.png").read_bytes()
    back = read_red_npy(paths["arch_npy"], paths["loss_npy"], paths["images"])
    _same(ds, back)
    assert [len(g.images()) for g in back.gms] == [2, 2, 2, 2]
    assert back.gms[2].image_dir == paths["images"] / "GM_10"


def test_export_rejects_names_that_cannot_be_written(tmp_path):
    ds = _dataset(tmp_path)
    ds.gms[1].name = "GM two"
    _error(export_red, ds, tmp_path / "out", expect=["'GM two'"])
    ds.gms[1].name = "GM_1"
    _error(export_red, ds, tmp_path / "out", expect=["'GM_1'", "more than once"])
    ds.gms[1].name = "GM_2"
    ds.gms[1].arch["norm_type"] = "spectral"
    _error(export_red, ds, tmp_path / "out", expect=["'GM_2'", "spectral"])
    assert not (tmp_path / "out").exists()


# --- round trips ------------------------------------------------------------------


def test_round_trip_npy(tmp_path):
    ds = _dataset(tmp_path)
    paths = export_red(ds, tmp_path / "out")
    back = read_red_npy(paths["arch_npy"], paths["loss_npy"], tmp_path / "images")
    _same(ds, back)
    assert back.origin == "red" and back.root == tmp_path / "images"
    assert {g.family for g in back.gms} == {"red"}
    assert [g.image_dir for g in back.gms] == [tmp_path / "images" / n for n in ds.names]
    assert back.gms[3].arch["n_params"] == 61_234_567.25
    assert back.gms[3].arch["norm_type"] == "layer_group"
    assert back.gms[1].losses == ("l1", "ls", "wgan")


def test_round_trip_text(tmp_path):
    ds = _dataset(tmp_path)
    paths = export_red(ds, tmp_path / "out")
    back = read_red_text(paths["arch_txt"], paths["loss_txt"], tmp_path / "images")
    _same(ds, back)
    assert back.origin == "red"
    assert back.gms[2].arch["n_layers_per_block"] == 2.5
    assert back.gms[2].losses == ()


def test_round_trip_in_any_order_through_names_file(tmp_path):
    ds = _dataset(tmp_path, order=[3, 0, 2, 1])  # VQ_3, GM_1, GM_10, GM_2: not natural
    with pytest.warns(UserWarning, match="natural order"):
        paths = export_red(ds, tmp_path / "out")
    back = read_red_npy(
        paths["arch_npy"], paths["loss_npy"], tmp_path / "images", names=paths["names_txt"]
    )
    _same(ds, back)
    listed = read_red_npy(
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "images",
        names=["VQ_3", "GM_1", "GM_10", "GM_2"],
    )
    _same(ds, listed)
    text = read_red_text(paths["arch_txt"], paths["loss_txt"], tmp_path / "images")
    _same(ds, text)


def test_natural_order_export_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export_red(_dataset(tmp_path), tmp_path / "out")


# --- folder order -------------------------------------------------------------------


def test_folders_sort_naturally(tmp_path):
    root = _image_root(tmp_path / "images", ["GM_10", "GM_2", "gm_3", "GM_1"])
    (root / ".cache").mkdir()
    _write(root / "notes.txt", "not a GM")
    assert list_gm_folders(root) == ["GM_1", "GM_2", "gm_3", "GM_10"]
    assert list_gm_folders(root, "lexical") == ["GM_1", "GM_10", "GM_2", "gm_3"]
    assert sorted(["a10b", "a9b", "a9a"], key=natural_key) == ["a9a", "a9b", "a10b"]
    with pytest.raises(ValueError, match="folder order"):
        list_gm_folders(root, "random")


def test_lexical_folder_order_pairs_rows_like_imagefolder(tmp_path):
    ds = _dataset(tmp_path)
    paths = export_red(ds, tmp_path / "out")
    back = read_red_npy(
        paths["arch_npy"], paths["loss_npy"], tmp_path / "images", folder_order="lexical"
    )
    assert back.names == ["GM_1", "GM_10", "GM_2", "VQ_3"]
    np.testing.assert_array_equal(back.arch_matrix(), ds.arch_matrix())  # rows as stored
    assert back.gms[1].arch["n_conv"] == 122.0  # row 1 now labelled GM_10


# --- text parsing -------------------------------------------------------------------


def test_parse_dm1_line_exactly(tmp_path):
    arch = _write(tmp_path / "DM_net_arch.txt", DM1_LINE + "\n")
    loss = _write(tmp_path / "DM_loss.txt", "0 0 1 0 0 0 0 0 0 1\n")
    _image_root(tmp_path / "images", ["DM_1"])
    ds = read_red_text(arch, loss, tmp_path / "images")
    assert ds.names == ["DM_1"]
    gm = ds.gms[0]
    assert gm.arch == {
        "n_layers": 134.0,
        "n_conv": 122.0,
        "n_fc": 12.0,
        "n_pool": 0.0,
        "n_norm": 0.0,
        "n_filters": 5000.0,
        "n_blocks": 8.0,
        "n_layers_per_block": 12.0,
        "n_params": 554_000_000.0,
        "norm_type": "batch",
        "last_activation": "tanh",
        "block_activation": "leaky_relu",
        "upsampling": "learned",
        "skip_connection": "yes",
        "downsampling": "yes",
    }
    assert gm.losses == ("mse", "ce")
    assert gm.family == "red" and gm.image_dir == tmp_path / "images" / "DM_1"
    assert ds.arch_matrix().tolist() == [
        [134, 122, 12, 0, 0, 5000, 8, 12, 554_000_000, 1, 1, 1, 1, 1, 1]
    ]
    assert ds.loss_matrix().tolist() == [[0, 0, 1, 0, 0, 0, 0, 0, 0, 1]]


def test_text_skips_headers_comments_blank_lines_and_reads_scientific_notation(tmp_path):
    arch = _write(
        tmp_path / "arch.txt",
        "name layers conv fc pool norm filters blocks lpb "
        "params normtype lastlayer lastblock upsample skip downsample\n"
        "# a comment line 1 2 3\n\n"
        "DM_1 134 122 12 0 0 5000 8 12 5.54e8 1 1 1 1 1 1\r\n"
        "DM_2\t10 9 1 0 2 320 2 4.5 1.5e3 0 3 2 0 0 1\n",
    )
    loss = _write(
        tmp_path / "loss.txt",
        "l1 l2 mse mmd ls wgan kl adv hinge ce\n0 0 1 0 0 0 0 0 0 1\n\n1.0 0 0 0 0 0 0 0 1 0\n",
    )
    _image_root(tmp_path / "images", ["DM_1", "DM_2"])
    ds = read_red_text(arch, loss, tmp_path / "images")
    assert ds.names == ["DM_1", "DM_2"]
    assert ds.arch_matrix()[:, 8].tolist() == [554_000_000.0, 1500.0]
    assert ds.gms[1].arch["n_layers_per_block"] == 4.5
    assert ds.gms[1].arch["last_activation"] == "other"
    assert ds.gms[1].losses == ("l1", "hinge")


def test_rtf_loss_lines(tmp_path):
    arch = _write(
        tmp_path / "arch.txt",
        "\n".join(
            [
                DM1_LINE,
                DM1_LINE.replace("DM_1", "DM_2"),
                DM1_LINE.replace("DM_1", "DM_3"),
                DM1_LINE.replace("DM_1", "DM_4"),
            ]
        ),
    )
    loss = _write(tmp_path / "DM_loss.rtf", RTF_LOSS)
    _image_root(tmp_path / "images", ["DM_1", "DM_2", "DM_3", "DM_4"])
    ds = read_red_text(arch, loss, tmp_path / "images")
    assert ds.loss_matrix().tolist() == [
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 1],
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0, 0, 1],
    ]
    assert [g.losses for g in ds.gms] == [
        ("mse", "ce"),
        ("mse",),
        ("l1", "mse"),
        ("mse", "mmd", "ce"),
    ]


def test_rtf_arch_lines(tmp_path):
    arch = _write(
        tmp_path / "arch.rtf",
        "{\\rtf1\\ansi\n{\\fonttbl\\f0 Helvetica;}\n"
        "\\f0\\fs24 \\cf0 " + DM1_LINE + "\\\n" + DM1_LINE.replace("DM_1", "DM_2") + "}",
    )
    loss = _write(tmp_path / "loss.txt", "0 0 1 0 0 0 0 0 0 1\n0 0 1 0 0 0 0 0 0 0\n")
    _image_root(tmp_path / "images", ["DM_1", "DM_2"])
    ds = read_red_text(arch, loss, tmp_path / "images")
    assert ds.names == ["DM_1", "DM_2"]
    assert ds.arch_matrix()[1, :9].tolist() == [134, 122, 12, 0, 0, 5000, 8, 12, 554_000_000]


# --- errors: numpy ------------------------------------------------------------------


@pytest.fixture
def red_npy(tmp_path):
    """Exported arrays of the test dataset and its image root."""
    paths = export_red(_dataset(tmp_path), tmp_path / "out")
    arch = np.load(paths["arch_npy"], allow_pickle=False)
    loss = np.load(paths["loss_npy"], allow_pickle=False)
    return tmp_path, arch, loss, paths


def test_npy_missing_file(red_npy):
    tmp_path, _, _, paths = red_npy
    missing = tmp_path / "nope.npy"
    msg = _error(read_red_npy, missing, paths["loss_npy"], tmp_path / "images", expect=[missing])
    assert "missing" in msg
    _error(read_red_npy, paths["arch_npy"], missing, tmp_path / "images", expect=[missing])


@pytest.mark.parametrize(
    ("which", "shape"), [("arch", (4, 14)), ("arch", (15,)), ("loss", (4, 9)), ("loss", (4, 10, 1))]
)
def test_npy_wrong_shape(red_npy, which, shape):
    tmp_path, _, _, paths = red_npy
    bad = tmp_path / f"bad_{which}.npy"
    np.save(bad, np.zeros(shape))
    args = (bad, paths["loss_npy"]) if which == "arch" else (paths["arch_npy"], bad)
    msg = _error(read_red_npy, *args, tmp_path / "images", expect=[bad, str(shape)])
    assert "shape" in msg


def test_npy_non_numeric_and_pickled(red_npy):
    tmp_path, _, _, paths = red_npy
    text = tmp_path / "text.npy"
    np.save(text, np.full((4, 15), "x"))
    msg = _error(read_red_npy, text, paths["loss_npy"], tmp_path / "images", expect=[text])
    assert "not numeric" in msg
    pickled = tmp_path / "pickled.npy"
    np.save(pickled, np.array([[{"evil": 1}] * 15] * 4, dtype=object), allow_pickle=True)
    _error(read_red_npy, pickled, paths["loss_npy"], tmp_path / "images", expect=[pickled])
    notnpy = _write(tmp_path / "plain.npy", "0 1 2\n")
    _error(read_red_npy, notnpy, paths["loss_npy"], tmp_path / "images", expect=[notnpy])


@pytest.mark.parametrize(
    ("col", "value", "words"),
    [
        (9, 4, ["norm_type", "class index 4", "row 2 (GM_10)"]),
        (12, 2, ["upsampling", "class index 2"]),
        (14, -1, ["downsampling", "class index -1"]),
        (10, 1.5, ["last_activation", "1.5", "not an integer"]),
        (8, np.nan, ["n_params", "nan"]),
        (0, -3, ["n_layers", "negative"]),
    ],
)
def test_npy_bad_arch_value(red_npy, col, value, words):
    tmp_path, arch, _, paths = red_npy
    arch[2, col] = value
    bad = tmp_path / "bad_arch.npy"
    np.save(bad, arch)
    _error(read_red_npy, bad, paths["loss_npy"], tmp_path / "images", expect=[bad, *words])


def test_npy_loss_bit_not_binary(red_npy):
    tmp_path, _, loss, paths = red_npy
    loss[3, 4] = 2
    bad = tmp_path / "bad_loss.npy"
    np.save(bad, loss)
    _error(
        read_red_npy,
        paths["arch_npy"],
        bad,
        tmp_path / "images",
        expect=[bad, "row 3 (VQ_3)", "ls", "not 0 or 1"],
    )


def test_npy_mismatched_counts(red_npy):
    tmp_path, arch, loss, paths = red_npy
    short = tmp_path / "short_loss.npy"
    np.save(short, loss[:3])
    _error(
        read_red_npy,
        paths["arch_npy"],
        short,
        tmp_path / "images",
        expect=[short, paths["arch_npy"], "3 rows", "has 4"],
    )
    (tmp_path / "images" / "GM_99").mkdir()
    _error(
        read_red_npy,
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "images",
        expect=[tmp_path / "images", "5 GM folders", paths["arch_npy"], "4 rows"],
    )
    _error(
        read_red_npy,
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "images",
        names=["GM_1", "GM_2"],
        expect=[paths["arch_npy"], "2 names", "4 rows"],
    )
    names_file = _write(tmp_path / "names.txt", "GM_1\nGM_2\nGM_10\n")
    _error(
        read_red_npy,
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "images",
        names=names_file,
        expect=[names_file, "3 names", "4 rows"],
    )


def test_npy_missing_image_folder(red_npy):
    tmp_path, _, _, paths = red_npy
    names = ["GM_1", "GM_2", "GM_10", "GM_404"]
    msg = _error(
        read_red_npy,
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "images",
        names=names,
        expect=["'GM_404'", "row 3"],
    )
    assert str(tmp_path / "images" / "GM_404") in msg and "missing" in msg
    _error(
        read_red_npy,
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "no_images",
        expect=[tmp_path / "no_images"],
    )


def test_npy_duplicate_names(red_npy):
    tmp_path, _, _, paths = red_npy
    _error(
        read_red_npy,
        paths["arch_npy"],
        paths["loss_npy"],
        tmp_path / "images",
        names=["GM_1", "GM_2", "GM_2", "VQ_3"],
        expect=[paths["arch_npy"], "'GM_2'", "more than once"],
    )


# --- errors: text -------------------------------------------------------------------


@pytest.fixture
def red_text(tmp_path):
    _image_root(tmp_path / "images", ["DM_1", "DM_2"])
    arch = _write(tmp_path / "arch.txt", DM1_LINE + "\n" + DM1_LINE.replace("DM_1", "DM_2"))
    loss = _write(tmp_path / "loss.txt", "0 0 1 0 0 0 0 0 0 1\n0 0 1 0 0 0 0 0 0 0\n")
    assert len(read_red_text(arch, loss, tmp_path / "images")) == 2  # the good pair reads
    return tmp_path, arch, loss


def test_text_missing_file(red_text):
    tmp_path, arch, loss = red_text
    missing = tmp_path / "none.txt"
    _error(read_red_text, missing, loss, tmp_path / "images", expect=[missing, "missing"])
    _error(read_red_text, arch, missing, tmp_path / "images", expect=[missing, "missing"])


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("DM_2 134 122 12 0 0 5000 8 12 554000000 1 1 1 1 1", ["line 2", "found 15 fields"]),
        ("DM_2 134 122 12 0 0 5000 8 12 554000000 1 1 1 1 1 1 0", ["line 2", "found 17"]),
        ("DM_2 134 abc 12 0 0 5000 8 12 554000000 1 1 1 1 1 1", ["line 2", "n_conv", "'abc'"]),
        ("DM_2 134 122 12 0 0 5000 8 12 554000000 1 4 1 1 1 1", ["line 2", "last_activation"]),
        ("DM_2 134 122 12 0 0 5000 8 12 554000000 1 1 1 1 2 1", ["skip_connection"]),
    ],
)
def test_text_bad_arch_line(red_text, line, words):
    tmp_path, arch, loss = red_text
    _write(arch, DM1_LINE + "\n" + line + "\n")
    _error(read_red_text, arch, loss, tmp_path / "images", expect=[arch, *words])


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("0 0 1 0 0 0 0 0 1", ["line 3", "expected 10 loss bits, found 9"]),
        ("\\cf0 0 0 1 0 0 0 0 0 0 1 1\\", ["line 3", "found 11"]),
        ("0 0 1 0 0 0 0 0 0 2", ["line 3", "ce", "not 0 or 1"]),
    ],
)
def test_text_bad_loss_line(red_text, line, words):
    tmp_path, arch, loss = red_text
    _write(loss, "l1 l2 mse mmd ls wgan kl adv hinge ce\n0 0 1 0 0 0 0 0 0 1\n" + line + "\n")
    _error(read_red_text, arch, loss, tmp_path / "images", expect=[loss, *words])


def test_text_mismatched_counts(red_text):
    tmp_path, arch, loss = red_text
    _write(loss, "0 0 1 0 0 0 0 0 0 1\n")
    _error(
        read_red_text, arch, loss, tmp_path / "images", expect=[loss, arch, "1 loss lines", "2 GMs"]
    )
    _write(loss, "0 0 1 0 0 0 0 0 0 1\n" * 3)
    _error(read_red_text, arch, loss, tmp_path / "images", expect=[loss, "3 loss lines"])
    _write(arch, "just a header\n")
    _error(read_red_text, arch, loss, tmp_path / "images", expect=[arch, "no GM lines"])


def test_text_missing_image_folder_and_bad_names(red_text):
    tmp_path, arch, loss = red_text
    _write(arch, DM1_LINE + "\n" + DM1_LINE.replace("DM_1", "DM_7") + "\n")
    msg = _error(
        read_red_text,
        arch,
        loss,
        tmp_path / "images",
        expect=[tmp_path / "images" / "DM_7", "'DM_7'", "line 2"],
    )
    assert "missing" in msg
    _write(arch, DM1_LINE + "\n" + DM1_LINE + "\n")
    _error(read_red_text, arch, loss, tmp_path / "images", expect=[arch, "more than once"])
    _write(arch, DM1_LINE + "\n" + DM1_LINE.replace("DM_1", "../DM_1") + "\n")
    _error(read_red_text, arch, loss, tmp_path / "images", expect=[arch, "'../DM_1'"])


def test_loss_and_arch_names_are_aligned_by_order(red_text):
    """Same data, GM order in the loss file follows the arch file line by line."""
    tmp_path, arch, loss = red_text
    ds = read_red_text(arch, loss, tmp_path / "images")
    assert dict(zip(ds.names, [g.losses for g in ds.gms], strict=True)) == {
        "DM_1": ("mse", "ce"),
        "DM_2": ("mse",),
    }
    assert len(LOSS_TYPES) == ds.loss_matrix().shape[1]
