"""The protocol's settings (no torch: the command line reads its defaults here)."""

from __future__ import annotations

from dataclasses import dataclass

from gmtrace.data.augment import CONDITIONS

METHODS = ("gmtrace", "red", "spectral", "realphoto", "fused")  # every method (`methods.catalog`)
DEFAULT_METHODS = ("gmtrace", "red", "spectral")
HOLDOUTS = ("codebase", "tier", "family", "gm")
# a run's pooled out-of-fold answers, what `gmtrace evaluate adopt` fits on
OUT_OF_FOLD = "out_of_fold.safetensors"


@dataclass(frozen=True)
class EvalConfig:
    folds: int = 4
    seed: int = 0
    # "codebase": each fold's test GMs come from codebases (the code that built and
    # trained them: gmtrace's, or a package and its version) with no GM in training;
    # "tier": gmtrace's own GMs, the pretrained tier and the foreign-code tier, each
    # held out whole; "family": families with no GM in training. Each of these holds
    # out real photographs by collection. "gm": test GMs stratified by family, real
    # photographs held out one by one
    holdout: str = "codebase"
    methods: tuple[str, ...] = DEFAULT_METHODS
    train_per_gm: int = 160  # training images per training GM
    seen_per_gm: int = 8  # held-out images per training GM (closed set, open set)
    test_per_gm: int = 30  # images per unseen GM
    neutral_per_gm: int = 15  # format-neutral images per unseen GM
    real_test: int = 300  # held-out real crops per fold (at most)
    image_size: int = 64
    batch: int = 32
    steps: int = 400  # gmtrace training steps per fold
    red_steps: int = 34  # RED architecture: about the same CPU time (see report)
    permutations: int = 1000
    leakage_images: int = 384
    leakage_steps: int = 2000
    neutral_quality: int = 90
    conditions: tuple[str, ...] = tuple(CONDITIONS)  # robustness rows beside format-neutral
    synth_gms: int = 0  # GMs of a synthesized tier added to every fold's training
    gallery_per_gm: int = 16  # training images per GM whose mean embedding is its gallery entry
    inner_families: bool = True  # the fused method's inner validation (TrainConfig's)
    inner_tiers: bool = True  # ... with a codebase of every tier (TrainConfig's)
    group_description: bool = True  # the fused grouping may read the self-description
    cross_scale: bool = False  # the real-photo models also model the cross-scale part
    balance: str = "gm"  # how training batches pick their GMs (TrainConfig's)
    # the arithmetic of the networks' answers on test images (`core.precision`; their
    # training and fitting stay fp32, as a shipped model's): the scan's `--precision`
    precision: str = "fp32"
