"""`gmtrace scan`: one row per file in every format, bad files recorded, and a scan
killed with SIGKILL and rerun ends with the rows of an uninterrupted one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.data.images import find_images
from gmtrace.product.analyze import Analyzer
from gmtrace.product.rows import ROW_FIELDS, SCHEMA_VERSION
from gmtrace.product.scan import ScanError, read_results, results_differ, scan

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs import NON_UTF8, make_corpus  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def analyzer(small_model_dir: Path) -> Analyzer:
    return Analyzer(small_model_dir)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("bad")
    return d, make_corpus(d)


@pytest.fixture(scope="module")
def case(tiny_zoo_dir: Path, tmp_path_factory) -> Path:
    """A case folder: 70 generated images of the tiny zoo and its real crops."""
    d = tmp_path_factory.mktemp("case")
    fakes = sorted((tiny_zoo_dir / "fake").rglob("*.png"))[:70]
    for i, p in enumerate(fakes + sorted((tiny_zoo_dir / "real").rglob("*.png"))[:30]):
        sub = d / ("gen" if i < len(fakes) else "real") / p.parent.name
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, sub / p.name)
    return d


def _key(name: str) -> str:
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def test_corpus_one_row_per_file_and_one_line_errors(analyzer, corpus, tmp_path: Path):
    d, want = corpus
    out = tmp_path / "scan.jsonl"
    s = scan(analyzer, [d], out)
    rows = read_results(out)
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(by_path) == len(want) == s.files
    for name, expect in want.items():
        r = by_path[_key(str(d / name))]
        assert list(r) == list(ROW_FIELDS) and r["schema_version"] == SCHEMA_VERSION
        assert r["model_id"] == analyzer.model_id_
        if expect == "ok":
            assert r["ok"] and r["error"] is None, (name, r["error"])
            data = (d / name).read_bytes()
            assert r["sha256"] == hashlib.sha256(data).hexdigest() and r["bytes"] == len(data)
            assert (r["verdict"] == "generated") == (r["p_generated"] >= 0.5)
            assert r["verdict"] in ("generated", "real") and len(r["embedding"]) > 1
        else:
            assert not r["ok"] and r["p_generated"] is None, name
            assert "\n" not in r["error"] and r["error"].startswith(_key(str(d / name))), r
    assert s.failed == sum(v == "error" for v in want.values())
    assert s.analyzed == len(want) - s.failed
    exif = by_path[_key(str(d / "exif_rotated.jpg"))]
    assert (exif["width"], exif["height"]) == (72, 96)  # turned upright: 96 x 72 stored
    assert _key(str(d / NON_UTF8)).encode("ascii")  # printable, and ASCII in the file
    # the folder named like an image is walked; named directly, it is an error row
    rows2 = read_results(_scan_to(analyzer, [d / "folder.png", d / "nope.png"], tmp_path))
    ok = {Path(r["path"]).name: (r["ok"], r["error"]) for r in rows2}
    assert ok["inside.png"] == (True, None) and "no such file" in ok["nope.png"][1]


def _scan_to(analyzer, paths, tmp_path: Path, name: str = "x.jsonl") -> Path:
    out = tmp_path / name
    scan(analyzer, paths, out)
    return out


def test_formats_hold_the_same_rows(analyzer, case: Path, corpus, tmp_path: Path):
    paths = [case / "gen", corpus[0] / "good.png", corpus[0] / "truncated.png"]
    rows = {}
    for ext in ("jsonl", "csv", "parquet"):
        rows[ext] = read_results(_scan_to(analyzer, paths, tmp_path, f"s.{ext}"))
    assert not (tmp_path / "s.parquet.partial.jsonl").exists()
    assert len(rows["jsonl"]) == 72
    assert rows["csv"] == rows["jsonl"] and rows["parquet"] == rows["jsonl"]


def test_the_batch_size_changes_no_row(small_model_dir: Path, case: Path, tmp_path: Path):
    """`--batch`: crops per forward pass, a matter of speed only."""
    a = _scan_to(Analyzer(small_model_dir), [case / "gen"], tmp_path, "a.jsonl")
    b = _scan_to(Analyzer(small_model_dir, batch=5), [case / "gen"], tmp_path, "b.jsonl")
    assert len(read_results(a)) == 70
    assert results_differ(a, b, atol=1e-5) is None


def test_resume_keeps_rows_and_refuses_another_model(analyzer, case: Path, tmp_path: Path):
    full = _scan_to(analyzer, [case], tmp_path, "full.jsonl")
    part = tmp_path / "part.jsonl"
    lines = full.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[:41]) + lines[41][:17])  # a torn 42nd line
    s = scan(analyzer, [case], part)
    assert s.resumed == 41 and s.analyzed + s.failed == len(lines) - 41
    assert part.read_bytes() == full.read_bytes()
    s = scan(analyzer, [case], part)  # nothing left to do
    assert s.resumed == len(lines) and s.analyzed == 0
    rows = [json.loads(x) for x in full.read_text().splitlines()]
    rows[0]["weights_sha256"] = "0" * 64
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps(r) + "\n" for r in rows[:3]))
    with pytest.raises(ScanError, match="another model"):
        scan(analyzer, [case], other)
    with pytest.raises(ScanError, match="unknown output format"):
        scan(analyzer, [case], tmp_path / "x.txt")


def test_crops_read_at_decode_time_and_a_resume_keeps_the_crop_setting(
    small_model_dir: Path, tmp_path: Path
):
    from PIL import Image

    d = tmp_path / "big"
    d.mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)).save(d / f"{i}.png")
    many, one = Analyzer(small_model_dir), Analyzer(small_model_dir, max_crops=1)
    out = tmp_path / "rows.jsonl"
    scan(many, [d], out)
    rows = read_results(out)
    assert [r["crops"] for r in rows] == [9, 9, 9]  # the image is over 3x the input size
    direct = many.analyze_arrays([np.asarray(Image.open(d / "0.png"))], ["x"])[0]
    assert rows[0]["p_generated"] == pytest.approx(direct.p_generated, abs=1e-6)
    with pytest.raises(ScanError, match="another --max-crops"):
        scan(one, [d], out)
    scan(one, [d], tmp_path / "one.jsonl")
    assert [r["crops"] for r in read_results(tmp_path / "one.jsonl")] == [1, 1, 1]


def test_large_jpegs_scan_to_the_rows_of_their_whole_decode(
    small_model_dir: Path, tmp_path: Path, monkeypatch
):
    """A large JPEG's crops are cut out of the file (`data.jpegcrop`): its row is
    the one decoding it whole gives, EXIF orientation included."""
    from PIL import Image

    from gmtrace.data import jpegcrop

    if jpegcrop._library() is None:
        pytest.skip("libturbojpeg missing (make setup installs Debian's libturbojpeg0)")
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:700, 0:900] / 30.0
    for i, orientation in enumerate((1, 6, 3)):
        smooth = np.stack([np.sin(x + i), np.cos(y), np.sin(x - y)], -1) * 60 + 128
        pic = np.clip(smooth + rng.normal(0, 10, smooth.shape), 0, 255).astype(np.uint8)
        exif = Image.Exif()
        exif[0x0112] = orientation
        Image.fromarray(pic).save(d / f"{i}.jpg", quality=85, exif=exif.tobytes())
    an = Analyzer(small_model_dir)
    for p in sorted(d.iterdir()):
        assert jpegcrop.jpeg_crops(p.read_bytes(), an.image_size_, an.max_crops) is not None
    cut = _scan_to(an, [d], tmp_path, "cut.jsonl")
    monkeypatch.setenv(jpegcrop.ENV, "0")
    whole = _scan_to(an, [d], tmp_path, "whole.jsonl")
    assert len(read_results(cut)) == 3 and [r["crops"] for r in read_results(cut)] == [9] * 3
    assert results_differ(cut, whole, atol=1e-6) is None
    # `analyze` reads the crops alone too, and decodes whole where it saves views
    monkeypatch.setenv(jpegcrop.ENV, "1")
    files = sorted(d.iterdir())
    for r, row, shown in zip(
        an.analyze(files), read_results(cut), an.analyze(files, tmp_path / "views"), strict=True
    ):
        assert r.p_generated == pytest.approx(row["p_generated"], abs=1e-6)
        assert shown.p_generated == pytest.approx(r.p_generated, abs=1e-6)
        assert r.sha256 == row["sha256"] and Path(shown.fingerprint_png).is_file()


def test_sigkill_at_random_points_then_resume(small_model_dir: Path, case: Path, tmp_path: Path):
    """The CLI killed twice while writing (at a random size of the output), then
    rerun: the file holds an uninterrupted run's rows, in its order, every field
    equal (floats to 1e-4: a batch run again in another process can differ in the
    last digits, `results_differ`)."""
    cmd = [
        sys.executable,
        "-m",
        "gmtrace.cli",
        "scan",
        str(case),
        "--model",
        str(small_model_dir),
    ]
    full = tmp_path / "full.csv"
    subprocess.run([*cmd, "--out", str(full)], check=True, capture_output=True)
    size = full.stat().st_size
    out = tmp_path / "killed.csv"
    rng = np.random.default_rng(0)
    kills = 0
    for cut in sorted(rng.uniform(0.1, 0.9, 2) * size):
        proc = subprocess.Popen(
            [*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while proc.poll() is None and (not out.exists() or out.stat().st_size < cut):
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert not out.exists() or out.stat().st_size <= size
    assert kills >= 1
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True)
    assert len(out.read_bytes().splitlines()) == len(full.read_bytes().splitlines())
    assert results_differ(out, full) is None


def test_cli_scan_summary_and_errors(small_model_dir: Path, corpus, tmp_path: Path):
    d, want = corpus
    out = tmp_path / "c.jsonl"
    r = runner.invoke(app, ["scan", str(d), "--out", str(out), "--model", str(small_model_dir)])
    assert r.exit_code == 0, r.output
    assert f"{len(want)} files, one row each" in r.output and "failed:" in r.output
    r = runner.invoke(
        app, ["scan", str(d), "--out", str(tmp_path / "c.txt"), "--model", str(small_model_dir)]
    )
    assert r.exit_code == 2 and "unknown output format" in r.output


def test_find_images_sorted_unique_and_walks_no_symlinked_folder(tmp_path: Path):
    (tmp_path / "b").mkdir()
    for n in ("b/2.png", "a.jpg", "b/1.PNG", "notes.txt", ".hidden.png"):
        (tmp_path / n).write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "b" / "up")  # a folder loop
    files, problems = find_images([tmp_path, tmp_path / "a.jpg", tmp_path / "missing"])
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "a.jpg",
        "b/1.PNG",
        "b/2.png",
    ]
    assert list(problems) == [str(tmp_path / "missing")]


def test_ray_engine_matches_the_local_engine(analyzer, case: Path, tmp_path: Path):
    """The same scan as Ray Data on a local 2-CPU cluster: the same rows in the same
    order (floats equal to 1e-6: the workers run the network on one thread each)."""
    pytest.importorskip("ray.data")
    local = read_results(_scan_to(analyzer, [case], tmp_path, "local.jsonl"))
    out = tmp_path / "ray.jsonl"
    s = scan(analyzer, [case], out, workers=2, engine="ray")
    assert s.analyzed + s.failed == len(local)
    rays = read_results(out)
    assert [r["path"] for r in rays] == [r["path"] for r in local]
    for a, b in zip(local, rays, strict=True):
        for k in ROW_FIELDS:
            if k in ("p_generated", "open_set_score", "embedding", "continuous_spread"):
                assert np.allclose(
                    np.array(list(a[k].values()) if isinstance(a[k], dict) else a[k], dtype=float),
                    np.array(list(b[k].values()) if isinstance(b[k], dict) else b[k], dtype=float),
                    atol=1e-6,
                ), (k, a["path"])
            elif k not in ("hyperparameters", "loss_probabilities", "top_gms"):
                assert a[k] == b[k], (k, a["path"])
        assert a["top_gms"][0]["name"] == b["top_gms"][0]["name"]
        assert a["hyperparameters"].keys() == b["hyperparameters"].keys()


def test_ray_engine_beside_a_cluster_already_running(analyzer, case: Path, tmp_path: Path):
    """A cluster started with `ray start` on this machine: `--engine ray` without an
    address starts a cluster of its own (it used to join the running one and stop
    on its own CPU count), and `--ray-address auto` joins the running one; both
    write the local engine's rows (floats to 1e-4)."""
    pytest.importorskip("ray.data")
    ray_cli = Path(sys.executable).with_name("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    start = [str(ray_cli), "start", "--head", "--num-cpus=1", "--include-dashboard=false"]
    subprocess.run(start, check=True, capture_output=True, timeout=180, env=env)
    try:
        local = _scan_to(analyzer, [case], tmp_path, "local.jsonl")
        for name, address in (("own.jsonl", None), ("joined.jsonl", "auto")):
            s = scan(analyzer, [case], tmp_path / name, 1, engine="ray", ray_address=address)
            assert s.analyzed + s.failed == len(read_results(local)), name
            assert results_differ(local, tmp_path / name) is None, name
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, timeout=180)


def test_a_line_break_in_a_file_name_stays_on_one_line(analyzer, corpus, tmp_path: Path):
    d = tmp_path / "odd"
    d.mkdir()
    shutil.copy(corpus[0] / "good.png", d / "two\nlines.png")
    for ext in ("csv", "jsonl"):
        out = _scan_to(analyzer, [d], tmp_path, f"nl.{ext}")
        assert len(out.read_text().splitlines()) == (2 if ext == "csv" else 1)
        (row,) = read_results(out)
        assert row["ok"] and row["path"].endswith("two\\nlines.png")


def test_results_differ_names_the_first_difference(tmp_path: Path):
    row = {"path": "a.png", "ok": True, "p_generated": 0.5, "crops": 4, "top_gms": [{"x": 0.25}]}

    def write(name: str, *rows: dict) -> Path:
        p = tmp_path / name
        p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="ascii")
        return p

    a = write("a.jsonl", row, {**row, "path": "b.png"})
    assert (
        results_differ(
            a, write("same.jsonl", {**row, "p_generated": 0.5 + 1e-7}, {**row, "path": "b.png"})
        )
        is None
    )
    far = write("far.jsonl", row, {**row, "path": "b.png", "top_gms": [{"x": 0.3}]})
    assert results_differ(a, far) == "row 2 (b.png).top_gms[0].x: 0.25 != 0.3"
    assert "crops" in results_differ(
        a, write("int.jsonl", {**row, "crops": 5}, {**row, "path": "b.png"})
    )
    assert results_differ(a, write("short.jsonl", row)) == "2 rows != 1 rows"
    assert "path" in results_differ(a, write("order.jsonl", {**row, "path": "b.png"}, row))
