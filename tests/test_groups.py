"""`gmtrace group`: scalable grouping, and per-group parses aggregated from scan rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gmtrace.cli.main import app
from gmtrace.core.metrics import grouping_scores
from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_TYPES, parse_widths
from gmtrace.grouping.cluster import group, group_scalable
from gmtrace.product.groups import group_rows
from gmtrace.product.rows import SCHEMA_VERSION
from gmtrace.readout.embedding import DENSITY_ACCEPT, GMDensity, gm_gallery, open_set_score

runner = CliRunner()


def _blobs(sizes, dim=16, spread=0.25, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), dim))
    truth = np.repeat(np.arange(len(sizes)), sizes)
    return centers[truth] + rng.normal(size=(len(truth), dim)) * spread, truth


def test_scalable_is_exact_on_small_cases_and_finds_small_gms_in_large_ones():
    x, truth = _blobs([40, 25, 60])
    assert np.array_equal(group_scalable(x), group(x))
    # 10 GMs of 300 images and one of 8: a sample of 400 rarely holds the small one
    x, truth = _blobs([300] * 10 + [8], seed=1)
    labels = group_scalable(x, exact_max=400)
    g = grouping_scores(labels, truth)
    assert g["ari"] > 0.98 and 11 <= g["clusters"] <= 13, g
    # the small one is found, as a group of its own (the finer cut on the sample
    # can leave one of its images with a neighbour)
    small = labels[truth == 10]
    own = np.bincount(small).argmax()
    assert np.sum(small == own) >= 7 and not np.isin(own, labels[truth != 10])


def _row(path: str, emb, gm: str, n_params: float, up: str, unknown=False, p=0.9) -> dict:
    hp = {f.name: 1.0 for f in CONTINUOUS} | {"n_params": n_params}
    for f in DISCRETE:
        hp[f.name], hp[f.name + "_confidence"] = f.classes[0], 0.8
    hp["upsampling"] = up
    return {
        "schema_version": SCHEMA_VERSION,
        "path": path,
        "ok": True,
        "verdict": "generated" if p >= 0.5 else "real",
        "p_generated": p,
        "embedding": list(emb),
        "hyperparameters": hp,
        "loss_probabilities": {t: (0.9 if t == LOSS_TYPES[0] else 0.1) for t in LOSS_TYPES},
        "top_gms": [{"name": gm, "probability": 0.7}],
        "unknown_gm": unknown,
        "model_id": "m",
    }


def test_group_rows_aggregates_each_group():
    up = next(f for f in DISCRETE if f.name == "upsampling").classes
    x, truth = _blobs([12, 9])
    rows = [
        _row(f"a{i}", x[i], "dcgan_000", 1e6 * (i + 1), up[0] if i < 9 else up[1])
        for i in range(12)
    ]
    rows += [_row(f"b{i}", x[12 + i], "vae_003", 5e5, up[1], unknown=i < 6) for i in range(9)]
    rows += [_row("real", x[0], "vae_003", 1.0, up[0], p=0.1)]
    rows += [{"path": "broken.png", "ok": False, "error": "broken.png: not an image"}]
    g = group_rows(rows)
    assert g["grouped"] == 21 and g["not_grouped"] == {"failed": 1, "real": 1}
    a, b = g["groups"]
    assert a["size"] == 12 and sorted(a["members"]) == sorted(f"a{i}" for i in range(12))
    assert a["hyperparameters"]["n_params"]["value"] == pytest.approx(6.5e6)
    assert a["hyperparameters"]["n_params"]["q25"] == pytest.approx(3.75e6)
    assert a["hyperparameters"]["upsampling"] == {
        "value": up[0],
        "agreement": 0.75,
        "mean_confidence": pytest.approx(0.8),
    }
    near = {"name": "dcgan_000", "share": 1.0, "mean_probability": pytest.approx(0.7)}
    assert a["nearest_known_gm"] == near
    assert a["losses"] == [LOSS_TYPES[0]]
    assert b["unknown_share"] == pytest.approx(6 / 9) and b["nearest_known_gm"] is None


def test_group_parse_is_the_probe_answer_for_the_mean_input():
    """Rows carrying the probe's linear outputs: the group's discrete fields and
    losses are read from their mean, not from the images' votes. Eight images vote
    for the first up-sampling class, each by a hair; four are sure of the second."""
    j = [f.name for f in DISCRETE].index("upsampling")
    up = DISCRETE[j].classes
    at = len(CONTINUOUS) + sum(f.n_classes for f in DISCRETE[:j])
    x, _ = _blobs([12], spread=0.01)
    rows = []
    for i in range(12):
        lin = np.zeros(sum(parse_widths()))
        lin[at : at + 2] = [0.1, 0.0] if i < 8 else [0.0, 3.0]
        lin[-len(LOSS_TYPES) :] = -3.0
        lin[-len(LOSS_TYPES)] = -1.0 if i < 8 else 4.0  # the first loss type: mean 0.67
        r = _row(f"a{i}", x[i], "dcgan_000", 1e6, up[0] if i < 8 else up[1])
        rows.append(r | {"parse_linear": lin.tolist()})
    (g,) = group_rows(rows)["groups"]
    assert g["hyperparameters"]["upsampling"]["value"] == up[1]
    assert g["hyperparameters"]["upsampling"]["agreement"] == pytest.approx(4 / 12)
    assert g["loss_probabilities"][LOSS_TYPES[0]] == pytest.approx(1 / (1 + np.exp(-2 / 3)))
    assert g["losses"] == [LOSS_TYPES[0]]
    # one row without them (an older scan): votes and mean probabilities again
    rows[0] = rows[0] | {"parse_linear": None}
    (g,) = group_rows(rows)["groups"]
    assert g["hyperparameters"]["upsampling"]["value"] == up[0]
    assert g["loss_probabilities"][LOSS_TYPES[0]] == pytest.approx(0.9)


def test_cli_group_on_a_scan(small_model_dir: Path, tiny_zoo_dir: Path, tmp_path: Path):
    scan_out = tmp_path / "s.jsonl"
    fakes = sorted((tiny_zoo_dir / "fake").glob("*"))[:4]
    r = runner.invoke(
        app, ["scan", *map(str, fakes), "--out", str(scan_out), "--model", str(small_model_dir)]
    )
    assert r.exit_code == 0, r.output
    out = tmp_path / "groups.json"
    r = runner.invoke(app, ["group", str(scan_out), "--out", str(out), "--all"])
    assert r.exit_code == 0, r.output
    g = json.loads(out.read_text())
    n = sum(1 for _ in scan_out.read_text().splitlines())
    assert g["grouped"] == n and sum(x["size"] for x in g["groups"]) == n
    members = [m for x in g["groups"] for m in x["members"]]
    assert len(members) == len(set(members)) == n
    assert f"{n} of {n} images in {len(g['groups'])} group(s)" in r.output
    r = runner.invoke(app, ["group", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2 and "missing.jsonl" in r.output


def test_gallery_and_open_set_score():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3]
    emb = np.repeat(centres, 5, axis=0) + 0.05 * rng.normal(size=(15, 4))
    gm = np.repeat([0, 2, 3], 5)  # GM 1 has no images
    g = gm_gallery(emb, gm, 4)
    assert np.allclose(np.linalg.norm(g[[0, 2, 3]], axis=1), 1) and not g[1].any()
    assert np.allclose(g[[0, 2, 3]], centres, atol=0.05)
    attr = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.4, 0.3, 0.3]])
    near, far = centres[0], np.array([0, 0, 0, 1.0])  # far: only the empty GM's zero row
    s = open_set_score(attr, np.stack([near, far, near]), g)
    # geometric mean of 1 - max probability and (1 - nearest cosine) / 2
    nearest = (g[[0, 2, 3]] @ far).max()  # about 0 (the zero row is never nearest)
    assert np.allclose(s[1], np.sqrt(0.1 * (1 - nearest) / 2)) and s[0] < 0.05
    assert s[0] < s[1] and s[0] < s[2]  # the classifier unsure, or the embedding far
    assert np.allclose(open_set_score(attr, np.stack([near, far, near]), None), [0.1, 0.1, 0.6])
    assert np.allclose(
        open_set_score(attr, np.stack([near, far, near]), np.zeros((4, 4))), [0.1, 0.1, 0.6]
    )


def test_group_takes_the_finest_cut_near_the_best_silhouette(monkeypatch):
    import gmtrace.grouping.cluster as grouping

    rng = np.random.default_rng(1)
    # 3 far-apart pairs of blobs
    sub = np.zeros((6, 8))
    sub[np.arange(6), 3 + np.arange(6) // 2] = np.tile([0.7, -0.7], 3)
    centres = np.repeat(np.eye(8)[:3] * 4, 2, axis=0) + sub
    emb = np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(60, 8))
    monkeypatch.setattr(grouping, "SILHOUETTE_TOLERANCE", 1.0)
    coarse = len(np.unique(group(emb)))
    monkeypatch.setattr(grouping, "SILHOUETTE_TOLERANCE", 0.0)
    assert len(np.unique(group(emb))) == 30  # every cut qualifies: the finest, N / 2
    monkeypatch.setattr(grouping, "SILHOUETTE_TOLERANCE", 0.95)
    fine = len(np.unique(group(emb)))
    assert coarse == fine == 6  # six blobs: the tolerance does not split them further


def test_groups_are_numbered_by_size_then_first_appearance():
    from gmtrace.grouping.cluster import number_groups

    labels = np.array([5, 5, 2, 7, 7, 7, 2, 9])
    assert number_groups(labels).tolist() == [2, 2, 3, 1, 1, 1, 3, 4]


def _arc(angle: float, spread: float, n: int) -> np.ndarray:
    """n unit vectors in the plane at `angle` +- `spread` (radians), evenly."""
    t = angle + np.linspace(-spread, spread, n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def test_gm_density_has_the_known_answer_and_reads_each_gms_own_spread():
    # a GM of two images at angles +-a: its centre (cos a, 0), its variance per
    # dimension sin(a)^2 / 2; the score of (1, 0) is (1 - cos a)^2 / (2 v) + log v (D = 2)
    a = 0.3
    d = GMDensity.fit(_arc(0.0, a, 2), np.zeros(2, int), 1)
    v = np.sin(a) ** 2 / 2
    assert np.allclose(d.center[0], [np.cos(a), 0]) and np.isclose(d.var[0], v)
    assert np.isclose(
        d.score(np.array([[2.0, 0.0]]))[0], (1 - np.cos(a)) ** 2 / (2 * v) + np.log(v)
    )
    # a tight GM at 0 and a wide one at 90 degrees (GM 1 has no images): an image
    # 0.4 rad from either centre is as far from both by the gallery's cosine, but the
    # wide GM accepts it and the tight one does not
    emb = np.concatenate([_arc(0.0, 0.05, 20), _arc(np.pi / 2, 0.6, 20)])
    gm = np.repeat([0, 2], 20)
    held = np.concatenate([_arc(0.0, 0.04, 7), _arc(np.pi / 2, 0.5, 7)])
    d = GMDensity.fit(emb, gm, 3, held_out=held)
    assert d.var[1] == 0 and d.var[2] > 10 * d.var[0]
    q = np.concatenate([_arc(0.4, 0, 1), _arc(np.pi / 2 + 0.4, 0, 1)])
    g = gm_gallery(emb, gm, 3)
    assert np.isclose((q[0] @ g.T).max(), (q[1] @ g.T).max(), atol=0.02)
    s = d.score(q)
    assert s[1] < d.threshold < s[0]  # unknown near the tight GM, known in the wide one
    assert np.isclose(d.threshold, np.quantile(d.score(held), DENSITY_ACCEPT))
    assert np.allclose(d.score(3 * q), s)  # the length of an embedding is not read
    # a GM whose images coincide still has a spread (no infinite score)
    same = GMDensity.fit(np.ones((4, 2)), np.zeros(4, int), 1)
    assert same.var[0] > 0 and np.isfinite(same.score(q)).all()
    again = GMDensity.from_arrays(d.to_arrays("density_"), "density_")
    assert np.allclose(again.score(q), s) and again.threshold == d.threshold
