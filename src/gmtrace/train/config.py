"""The training's settings (no torch: the command line reads its defaults here)."""

from __future__ import annotations

from dataclasses import dataclass

# how the generated half of a batch picks its GMs (`TrainConfig.balance`)
BALANCES = ("gm", "tier")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    batch: int = 32
    lr: float = 1e-3
    image_size: int = 64
    per_gm: int | None = 200
    per_source: int | None = None
    seed: int = 0
    augment: bool = True
    log_every: int = 25
    ckpt_every: int = 250
    w_fp: float = 1.0
    w_parse: float = 1.0
    w_detect: float = 1.0
    w_attr: float = 1.0
    w_con: float = 0.5
    w_cons: float = 0.5  # consistency between a clean and a JPEG-degraded view
    cons_frac: float = 0.25  # share of each batch that also comes back degraded
    p_pair: float = 0.5  # chance a generated image brings its aligned real crop
    calib_per_gm: int = 20
    probe_per_gm: int = 60
    probe_real: int = 600
    calib_real_every: int = 8
    # the fusion's inner validation (`splits.inner_validation`) also holds back a third
    # of the largest codebase's families (more GMs behind the stacker; docs/realmodel.md,
    # measured better on the codebase protocol, so the default since 2026-12-05)
    inner_families: bool = True
    # ... and at least one codebase of every tier among the small codebases
    # (`splits.inner_validation`'s `tiers`; measured better on the codebase protocol and
    # shipped, so the default since 2026-12-06: docs/realmodel.md)
    inner_tiers: bool = True
    # the fusion's grouping may read the images' self-descriptions beside the
    # embedding (`cluster.grouping_features`), where its inner validation says so
    # (measured better on the codebase protocol and shipped, so the default since
    # 2026-12-06: docs/realmodel.md, "Grouping on the self-description too")
    group_description: bool = True
    # the fusion's model of real photographs also models the cross-scale prediction
    # (`selfdesc.real_parts`); off: under the codebase protocol it raised the unseen
    # upscalers' AUC and lowered the pooled one (docs/realmodel.md, "Cross-scale
    # prediction")
    cross_scale: bool = False
    # how the generated half of a batch picks its GMs: "gm", uniformly over the GMs;
    # "tier", each tier (gmtrace's own zoo, the pretrained, the foreign-code tier)
    # equally, uniformly over its GMs (a tier of 154 GMs then weighs as one of 19)
    balance: str = "gm"
