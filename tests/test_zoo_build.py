"""The zoo builder end to end on the tiny preset: layout, ground truth, resume
after a kill, the Ray engine and bad real-image folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmtrace.core.schema import ARCH_FIELDS, LOSS_TYPES
from gmtrace.data.dataset import GMDataset
from gmtrace.data.images import load_rgb
from gmtrace.zoo.builder import MAX_REDRAWS, PRESETS, ZooError, build_zoo, finished_gms, plan
from gmtrace.zoo.catalog import FAMILIES, create_gm
from gmtrace.zoo.families import describe_gm
from gmtrace.zoo.real import RealImageError, load_embedded
from gmtrace.zoo.recipe import COLLAPSE_BELOW

TINY = PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo")
    summary = build_zoo(out, preset="tiny", seed=0)
    assert summary.ok, summary.failed
    return out


def test_tiny_layout(tiny_zoo: Path):
    ds = GMDataset.from_zoo(tiny_zoo)
    assert len(ds) == TINY.n_gms == len(FAMILIES)
    assert sorted({g.family for g in ds.gms}) == sorted(FAMILIES)
    for g in ds.gms:  # each GM's recipe and diversity are in models.csv
        recipe = g.extra["config"]["recipe"]
        assert g.extra["optimizer"] == recipe["optimizer"] and int(g.extra["steps"]) == 3
        div = float(g.extra["diversity"])
        assert g.extra["collapsed"] == str(int(div < COLLAPSE_BELOW))
        assert 0 <= int(g.extra["redraws"]) <= MAX_REDRAWS
    state = json.loads((tiny_zoo / "zoo.json").read_text())
    assert state["preset"] == "tiny" and state["seed"] == 0 and state["resolution"] == 32
    assert {v["status"] for v in state["gms"].values()} == {"done"}
    assert "torch" in state["versions"]
    for g in ds.gms:
        files = g.images()
        assert len(files) == TINY.images_per_gm
        img = load_rgb(files[0])
        assert img.shape == (32, 32, 3)
        # images are not constant: the GM produced something
        assert img.std() > 0.5
    # every real crop is traceable to a source photograph of a known domain
    assert len(ds.real) == TINY.real_crops
    sources = {r.source for r in ds.real}
    assert len(sources) >= 10
    assert all(r.path.is_file() for r in ds.real)
    assert {r.domain for r in ds.real} <= {
        d for _, _, d in __import__("gmtrace.zoo.real").zoo.real.EMBEDDED
    }


def test_ground_truth_is_introspected(tiny_zoo: Path):
    """models.csv holds exactly what describe() reads off a rebuilt generator and
    the losses the GM's config trains with."""
    ds = GMDataset.from_zoo(tiny_zoo)
    specs = {s.name: s for s in plan(TINY, 0, sorted({p.domain for p in load_embedded()}))}
    for g in ds.gms:
        spec = specs[g.name]
        gm = create_gm(spec.family, spec.config, spec.resolution)
        arch = describe_gm(gm)
        for f in ARCH_FIELDS:
            expected = arch.values[f.name]
            got = g.arch[f.name]
            if f.kind == "continuous":
                assert float(got) == pytest.approx(float(expected)), (g.name, f.name)
            else:
                assert got == expected, (g.name, f.name)
        assert set(g.losses) == set(gm.loss_types())
    bits = ds.loss_matrix()
    assert bits.shape == (len(ds), len(LOSS_TYPES))
    assert (bits.sum(axis=1) >= 1).all()


def test_resume_keeps_finished(tiny_zoo: Path, tmp_path: Path):
    """A rerun on a complete zoo builds nothing and touches no finished GM."""
    before = {d.name: (d / "meta.json").stat().st_mtime_ns for d in (tiny_zoo / "fake").iterdir()}
    summary = build_zoo(tiny_zoo, preset="tiny", seed=0)
    assert summary.built == [] and len(summary.resumed) == TINY.n_gms
    after = {d.name: (d / "meta.json").stat().st_mtime_ns for d in (tiny_zoo / "fake").iterdir()}
    assert before == after


def test_other_preset_in_same_folder_refused(tiny_zoo: Path):
    with pytest.raises(ZooError, match="seed"):
        build_zoo(tiny_zoo, preset="tiny", seed=1)


def test_kill_and_resume(tmp_path: Path):
    """Killed mid-build, a rerun keeps the finished GMs, drops partial work and
    completes the zoo."""
    out = tmp_path / "zoo"
    code = (
        "import sys, time; from gmtrace.zoo import builder as b; "
        "orig = b.build_gm\n"
        "def slow(*a, **k):\n"
        "    r = orig(*a, **k); time.sleep(0.4); return r\n"
        "b.build_gm = slow\n"
        f"b.build_zoo({str(out)!r}, preset='tiny', seed=0)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(finished_gms(out)) < 2:
        time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = finished_gms(out)
    assert 2 <= len(kept) < TINY.n_gms
    # simulate a GM caught half-written by the kill
    partial = out / ".partial" / "resnet_000"
    partial.mkdir(parents=True, exist_ok=True)
    (partial / "00000.png").write_bytes(b"half")
    mtimes = {n: (out / "fake" / n / "meta.json").stat().st_mtime_ns for n in kept}
    summary = build_zoo(out, preset="tiny", seed=0)
    assert summary.ok
    assert sorted(summary.resumed) == sorted(kept)
    assert len(summary.built) == TINY.n_gms - len(kept)
    assert not partial.exists()
    assert {n: (out / "fake" / n / "meta.json").stat().st_mtime_ns for n in kept} == mtimes
    assert len(GMDataset.from_zoo(out)) == TINY.n_gms


def test_ray_engine(tmp_path: Path, tiny_zoo: Path):
    """One Ray task per GM on a local 2-CPU cluster gives the same zoo."""
    pytest.importorskip("ray")
    out = tmp_path / "zoo_ray"
    summary = build_zoo(out, preset="tiny", seed=0, engine="ray", workers=2, limit=3)
    assert summary.ok, summary.failed
    assert len(summary.built) == 3
    local = GMDataset.from_zoo(tiny_zoo)
    ray_ds = GMDataset.from_zoo(out)
    for g in ray_ds.gms:
        ref = next(r for r in local.gms if r.name == g.name)
        assert g.arch == ref.arch and g.losses == ref.losses
        a = np.asarray(Image.open(g.images()[0]))
        b = np.asarray(Image.open(ref.images()[0]))
        assert a.shape == b.shape


def test_process_pool_engine(tmp_path: Path):
    out = tmp_path / "zoo_pool"
    summary = build_zoo(out, preset="tiny", seed=0, workers=2, limit=2)
    assert summary.ok and len(summary.built) == 2


def test_bad_real_folders(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RealImageError, match="empty.*no image files"):
        build_zoo(tmp_path / "z1", real=str(empty))
    with pytest.raises(RealImageError, match="no such folder"):
        build_zoo(tmp_path / "z2", real=str(tmp_path / "missing"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png at all")
    (broken / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(RealImageError, match=r"broken: none of its 2 image files could be read"):
        build_zoo(tmp_path / "z3", real=str(broken))
    assert not (tmp_path / "z3" / "fake").exists()


def test_real_folder_with_some_bad_files(tmp_path: Path):
    """Unreadable files are skipped and reported; the rest are used, domains from
    subfolders."""
    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for domain in ("cats", "streets"):
        (folder / domain).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(
                folder / domain / f"{i}.png"
            )
    (folder / "cats" / "bad.png").write_bytes(b"garbage")
    summary = build_zoo(tmp_path / "z", real=str(folder), limit=1)
    assert summary.ok
    assert len(summary.real_skipped) == 1 and "bad.png" in summary.real_skipped[0]
    ds = GMDataset.from_zoo(tmp_path / "z")
    assert {r.domain for r in ds.real} == {"cats", "streets"}
    assert len({r.source for r in ds.real}) == 4


def test_default_preset_plan_coverage():
    """The default plan: >=120 GMs, >=6 families, every loss type >=8 GMs, 64 px,
    300 images per GM, training recipes that differ per GM (steps over 1.5 orders of
    magnitude, every optimizer). (Discrete-class coverage is measured on the built zoo
    by benchmarks/zoo_build.py, since classes come from introspection.)"""
    p = PRESETS["default"]
    assert p.n_gms >= 120 and len(p.families) >= 6
    assert p.resolution == 64 and p.images_per_gm >= 300
    specs = plan(p, 0, ["a", "b", "c"])
    assert len({s.name for s in specs}) == len(specs) == p.n_gms
    counts = dict.fromkeys(LOSS_TYPES, 0)
    for s in specs:
        for loss in create_loss_types(s):
            counts[loss] += 1
    assert min(counts.values()) >= 8, counts
    steps = [s.steps for s in specs]
    assert max(steps) / min(steps) >= 10**1.5
    recipes = [s.config["recipe"] for s in specs]
    assert {r["optimizer"] for r in recipes} == {"adam", "rmsprop", "sgd"}
    assert len({s.batch for s in specs}) >= 4 and len({r["init"] for r in recipes}) >= 5
    for key in ("latent", "sample_mode", "to_8bit", "norm_eps"):
        assert len({r[key] for r in recipes}) >= 2, key
    full = PRESETS["full"]
    assert full.n_gms >= 120 and full.images_per_gm >= 1000 and full.resolution == 128


def create_loss_types(spec) -> tuple[str, ...]:
    gm = create_gm(spec.family, spec.config, 32)
    return gm.loss_types()


def test_resume_refuses_a_different_plan(tmp_path: Path):
    """A finished GM whose config differs from today's plan is not silently kept."""
    out = tmp_path / "z"
    assert build_zoo(out, preset="tiny", seed=0, limit=1).ok
    meta_path = next((out / "fake").iterdir()) / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["row"]["config"] = json.dumps({"width": 999})
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ZooError, match="built from another config"):
        build_zoo(out, preset="tiny", seed=0, limit=1)


def test_resume_relabels_stale_ground_truth(tmp_path: Path):
    """If describe() changed since a GM was built, a rerun rewrites its labels."""
    out = tmp_path / "z"
    assert build_zoo(out, preset="tiny", seed=0, limit=1).ok
    meta_path = next((out / "fake").iterdir()) / "meta.json"
    meta = json.loads(meta_path.read_text())
    true_layers = meta["row"]["n_layers"]
    meta["row"]["n_layers"] = true_layers + 100
    meta_path.write_text(json.dumps(meta))
    summary = build_zoo(out, preset="tiny", seed=0, limit=1)
    assert summary.relabelled == [meta["row"]["name"]] and summary.built == []
    assert GMDataset.from_zoo(out).gms[0].arch["n_layers"] == true_layers


def test_full_preset_builds_at_128():
    """Every family of the full preset builds, trains a step and samples at 128 px
    (the preset itself is meant for a GPU or a Ray cluster)."""
    import torch

    p = PRESETS["full"]
    specs = plan(p, 0, ["a"])
    seen = set()
    for s in specs:
        if s.family in seen:
            continue
        seen.add(s.family)
        gm = create_gm(s.family, s.config, p.resolution)
        gm.setup(torch.device("cpu"))
        real = torch.rand(2, 3, 128, 128) * 2 - 1
        gm.train_step(real, torch.tensor([0, 1])) if gm.conditional else gm.train_step(real)
        x = gm.sample(2, real if gm.kind == "translate" else None)
        assert x.shape == (2, 3, 128, 128)
    assert seen == set(FAMILIES)
