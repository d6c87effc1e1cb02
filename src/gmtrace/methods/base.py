"""The methods the evaluation compares, behind one interface (PhotoHolmes style):
`fit` on the training GMs of a fold, `predict` uint8 images -> `Inference`.

* `NetMethod("gmtrace")`: our model (nets/model.py), trained with `gmtrace train`.
* `NetMethod("red")`: RED's architecture (DnCNN-17 FEN + RED's parsing network and
  losses) behind the same heads, trained by the same loop.
* `SpectralMethod`: the radially averaged log spectrum of the image residual,
  standardized, with logistic regression for detection, attribution and every
  discrete field and loss type, ridge regression for the continuous ones, and the
  same discriminant grouping embedding as the networks (`grouping`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
from rich.console import Console

from gmtrace.core.files import atomic_path
from gmtrace.core.schema import DISCRETE, LOSS_TYPES, Targets
from gmtrace.data.dataset import GMDataset
from gmtrace.data.loader import ImageBank
from gmtrace.methods.spectral_features import spectral_features
from gmtrace.nets.config import ModelConfig
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.embedding import discriminant_projection, gm_gallery, open_set_score
from gmtrace.readout.fit import fit_logistic
from gmtrace.readout.inference import Inference, infer
from gmtrace.readout.readout import Readout
from gmtrace.readout.saved import load_model, model_digest
from gmtrace.train.loop import TrainConfig, train

GROUP_DIMS = ModelConfig.group_dims  # the same grouping embedding size for every method


class Method:
    """Base class: `name`, `fit(...) -> info dict`, `predict(images) -> Inference`;
    `fingerprints(images)` returns [N, H, W, 3] or None for methods without one."""

    name = "method"

    def fit(
        self,
        ds: GMDataset,
        bank: ImageBank,
        targets: Targets,
        out_dir: Path,
        console: Console,
    ) -> dict:
        raise NotImplementedError

    def predict(self, images: np.ndarray) -> Inference:
        raise NotImplementedError

    def fingerprints(self, images: np.ndarray) -> np.ndarray | None:
        return None


class NetMethod(Method):
    """A `GMTraceModel` (ours or RED's architecture) trained with `train.train`."""

    def __init__(self, name: str, model_cfg: ModelConfig, train_cfg: TrainConfig):
        self.name = name
        self.model_cfg = model_cfg
        self.train_cfg = train_cfg

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        result = train(
            ds, out_dir / self.name, self.train_cfg, self.model_cfg, console=console, bank=bank
        )
        saved = load_model(out_dir / self.name)
        self.model_: GMTraceModel = saved.model
        self.readout_: Readout = saved.readout
        self.cache_ = PredictionCache(
            out_dir / self.name / "predictions", model_digest(out_dir / self.name)
        )
        return {
            "train_seconds": result["seconds"],
            "steps": result["steps"],
            "probe_seconds": result["finish_seconds"],
        }

    def predict(self, images: np.ndarray) -> Inference:
        return self.cache_.get(images, lambda: infer(self.model_, self.readout_, images))

    def fingerprints(self, images: np.ndarray) -> np.ndarray:
        return infer(self.model_, self.readout_, images, fingerprints=True).fingerprint


class PredictionCache:
    """A fitted network's answers on image sets, kept as .npz files beside its
    weights: a rerun of the evaluation (a resumed fold, a change of scoring) reads
    them instead of running the network again. A file is keyed by the sha256 of
    the images and holds the weights' sha256; answers of other weights are not
    used (and are overwritten). Read without pickle."""

    def __init__(self, folder: Path, weights_sha256: str):
        self.folder, self.weights = Path(folder), weights_sha256

    def get(self, images: np.ndarray, compute) -> Inference:
        h = hashlib.sha256(str((images.shape, images.dtype.str)).encode())
        h.update(np.ascontiguousarray(images).data)
        path = self.folder / f"{h.hexdigest()[:24]}.npz"
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    if str(z["weights_sha256"]) == self.weights:
                        return _inference_from(z)
            except (OSError, ValueError, KeyError):
                pass  # unreadable or of an older layout: computed again
        inf = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        arrays = {"weights_sha256": np.array(self.weights)}
        for f in fields(Inference):
            v = getattr(inf, f.name)
            if f.name == "discrete_prob":
                arrays |= {f"discrete_prob_{j}": d for j, d in enumerate(v)}
            elif v is not None:
                arrays[f.name] = v
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return inf


def _inference_from(z) -> Inference:
    n_disc = sum(1 for k in z.files if k.startswith("discrete_prob_"))
    plain = {f.name for f in fields(Inference)} - {"discrete_prob"}
    return Inference(
        discrete_prob=[z[f"discrete_prob_{j}"] for j in range(n_disc)],
        **{k: z[k] for k in plain if k in z.files},
    )


def _logreg(x: np.ndarray, y: np.ndarray, balanced: bool = True):
    if len(np.unique(y)) < 2:
        return int(y[0])  # a constant: the one class seen in training
    return fit_logistic(x, y, C=1.0, max_iter=500, balanced=balanced)


def _proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(x), n_classes))
    if isinstance(model, int):
        out[:, model] = 1.0
        return out
    out[:, model.classes_.astype(int)] = model.predict_proba(x)
    return out


class SpectralMethod(Method):
    name = "spectral"

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        from sklearn.linear_model import Ridge

        t0 = time.perf_counter()
        xf = [spectral_features(a) for a in bank.fake]
        gm = np.concatenate([[i] * len(f) for i, f in enumerate(xf)])
        xf = np.concatenate(xf)
        xr = spectral_features(bank.real)
        allx = np.concatenate([xf, xr])
        self.mu_, self.sd_ = allx.mean(0), allx.std(0) + 1e-9
        zf, zr = (xf - self.mu_) / self.sd_, (xr - self.mu_) / self.sd_
        self.n_gms_ = len(bank.fake)
        self.group_mean_, self.group_w_ = discriminant_projection(zf, gm, GROUP_DIMS)
        self.detect_ = _logreg(np.concatenate([zf, zr]), np.r_[np.ones(len(zf)), np.zeros(len(zr))])
        self.attribute_ = _logreg(zf, gm, balanced=False)
        self.gallery_ = gm_gallery((zf - self.group_mean_) @ self.group_w_, gm, self.n_gms_)
        self.continuous_ = Ridge(alpha=1.0).fit(zf, targets.continuous[gm])
        self.discrete_ = [_logreg(zf, targets.discrete[gm, j]) for j in range(len(DISCRETE))]
        self.losses_ = [_logreg(zf, targets.losses[gm, j]) for j in range(len(LOSS_TYPES))]
        seconds = time.perf_counter() - t0
        (out_dir / self.name).mkdir(parents=True, exist_ok=True)
        (out_dir / self.name / "fit.json").write_text(json.dumps({"train_seconds": seconds}))
        return {"train_seconds": seconds, "steps": 0, "probe_seconds": 0.0}

    def predict(self, images: np.ndarray) -> Inference:
        z = (spectral_features(images, len(self.mu_)) - self.mu_) / self.sd_
        attr = _proba(self.attribute_, z, self.n_gms_)
        g = (z - self.group_mean_) @ self.group_w_
        return Inference(
            p_generated=_proba(self.detect_, z, 2)[:, 1],
            attribution=attr,
            open_score=open_set_score(attr, g, self.gallery_),
            embedding=g / np.linalg.norm(g, axis=1, keepdims=True).clip(1e-9),
            continuous=np.clip(self.continuous_.predict(z), 0, 1),
            discrete_prob=[
                _proba(m, z, f.n_classes) for m, f in zip(self.discrete_, DISCRETE, strict=True)
            ],
            loss_prob=np.stack([_proba(m, z, 2)[:, 1] for m in self.losses_], axis=1),
        )
