"""The fused detector as a model carries it: the model of real photographs, the
stacker that fuses its unlikeness with the supervised probability, the unsure band,
the grouping, the open-set score and the parsing gate chosen beside them (`Fusion`,
saved as fusion.safetensors in a model folder), and how they answer images
(`Fusion.answer`). Fitted on inner validation codebases (`methods.fused`, `gmtrace
train --fuse`); docs/realmodel.md."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_path
from gmtrace.data.augment import VARIATIONS, jpeg, resize, varied
from gmtrace.grouping.cluster import group_with, grouping_features
from gmtrace.readout.abstain import ParseGate
from gmtrace.readout.embedding import OPEN_RULES, GMDensity
from gmtrace.readout.saved import FUSION
from gmtrace.realmodel.density import RealModelError, RealPhotoModel
from gmtrace.realmodel.fusion import (
    RULES,
    Stacker,
    UnsureBand,
    owner_means,
    recalibrated,
    rule_features,
    scalar,
    stack_features,
)
from gmtrace.realmodel.selfdesc import DESCRIPTION_NAMES, WIDTHS, describe

# what an image flagged by the band is scored again after (issue 22)
REENCODINGS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "JPEG q95": lambda a: jpeg(a, 95),
    "JPEG q75": lambda a: jpeg(a, 75),
    "a 0.75 resize": lambda a: resize(a, 0.75),
}


def reencoded(images: np.ndarray) -> list[np.ndarray]:
    """Each of `REENCODINGS` applied to every image of a batch (one size)."""
    return [np.stack([f(a) for a in images]) for f in REENCODINGS.values()]


@dataclass
class FusedAnswer:
    p_generated: np.ndarray  # [N] fused
    unsure: np.ndarray  # [N] bool
    reason: np.ndarray  # [N] str, empty where sure
    p_supervised: np.ndarray  # [N] the supervised detector's own
    unlikeness: np.ndarray  # [N] the real model's own
    description: np.ndarray  # [N, K] the self-description (`selfdesc.describe`), per owner


def fit_real(photos: np.ndarray, variation: str, seed: int, width: int, columns) -> RealPhotoModel:
    """A model of real photographs (of the description's first `width` values, in
    parts `columns`) fitted on the uint8 crops `photos` varied by `variation`
    (`data.augment.varied`), both drawn with `seed`: how a fused model's real part,
    the inner ones its variation is chosen with, and a calibration's are fitted
    alike."""
    return RealPhotoModel.fit(
        describe(varied(photos, variation, seed), width=width), seed=seed, blocks=columns
    )


def variation_of(arrays: dict) -> str:
    """How a saved fusion's photographs were varied (`data.augment.VARIATIONS`): as
    given where it was saved before the choice; one this version does not know is a
    clear error."""
    if "real_variation" not in arrays:
        return VARIATIONS[0]
    i = int(scalar(arrays["real_variation"]))
    if not 0 <= i < len(VARIATIONS):
        raise RealModelError(
            f"its photographs were varied a way this gmtrace does not know (number {i}): "
            "it was made by another version (train it again, or calibrate again)"
        )
    return VARIATIONS[i]


@dataclass
class Fusion:
    real: RealPhotoModel
    # the rule's map (`fusion.RULES`): for "stacker" of the supervised logit and the
    # unlikeness logit, for a fixed rule a Platt map of its score
    stacker: Stacker
    real_cal: Stacker  # the real model's own calibration (disagreement, fixed rules)
    band: UnsureBand
    min_size: int  # grouping: 0 the silhouette cut, else density with that smallest group
    gate: ParseGate | None = None  # parsing that abstains; None: every field answers
    # a Platt map of the fused p adopted from a run's out-of-fold answers (`gmtrace
    # evaluate adopt`); the band judges the p before it, the verdict reads the p after
    final: Stacker | None = None
    rule: str = "stacker"  # how the parts are fused (`fusion.choose_rule`)
    # the open-set score (`embedding.OPEN_RULES`): "gallery", the network's own, or
    # "density", the training GMs' densities `density` (`methods.fused.choose_open_rule`)
    open_rule: str = "gallery"
    density: GMDensity | None = None
    # the self-description's weight in the grouping features (`cluster.grouping_features`;
    # 0: the embedding alone, as fusions saved before it)
    group_weight: float = 0.0
    # how the photographs its real model was fitted on were varied first
    # (`data.augment.VARIATIONS`; a calibration varies the user's the same way)
    real_variation: str = "as given"

    def group(self, embedding: np.ndarray, description: np.ndarray | None) -> np.ndarray:
        """Group labels of a case's images by the grouping chosen (`min_size`, and
        the self-description's weight beside the embedding where it has one)."""
        features = grouping_features(embedding, description, self.group_weight)
        return group_with(features, self.min_size)

    def open_score(self, embedding: np.ndarray, gallery_score: np.ndarray) -> np.ndarray:
        """[N] the open-set score of images by the rule chosen: the density's of their
        grouping embeddings, or the network's own gallery score of them
        (`embedding.open_set_score`, `gallery_score`, which the caller has)."""
        if self.open_rule == "density" and self.density is not None:
            return self.density.score(embedding)
        return gallery_score

    def open_threshold(self, network_threshold: float) -> float:
        """The score above which an image is of an unknown GM: the density's own, or
        the network's (`network_threshold`) for the gallery score."""
        if self.open_rule == "density" and self.density is not None:
            return self.density.threshold
        return network_threshold

    def fused(self, p_sup: np.ndarray, unlikeness: np.ndarray) -> np.ndarray:
        return self.stacker.prob(rule_features(self.rule, p_sup, unlikeness, self.real_cal))

    def disagree(self, p_sup: np.ndarray, unlikeness: np.ndarray) -> np.ndarray:
        p_real = self.real_cal.prob(stack_features(None, unlikeness))
        return (np.asarray(p_sup) > 0.5) != (p_real > 0.5)

    def answer(
        self,
        images: np.ndarray,
        supervised: Callable[[np.ndarray], np.ndarray],
        owner: np.ndarray | None = None,
    ) -> FusedAnswer:
        """The fused answers for uint8 images [N, H, W, 3] (one size), given the
        supervised detector's p as `supervised(images)`. With `owner` [N] (the image
        each crop belongs to: 0..M-1), the answers are per owner, each the mean of
        its crops' (the band and the re-encodings judge the owner as a whole)."""
        owner = np.arange(len(images)) if owner is None else np.asarray(owner)
        n = int(owner.max()) + 1 if len(owner) else 0
        p_sup = supervised(images)
        desc = describe(images, width=self.real.width)
        unl = self.real.unlikeness(desc)
        p = owner_means(self.fused(p_sup, unl), owner)
        ps, un = owner_means(p_sup, owner), owner_means(unl, owner)
        flag = self.band.flagged(p, self.disagree(ps, un))
        unsure = np.zeros(n, bool)
        reason = np.full(n, "", dtype=object)
        if flag.any():
            rows = np.isin(owner, np.flatnonzero(flag))
            sub_owner = np.unique(owner[rows], return_inverse=True)[1]
            versions = [p[flag]]
            for q in self.reencoded_fused(images[rows], supervised):
                versions.append(owner_means(q, sub_owner))
            unsure[flag], reason[flag] = self.band.decide(np.stack(versions))
        return FusedAnswer(
            recalibrated(self.final, p),
            unsure,
            reason.astype(str),
            ps,
            un,
            owner_means(desc.T, owner).T,
        )

    def reencoded_fused(
        self, images: np.ndarray, supervised: Callable[[np.ndarray], np.ndarray]
    ) -> list[np.ndarray]:
        """The fused p [N] of images [N, H, W, 3] under each of `REENCODINGS`, in
        order; the re-encodings that keep the size (the JPEGs) are read together."""
        again = reencoded(images)
        out: list[np.ndarray] = [np.zeros(0)] * len(again)
        by_shape: dict[tuple, list[int]] = {}
        for i, a in enumerate(again):
            by_shape.setdefault(a.shape, []).append(i)
        for idx in by_shape.values():
            x = np.concatenate([again[i] for i in idx])
            q = self.fused(supervised(x), self.real.unlikeness(describe(x, width=self.real.width)))
            for i, part in zip(idx, np.split(q, len(idx)), strict=True):
                out[i] = part
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"real_{k}": v for k, v in self.real.to_arrays().items()}
        arrays |= self.stacker.to_arrays("stack_") | self.real_cal.to_arrays("realcal_")
        arrays["band_width"] = np.array(self.band.width)
        arrays["band_disagreement"] = np.array(float(self.band.disagreement))
        arrays["grouping_min_size"] = np.array(float(self.min_size))
        arrays["grouping_description_weight"] = np.array(float(self.group_weight))
        arrays["rule"] = np.array(float(RULES.index(self.rule)))
        arrays["real_variation"] = np.array(float(VARIATIONS.index(self.real_variation)))
        arrays["open_rule"] = np.array(float(OPEN_RULES.index(self.open_rule)))
        arrays |= self.density.to_arrays("density_") if self.density is not None else {}
        arrays |= self.final.to_arrays("final_") if self.final is not None else {}
        return arrays | (self.gate.to_arrays() if self.gate is not None else {})

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Fusion:
        try:
            real = RealPhotoModel.from_arrays(
                {k[5:]: v for k, v in arrays.items() if k.startswith("real_")}
            )
            # a model saved before a part existed (the pixels' part alone, or without
            # the cross-scale part) reads the first columns, which have not changed
            if real.width not in WIDTHS:
                raise RealModelError(
                    f"its model of real photographs reads {real.width} description "
                    f"values where this gmtrace describes an image by {len(DESCRIPTION_NAMES)}: "
                    "it was made by another version (train it again, or calibrate again)"
                )
            return cls(
                real=real,
                stacker=Stacker.from_arrays(arrays, "stack_"),
                real_cal=Stacker.from_arrays(arrays, "realcal_"),
                band=UnsureBand(
                    scalar(arrays["band_width"]),
                    tuple(REENCODINGS),
                    bool(scalar(arrays["band_disagreement"])),
                ),
                min_size=int(scalar(arrays["grouping_min_size"])),
                gate=ParseGate.from_arrays(arrays),
                final=Stacker.from_arrays(arrays, "final_") if "final_bias" in arrays else None,
                rule=rule_of(arrays),
                open_rule=open_rule_of(arrays),
                density=GMDensity.from_arrays(arrays, "density_")
                if "density_center" in arrays
                else None,
                group_weight=scalar(arrays["grouping_description_weight"])
                if "grouping_description_weight" in arrays
                else 0.0,
                real_variation=variation_of(arrays),
            )
        except KeyError as e:
            raise RealModelError(f"a saved fusion lacks {e}") from None

    def save(self, model_dir: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(model_dir) / FUSION
        arrays = {
            k: np.ascontiguousarray(np.atleast_1d(v), dtype=np.float64)
            for k, v in self.to_arrays().items()
        }
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp))
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> Fusion | None:
        """The fusion of a model folder, or None where it has none."""
        from safetensors.numpy import load_file

        path = Path(model_dir) / FUSION
        if not path.is_file():
            return None
        try:
            arrays = load_file(str(path))
        except Exception as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        try:
            return cls.from_arrays(arrays)
        except RealModelError as e:
            raise ValueError(f"{path}: {e}") from None


def open_rule_of(arrays: dict[str, np.ndarray]) -> str:
    """The open-set rule a saved fusion names; one saved before the rule was chosen
    reads the gallery score."""
    return _named(arrays, "open_rule", OPEN_RULES, "open-set rule")


def rule_of(arrays: dict[str, np.ndarray]) -> str:
    """The fusion rule a saved fusion names; one saved before the rule was chosen
    is a stacker's."""
    return _named(arrays, "rule", RULES, "fusion rule")


def _named(arrays: dict[str, np.ndarray], key: str, names: tuple, what: str) -> str:
    """The choice among `names` a saved fusion keeps under `key` (its index), the
    first where it keeps none; one this version does not know is a clear error."""
    if key not in arrays:
        return names[0]
    index = int(scalar(arrays[key]))
    if not 0 <= index < len(names):
        raise RealModelError(
            f"its {what} (number {index}) is unknown to this gmtrace, which knows "
            f"{', '.join(names)}: it was made by another version"
        )
    return names[index]
