"""A model that carries a fusion (`gmtrace train --fuse`): the analyzer's fused
probability, its "unsure" verdict with the reason, and the rows that carry them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.product.analyze import Analyzer
from gmtrace.product.groups import group_rows, own_rows
from gmtrace.product.report import render_report
from gmtrace.product.rows import ROW_FIELDS, SCHEMA_VERSION, model_fields
from gmtrace.readout.abstain import FIELD_NAMES, ParseGate
from gmtrace.readout.embedding import GMDensity
from gmtrace.readout.fused import REENCODINGS, Fusion
from gmtrace.realmodel.density import RealPhotoModel
from gmtrace.realmodel.fusion import Stacker, UnsureBand
from gmtrace.realmodel.selfdesc import BLOCKS, DESCRIPTION_NAMES, describe

runner = CliRunner()


def _images(n: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((size, size, 3)) * 255).astype(np.uint8) for _ in range(n)]


def _with_fusion(
    model_dir: Path,
    tmp_path: Path,
    width: float,
    min_size: int = 0,
    gate: ParseGate | None = None,
    final: Stacker | None = None,
    group_weight: float = 0.0,
    real_variation: str = "as given",
) -> Path:
    d = tmp_path / f"fused_{width}_{min_size}_{gate is not None}_{final is not None}_{group_weight}"
    d = d.with_name(d.name + ("" if real_variation == "as given" else "_varied"))
    shutil.copytree(model_dir, d)
    photos = np.stack(_images(30, 32))
    Fusion(
        RealPhotoModel.fit(describe(photos), seed=0, blocks=BLOCKS),
        Stacker(np.array([1.0, 0.5]), 0.0),
        Stacker(np.array([1.0]), 0.0),
        UnsureBand(width, tuple(REENCODINGS), disagreement=False),
        min_size=min_size,
        gate=gate,
        final=final,
        group_weight=group_weight,
        real_variation=real_variation,
    ).save(d)
    return d


def test_a_fused_model_answers_fused_p_and_unsure_with_the_reason(
    small_model_dir: Path, tmp_path: Path
):
    plain = Analyzer(small_model_dir)
    assert plain.fusion_ is None
    imgs, names = _images(3), ["a.png", "b.png", "c.png"]
    before = plain.analyze_arrays(imgs, names)
    assert all(r.unsure_reason is None and r.p_supervised is None for r in before)
    # a band as wide as any logit: every image is looked at again and stays in it
    wide = Analyzer(_with_fusion(small_model_dir, tmp_path, width=50.0))
    rows = wide.analyze_arrays(imgs, names)
    for r, b in zip(rows, before, strict=True):
        assert r.verdict == "unsure" and r.unsure_reason
        assert abs(r.p_supervised - b.p_generated) < 1e-5  # the network's own p kept
        assert 0 <= r.real_unlikeness <= 1
        z = np.log(r.p_supervised / (1 - r.p_supervised))
        u = np.clip(r.real_unlikeness, 0.002, 0.998)
        assert abs(r.p_generated - 1 / (1 + np.exp(-(z + 0.5 * np.log(u / (1 - u)))))) < 1e-4
    row = rows[0].to_row(model_fields(wide))
    assert list(row) == list(ROW_FIELDS) and row["schema_version"] == SCHEMA_VERSION == 5
    assert row["verdict"] == "unsure" and row["unsure_reason"]
    # no band: the fused p decides
    narrow = Analyzer(_with_fusion(small_model_dir, tmp_path, width=0.0))
    for r in narrow.analyze_arrays(imgs, names):
        assert r.verdict == ("generated" if r.p_generated >= 0.5 else "real")
        assert r.unsure_reason is None
    # a fused model is another model
    assert wide.model_id_ != plain.model_id_


def test_a_fused_model_reads_the_open_set_by_its_chosen_rule(small_model_dir: Path, tmp_path: Path):
    """With the density rule (`embedding.GMDensity`), a row's open-set score is the
    density's score of the image's mean embedding and "unknown GM" its threshold."""
    d = _with_fusion(small_model_dir, tmp_path, width=0.0)
    fusion = Fusion.load(d)
    imgs, names = _images(3), ["a.png", "b.png", "c.png"]
    gallery_rows = Analyzer(d).analyze_arrays(imgs, names)
    emb = np.stack([r.embedding for r in gallery_rows])
    # densities of two GMs: one of the first two images, one of the third; the
    # threshold between the first two images' scores
    density = GMDensity.fit(emb[[0, 1, 2, 2]], np.array([0, 0, 1, 1]), 2)
    fusion.open_rule, fusion.density = "density", density
    scores = density.score(emb)
    density.threshold = float(np.mean(np.sort(scores)[:2]))
    fusion.save(d)
    a = Analyzer(d)
    assert a.open_threshold_ == density.threshold
    rows = a.analyze_arrays(imgs, names)
    for r, s in zip(rows, scores, strict=True):
        assert np.isclose(r.open_set_score, s, rtol=1e-6)
        assert r.unknown_gm == bool(s > density.threshold)
    assert {r.unknown_gm for r in rows} == {True, False}


def test_the_band_reads_re_encodings_by_the_detection_path_and_batched(
    small_model_dir: Path, tmp_path: Path
):
    """The re-encoded crops go through the network for p(generated) alone
    (`inference.detect`, the same value `infer` gives with the rest of a row), and
    the re-encodings of one size together: each version's fused p is the one it gets
    scored on its own."""
    from gmtrace.readout.fused import reencoded
    from gmtrace.readout.inference import detect, infer

    a = Analyzer(_with_fusion(small_model_dir, tmp_path, width=50.0))
    crops = np.stack(_images(6, 32))
    for x in [crops, *reencoded(crops)]:  # 32 px and the 24-px resize
        want = infer(a.model_, a.readout_, x).p_generated
        assert np.allclose(detect(a.model_, a.readout_, x, batch=4), want, atol=1e-6)
        assert np.allclose(a.supervised_p(x), want, atol=1e-6)
    f = a.fusion_
    versions = f.reencoded_fused(crops, a.supervised_p)
    assert len(versions) == len(REENCODINGS)
    for q, again in zip(versions, reencoded(crops), strict=True):
        alone = f.fused(a.supervised_p(again), f.real.unlikeness(describe(again)))
        assert q.shape == (len(crops),) and np.allclose(q, alone, atol=1e-6)


def test_train_with_fuse_writes_a_fusion_the_analyzer_loads(tiny_zoo_dir: Path, tmp_path: Path):
    out = tmp_path / "m"
    args = ["train", "--zoo", str(tiny_zoo_dir), "--out", str(out), "--steps", "2"]
    args += ["--batch", "8", "--image-size", "32", "--per-gm", "8", "--fuse"]
    r = runner.invoke(app, args + ["--group-description"])
    assert r.exit_code == 0, r.output
    assert (out / "fusion.safetensors").is_file() and (out / "fusion.json").is_file()
    # the grouping chosen with the self-description's weight among its candidates
    rec = json.loads((out / "fusion.json").read_text())
    assert "0 d1" in rec["grouping_validation_ari"]
    assert Fusion.load(out).group_weight == float(rec["grouping_description_weight"])
    assert (out / "inner" / "gmtrace" / "model.safetensors").is_file()
    a = Analyzer(out)
    assert a.fusion_ is not None
    res = a.analyze_arrays(_images(2, 32), ["x.png", "y.png"])
    assert all(x.verdict in ("generated", "unsure", "real") for x in res)
    assert all(x.p_supervised is not None for x in res)


def _photo_folder(folder: Path, n: int, bad: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(_images(n, 40)):
        Image.fromarray(img).save(folder / f"p{i:02d}.png")
    for i in range(bad):
        (folder / f"bad{i}.png").write_bytes(b"not an image")
    return folder


def test_calibrate_refits_the_real_model_and_names_it_in_the_model_id(
    small_model_dir: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("GMTRACE_DATA", str(tmp_path / "data"))
    d = _with_fusion(small_model_dir, tmp_path, width=0.0)
    base = Analyzer(d)
    assert base.calibration_ is None
    # too few readable photographs: a clear message, nothing in force
    few = _photo_folder(tmp_path / "few", 5, bad=1)
    r = runner.invoke(app, ["calibrate", str(few), "--model", str(d)])
    said = " ".join(r.output.split())  # rich wraps lines
    assert r.exit_code != 0 and "at least 20" in said and "1 unreadable" in said
    assert Analyzer(d).calibration_ is None
    # a model without a fusion has nothing to calibrate
    r = runner.invoke(app, ["calibrate", str(few), "--model", str(small_model_dir)])
    assert r.exit_code != 0 and "no fusion" in " ".join(r.output.split())
    photos = _photo_folder(tmp_path / "mine", 24, bad=1)
    r = runner.invoke(app, ["calibrate", str(photos), "--model", str(d), "--name", "cam1"])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "24 photographs" in said and "1 unreadable" in said
    cal = Analyzer(d)
    assert cal.calibration_.name == "cam1" and cal.model_id_.startswith(
        base.model_id_ + "+cal-cam1-"
    )
    assert cal.weights_sha256_ != base.weights_sha256_
    assert cal.threshold_ >= 0.5
    # the user's photographs: at most 5 % called generated at the calibrated threshold
    res = cal.analyze_arrays(_images(24, 40), [f"p{i}" for i in range(24)])
    assert np.mean([x.p_generated >= cal.threshold_ for x in res]) <= 0.05 + 1e-9
    assert not np.allclose(cal.fusion_.real.reference, base.fusion_.real.reference)
    assert Analyzer(d, calibration="none").model_id_ == base.model_id_
    assert (
        tmp_path / "data" / "calibrations" / base.model_id_ / "cam1" / "calibration.json"
    ).is_file()


def test_a_calibration_varies_the_users_photographs_as_the_model_varied_its_own(
    small_model_dir: Path, tmp_path: Path, monkeypatch
):
    """A model whose real part was fitted on photographs varied by JPEG refits it on
    the user's photographs varied the same way: the calibrated fusion keeps the
    variation, and its model of real photographs is not the one the same
    photographs as given make."""
    monkeypatch.setenv("GMTRACE_DATA", str(tmp_path / "data"))
    photos = _photo_folder(tmp_path / "mine", 24, bad=0)
    refs = {}
    for variation in ("as given", "JPEG"):
        d = _with_fusion(small_model_dir, tmp_path, width=0.0, real_variation=variation)
        r = runner.invoke(app, ["calibrate", str(photos), "--model", str(d)])
        assert r.exit_code == 0, r.output
        cal = Analyzer(d)
        assert cal.calibration_ is not None and cal.fusion_.real_variation == variation
        refs[variation] = cal.fusion_.real.reference
    assert not np.allclose(refs["as given"], refs["JPEG"])


def test_group_uses_the_fused_models_density_grouping_for_its_own_rows(
    small_model_dir: Path, tmp_path: Path
):
    from gmtrace.cli.product import _grouping_settings

    d = _with_fusion(small_model_dir, tmp_path, width=0.0, min_size=5)
    a = Analyzer(d, calibration="none")
    rows = [r.to_row(model_fields(a)) for r in a.analyze_arrays(_images(12), list("abcdefghijkl"))]
    assert _grouping_settings(d, rows) == (5, 0.0)
    assert _grouping_settings(small_model_dir, rows) == (0, 0.0)  # no fusion there
    other = [dict(r, model_id="gmtrace-0.0.0-000000000000") for r in rows]
    assert _grouping_settings(d, other) == (0, 0.0)  # not its rows: the silhouette cut
    # the same model under a calibration of the user's: its embedding, its grouping;
    # the server asks the same function
    calibrated = [dict(r, model_id=r["model_id"] + "+cal-cam1-0123abcd") for r in rows]
    assert _grouping_settings(d, calibrated) == (5, 0.0)
    assert own_rows(calibrated, a.model_id_)
    assert not own_rows(other, a.model_id_ + "+cal-cam1-0123abcd")
    assert not own_rows([dict(r, ok=False) for r in rows], a.model_id_)
    g = group_rows(rows, generated_only=False, min_size=5)
    assert g["grouping"] == "density, groups of 5+" and g["grouped"] == 12
    assert sum(x["size"] for x in g["groups"]) == 12


def test_a_model_that_groups_on_the_self_description_too_reads_it_from_its_rows(
    small_model_dir: Path, tmp_path: Path
):
    from gmtrace.cli.product import _grouping_settings
    from gmtrace.grouping.cluster import grouping_features
    from gmtrace.product.groups import group_numbers

    d = _with_fusion(small_model_dir, tmp_path, width=0.0, group_weight=1.0)
    a = Analyzer(d, calibration="none")
    res = a.analyze_arrays(_images(12), [f"{i}.png" for i in range(12)])
    rows = [r.to_row(model_fields(a)) for r in res]
    # each row carries the image's self-description (the mean of its crops'), rounded
    for r, x in zip(rows, res, strict=True):
        assert len(r["description"]) == len(DESCRIPTION_NAMES)
        np.testing.assert_allclose(r["description"], x.description, rtol=1e-4, atol=1e-9)
    assert Analyzer(small_model_dir).analyze_arrays(_images(1), ["a.png"])[0].description is None
    assert _grouping_settings(d, rows) == (0, 1.0)
    g = group_rows(rows, generated_only=False, min_size=0, weight=1.0)
    assert g["grouping"] == "silhouette cut on the embedding and the self-description (weight 1)"
    # the groups are those of the embedding and the description together, as the
    # analyzer's own grouping of the same images
    emb = np.array([r["embedding"] for r in rows])
    desc = np.array([r["description"] for r in rows])
    numbers = group_numbers(emb, 0, 1.0, desc)
    assert not np.array_equal(grouping_features(emb, desc, 1.0), emb)
    assert sorted(x["size"] for x in g["groups"]) == sorted(np.bincount(numbers)[1:].tolist())
    a.group(res, generated_only=False)
    assert [r.group for r in res] == numbers.tolist()
    # rows of an older schema (no description): the embedding alone
    old = [{k: v for k, v in r.items() if k != "description"} for r in rows]
    assert group_rows(old, generated_only=False, weight=1.0)["grouping"] == "silhouette cut"


def test_a_model_whose_parsing_abstains_answers_unknown_where_its_gate_is_shut(
    small_model_dir: Path, tmp_path: Path
):
    # the gate answers n_params, upsampling and loss l1 for every image, nothing else
    open_ = {"n_params", "upsampling", "loss l1"}
    threshold = np.array([-np.inf if n in open_ else np.inf for n in FIELD_NAMES])
    gate = ParseGate(threshold, (threshold < np.inf).astype(float), np.full(25, 0.01))
    d = _with_fusion(small_model_dir, tmp_path, width=0.0, gate=gate)
    a = Analyzer(d)
    imgs, names = _images(4), [f"{i}.png" for i in range(4)]
    res = a.analyze_arrays(imgs, names)
    plain = Analyzer(small_model_dir).analyze_arrays(imgs, names)
    for r, b in zip(res, plain, strict=True):
        assert sorted(r.parse_unknown) == sorted(set(FIELD_NAMES) - open_)
        assert r.hyperparameters["n_layers"] == "unknown" and r.hyperparameters["norm_type"] == (
            "unknown"
        )
        assert r.hyperparameters["n_params"] == b.hyperparameters["n_params"]
        assert r.hyperparameters["upsampling"] == b.hyperparameters["upsampling"]
        assert set(r.losses) <= {"l1"} and r.losses == [t for t in b.losses if t == "l1"]
        assert r.loss_probabilities == b.loss_probabilities  # the numbers stay
        assert b.parse_unknown is None  # a model without a gate answers every field
    rows = [r.to_row(model_fields(a)) | {"verdict": "generated"} for r in res]
    g = group_rows(rows)
    assert g["schema_version"] == 2
    for grp in g["groups"]:
        assert grp["hyperparameters"]["n_layers"]["value"] == "unknown"
        assert grp["hyperparameters"]["n_params"]["value"] != "unknown"
        assert grp["hyperparameters"]["norm_type"]["value"] == "unknown"
        assert set(grp["losses"]) <= {"l1"} and "loss hinge" in grp["parse_unknown"]
    page = render_report(rows, g, a)
    assert "answered for most of them: n_params, upsampling, loss l1;" in page
    assert "never (the model abstains" in page and "parsing answers</td><td>n_params" in page
    # each answering field with the p its gate measured on codebases never seen
    assert "n_params (p 0.01), upsampling (p 0.01), loss l1 (p 0.01); p: the field" in page
    out = runner.invoke(app, ["analyze", "--model", str(d), *_saved(imgs[:2], tmp_path)])
    assert out.exit_code == 0, out.output
    assert "unknown" in out.output


def _saved(imgs: list[np.ndarray], folder: Path) -> list[str]:
    from PIL import Image

    paths = []
    for i, a in enumerate(imgs):
        p = folder / f"img{i}.png"
        Image.fromarray(a).save(p)
        paths.append(str(p))
    return paths


def test_a_model_with_an_adopted_map_reads_its_verdict_through_it(
    small_model_dir: Path, tmp_path: Path
):
    """`gmtrace evaluate adopt`'s map (`Fusion.final`): the p the rows carry is the
    fused p through it, the band still judges the p before it, and the report's
    model card says where the map came from."""
    imgs, names = _images(3), ["a.png", "b.png", "c.png"]
    plain = Analyzer(_with_fusion(small_model_dir, tmp_path, width=0.0)).analyze_arrays(imgs, names)
    final = Stacker(np.array([0.5]), -1.0)
    d = _with_fusion(small_model_dir, tmp_path, width=0.0, final=final)
    (d / "adopted.json").write_text(
        json.dumps({"images": 900, "run": "runs/x", "run_command": "gmtrace evaluate --out runs/x"})
    )
    a = Analyzer(d)
    for r, b in zip(a.analyze_arrays(imgs, names), plain, strict=True):
        z = np.log(b.p_generated / (1 - b.p_generated))
        assert abs(r.p_generated - 1 / (1 + np.exp(-(0.5 * z - 1.0)))) < 1e-5
        assert r.verdict == ("generated" if r.p_generated >= 0.5 else "real")
    page = render_report([], group_rows([]), a)
    assert "p recalibrated</td><td>on 900 out-of-fold images of the run runs/x" in page
