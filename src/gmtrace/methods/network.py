"""A network trained by gmtrace's loop and answering through its fitted readout:
gmtrace's own model, or RED's architecture (DnCNN-17 FEN + RED's parsing network and
losses) behind the same readout."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmtrace.core.precision import check_precision, precision_scope
from gmtrace.methods.base import Method, PredictionCache
from gmtrace.nets.config import ModelConfig
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.inference import Inference, detect, infer
from gmtrace.readout.readout import Readout
from gmtrace.readout.saved import load_model, model_digest
from gmtrace.train.config import TrainConfig
from gmtrace.train.loop import train


class NetMethod(Method):
    """A `GMTraceModel` (ours or RED's architecture) trained with `train.train`."""

    def __init__(
        self, name: str, model_cfg: ModelConfig, train_cfg: TrainConfig, precision: str = "fp32"
    ):
        self.name = name
        self.model_cfg = model_cfg
        self.train_cfg = train_cfg
        self.precision = check_precision(precision)  # of `predict` and `detect`

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        result = train(
            ds, out_dir / self.name, self.train_cfg, self.model_cfg, console=console, bank=bank
        )
        self.load(out_dir / self.name)
        return {
            "train_seconds": result["seconds"],
            "steps": result["steps"],
            "probe_seconds": result["finish_seconds"],
        }

    def load(self, folder: Path) -> None:
        """The network and readout saved in `folder`, and the cache of their answers
        beside them (another precision's answers in a folder of their own)."""
        saved = load_model(folder)
        self.model_: GMTraceModel = saved.model
        self.readout_: Readout = saved.readout
        digest = model_digest(folder)
        if self.precision == "fp32":
            self.cache_ = PredictionCache(folder / "predictions", digest)
        else:
            suffix = f"+{self.precision}"
            self.cache_ = PredictionCache(folder / f"predictions{suffix}", digest + suffix)

    def predict(self, images: np.ndarray) -> Inference:
        def compute() -> Inference:
            with precision_scope(self.precision, self._device()):
                return infer(self.model_, self.readout_, images)

        return self.cache_.get(images, compute)

    def _device(self) -> str:
        return next(self.model_.parameters()).device.type

    def detect(self, images: np.ndarray) -> np.ndarray:
        """p(generated) [N] alone (`inference.detect`), not cached: images read again
        only for it (a fused model's re-encodings)."""
        with precision_scope(self.precision, self._device()):
            return detect(self.model_, self.readout_, images)

    def fingerprints(self, images: np.ndarray) -> np.ndarray:
        return infer(self.model_, self.readout_, images, fingerprints=True).fingerprint
