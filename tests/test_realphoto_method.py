"""The model of real photographs as an evaluation method of its own (the ablation):
fitted on the fold's real photographs, it detects and groups but does not parse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gmtrace.data.dataset import GMDataset
from gmtrace.evaluation.protocol import evaluate


def test_real_photo_model_is_scored_without_parsing(tiny_zoo_dir: Path, tmp_path: Path, tiny_eval):
    zoo = GMDataset.from_zoo(tiny_zoo_dir)
    cfg = tiny_eval(methods=("spectral", "realphoto"), conditions=("jpeg75",))
    evaluate(zoo, tmp_path / "eval", cfg, command="gmtrace evaluate --methods spectral,realphoto")
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    r = saved["methods"]["realphoto"]
    assert r["parsing"] is None and saved["methods"]["spectral"]["parsing"] is not None
    for fold_auc in r["detection"]["auc"]["folds"]:
        assert 0 <= fold_auc <= 1
    assert 0 <= r["grouping"]["ari"]["mean"] <= 1
    fit = json.loads((tmp_path / "eval" / "fold0" / "realphoto" / "fit.json").read_text())
    assert fit["components"] >= 1
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| real-photo model alone |" in report
    parsing = report[report.index("## Parsing") :]
    parsing = parsing[: parsing.index("\n## ", 1)]
    assert "real-photo model alone" not in parsing.split("###")[0]
    targets = report[report.index("## Targets") :].split("\n## ")[0]
    row = next(line for line in targets.splitlines() if line.startswith("| parsing beats"))
    assert row.rstrip(" |").endswith("n/a")
    assert np.isfinite(r["open_set_auroc"]["mean"])


def test_the_cross_scale_part_is_an_option_of_the_real_photo_models(
    tiny_zoo_dir: Path, tmp_path: Path, tiny_eval
):
    """Off by default (the codebase protocol measured it worse pooled): the models of
    real photographs read the description's first two parts (184 values); with
    `cross_scale` (`--cross-scale` of evaluate and train, through the evaluation's
    training settings) the cross-scale prediction too, as a third part (193)."""
    from rich.console import Console

    from gmtrace.data.loader import load_bank
    from gmtrace.evaluation.protocol import make_methods

    ds = GMDataset.from_zoo(tiny_zoo_dir)
    bank = load_bank(ds, per_gm=4, size=32)
    for flag, width, parts in ((False, 184, 2), (True, 193, 3)):
        (method,) = make_methods(tiny_eval(methods=("realphoto",), cross_scale=flag))
        method.fit(ds, bank, None, tmp_path / str(flag), Console(quiet=True))
        assert method.model_.width == width and len(method.model_.parts) == parts
        p = method.predict(bank.real[:5]).p_generated
        assert p.shape == (5,) and ((p >= 0) & (p <= 1)).all()
