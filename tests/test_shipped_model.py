"""The model shipped inside the package: present, small, loadable by default, and
sane on the full-size photographs that come with scikit-image, scikit-learn and
matplotlib (the model trained on 64 px crops of them; here it reads them whole)."""

from __future__ import annotations

import json

import numpy as np

from gmtrace.analyze import Analyzer, default_model_dir
from gmtrace.zoo.real import load_embedded


def test_default_model_is_shipped_and_loads():
    d = default_model_dir()
    assert (d / "model.safetensors").is_file() and (d / "config.json").is_file()
    assert (d / "model.safetensors").stat().st_size < 8_000_000  # a few MB
    meta = json.loads((d / "config.json").read_text())
    assert meta["train"]["steps"] == meta["steps_done"] >= 1000
    a = Analyzer()
    assert len(a.gm_names_) == meta["model"]["n_gms"] >= 100 and a.image_size_ == 64
    assert 0 < float(a.model_.open_threshold) < 1
    # the open-set score also reads the distance to the nearest training GM
    assert a.gallery_ is not None and a.gallery_.shape[0] == meta["model"]["n_gms"]
    # parsing is read by the GM-level probe on the pixel statistics, the counts by
    # forests averaged with the linear models
    assert a.model_.probe_ready and int(a.model_.probe_forest_depth) > 0
    views = meta["calibration"]["probe_view"]
    assert [views[k] for k in list(views)[:9]] == ["forest"] * 9
    assert set(list(views.values())[9:]) == {"pixels"}


def test_default_model_calls_real_photographs_real():
    a = Analyzer()
    photos = load_embedded()
    p = np.array([a.analyze_array(ph.pixels, ph.name).p_generated for ph in photos])
    assert len(photos) >= 12
    assert np.mean(p < 0.5) >= 0.8, dict(zip([ph.name for ph in photos], p.round(2), strict=True))
