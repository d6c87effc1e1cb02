"""The model of real photographs on its own (`realmodel`): the evaluation's
ablation of the part that needs no generated image.

Detection is the unlikeness of an image's self-description under a density fitted
on the fold's training photographs only (no generated image). Grouping uses the
self-description itself (standardized, projected on the real model's principal
directions, unit length): it too is learned from photographs only. The open-set
score and attribution need the training GMs: the nearest of their mean
descriptions (a gallery, `embedding.gm_gallery`). It does not parse."""

from __future__ import annotations

import json
import time

import numpy as np

from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_TYPES
from gmtrace.methods.base import Method
from gmtrace.readout.embedding import gm_gallery, open_set_score
from gmtrace.readout.inference import Inference
from gmtrace.realmodel.density import RealPhotoModel
from gmtrace.realmodel.selfdesc import describe, real_parts


class RealPhotoMethod(Method):
    name = "realphoto"
    parses = False

    def __init__(self, cross_scale: bool = False):
        self.parts = real_parts(cross_scale)  # of the description (`selfdesc.BLOCKS`)
        self.width = self.parts[-1][1]

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        t0 = time.perf_counter()
        desc = describe(bank.real, width=self.width)
        self.model_ = RealPhotoModel.fit(desc, seed=0, blocks=self.parts)
        kept = [i for i, a in enumerate(bank.fake) if len(a)]
        xf = np.concatenate([self._embed(describe(bank.fake[i], width=self.width)) for i in kept])
        gm = np.concatenate([[i] * len(bank.fake[i]) for i in kept])
        self.n_gms_ = len(bank.fake)
        self.gallery_ = gm_gallery(xf, gm, self.n_gms_)
        seconds = time.perf_counter() - t0
        (out_dir / self.name).mkdir(parents=True, exist_ok=True)
        record = {"train_seconds": seconds, "components": self.model_.components}
        (out_dir / self.name / "fit.json").write_text(json.dumps(record))
        return {"train_seconds": seconds, "steps": 0, "probe_seconds": 0.0}

    def _embed(self, desc: np.ndarray) -> np.ndarray:
        y = self.model_.project(desc)
        return y / np.linalg.norm(y, axis=1, keepdims=True).clip(1e-9)

    def predict(self, images: np.ndarray) -> Inference:
        desc = describe(images, width=self.width)
        emb = self._embed(desc)
        sim = emb @ self.gallery_.T  # cosine similarity to each training GM's mean
        attr = np.exp(10 * (sim - sim.max(1, keepdims=True)))
        attr /= attr.sum(1, keepdims=True)
        n = len(images)
        return Inference(
            p_generated=self.model_.unlikeness(desc),
            attribution=attr,
            open_score=open_set_score(attr, emb, self.gallery_),
            embedding=emb,
            # no parse: never scored (`parses`), NaN so that no figure could use it
            continuous=np.full((n, len(CONTINUOUS)), np.nan),
            discrete_prob=[np.full((n, f.n_classes), np.nan) for f in DISCRETE],
            loss_prob=np.full((n, len(LOSS_TYPES)), np.nan),
        )
