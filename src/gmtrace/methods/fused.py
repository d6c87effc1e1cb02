"""gmtrace's supervised detector fused with the model of real photographs, with an
"unsure" band (docs/realmodel.md).

In each fold the outer network is gmtrace's (trained on every training GM, the same
folder as the `gmtrace` method's, so a run with both trains it once). The fusion's
numbers are chosen where that network cannot help itself: an inner network trained
on the fold's training GMs less about a third of their codebases
(`splits.inner_validation`) and on its training photographs less a third of their
collections scores the held-back GMs' images and photographs, clean and JPEG q75,
and so does a real model fitted on the inner training photographs (varied the way
that tells them apart best, `choose_variation`); the fusion rule
(a stacker, `fusion.Stacker`, or a fixed rule: `fusion.choose_rule`, each held-back
codebase left out in turn) is chosen and fitted on those answers and the unsure
band's width is chosen on them (`fusion.choose_width`), and so are the grouping,
the open-set score (`choose_open_rule`) and the fields parsing answers
(`abstain.ParseGate`). The outer network and a real model of all the fold's
training photographs (varied the same way) then answer the test images through
them. Attribution, the embedding and parsing are the outer network's."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_write_text
from gmtrace.core.metrics import grouping_scores
from gmtrace.core.schema import Normalizer, encode
from gmtrace.data.augment import VARIATIONS, jpeg
from gmtrace.data.loader import ImageBank
from gmtrace.data.splits import collection_folds, inner_validation, most_common, source_folds
from gmtrace.grouping.cluster import (
    DENSITY_SIZES,
    DESCRIPTION_WEIGHTS,
    first_half,
    group_with,
    grouping_features,
    grouping_key,
    grouping_words,
)
from gmtrace.methods.base import Method
from gmtrace.methods.network import NetMethod
from gmtrace.nets.config import ModelConfig
from gmtrace.readout.abstain import (
    FIELD_NAMES,
    GateRule,
    ParseGate,
    confidence,
    field_matrix,
    truth_matrix,
)
from gmtrace.readout.embedding import OPEN_RULES, GMDensity
from gmtrace.readout.fused import REENCODINGS, Fusion, fit_real, reencoded
from gmtrace.readout.inference import Inference
from gmtrace.readout.saved import FUSION_RECORD
from gmtrace.realmodel.density import RealPhotoModel
from gmtrace.realmodel.fusion import (
    UnsureBand,
    choose_rule,
    choose_width,
    fit_rule,
    owner_means,
    unsure_share,
)
from gmtrace.realmodel.selfdesc import describe, real_parts
from gmtrace.train.config import TrainConfig
from gmtrace.train.loop import hold_out

UNSURE_BUDGET = 0.08  # the share of validation images the band may call unsure
VAL_PER_GM = 40  # validation images per held-back GM
VAL_REAL = 600  # validation photographs' crops (at most)
# the band's budget holds on single crops and on images of this many crops read as
# the analyzer reads them (the mean of their crops' p): a 128-px image at the 64-px
# input size (docs/realmodel.md, "The band on images of several crops")
CROPS_PER_IMAGE = 4
MIN_REAL = 40  # inner training photographs' crops below which the inner real model takes all


class FusedMethod(Method):
    name = "fused"

    def __init__(self, train_cfg: TrainConfig, precision: str = "fp32"):
        # the test images' answers in `precision`; what the fusion is fitted on, fp32
        self.net = NetMethod("gmtrace", ModelConfig(), train_cfg, precision)
        self.inner = NetMethod("gmtrace", ModelConfig(), train_cfg)
        self.seed = train_cfg.seed
        self.inner_families = train_cfg.inner_families
        self.inner_tiers = train_cfg.inner_tiers
        self.group_description = train_cfg.group_description
        self.cross_scale = train_cfg.cross_scale

    def fit(self, ds, bank, targets, out_dir, console) -> dict:
        info = self.net.fit(ds, bank, targets, out_dir, console)
        self.fusion_, record = fit_fusion(
            ds,
            bank,
            self.net,
            self.inner,
            out_dir / self.name / "inner",
            self.seed,
            console,
            self.inner_families,
            self.inner_tiers,
            self.group_description,
            self.cross_scale,
        )
        (out_dir / self.name).mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / self.name / FUSION_RECORD, json.dumps(record, indent=1))
        self.fusion_.save(out_dir / self.name)
        return info | {"train_seconds": info["train_seconds"] + record["inner_train_seconds"]}

    def predict(self, images: np.ndarray) -> Inference:
        inf = self.net.predict(images)
        # the network's answers on `images` are at hand: only re-encodings are scored again
        ans = self.fusion_.answer(
            images, lambda a: inf.p_generated if a is images else self.net.detect(a)
        )
        gate = self.fusion_.gate
        open_score = self.fusion_.open_score(inf.embedding, inf.open_score)
        return replace(
            inf,
            p_generated=ans.p_generated.astype(np.float32),
            open_score=open_score.astype(np.float32),
            unsure=ans.unsure,
            unsure_reason=ans.reason,
            description=ans.description.astype(np.float32),
            parse_answered=None
            if gate is None
            else gate.answered(inf.continuous, inf.discrete_prob, inf.loss_prob, inf.count_spread),
        )

    def group(self, embedding: np.ndarray, description: np.ndarray | None = None) -> np.ndarray:
        return self.fusion_.group(embedding, description)

    # no fingerprints of its own: they are the outer network's (the `gmtrace`
    # method's figures and leakage check), not checked twice


def fit_fusion(
    ds,
    bank: ImageBank,
    outer: NetMethod,
    inner: NetMethod,
    inner_dir,
    seed: int,
    console,
    inner_families: bool,
    inner_tiers: bool = False,
    group_description: bool = False,
    cross_scale: bool = False,
) -> tuple[Fusion, dict]:
    """The fusion of the network `outer` trained on `bank` (the fold's training data,
    or a shipped model's; loaded): the inner network `inner` trained into
    `inner_dir` on `bank` less its inner validation codebases and collections, and
    what is chosen on its answers there; with a real model of all of `bank`'s
    photographs and, where the density score is chosen, the densities of `outer`'s
    training GMs (`network_density`). Returns the fusion and a record of what was
    chosen. `inner_families`: the inner validation holds back a third of the largest
    codebase's families too, `inner_tiers` a codebase of every tier
    (`splits.inner_validation`); `group_description`: the grouping may read the
    self-description beside the embedding (`cluster.grouping_features`), where the
    held-back GMs say so; `cross_scale`: the models of real photographs model the
    cross-scale prediction too (`selfdesc.real_parts`). The photographs the models
    of real photographs are fitted on are varied the way chosen on the held-back
    images (`choose_variation`)."""
    real_columns = real_parts(cross_scale)
    width = real_columns[-1][1]
    t0 = time.perf_counter()
    inner_bank, val_fake, val_gm, val_real, val_src = inner_split(
        ds, bank, seed, inner_families, inner_tiers
    )
    # the codebases held back for their tier alone (`inner_tiers`) serve the detection's
    # choices (rule, weights, band); what tells GMs apart (grouping, open-set score,
    # parsing gate) is chosen on the other held-back GMs, as without them: a package
    # of upscalers the inner network cannot tell apart would otherwise decide it
    apart = np.ones(len(val_gm), bool)
    if inner_tiers:
        plain = set(inner_split_names(ds, bank, seed, inner_families, False))
        apart = np.array([bank.gm_names[int(i)] in plain for i in val_gm], bool)
    console.print(
        f"  inner network: {len(inner_bank.fake)} GMs, {len(inner_bank.real)} real crops; "
        f"validation {len(val_fake)} generated, {len(val_real)} real"
    )
    inner_info = inner.fit(ds, inner_bank, None, inner_dir, console)
    # too few photographs left to hold some back from the inner real model too
    # (a tiny zoo): it is fitted on all of the fold's, and the record says so
    few = len(inner_bank.real) < MIN_REAL
    images = np.concatenate([val_fake, val_real])
    y = np.r_[np.ones(len(val_fake)), np.zeros(len(val_real))]
    given = [images, np.stack([jpeg(a, 75) for a in images])]  # as a user may give them
    # the validation images' own: the grouping reads them too
    described = describe(images, width=width)
    described_jpeg = describe(given[1], width=width)
    variation, inner_real, variation_auc = choose_variation(
        bank.real if few else inner_bank.real,
        [described, described_jpeg],
        y,
        width,
        real_columns,
        seed,
    )

    def score(x: np.ndarray, desc: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        d = describe(x, width=width) if desc is None else desc
        return inner.predict(x).p_generated, inner_real.unlikeness(d)

    parts = [score(images, described), score(given[1], described_jpeg)]
    p_sup, unl = (np.concatenate(a) for a in zip(*parts, strict=True))
    group = validation_groups(ds, bank, val_gm, val_src)
    n_groups = len(np.unique(group))
    if n_groups >= 2:
        rule, rule_scores, rule_margin = choose_rule(
            p_sup, unl, np.r_[y, y], np.r_[group, group], np.repeat([0, 1], len(y))
        )
    else:  # one held-back codebase: nothing to leave out in turn
        rule, rule_scores, rule_margin = "stacker", {}, float("nan")
    stacker, real_cal = fit_rule(rule, p_sup, unl, np.r_[y, y])
    band0 = UnsureBand(0.0, tuple(REENCODINGS))
    probe = Fusion(inner_real, stacker, real_cal, band0, 0, rule=rule)
    owner = crop_owners(val_gm, val_src, CROPS_PER_IMAGE)
    versions, disagree, owned, owned_disagree = [], [], [], []
    for g, (ps, un) in zip(given, parts, strict=True):
        again = [probe.fused(*score(r)) for r in reencoded(g)]
        versions.append(np.stack([probe.fused(ps, un), *again]))
        disagree.append(probe.disagree(ps, un))
        owned.append(owner_means(versions[-1], owner))
        owned_disagree.append(probe.disagree(owner_means(ps, owner), owner_means(un, owner)))
    readings = {
        "single crops": (np.concatenate(versions, axis=1), np.concatenate(disagree)),
        f"images of {CROPS_PER_IMAGE} crops": (
            np.concatenate(owned, axis=1),
            np.concatenate(owned_disagree),
        ),
    }
    crops, *more = readings.values()
    band = choose_width(*crops, UNSURE_BUDGET, tuple(REENCODINGS), also=tuple(more))
    val_inf = inner.predict(val_fake[apart])
    min_size, group_weight, grouping_ari = choose_grouping(
        val_inf.embedding,
        val_gm[apart],
        described[: len(val_fake)][apart] if group_description else None,
        DESCRIPTION_WEIGHTS,
    )
    open_rule, open_auroc = choose_open_rule(inner, inner_bank, val_inf)
    density = network_density(outer, bank)[0] if open_rule == "density" else None
    val_group = group[: len(val_fake)][apart]
    gate, gate_rule, gate_scores = fit_gate(
        ds, bank, val_inf, val_gm[apart], val_group, inner_dir / inner.name, seed
    )
    real = fit_real(bank.real, variation, seed, width, real_columns)
    fusion = Fusion(
        real,
        stacker,
        real_cal,
        band,
        min_size,
        gate,
        rule=rule,
        open_rule=open_rule,
        density=density,
        group_weight=group_weight,
        real_variation=variation,
    )
    record = {
        "rule": rule,
        "rule_validation_auc": rule_scores,
        "rule_groups": n_groups,
        # what the stacker had to beat the best fixed rule by, where it scored best
        "rule_stacker_margin": rule_margin if np.isfinite(rule_margin) else None,
        "stacker_weights": stacker.weights.tolist(),
        "stacker_bias": stacker.bias,
        "band_width": band.width,
        "band_disagreement": band.disagreement,
        "band_unsure_validation": {k: unsure_share(band, *r) for k, r in readings.items()},
        "inner_gms": len(inner_bank.fake),
        "validation_gms_for_tiers": int(len(np.unique(val_gm[~apart]))),
        "validation_fake": int(len(val_fake)),
        "validation_real": int(len(val_real)),
        "inner_train_seconds": inner_info["train_seconds"],
        "fusion_seconds": time.perf_counter() - t0,
        "real_variation": variation,
        "real_variation_validation_auc": variation_auc,
        "real_components": real.components,
        "real_part_components": [p.components for p in real.parts],
        "grouping_min_size": min_size,
        # "inf" (the description alone) as a string: JSON has no infinity; float() reads it
        "grouping_description_weight": group_weight if np.isfinite(group_weight) else "inf",
        "grouping_validation_ari": grouping_ari,
        "open_rule": open_rule,
        "open_rule_validation_auroc": open_auroc,
        "inner_real_model": "all the fold's photographs" if few else "inner photographs",
        "parse_gate": {
            n: {"coverage": round(float(c), 3), "p": None if np.isnan(q) else round(float(q), 4)}
            for n, c, q in zip(FIELD_NAMES, gate.coverage, gate.p, strict=True)
        },
        "parse_gate_rule": gate_rule.word,
        "parse_gate_rule_scores": gate_scores,
    }
    scores = ", ".join(f"{k} {v:.3f}" for k, v in rule_scores.items())
    console.print(
        f"  fusion: {rule}"
        + (f" (of {scores})" if scores else "")
        + (f", the stacker's margin {rule_margin:.4f}" if np.isfinite(rule_margin) else "")
        + f", weights {np.round(stacker.weights, 3).tolist()}, "
        f"band |logit| < {band.width:.1f}"
        + (" or parts disagree" if band.disagreement else "")
        + "; grouping: "
        + (f"density, groups of {min_size}+" if min_size else "silhouette cut")
        + (f" on {grouping_words(group_weight)}" if group_weight else "")
        + f"; open set: {open_rule} score"
        + f"; photographs {variation}"
        + f"; parsing answers {len(gate.reliable())} of {len(FIELD_NAMES)} fields"
        + f" ({gate_rule.word})"
    )
    return fusion, record


def network_density(net: NetMethod, bank: ImageBank) -> tuple[GMDensity, Inference]:
    """The densities of the training GMs of `net` (trained on `bank`; loaded) in its
    grouping embedding (`embedding.GMDensity`): fitted on the images its readout's
    probes read (the first `probe_per_gm` training images of each GM), the threshold
    on the images its training held out for calibration (`train.loop.hold_out`).
    Returns them and `net`'s answers on those held-out images."""
    cfg = net.train_cfg
    kept, calib, _ = hold_out(bank, cfg)
    ref = [a[: cfg.probe_per_gm] for a in kept.fake]
    owner = np.repeat(np.arange(len(ref)), [len(a) for a in ref])
    held = net.predict(np.concatenate(calib))
    emb = net.predict(np.concatenate(ref)).embedding
    return GMDensity.fit(emb, owner, len(ref), held.embedding), held


def choose_open_rule(
    inner: NetMethod, inner_bank: ImageBank, val_inf: Inference
) -> tuple[str, dict[str, float]]:
    """The open-set score (`embedding.OPEN_RULES`) that tells the held-back GMs'
    images (`val_inf`, the inner network's answers on them) best from the inner
    network's own held-out images of its training GMs, by AUROC; the gallery score
    where they tie. Returns the rule and each rule's AUROC."""
    from sklearn.metrics import roc_auc_score

    density, held = network_density(inner, inner_bank)
    y = np.r_[np.zeros(len(held.open_score)), np.ones(len(val_inf.open_score))]
    scores = {
        "gallery": np.r_[held.open_score, val_inf.open_score],
        "density": np.r_[density.score(held.embedding), density.score(val_inf.embedding)],
    }
    auroc = {k: round(float(roc_auc_score(y, v)), 4) for k, v in scores.items()}
    return max(OPEN_RULES, key=lambda k: (auroc[k], k == "gallery")), auroc


def fit_gate(
    ds, bank: ImageBank, val_inf: Inference, val_gm: np.ndarray, val_group, net_dir, seed: int
) -> tuple[ParseGate, GateRule, dict[str, float]]:
    """The parsing gate (`abstain.ParseGate.fit_nested`) of the inner network's parse
    of the held-back GMs' images `val_inf` (`val_gm`: their rows of `bank.gm_names`;
    `val_group`: their validation groups, `validation_groups`), against their truth
    on the inner network's own scale (its config's normalizer); its rule chosen with
    each group left out in turn. Returns the gate, its rule and every rule's score."""
    meta = json.loads((Path(net_dir) / "config.json").read_text())
    norm = Normalizer.from_dict(meta["normalizer"])
    row = {g.name: i for i, g in enumerate(ds.gms)}
    idx = [row[n] for n in bank.gm_names]
    tg = encode(ds.arch_matrix()[idx], ds.loss_matrix()[idx], norm)
    truth = truth_matrix(tg.continuous, tg.discrete, tg.losses)
    parts = (val_inf.continuous, val_inf.discrete_prob, val_inf.loss_prob)
    conf = confidence(*parts, val_inf.count_spread)
    # a held-back codebase may be one GM: the truth is shuffled among all of them
    return ParseGate.fit_nested(
        field_matrix(*parts), conf, truth, val_gm, val_group, seed, within=False
    )


def inner_split_names(
    ds, bank: ImageBank, seed: int, largest_families: bool, every_tier: bool
) -> list[str]:
    """The GMs of `bank` that `inner_split` holds back (`splits.inner_validation`)."""
    by_name = {g.name: g for g in ds.gms}
    gms = [by_name[n] for n in bank.gm_names]
    return inner_validation(
        bank.gm_names,
        [g.codebase for g in gms],
        [g.family for g in gms],
        seed,
        largest_families,
        [g.tier for g in gms] if every_tier else None,
    )


def inner_split(
    ds, bank: ImageBank, seed: int, largest_families: bool = False, every_tier: bool = False
) -> tuple[ImageBank, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The inner network's training bank, and the validation images: the first
    `VAL_PER_GM` of each held-back GM (and the GM of each) and the crops of
    held-back collections (and the photograph of each)."""
    val_names = set(inner_split_names(ds, bank, seed, largest_families, every_tier))
    coll = {r.source: r.collection for r in ds.real}
    sources = sorted(set(bank.real_sources))
    colls = [coll.get(s, s) for s in sources]
    if len(set(colls)) >= 2:
        held_src = set(collection_folds(sources, colls, 3, seed)[0])
    else:
        held_src = set(source_folds(sources, ["photo"] * len(sources), 3, seed)[0])
    held_coll = {coll.get(s, s) for s in held_src}
    keep = [i for i, n in enumerate(bank.gm_names) if n not in val_names]
    real_val = np.array([s in held_src for s in bank.real_sources])
    # pairs whose real crop is a held-back (or the fold's held-out) photograph stay out
    ok = [
        np.array([s not in held_src and c not in held_coll for s, c in bank.origins_of(i)], bool)
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
        real_pool = np.sort(np.random.default_rng(seed).choice(real_pool, VAL_REAL, replace=False))
    val_src = [bank.real_sources[i] for i in real_pool]
    return inner, val_fake, val_gm, bank.real[real_pool], val_src


def validation_groups(ds, bank: ImageBank, val_gm: np.ndarray, val_src: list[str]) -> np.ndarray:
    """[len(val_gm) + len(val_src)] the groups the fusion rule is chosen on
    (`fusion.choose_rule`), generated images then photographs: each held-back GM's
    codebase (the largest training codebase's GMs by family, as `inner_validation`
    holds them back), the photographs spread over those groups by source in turn
    (by crop where there are fewer sources than groups)."""
    by_name = {g.name: g for g in ds.gms}
    gms = [by_name[n] for n in bank.gm_names]
    largest = most_common([g.codebase for g in gms])
    keys = [f"{g.codebase}/{g.family}" if g.codebase == largest else g.codebase for g in gms]
    fake_keys = [keys[int(i)] for i in val_gm]
    index = {k: i for i, k in enumerate(sorted(set(fake_keys)))}
    n = max(len(index), 1)
    sources = sorted(set(val_src))
    if len(sources) >= n:
        rank = {src: i for i, src in enumerate(sources)}
        real_group = [rank[src] % n for src in val_src]
    else:
        real_group = [i % n for i in range(len(val_src))]
    return np.array([index[k] for k in fake_keys] + real_group, dtype=int)


def crop_owners(val_gm: np.ndarray, val_src: list[str], k: int) -> np.ndarray:
    """[len(val_gm) + len(val_src)] the validation images (generated, then real)
    gathered into images of up to `k` crops, as owners 0..M-1: `k` images of one
    held-back GM in a row, `k` crops of one photograph (the crops of a larger
    photograph are exactly that; a GM's images stand in for the crops of a larger
    image of it)."""
    keys, seen = [], {}
    for key in [("gm", int(g)) for g in val_gm] + [("photo", s) for s in val_src]:
        i = seen[key] = seen.get(key, -1) + 1
        keys.append((*key, i // k))
    index = {key: j for j, key in enumerate(dict.fromkeys(keys))}
    return np.array([index[key] for key in keys], dtype=int)


def choose_variation(
    photos: np.ndarray,
    described: list[np.ndarray],
    y: np.ndarray,
    width: int,
    columns,
    seed: int,
) -> tuple[str, RealPhotoModel, dict[str, list[float]]]:
    """How the photographs `photos` a model of real photographs is fitted on are
    varied first (`data.augment.VARIATIONS`): the one whose model tells the held-back
    GMs' images from the held-back photographs best, by the AUC of its unlikeness
    on their descriptions as given and after JPEG q75 (`described`, labels `y`)
    averaged; ties go to the one listed first. Returns the variation, its model
    (of the description's first `width` values, parts `columns`) and every
    variation's [as given, JPEG q75] AUC."""
    from sklearn.metrics import roc_auc_score

    scores, models = {}, {}
    for v in VARIATIONS:
        models[v] = fit_real(photos, v, seed, width, columns)
        scores[v] = [round(float(roc_auc_score(y, models[v].unlikeness(d))), 4) for d in described]
    best = max(VARIATIONS, key=lambda v: (np.mean(scores[v]), -VARIATIONS.index(v)))
    return best, models[best], scores


def choose_grouping(
    emb: np.ndarray,
    val_gm: np.ndarray,
    description: np.ndarray | None = None,
    weights: tuple[float, ...] = (0.0,),
) -> tuple[int, float, dict]:
    """The grouping (`cluster.DENSITY_SIZES`: the silhouette cut or density
    clustering with a smallest group; and of `weights`, the self-description's
    weight beside the embedding, `cluster.grouping_features`) whose ARI on the
    inner network's embedding of the held-back GMs' images (and their
    self-descriptions `description`), the whole case and its first half per GM
    averaged, is highest: good on unseen code and stable in the case's size. Ties
    go to the smaller group size, then the smaller weight. Returns the size, the
    weight and every candidate's [whole, half] ARI (keyed by the size, and the
    weight after a "d" where it is not 0)."""
    truth = np.unique(val_gm, return_inverse=True)[1]
    half = first_half(val_gm)
    scores, ranked = {}, []
    for w in weights if description is not None else (0.0,):
        x = grouping_features(emb, description, w)
        xh = grouping_features(emb[half], None if description is None else description[half], w)
        for size in DENSITY_SIZES:
            full = grouping_scores(group_with(x, size), truth)["ari"]
            part = grouping_scores(group_with(xh, size), truth[half])["ari"]
            key = grouping_key(size, w)
            scores[key] = [round(full, 4), round(part, 4)]
            ranked.append((float(np.mean(scores[key])), -size, -w))
    best = max(ranked)
    return -best[1], -best[2], scores
