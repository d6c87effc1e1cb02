"""`gmtrace zoo synth` on a tiny tier (12 GMs, 4 images, 32 px): the zoo layout,
ground truth from describe(), loss bits, aligned real inputs, resume and
determinism."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmtrace.core.schema import ARCH_FIELDS, LOSS_TYPES
from gmtrace.data.dataset import MODELS_COLUMNS, GMDataset
from gmtrace.data.images import load_rgb, save_png
from gmtrace.zoo.builder import ZooError, finished_gms
from gmtrace.zoo.layers import ACTIVATIONS, LAST_ACTIVATIONS, NORMS, UPSAMPLERS
from gmtrace.zoo.real import RealSource, load_embedded
from gmtrace.zoo.recipe import INITS
from gmtrace.zoo.synth import (
    DOWNSAMPLERS,
    KERNELS,
    RESULT_KEYS,
    SKIPS,
    WIDTHS,
    build_synth,
    draw_crops,
    ground_truth,
    plan_synth,
    synth_zoo,
)

N, IMAGES, RES = 12, 4, 32
KINDS = {"synth_decoder", "synth_translator"}
PHOTOS = (
    "skimage.astronaut",
    "skimage.camera",
    "skimage.chelsea",
    "skimage.coffee",
    "skimage.rocket",
    "skimage.brick",
    "skimage.grass",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets on one torch thread, as the build's workers run them (two threads
    on two busy cores spend their time waiting for each other)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def real_dir(tmp_path_factory) -> Path:
    """A small --real folder (seven embedded photos in four domains, at most 256 px):
    the default source also decodes the Debian photo catalog, which takes far longer."""
    root = tmp_path_factory.mktemp("real")
    for p in load_embedded():
        if p.name in PHOTOS:
            (root / p.domain).mkdir(exist_ok=True)
            im = Image.fromarray(p.pixels)
            im.thumbnail((256, 256))
            save_png(np.asarray(im), root / p.domain / f"{p.name}.png")
    return root


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, real_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("synth")
    s = synth_zoo(
        out, n=N, seed=0, images_per_gm=IMAGES, resolution=RES, real=str(real_dir), workers=1
    )
    assert s.ok, s.failed
    assert len(s.built) == N and s.resumed == []
    return out


def _rows(zoo: Path) -> list[dict]:
    with open(zoo / "models.csv", newline="") as f:
        return list(csv.DictReader(f))


def _planned(row: dict) -> dict:
    return {k: v for k, v in json.loads(row["config"]).items() if k not in RESULT_KEYS}


def _pngs(zoo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(zoo)): p.read_bytes() for p in sorted(zoo.rglob("*.png"))}


def test_layout_reads_with_from_zoo(zoo: Path, real_dir: Path):
    with open(zoo / "models.csv", newline="") as f:
        assert next(csv.reader(f)) == list(MODELS_COLUMNS)
    ds = GMDataset.from_zoo(zoo)
    assert ds.names == [f"synth_{i:05d}" for i in range(N)]
    assert Counter(g.family for g in ds.gms) == {"synth_decoder": 6, "synth_translator": 6}
    assert {g.extra["task"] for g in ds.gms} == {"autoencode", "translate"}
    for g in ds.gms:
        images = [load_rgb(p) for p in g.images()]
        assert len(images) == IMAGES and images[0].shape == (RES, RES, 3)
        # not flat: every GM's images have real spatial contrast (grey levels)
        assert np.mean([im.std(axis=(0, 1)).mean() for im in images]) > 3.0, g.name
    state = json.loads((zoo / "zoo.json").read_text())
    assert (state["preset"], state["seed"], state["resolution"], state["n"]) == ("synth", 0, RES, N)
    assert state["counts"] == {"done": N, "failed": 0, "pending": 0}
    assert state["real"] == str(real_dir.resolve()) and "torch" in state["versions"]
    assert state["build_seconds"] > 0 and not (zoo / ".partial").exists()
    # real/: write_real's crops of the same photographs
    assert (zoo / "real" / "index.csv").is_file()
    assert len(ds.real) == N * IMAGES
    photos, _ = RealSource(str(real_dir.resolve())).load()
    assert {r.source for r in ds.real} == {p.name for p in photos} and len(photos) == len(PHOTOS)


def test_inputs_are_recorded_and_aligned(zoo: Path, real_dir: Path):
    """meta.json names each image's input crop (photo and box), and pairs/<gm>/ holds
    exactly that crop under the image's file name."""
    photos, _ = RealSource(str(real_dir.resolve())).load()
    by_name = {p.name: p for p in photos}
    for i, meta in enumerate(finished_gms(zoo).values()):
        domain = meta["row"]["domain"]
        inputs = meta["inputs"]
        assert len(inputs) == IMAGES
        pixels, boxes = draw_crops(
            [p for p in photos if p.domain == domain],
            RES,
            IMAGES,
            np.random.default_rng([0, i, 1]),
        )
        assert boxes == inputs
        for k, box in enumerate(inputs):
            h, w = by_name[box["source"]].pixels.shape[:2]
            assert by_name[box["source"]].domain == domain
            assert box["x"] >= 0 and box["x"] + box["size"] <= w
            assert box["y"] >= 0 and box["y"] + box["size"] <= h and box["size"] >= RES
            pair = load_rgb(zoo / "pairs" / meta["row"]["name"] / f"{k:05d}.png")
            np.testing.assert_array_equal(pair, pixels[k])


def test_ground_truth_is_describe_of_the_rebuilt_module(zoo: Path):
    ups = set()
    for row in _rows(zoo):
        cfg = _planned(row)
        arch = ground_truth(build_synth(row["family"], cfg, RES))
        for f in ARCH_FIELDS:
            if f.kind == "continuous":
                assert float(row[f.name]) == pytest.approx(float(arch[f.name])), row["name"]
            else:
                assert row[f.name] == arch[f.name], (row["name"], f.name)
        assert row["upsampling_kind"] == arch["upsampling_kind"]
        decoder = row["family"] == "synth_decoder"
        assert row["skip_connection"] == ("no" if cfg["skip"] == "none" else "yes")
        assert row["upsampling_kind"] == (cfg["up"] if decoder else "none")
        assert row["downsampling"] == ("yes" if decoder else "no")
        ups.add(row["upsampling_kind"])
    assert len(ups - {"none"}) >= 3  # several up-samplers in 6 decoders


def test_describe_matches_the_config_over_a_larger_plan():
    """By hand, over 40 planned GMs: describe() reads back what the config built,
    and every option of every choice comes up."""
    specs = plan_synth(40, 5, RES, IMAGES, ["a", "b"])
    seen: dict[str, set] = {}
    for s in specs:
        c = s.config
        a = ground_truth(build_synth(s.kind, c, RES))
        decoder = s.kind == "synth_decoder"
        assert a["skip_connection"] == ("no" if c["skip"] == "none" else "yes")
        assert a["upsampling_kind"] == (c["up"] if decoder else "none")
        assert a["upsampling"] == (
            "learned" if c.get("up") in ("transposed", "pixel_shuffle") else "fixed"
        )
        assert a["downsampling"] == ("yes" if decoder else "no")
        assert a["norm_type"] == c["norm"]
        assert a["last_activation"] == (c["last"] if c["last"] != "hardtanh" else "other")
        assert a["n_pool"] == (c["depth"] if decoder and c["down"] != "strided" else 0)
        assert a["n_fc"] == 0
        for key in ("up", "down", "norm", "act", "last", "kernel", "width", "skip"):
            if key in c:
                seen.setdefault(key, set()).add(c[key])
        seen.setdefault("init", set()).add(c["recipe"]["init"])
    assert seen == {
        "up": set(UPSAMPLERS),
        "down": set(DOWNSAMPLERS),
        "norm": set(NORMS),
        "act": set(ACTIVATIONS),
        "last": set(LAST_ACTIVATIONS),
        "kernel": set(KERNELS),
        "width": set(WIDTHS),
        "skip": set(SKIPS),
        "init": set(INITS),
    }


def test_loss_bits_follow_the_fit(zoo: Path):
    metas = finished_gms(zoo)
    fitted = unfitted = 0
    for row in _rows(zoo):
        cfg = _planned(row)
        bits = {n: int(row[f"loss_{n}"]) for n in LOSS_TYPES}
        steps = int(row["steps"])
        assert steps == cfg["recipe"]["steps"] == len(metas[row["name"]]["fit_losses"])
        if steps:
            fitted += 1
            assert 5 <= steps <= 30 and float(row["lr"]) > 0
            assert bits[cfg["pixel_loss"]] == 1
            assert bits["l2"] == int(cfg["feature_loss"])
            assert sum(bits.values()) == 1 + int(cfg["feature_loss"])
            assert np.isfinite(metas[row["name"]]["fit_losses"]).all()
        else:
            unfitted += 1
            assert sum(bits.values()) == 0
    assert fitted >= 4 and unfitted >= 2


def test_resume_rebuilds_only_the_missing_gm(zoo: Path, real_dir: Path, tmp_path: Path):
    out = tmp_path / "copy"
    shutil.copytree(zoo, out)
    before, models = _pngs(out), (out / "models.csv").read_bytes()
    shutil.rmtree(out / "fake" / "synth_00005")
    mtimes = {n: (out / "fake" / n / "meta.json").stat().st_mtime_ns for n in finished_gms(out)}
    s = synth_zoo(
        out, n=N, seed=0, images_per_gm=IMAGES, resolution=RES, real=str(real_dir), workers=1
    )
    assert s.built == ["synth_00005"] and len(s.resumed) == N - 1
    assert _pngs(out) == before
    assert (out / "models.csv").read_bytes() == models
    assert {n: (out / "fake" / n / "meta.json").stat().st_mtime_ns for n in mtimes} == mtimes
    # a larger n extends the tier: only the new GM is built, the rows before are kept
    s = synth_zoo(
        out, n=N + 1, seed=0, images_per_gm=IMAGES, resolution=RES, real=str(real_dir), workers=1
    )
    assert s.built == [f"synth_{N:05d}"]
    assert (out / "models.csv").read_bytes().startswith(models.rstrip(b"\r\n"))
    with pytest.raises(ZooError, match="seed"):
        synth_zoo(out, n=N, seed=1, images_per_gm=IMAGES, resolution=RES, real=str(real_dir))
    with pytest.raises(ZooError, match="resolution"):
        synth_zoo(out, n=N, resolution=30, real=str(real_dir))


def test_same_seed_same_bytes_with_two_workers(zoo: Path, real_dir: Path, tmp_path: Path):
    """Each GM is seeded from (seed, index) alone: a pool of two worker processes
    writes the same models.csv and PNG bytes as one process."""
    out = tmp_path / "again"
    s = synth_zoo(
        out, n=N, seed=0, images_per_gm=IMAGES, resolution=RES, real=str(real_dir), workers=2
    )
    assert s.workers == 2 and len(s.built) == N
    assert (out / "models.csv").read_bytes() == (zoo / "models.csv").read_bytes()
    assert _pngs(out) == _pngs(zoo)
    diversities = [float(r["diversity"]) for r in _rows(out)]
    assert min(diversities) >= 0.2 and {r["collapsed"] for r in _rows(out)} == {"0"}


def _curve_cfg():
    """The protocol at its smallest, on the spectral baseline (no network)."""
    from gmtrace.evaluation.config import EvalConfig

    return EvalConfig(
        holdout="family",
        folds=2,
        methods=("spectral",),
        train_per_gm=8,
        seen_per_gm=2,
        test_per_gm=4,
        neutral_per_gm=2,
        real_test=20,
        image_size=32,
        permutations=20,
        leakage_images=16,
        leakage_steps=3,
    )


def test_curve_adds_synthesized_gms_to_training_only(zoo: Path, tiny_zoo_dir: Path, tmp_path: Path):
    """The curve over training GMs on the tiny zoo: one run per count, the
    synthesized GMs in every fold's training and in no fold's tests, the figures
    per count in curve.json and in the report (the spectral baseline: no network)."""
    from gmtrace.evaluation.protocol import curve

    ds, tier = GMDataset.from_zoo(tiny_zoo_dir), GMDataset.from_zoo(zoo)
    cfg = _curve_cfg()
    report = tmp_path / "results.md"
    data = curve(ds, tier, [N, 0], tmp_path / "curve", cfg, report=report, command="c")
    assert [p["synth_gms"] for p in data["points"]] == [0, N]
    n_train = [p["train_gms"] for p in data["points"]]
    assert n_train[1] == pytest.approx(n_train[0] + N)
    saved = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert saved == data
    for point, c in zip(saved["points"], (0, N), strict=True):
        res = json.loads((tmp_path / "curve" / f"n{c}" / "results.json").read_text())
        assert res["split"].get("synth_gms", 0) == c and res["n_gms"] == len(ds)
        # each point holds its own run's figures
        auc = res["methods"]["spectral"]["detection"]["auc"]["mean"]
        assert point["spectral"]["auc"] == pytest.approx(auc)
        assert sorted(sum(res["folds"], [])) == sorted(ds.names)  # tests: zoo GMs only
    text = report.read_text()
    assert "## Against the number of training GMs" in text and f"| {N} |" in text


def _count_runs(monkeypatch) -> list[int]:
    """The counts of synthesized GMs the curve runs from now on (not those it reads)."""
    import gmtrace.evaluation.protocol as ev

    ran: list[int] = []
    real_evaluate = ev.evaluate

    def counting(ds_, out, cfg_, *a, **k):
        ran.append(cfg_.synth_gms)
        return real_evaluate(ds_, out, cfg_, *a, **k)

    monkeypatch.setattr(ev, "evaluate", counting)
    return ran


def test_curve_reads_finished_points_and_reruns_changed_ones(
    zoo: Path, tiny_zoo_dir: Path, tmp_path: Path, monkeypatch
):
    """A curve run again reads the counts whose run finished with the same settings
    and runs only those whose settings changed or whose folder is gone."""
    import gmtrace.evaluation.protocol as ev

    ds, tier = GMDataset.from_zoo(tiny_zoo_dir), GMDataset.from_zoo(zoo)
    cfg = _curve_cfg()
    first = ev.curve(ds, tier, [0, N], tmp_path / "c", cfg)
    ran = _count_runs(monkeypatch)
    assert ev.curve(ds, tier, [0, N], tmp_path / "c", cfg) == first and ran == []
    point = tmp_path / "c" / f"n{N}"
    assert ev.finished_point(point, replace(cfg, synth_gms=N), ds, None) is None  # other tier
    more = replace(cfg, synth_gms=N, methods=("spectral", "red"))
    assert ev.finished_point(point, more, ds, tier) is None  # a method it did not run
    res = json.loads((point / "results.json").read_text())
    res["config"]["methods"] = ["red", "spectral"]  # as if it had run RED's too
    (point / "results.json").write_text(json.dumps(res))
    assert ev.finished_point(point, replace(cfg, synth_gms=N), ds, tier) == res
    shutil.rmtree(tmp_path / "c" / "n0")
    ev.curve(ds, tier, [0, N], tmp_path / "c", cfg)
    assert ran == [0]
    ev.curve(ds, tier, [0, N], tmp_path / "c", replace(cfg, permutations=10))
    assert ran == [0, 0, N]


def test_curve_grows_by_a_count_and_its_section_renders_alone(
    zoo: Path, tiny_zoo_dir: Path, tmp_path: Path, monkeypatch
):
    """A curve asked for one more count keeps the points an earlier curve.json
    holds at other counts when they were measured with the same settings (and
    drops them otherwise); its section alone can be rewritten in an existing
    report, with the record written beside it."""
    import gmtrace.evaluation.protocol as ev
    from gmtrace.evaluation.report import CURVE_HEADING, write_curve_section

    ds, tier = GMDataset.from_zoo(tiny_zoo_dir), GMDataset.from_zoo(zoo)
    cfg = _curve_cfg()
    out = tmp_path / "c"
    ev.curve(ds, tier, [0], out, cfg, command="first")
    shutil.rmtree(out / "n0")  # the run folder is gone; its point stays in curve.json
    ran = _count_runs(monkeypatch)
    data = ev.curve(ds, tier, [N], out, cfg, command="second")
    assert ran == [N] and [p["synth_gms"] for p in data["points"]] == [0, N]
    assert [p["command"] for p in data["points"]] == ["first", "second"]
    assert json.loads((out / "curve.json").read_text()) == data
    other = ev.curve(ds, tier, [N], out, replace(cfg, permutations=10), command="third")
    assert [p["synth_gms"] for p in other["points"]] == [N] and ran == [N, N]

    report = tmp_path / "docs" / "results.md"
    report.parent.mkdir()
    before = ["# Results", "", "intro", "", "## Training budget", "", "table", ""]
    report.write_text("\n".join(before))
    write_curve_section(report, data)
    text = report.read_text()
    assert text.startswith("# Results\n\nintro\n\n" + CURVE_HEADING)
    assert text.endswith("## Training budget\n\ntable\n") and text.count(CURVE_HEADING) == 1
    assert "\n| 0 |" in text and "0: `first`; " in text and f"{N}: `second`" in text
    record = json.loads((report.parent / "curve.json").read_text())
    assert record == {k: v for k, v in data.items() if k != "folder"}
    write_curve_section(report, other)  # again: the section is replaced, not added
    again = report.read_text()
    assert again.count(CURVE_HEADING) == 1 and "\n| 0 |" not in again and "`third`" in again
    assert again.endswith("## Training budget\n\ntable\n")
