"""Convert a model folder saved before the readout was split from the network: its
model.safetensors held the network and, as buffers, everything fitted after training.

    python scripts/convert_model.py MODEL_DIR

writes the network alone to MODEL_DIR/model.safetensors and the fitted state to
MODEL_DIR/readout.safetensors (`gmtrace.readout.readout.Readout`), each atomically.
The answers stay the same (the shipped model was converted by this script and checked
against answers recorded before: tests/test_shipped_model.py). The probe's weights on
the head features, always zero, and the learned grouping threshold, read by nothing,
are dropped. A folder already converted is left as it is.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gmtrace.core.files import atomic_path
from gmtrace.nets.config import ModelConfig
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.forest import FOREST_ARRAYS
from gmtrace.readout.pixel_stats import N_STATS
from gmtrace.readout.readout import READOUT, Readout
from gmtrace.readout.saved import CONFIG, WEIGHTS


def convert(model_dir: Path) -> bool:
    """Split `model_dir`'s model.safetensors; False when there is nothing to split."""
    if (model_dir / READOUT).is_file():
        return False
    cfg = json.loads((model_dir / CONFIG).read_text())
    model = GMTraceModel(ModelConfig.from_dict(cfg["model"]))
    old = load_file(str(model_dir / WEIGHTS))
    network = {k: old[k] for k in model.state_dict()}
    r = Readout.for_model(model)
    r.attribute_weight_, r.attribute_bias_ = old["attribute.weight"], old["attribute.bias"]
    r.detect_weight_, r.detect_bias_ = old["detect.weight"][0], old["detect.bias"][0]
    if r.spectrum_expert:
        r.detect_spectrum_ = old["detect_spectrum"]
    r.platt_, r.open_threshold_ = old["platt"], old["open_threshold"]
    r.feature_mean_, r.feature_std_ = old["feature_mean"], old["feature_std"]
    r.group_mean_, r.group_projection_ = old["group_mean"], old["group_projection"]
    if r.open_gallery:
        r.gallery_ = old["gallery"]
    if r.parse_probe and float(old["probe_fitted"]) > 0:
        head = old["probe_weight"][:-N_STATS]
        if bool(head.abs().max() > 0):
            raise ValueError(f"{model_dir}: its parsing probe reads the head features")
        r.probe_mean_, r.probe_std_ = old["probe_mean"][-N_STATS:], old["probe_std"][-N_STATS:]
        r.probe_weight_, r.probe_bias_ = old["probe_weight"][-N_STATS:], old["probe_bias"]
        if r.probe_trees and int(old["probe_forest_depth"]) > 0:
            for name in FOREST_ARRAYS:
                setattr(r, f"forest_{name}_", old[f"probe_forest_{name}"])
            r.forest_depth_ = old["probe_forest_depth"]
            r.forest_share_ = old["probe_forest_share"]
    r.save(model_dir)
    with atomic_path(model_dir / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in network.items()}, str(tmp))
    return True


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    done = convert(args.model_dir)
    print(f"{args.model_dir}: {'converted' if done else 'already has its readout apart'}")
