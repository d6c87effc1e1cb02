"""`Analyzer` and `gmtrace analyze`: answers on real files, and one clear error per bad file."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.core.schema import ARCH_NAMES, LOSS_TYPES
from gmtrace.data.crops import crop_count, crop_grid
from gmtrace.product.analyze import Analyzer, check_zoo
from gmtrace.product.rows import ROW_FIELDS

runner = CliRunner()


@pytest.fixture(scope="module")
def zoo(tiny_zoo_dir: Path) -> Path:
    return tiny_zoo_dir


@pytest.fixture(scope="module")
def model_dir(small_model_dir: Path) -> Path:
    return small_model_dir


def _png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (no pixel data follows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def files(zoo: Path, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    good = next((zoo / "fake").rglob("*.png"))
    f = {"generated": good}
    rgb = (rng.random((48, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb[..., 0]).save(d / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((48, 40), 200, np.uint8)])).save(d / "rgba.png")
    Image.fromarray((rng.random((40, 48)) * 65535).astype(np.uint16)).save(d / "deep16.png")
    Image.fromarray((rng.random((150, 200, 3)) * 255).astype(np.uint8)).save(d / "large.jpg")
    Image.fromarray(rgb[:4, :4]).save(d / "tiny.png")
    full = (d / "gray.png").read_bytes()
    (d / "truncated.png").write_bytes(full[: len(full) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "notes.png").write_text("not an image at all\n")
    _png_header(d / "huge.png", 10_000, 10_000)
    _png_header(d / "bomb.png", 30_000, 30_000)
    for k in (
        "gray",
        "rgba",
        "deep16",
        "large",
        "tiny",
        "truncated",
        "empty",
        "notes",
        "huge",
        "bomb",
    ):
        f[k] = next(d.glob(k + ".*"))
    return f


GOOD = ("generated", "gray", "rgba", "deep16", "large")
BAD = {
    "tiny": "too small",
    "truncated": "cannot decode",
    "empty": "not an image",
    "notes": "not an image",
    "huge": "too large",
    "bomb": "too large",
}


def test_analyzer_answers_and_errors(model_dir: Path, files: dict[str, Path]):
    a = Analyzer(model_dir, top_k=2)
    results = a.analyze([files[k] for k in (*GOOD, *BAD)])
    by = dict(zip((*GOOD, *BAD), results, strict=True))
    for k in GOOD:
        r = by[k]
        assert r.ok and r.error is None, k
        assert (r.verdict == "generated") == (r.p_generated >= 0.5)
        assert len(r.top_gms) == 2 and r.top_gms[0]["probability"] >= r.top_gms[1]["probability"]
        assert {n for n in ARCH_NAMES} <= set(r.hyperparameters)
        assert set(r.loss_probabilities) == set(LOSS_TYPES)
        assert r.hyperparameters["n_params"] > 0
    assert by["large"].crops == 9 and not by["large"].padded  # 200x150 read as 3x3 crops of 32
    assert (by["gray"].width, by["gray"].height) == (40, 48)
    for k, msg in BAD.items():
        r = by[k]
        assert not r.ok and str(files[k]) in r.error and msg in r.error, (k, r.error)
        assert "\n" not in r.error


def test_crop_grid_pads_small_and_spreads_large():
    small = np.zeros((20, 30, 3), np.uint8)
    c, padded = crop_grid(small, 32, 9)
    assert c.shape == (1, 32, 32, 3) and padded
    big = np.arange(100 * 70 * 3, dtype=np.uint32).reshape(100, 70, 3).astype(np.uint8)
    c, padded = crop_grid(big, 32, 9)
    assert c.shape == (6, 32, 32, 3) and not padded  # 3 rows x 2 columns fit
    assert (c[0] == big[:32, :32]).all() and (c[-1] == big[-32:, -32:]).all()
    c, _ = crop_grid(big, 32, 1)  # one crop: the centre, not a corner
    assert c.shape == (1, 32, 32, 3) and (c[0] == big[34:66, 19:51]).all()
    for w, h, n in [(70, 100, 9), (70, 100, 1), (70, 100, 4), (20, 30, 9), (640, 480, 9)]:
        assert crop_count(w, h, 32, n) == len(crop_grid(np.zeros((h, w, 3), np.uint8), 32, n)[0])


def test_cli_analyze_table_json_and_views(model_dir: Path, files: dict[str, Path], tmp_path: Path):
    args = ["analyze", str(files["generated"]), str(files["gray"]), str(files["truncated"])]
    res = runner.invoke(app, [*args, "--model", str(model_dir), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("[") : res.stdout.rindex("]") + 1])
    # the rows of a scan (one schema), in the order a scan finds the files
    assert all(list(r) == list(ROW_FIELDS) for r in out)
    assert [r["path"] for r in out] == sorted(
        str(files[k]) for k in ("generated", "gray", "truncated")
    )
    by = {r["path"]: r for r in out}
    assert by[str(files["generated"])]["ok"] and by[str(files["gray"])]["width"] == 40
    assert "cannot decode" in by[str(files["truncated"])]["error"]
    assert by[str(files["truncated"])]["sha256"] is not None
    views = tmp_path / "views"
    res = runner.invoke(app, [*args, "--model", str(model_dir), "--save-views", str(views)])
    assert res.exit_code == 0, res.output
    assert "2 analyzed, 1 failed" in res.output
    assert (
        len(list(views.glob("*_fingerprint.png"))) == 2
        and len(list(views.glob("*_spectrum.png"))) == 2
    )
    res = runner.invoke(app, ["analyze", str(files["empty"]), "--model", str(model_dir)])
    assert res.exit_code == 1 and "0 analyzed, 1 failed" in res.output


def test_check_zoo_compares_with_truth(model_dir: Path, zoo: Path):
    res = check_zoo(Analyzer(model_dir), zoo, per_gm=3)
    from gmtrace.zoo.catalog import FAMILIES

    assert len(res["gms"]) == len(FAMILIES) and res["real_images"] == 12
    for r in res["gms"]:
        # the loss F1 of the loss types it lists, and the upsampling among the fields
        tp = len(set(r["true_losses"]) & set(r["predicted_losses"]))
        n = len(r["true_losses"]) + len(r["predicted_losses"])
        assert r["loss_f1"] == pytest.approx(2 * tp / n if n else 1.0), r
        up_right = r["predicted_upsampling"] == r["true_upsampling"]
        assert r["discrete_correct"] >= up_right
        assert r["true_losses"]  # every GM of the zoo was trained with some loss
    res = runner.invoke(app, ["check", str(zoo), "--model", str(model_dir), "--per-gm", "2"])
    assert res.exit_code == 0, res.output
    assert "generated images called generated" in res.output


def test_missing_or_broken_model_is_one_clear_error(tmp_path: Path, files: dict[str, Path]):
    res = runner.invoke(app, ["analyze", str(files["gray"]), "--model", str(tmp_path)])
    assert res.exit_code == 2 and "missing" in res.output
    (tmp_path / "config.json").write_text("{broken")
    (tmp_path / "model.safetensors").write_bytes(b"junk")
    res = runner.invoke(app, ["analyze", str(files["gray"]), "--model", str(tmp_path)])
    assert res.exit_code == 2 and "not a gmtrace model config" in res.output


def test_group_assigns_every_readable_image(model_dir: Path, zoo: Path, files: dict[str, Path]):
    a = Analyzer(model_dir)
    imgs = sorted((zoo / "fake" / "dcgan_000").glob("*.png"))[:3]
    imgs += sorted((zoo / "fake" / "vae_000").glob("*.png"))[:3]
    results = a.analyze([*imgs, files["empty"]])
    n = a.group(results, generated_only=False)
    groups = [r.group for r in results]
    assert groups[-1] is None and all(isinstance(g, int) for g in groups[:-1])
    assert 1 <= n <= 6 and set(groups[:-1]) == set(range(1, n + 1))
    same = a.analyze([imgs[0]] * 4)  # one image four times: one source, one group
    assert a.group(same, generated_only=False) == 1 and {r.group for r in same} == {1}
    res = runner.invoke(app, ["analyze", *map(str, imgs), "--model", str(model_dir), "--group"])
    assert res.exit_code == 0, res.output
    assert "group(s) by source GM" in res.output
