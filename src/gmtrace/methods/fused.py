"""gmtrace's supervised detector fused with the model of real photographs, with an
"unsure" band (docs/realmodel.md).

In each fold the outer network is gmtrace's (trained on every training GM, the same
folder as the `gmtrace` method's, so a run with both trains it once). The fusion's
numbers are chosen where that network cannot help itself: an inner network trained
on the fold's training GMs less about a third of their codebases
(`splits.inner_validation`) and on its training photographs less a third of their
collections scores the held-back GMs' images and photographs, clean and JPEG q75,
and so does a real model fitted on the inner training photographs; a stacker
(`fusion.Stacker`) is fitted on those answers and the unsure band's width is chosen
on them (`fusion.choose_width`). The outer network and a real model of all the
fold's training photographs then answer the test images through them. Attribution,
the open-set score, grouping and parsing are the outer network's."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np

from gmtrace.core.metrics import grouping_scores
from gmtrace.data.augment import jpeg, resize
from gmtrace.data.loader import ImageBank
from gmtrace.data.splits import collection_folds, inner_validation, source_folds
from gmtrace.grouping.cluster import DENSITY_SIZES, group_with
from gmtrace.methods.base import Method
from gmtrace.methods.network import NetMethod
from gmtrace.methods.realphoto import describe
from gmtrace.nets.config import ModelConfig
from gmtrace.readout.inference import Inference
from gmtrace.realmodel.density import RealPhotoModel
from gmtrace.realmodel.fusion import Stacker, choose_width, stack_features
from gmtrace.train.config import TrainConfig

# what an image flagged by the band is scored again after (issue 22)
REENCODINGS = {
    "JPEG q95": lambda a: jpeg(a, 95),
    "JPEG q75": lambda a: jpeg(a, 75),
    "a 0.75 resize": lambda a: resize(a, 0.75),
}
UNSURE_BUDGET = 0.08  # the share of validation images the band may call unsure
VAL_PER_GM = 40  # validation images per held-back GM
VAL_REAL = 600  # validation photographs' crops (at most)
MIN_REAL = 40  # inner training photographs' crops below which the inner real model takes all


def reencoded(images: np.ndarray) -> list[np.ndarray]:
    return [np.stack([f(a) for a in images]) for f in REENCODINGS.values()]


class FusedMethod(Method):
    name = "fused"

    def __init__(self, train_cfg: TrainConfig):
        self.net = NetMethod("gmtrace", ModelConfig(), train_cfg)
        self.inner = NetMethod("gmtrace", ModelConfig(), train_cfg)
        self.seed = train_cfg.seed

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        info = self.net.fit(ds, bank, targets, out_dir, console)
        t0 = time.perf_counter()
        inner_bank, val_fake, val_gm, val_real = self._inner_split(ds, bank)
        console.print(
            f"  inner network: {len(inner_bank.fake)} GMs, {len(inner_bank.real)} real crops; "
            f"validation {len(val_fake)} generated, {len(val_real)} real"
        )
        inner_info = self.inner.fit(ds, inner_bank, targets, out_dir / self.name / "inner", console)
        # too few photographs left to hold some back from the inner real model too
        # (a tiny zoo): it is fitted on all of the fold's, and the record says so
        few = len(inner_bank.real) < MIN_REAL
        inner_real = RealPhotoModel.fit(
            describe(bank.real if few else inner_bank.real), seed=self.seed
        )
        self.real_ = RealPhotoModel.fit(describe(bank.real), seed=self.seed)
        images = np.concatenate([val_fake, val_real])
        y = np.r_[np.ones(len(val_fake)), np.zeros(len(val_real))]
        given = [images, np.stack([jpeg(a, 75) for a in images])]  # as a user may give them
        parts = [self._parts(self.inner, inner_real, g) for g in given]
        self.stacker_ = Stacker.fit(
            np.concatenate([stack_features(*p) for p in parts]), np.r_[y, y]
        )
        self.real_cal_ = Stacker.fit(
            np.concatenate([stack_features(None, p[1]) for p in parts]), np.r_[y, y]
        )
        versions, disagree = [], []
        for g, (ps, un) in zip(given, parts, strict=True):
            again = [self._parts(self.inner, inner_real, r) for r in reencoded(g)]
            versions.append(np.stack([self._fused(ps, un)] + [self._fused(*a) for a in again]))
            disagree.append(self._disagree(ps, un))
        self.min_size_, grouping_scores = self._choose_grouping(val_fake, val_gm)
        versions_all = np.concatenate(versions, axis=1)
        self.band_ = choose_width(
            versions_all, np.concatenate(disagree), UNSURE_BUDGET, tuple(REENCODINGS)
        )
        seconds = time.perf_counter() - t0
        record = {
            "stacker_weights": self.stacker_.weights.tolist(),
            "stacker_bias": self.stacker_.bias,
            "band_width": self.band_.width,
            "band_disagreement": self.band_.disagreement,
            "inner_gms": len(inner_bank.fake),
            "validation_fake": int(len(val_fake)),
            "validation_real": int(len(val_real)),
            "inner_train_seconds": inner_info["train_seconds"],
            "fusion_seconds": seconds,
            "real_components": self.real_.components,
            "grouping_min_size": self.min_size_,
            "grouping_validation_ari": grouping_scores,
            "inner_real_model": "all the fold's photographs" if few else "inner photographs",
        }
        (out_dir / self.name).mkdir(parents=True, exist_ok=True)
        (out_dir / self.name / "fusion.json").write_text(json.dumps(record, indent=1))
        console.print(
            f"  fusion: weights {np.round(self.stacker_.weights, 3).tolist()}, "
            f"band |logit| < {self.band_.width:.1f}"
            + (" or parts disagree" if self.band_.disagreement else "")
            + "; grouping: "
            + (f"density, groups of {self.min_size_}+" if self.min_size_ else "silhouette cut")
        )
        return info | {"train_seconds": info["train_seconds"] + inner_info["train_seconds"]}

    def _inner_split(
        self, ds, bank: ImageBank
    ) -> tuple[ImageBank, np.ndarray, np.ndarray, np.ndarray]:
        """The inner network's training bank, and the validation images: the first
        `VAL_PER_GM` of each held-back GM (and the GM of each) and the crops of
        held-back collections."""
        by_name = {g.name: g for g in ds.gms}
        gms = [by_name[n] for n in bank.gm_names]
        val_names = set(
            inner_validation(
                bank.gm_names, [g.codebase for g in gms], [g.family for g in gms], self.seed
            )
        )
        coll = {r.source: r.collection for r in ds.real}
        sources = sorted(set(bank.real_sources))
        colls = [coll.get(s, s) for s in sources]
        if len(set(colls)) >= 2:
            held_src = set(collection_folds(sources, colls, 3, self.seed)[0])
        else:
            held_src = set(source_folds(sources, ["photo"] * len(sources), 3, self.seed)[0])
        held_coll = {coll.get(s, s) for s in held_src}
        keep = [i for i, n in enumerate(bank.gm_names) if n not in val_names]
        real_val = np.array([s in held_src for s in bank.real_sources])
        # pairs whose real crop is a held-back (or the fold's held-out) photograph stay out
        ok = [
            np.array(
                [s not in held_src and c not in held_coll for s, c in bank.origins_of(i)], bool
            )
            & (bank.pair_ok[i][: len(bank.origins_of(i))] if bank.pair_ok is not None else True)
            for i in keep
        ]
        inner = replace(
            bank.subset(keep, max(len(a) for a in bank.fake)),
            real=bank.real[~real_val],
            real_sources=[s for s, v in zip(bank.real_sources, real_val, strict=True) if not v],
        )
        inner = replace(inner, pair_ok=ok)
        val_idx = [i for i, n in enumerate(bank.gm_names) if n in val_names]
        val_fake = np.concatenate([bank.fake[i][:VAL_PER_GM] for i in val_idx])
        val_gm = np.concatenate([[i] * len(bank.fake[i][:VAL_PER_GM]) for i in val_idx])
        real_pool = np.flatnonzero(real_val)
        if len(real_pool) > VAL_REAL:
            real_pool = np.sort(
                np.random.default_rng(self.seed).choice(real_pool, VAL_REAL, replace=False)
            )
        return inner, val_fake, val_gm, bank.real[real_pool]

    def _choose_grouping(self, val_fake: np.ndarray, val_gm: np.ndarray) -> tuple[int, dict]:
        """The grouping (`cluster.DENSITY_SIZES`: the silhouette cut or density
        clustering with a smallest group) whose ARI on the inner network's embedding of
        the held-back GMs' images, the whole case and its first half per GM averaged,
        is highest: good on unseen code and stable in the case's size."""
        emb = self.inner.predict(val_fake).embedding
        truth = np.unique(val_gm, return_inverse=True)[1]
        rank = np.zeros(len(val_gm), int)  # each image's place among its GM's
        for g in np.unique(val_gm):
            rank[val_gm == g] = np.arange(int((val_gm == g).sum()))
        half = rank < VAL_PER_GM // 2
        scores = {}
        for size in DENSITY_SIZES:
            full = grouping_scores(group_with(emb, size), truth)["ari"]
            part = grouping_scores(group_with(emb[half], size), truth[half])["ari"]
            scores[str(size)] = [round(full, 4), round(part, 4)]
        best = max(DENSITY_SIZES, key=lambda z: (float(np.mean(scores[str(z)])), -z))
        return best, scores

    def group(self, embedding: np.ndarray) -> np.ndarray:
        return group_with(embedding, self.min_size_)

    @staticmethod
    def _parts(net: NetMethod, real: RealPhotoModel, images: np.ndarray):
        return net.predict(images).p_generated, real.unlikeness(describe(images))

    def _fused(self, p_sup: np.ndarray, unlikeness: np.ndarray) -> np.ndarray:
        return self.stacker_.prob(stack_features(p_sup, unlikeness))

    def _disagree(self, p_sup: np.ndarray, unlikeness: np.ndarray) -> np.ndarray:
        p_real = self.real_cal_.prob(stack_features(None, unlikeness))
        return (p_sup > 0.5) != (p_real > 0.5)

    def predict(self, images: np.ndarray) -> Inference:
        inf = self.net.predict(images)
        unlikeness = self.real_.unlikeness(describe(images))
        p = self._fused(inf.p_generated, unlikeness)
        flag = self.band_.flagged(p, self._disagree(inf.p_generated, unlikeness))
        unsure = np.zeros(len(images), bool)
        reason = np.full(len(images), "", dtype="<U80")
        if flag.any():
            again = [self._parts(self.net, self.real_, r) for r in reencoded(images[flag])]
            versions = np.stack([p[flag]] + [self._fused(*a) for a in again])
            unsure[flag], reason[flag] = self.band_.decide(versions)
        return replace(inf, p_generated=p.astype(np.float32), unsure=unsure, unsure_reason=reason)

    def fingerprints(self, images: np.ndarray) -> np.ndarray:
        return self.net.fingerprints(images)
