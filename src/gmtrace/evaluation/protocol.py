"""`gmtrace evaluate`: the evaluation protocol of DESIGN.md, one loop over methods.

For each of k folds, every method is fitted on the training GMs and real sources,
then predicts. How a fold holds data out (`EvalConfig.holdout`):

* "codebase" (the default): whole codebases are held out, so the code that built
  and trained a test GM (gmtrace's own, or a third-party package and its version:
  its builder, training loop, sampler and 8-bit conversion) gave no GM to training;
  real photographs are held out by collection (a package, a folder), so a test
  photo's collection gave no photograph to training. This is what a user's images
  look like: made by code gmtrace never saw, of photographs it never saw.
* "tier": gmtrace's own GMs, the pretrained tier and the foreign-code tier are each
  held out whole (one fold each).
* "family": whole families held out (a test GM's architecture and recipe gave no
  GM to training), real photographs by collection.
* "gm": single GMs held out, stratified by family (every test family is in
  training); real photographs held out one by one (crops of a photo together).

What each method predicts:

* unseen GMs' images: parsing, detection (against the held-out real photographs,
  clean, format-neutral, JPEG at several qualities and resized, real and generated
  images degraded alike), open-set positives, grouping (`grouping.group`: the cut
  is read off the unseen images' own silhouette, so the number of unseen GMs is
  never used);
* held-out images of the training GMs: closed-set attribution, open-set negatives,
  and the earlier design's grouping threshold (the cut that groups *seen* GMs best),
  reported beside it as `grouping_threshold`.

Parsing is scored on the unseen GMs of all folds together (continuous values on one
normalized scale fitted on all GMs), per image and per GM, against the random
ground truth: the GMs' true rows shuffled within each fold, scored with the same
predictions; the p-value is (1 + #shuffles scoring at least as well) / (1 + n).
Results go to `results.json`, figures and `report.md` (rendered by `gmtrace.evaluation.report`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from gmtrace.core.files import atomic_path, atomic_write_text
from gmtrace.core.metrics import (
    detection_scores,
    family_prior_loss_f1,
    grouping_scores,
    loss_auc,
    permutation_test,
)
from gmtrace.core.runtime import seed_everything
from gmtrace.core.schema import (
    ARCH_NAMES,
    CONTINUOUS,
    DISCRETE,
    LOSS_THRESHOLD,
    Normalizer,
    Targets,
    encode,
)
from gmtrace.core.version import __version__
from gmtrace.data.augment import CONDITIONS, format_neutral
from gmtrace.data.dataset import GMDataset
from gmtrace.data.loader import ImageBank, load_bank
from gmtrace.data.splits import collection_folds, gm_folds, source_folds, whole_folds
from gmtrace.evaluation.config import HOLDOUTS, OUT_OF_FOLD, EvalConfig
from gmtrace.evaluation.report import FIGURES, read_results, write_reports
from gmtrace.grouping.cluster import choose_threshold, cluster, first_half, group
from gmtrace.methods.base import Method
from gmtrace.methods.catalog import create_method
from gmtrace.methods.catalog import parses as method_parses
from gmtrace.readout.abstain import ParseGate, confidence, field_matrix, truth_matrix
from gmtrace.readout.embedding import gm_gallery
from gmtrace.readout.inference import Inference
from gmtrace.realmodel.fusion import fit_recalibration, recalibrated
from gmtrace.train.config import TrainConfig

LABELS = {
    "gmtrace": "gmtrace",
    "red": "RED architecture",
    "spectral": "spectral baseline",
    "realphoto": "real-photo model alone",
    "fused": "gmtrace fused (+ real-photo model, unsure band)",
}


# ---------------------------------------------------------------- content leakage


def leakage(
    inputs: dict[str, np.ndarray], images: np.ndarray, steps: int, seed: int, crop: int = 32
) -> dict:
    """Rebuild `images` ([N,H,W,3] uint8) from each input ([N,H,W,3] float) with the
    same small CNN decoder (4 conv layers, 32 channels, fully convolutional), trained
    on random `crop` x `crop` windows of half the images for `steps` Adam steps and
    scored on the whole other half: PSNR in dB (higher = the input holds more of the
    picture). Each input is standardized over all images first (one mean and
    scale), so its units do not matter but each image's brightness and contrast
    stay in it."""
    from torch import nn

    torch.manual_seed(seed)
    y = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    n = len(y) // 2
    out = {}
    for name, x in inputs.items():
        x = torch.from_numpy(np.asarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
        x = (x - x.mean()) / (x.std() + 1e-6)
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, 1, 1),
            nn.ReLU(),
            nn.Conv2d(32, 3, 3, 1, 1),
        )
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        c = min(crop, x.shape[2], x.shape[3])
        for _ in range(steps):
            idx = torch.randint(0, n, (32,), generator=g)
            i = int(torch.randint(0, x.shape[2] - c + 1, (1,), generator=g))
            j = int(torch.randint(0, x.shape[3] - c + 1, (1,), generator=g))
            win = (idx, slice(None), slice(i, i + c), slice(j, j + c))
            loss = ((net(x[win]) - y[win]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            mse = ((net(x[n:]).clamp(0, 1) - y[n:]) ** 2).mean(dim=(1, 2, 3))
        out[name] = float((10 * torch.log10(1 / mse.clamp(min=1e-10))).mean())
    return out


# ---------------------------------------------------------------- the run


@dataclass
class FoldData:
    unseen: dict[str, Inference] = field(default_factory=dict)
    seen: dict[str, Inference] = field(default_factory=dict)
    real: dict[str, Inference] = field(default_factory=dict)
    # degraded test images: condition ("format_neutral", "jpeg75", ...) -> method -> ...
    unseen_degraded: dict[str, dict[str, Inference]] = field(default_factory=dict)
    real_degraded: dict[str, dict[str, Inference]] = field(default_factory=dict)
    # the real crop each unseen image was made from (GMs with aligned pairs, crops of
    # the fold's held-out photographs only), clean and JPEG q75: method -> answers
    paired: dict[str, Inference] = field(default_factory=dict)
    paired_jpeg75: dict[str, Inference] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)


def make_methods(cfg: EvalConfig) -> list[Method]:
    """The methods of `cfg.methods` (`methods.catalog`), each network with the
    evaluation's training settings and its own budget of steps."""
    base = TrainConfig(
        batch=cfg.batch,
        image_size=cfg.image_size,
        per_gm=None,
        seed=cfg.seed,
        ckpt_every=100,
        calib_per_gm=10,
        probe_per_gm=30,
        probe_real=300,
        inner_families=cfg.inner_families,
        inner_tiers=cfg.inner_tiers,
        group_description=cfg.group_description,
        cross_scale=cfg.cross_scale,
        balance=cfg.balance,
    )
    steps = {"red": cfg.red_steps}
    return [
        create_method(name, replace(base, steps=steps.get(name, cfg.steps)), cfg.precision)
        for name in cfg.methods
    ]


def degraded(images: np.ndarray, cfg: EvalConfig) -> dict[str, np.ndarray]:
    """The test images under every robustness condition: format-neutral (resized to
    `cfg.image_size`, centre-cropped, JPEG at `cfg.neutral_quality`) and each of
    `cfg.conditions`; one transform for real and generated images alike."""
    out = {
        "format_neutral": [format_neutral(a, cfg.image_size, cfg.neutral_quality) for a in images]
    }
    for c in cfg.conditions:
        out[c] = [CONDITIONS[c][1](a) for a in images]
    return {k: np.stack(v) for k, v in out.items()}


def gallery(m: Method, bank: ImageBank, gms: list[int], cfg: EvalConfig) -> np.ndarray:
    """[len(gms), D] the gallery of the training GMs in a method's grouping embedding:
    the normalized mean embedding of `cfg.gallery_per_gm` of each GM's training
    images. Attribution to the nearest entry and "unknown" past a similarity
    threshold need no classifier: a new GM joins by its images."""
    images = [bank.fake[i][: cfg.gallery_per_gm] for i in gms]
    emb = m.predict(np.concatenate(images)).embedding
    owner = np.repeat(np.arange(len(gms)), [len(a) for a in images])
    return gm_gallery(emb, owner, len(gms))


def ds_codebases(ds: GMDataset) -> list[str]:
    """Each GM's codebase: the package (and version) whose code built and trained it."""
    return [g.codebase for g in ds.gms]


def plan_splits(ds: GMDataset, cfg: EvalConfig) -> tuple[list[list[str]], list[list[str]], dict]:
    """The test GMs and the held-out real source photographs of each fold, by
    `cfg.holdout`, and a note of how each was held out (for the report)."""
    if cfg.holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {cfg.holdout!r}; choose from {', '.join(HOLDOUTS)}")
    families = [g.family for g in ds.gms]
    src_dom = {r.source: r.domain for r in ds.real}
    src_coll = {r.source: r.collection for r in ds.real}
    if len(src_dom) < cfg.folds:
        raise ValueError(
            f"{ds.root}: {len(src_dom)} real source photographs, need at least {cfg.folds}"
        )
    n_coll = len(set(src_coll.values()))
    keys = {"codebase": ds_codebases(ds), "tier": ds.tiers, "family": families}
    if cfg.holdout in keys:
        what = {"codebase": "codebases", "tier": "tiers", "family": "families"}[cfg.holdout]
        folds = whole_folds(ds.names, keys[cfg.holdout], cfg.folds, cfg.seed, what)
    else:
        folds = gm_folds(ds.names, families, cfg.folds, cfg.seed)
    if cfg.holdout != "gm" and n_coll >= 2:
        sfolds = collection_folds(list(src_coll), list(src_coll.values()), cfg.folds, cfg.seed)
        real_by = "collection"
    else:
        sfolds = source_folds(list(src_dom), list(src_dom.values()), cfg.folds, cfg.seed)
        real_by = "photograph"
    held = [sorted({src_coll[s] for s in f}) for f in sfolds]
    codebases = ds_codebases(ds)
    info = {
        "holdout": cfg.holdout,
        "gms_by": cfg.holdout if cfg.holdout != "gm" else "GM (stratified by family)",
        "real_by": real_by,
        "collections": sorted(set(src_coll.values())),
        "test_families": [sorted({families[ds.names.index(n)] for n in f}) for f in folds],
        "test_codebases": [sorted({codebases[ds.names.index(n)] for n in f}) for f in folds],
        "test_collections": held,
    }
    return folds, sfolds, info


@dataclass
class FoldPlan:
    """One fold: unseen GM names and indices into `ds.names` (test / train), and
    indices into the bank's real crops (held-out sources / training sources)."""

    test: list[str]
    test_gms: list[int]
    train_gms: list[int]
    real_test: np.ndarray
    real_train: np.ndarray


def fold_plans(
    ds: GMDataset, bank: ImageBank, folds: list[list[str]], sfolds: list[list[str]], cfg
) -> list[FoldPlan]:
    """The folds as `evaluate` runs them: GMs of `folds[k]` unseen, real crops of
    the sources `sfolds[k]` held out (at most `cfg.real_test` of them, drawn with
    `cfg.seed`), the other crops for training."""
    src = np.array(bank.real_sources)
    rng = np.random.default_rng(cfg.seed)
    plans = []
    for k, test in enumerate(folds):
        test_set = set(test)
        real_test = np.flatnonzero(np.isin(src, sfolds[k]))
        if len(real_test) > cfg.real_test:
            real_test = np.sort(rng.choice(real_test, cfg.real_test, replace=False))
        plans.append(
            FoldPlan(
                test=list(test),
                test_gms=[ds.names.index(n) for n in test],
                train_gms=[i for i, n in enumerate(ds.names) if n not in test_set],
                real_test=real_test,
                real_train=np.flatnonzero(~np.isin(src, sfolds[k])),
            )
        )
    return plans


def with_synth(ds: GMDataset, synth: GMDataset, n: int) -> GMDataset:
    """`ds` with the first `n` GMs of a synthesized tier appended (training only)."""
    if n > len(synth):
        raise ValueError(f"{synth.root}: holds {len(synth)} synthesized GMs, asked for {n}")
    extra = synth.gms[:n]
    clash = set(ds.names) & {g.name for g in extra}
    if clash:
        raise ValueError(f"{synth.root}: GM names also in {ds.root}: {sorted(clash)[:3]}")
    return replace(ds, gms=ds.gms + extra)


def curve(
    ds: GMDataset,
    synth: GMDataset,
    counts: list[int],
    out_dir: str | Path,
    cfg: EvalConfig = EvalConfig(),
    console: Console | None = None,
    report: str | Path | None = None,
    command: str = "",
    compare: str | Path | None = None,
) -> dict:
    """The protocol once per number of synthesized GMs in training (`counts`), each
    run in OUT/n<count>/; OUT/curve.json holds every method's headline figures per
    count (rewritten after each), and the report of the largest count (written to
    `report` too) shows them. A count whose run already finished in OUT/n<count>/
    with the same settings, zoo and tier is read, not run again (delete the folder
    to rerun it): a curve stopped part way resumes where it stopped. The points of
    an earlier OUT/curve.json at counts not asked for are kept when they were
    measured with the same settings, zoo and tier, so a curve grows one count at a
    time, on another machine too (copy its curve.json into OUT first)."""
    from gmtrace.evaluation.report import curve_row, probe_views

    console = console or Console()
    out = Path(out_dir)
    settings = curve_settings(cfg, ds, synth)
    points = {p["synth_gms"]: p for p in kept_points(out / "curve.json", settings, cfg, console)}
    data = {"command": command, "settings": settings, "points": []}
    for c in sorted(counts):
        point_cfg = replace(cfg, synth_gms=c)
        res = finished_point(out / f"n{c}", point_cfg, ds, synth if c else None)
        if res is not None:
            console.print(f"{c} synthesized GMs: finished run read from {out / f'n{c}'}")
        else:
            res = evaluate(ds, out / f"n{c}", point_cfg, console, command=command, synth=synth)
        point = {"synth_gms": c, "train_gms": res["n_train_gms"]}
        point["command"] = command  # it reproduces the point (reading it if finished)
        point |= {m: curve_row(res, m) for m in res["methods"]}
        if "gmtrace" in res["methods"]:
            # whether its networks parse with the probe, kept with the figures so
            # that the point renders the same once its run folder is gone
            point["probe"] = bool(probe_views(out / f"n{c}", ["gmtrace"]))
        points[c] = point
        data["points"] = [points[k] for k in sorted(points)]
        # after every point: a run stopped early keeps the points it finished
        atomic_write_text(out / "curve.json", json.dumps(data, indent=1) + "\n")
    last = out / f"n{max(counts)}"
    write_reports(last, report, compare, curve=data)
    return data


def curve_settings(cfg: EvalConfig, ds: GMDataset, synth: GMDataset) -> dict:
    """What every point of one curve shares: the protocol's settings but the
    number of synthesized GMs (and the methods: a point may have more), the zoo
    and the tier."""
    config = json.loads(json.dumps(asdict(cfg)))
    for k in ("synth_gms", "methods"):
        config.pop(k)
    return {"config": config, "zoo": str(ds.root), "synth_zoo": str(synth.root)}


def kept_points(path: Path, settings: dict, cfg: EvalConfig, console: Console) -> list[dict]:
    """The points of an earlier curve.json measured with `settings` and every
    method of `cfg` (none when it is missing; the others with a note why)."""
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
        pts = [p for p in old["points"] if all(m in p for m in cfg.methods)]
        same = old.get("settings") == settings
    except (OSError, ValueError, KeyError, TypeError) as e:
        console.print(f"[yellow]{path}: not a readable curve record ({e}); starting afresh[/]")
        return []
    if not same:
        console.print(f"[yellow]{path}: other settings, zoo or tier; its points dropped[/]")
        return []
    return pts


def finished_point(
    run: Path, cfg: EvalConfig, ds: GMDataset, synth: GMDataset | None
) -> dict | None:
    """The results of a finished run in `run` made with the settings `cfg` on the
    zoo `ds` (and the tier `synth`, when it trained with one), or None. A run of
    more methods counts: each method's networks are seeded, fitted and scored on
    their own, so its figures are those of a run of that method alone, up to the
    last-digit differences of a rerun (docs/product.md), and the family-held-out
    run itself can stand as the curve's count 0."""
    path = run / "results.json"
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: run again
    if not isinstance(res, dict) or not isinstance(res.get("config"), dict):
        return None
    want = json.loads(json.dumps(asdict(cfg)))
    have = dict(res["config"])
    same = (
        set(want.pop("methods")) <= set(have.pop("methods", ()))
        and have == want
        and res.get("zoo") == str(ds.root)
        and res.get("split", {}).get("synth_zoo") == (str(synth.root) if synth else None)
    )
    return res if same else None


def evaluate(
    ds: GMDataset,
    out_dir: str | Path,
    cfg: EvalConfig = EvalConfig(),
    console: Console | None = None,
    report: str | Path | None = None,
    command: str = "",
    compare: str | Path | None = None,
    synth: GMDataset | None = None,
) -> dict:
    """Run the protocol; write results.json, report.md and figures to `out_dir`
    (and the report to `report` too, with the figures copied to img/results/ beside it).
    With `cfg.synth_gms`, that many GMs of the synthesized tier `synth` join every
    fold's training (never its tests)."""
    if cfg.synth_gms and synth is None:
        raise ValueError("synth_gms needs a synthesized tier (--synth DIR)")
    console = console or Console()
    if compare is not None:
        read_results(compare)  # fail now, not after the run
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    t_start = time.perf_counter()
    base = ds
    ds, folds, sfolds, split_info = _plan_run(base, synth, cfg, console)
    bank = _load_images(ds, cfg, console)
    # one scale for scoring, whatever the synthesized GMs' ranges: the zoo's own GMs
    global_norm = Normalizer().fit(base.arch_matrix())
    plans = fold_plans(ds, bank, folds, sfolds, cfg)
    held = [_held_out(split_info, sfolds, k) for k in range(len(plans))]
    data, fold_of_gm = _run_folds(ds, len(base), bank, plans, held, cfg, out, console)
    results = _score(ds, data, folds, fold_of_gm, global_norm, cfg)
    results["config"] = asdict(cfg)
    results["split"] = split_info
    results["n_train_gms"] = float(np.mean([len(p.train_gms) for p in plans]))
    results["n_gms"] = len(base)  # the zoo's GMs (synthesized ones only train)
    results["seconds"] = time.perf_counter() - t_start
    results["machine"] = _machine()
    results["command"] = command
    results["zoo"] = str(ds.root)
    results["zoos"] = ds.origin.split("+") if "+" in ds.origin else [str(ds.root)]
    results["leakage"] = data[0].info.get("leakage", {})
    atomic_write_text(out / "results.json", json.dumps(results, indent=1) + "\n")
    save_out_of_fold(out, ds, data, global_norm, cfg)
    _figures(ds, data, folds, results, out, cfg)
    write_reports(out, report, compare)
    return results


def _plan_run(
    base: GMDataset, synth: GMDataset | None, cfg: EvalConfig, console: Console
) -> tuple[GMDataset, list[list[str]], list[list[str]], dict]:
    """The folds of the zoo `base` (`plan_splits`) and the GMs the run trains on:
    `base` and, with `cfg.synth_gms`, that many GMs of the tier `synth`."""
    folds, sfolds, split_info = plan_splits(base, cfg)
    ds = base
    if cfg.synth_gms:
        ds = with_synth(base, synth, cfg.synth_gms)
        split_info["synth_gms"] = len(ds) - len(base)
        split_info["synth_zoo"] = str(synth.root)
    console.print(
        f"holdout: GMs by {split_info['gms_by']}, real photographs by {split_info['real_by']}"
        + (f"; {split_info['synth_gms']} synthesized GMs in training" if cfg.synth_gms else "")
    )
    return ds, folds, sfolds, split_info


def _images_per_gm(cfg: EvalConfig) -> int:
    """Images decoded per GM: enough for a training GM's training and held-out
    images, and for an unseen GM's test images."""
    return max(cfg.train_per_gm + cfg.seen_per_gm, cfg.test_per_gm)


def _load_images(ds: GMDataset, cfg: EvalConfig, console: Console) -> ImageBank:
    """Decode every GM's images and the real crops once for all folds."""
    n_load = _images_per_gm(cfg)
    console.print(f"decoding {len(ds)} GMs x {n_load} images and {len(ds.real)} real crops")
    bank = load_bank(ds, per_gm=n_load, seed=cfg.seed, size=cfg.image_size)
    for line in bank.failures:
        console.print(f"[yellow]skipped:[/] {line}")
    return bank


def _held_out(split_info: dict, sfolds: list[list[str]], k: int) -> tuple[set[str], set[str]]:
    """The real source photographs and collections that fold k holds out (no
    collection where photographs are held out one by one)."""
    collections = set(split_info["test_collections"][k])
    if split_info["real_by"] != "collection":  # photographs held out one by one
        collections = set()
    return set(sfolds[k]), collections


def _run_folds(
    ds: GMDataset,
    n_zoo: int,
    bank: ImageBank,
    plans: list[FoldPlan],
    held: list[tuple[set[str], set[str]]],
    cfg: EvalConfig,
    out: Path,
    console: Console,
) -> tuple[list[FoldData], np.ndarray]:
    """Fit every method fold by fold and predict the fold's test images: the answers
    per fold, and the fold in which each GM is unseen. The gallery holds the zoo's
    training GMs (its first `n_zoo`), not the synthesized ones."""
    arch, bits = ds.arch_matrix(), ds.loss_matrix()
    fold_of_gm = np.zeros(len(ds), dtype=int)
    data: list[FoldData] = []
    for k, plan in enumerate(plans):
        console.rule(f"fold {k + 1}/{cfg.folds}: {len(plan.test)} unseen GMs")
        fold_of_gm[plan.test_gms] = k
        x = _fold_inputs(bank, plan, arch, bits, held[k], cfg)
        fd = _fold_data(bank, plan, x.fold_norm, cfg)
        zoo_gms = [i for i in plan.train_gms if i < n_zoo]  # a prefix: see seen_label
        for m in make_methods(cfg):
            _fit_and_predict(m, k, x, fd, ds, bank, zoo_gms, cfg, out, console)
        data.append(fd)
    return data, fold_of_gm


@dataclass
class FoldInputs:
    """One fold's training data (its images and the parsing targets on the fold's
    own scale) and its test images, clean and degraded (`degraded`)."""

    train_bank: ImageBank
    fold_norm: Normalizer
    targets: Targets
    unseen: np.ndarray  # the unseen GMs' test images
    seen: np.ndarray  # the training GMs' held-out images
    real: np.ndarray  # the held-out real crops
    unseen_degraded: dict[str, np.ndarray]
    real_degraded: dict[str, np.ndarray]
    paired: np.ndarray  # the aligned real crops of `paired_of` unseen images
    paired_jpeg75: np.ndarray  # the same for `paired_degraded_of` degraded images, JPEG q75
    paired_of: np.ndarray  # indices into `unseen`
    paired_degraded_of: np.ndarray  # indices into the degraded unseen images


def _fold_inputs(
    bank: ImageBank,
    plan: FoldPlan,
    arch: np.ndarray,
    bits: np.ndarray,
    held: tuple[set[str], set[str]],
    cfg: EvalConfig,
) -> FoldInputs:
    """A fold's training and test images; its training keeps no pair made from a
    real crop of the held-out sources and collections `held`."""
    t_idx, u_idx = plan.train_gms, plan.test_gms
    n_load = _images_per_gm(cfg)
    train_bank = replace(
        bank.subset(t_idx, cfg.train_per_gm),
        real=bank.real[plan.real_train],
        real_sources=[bank.real_sources[i] for i in plan.real_train],
    ).without_pairs_from(*held)
    fold_norm = Normalizer().fit(arch[t_idx])
    targets = encode(arch[t_idx], bits[t_idx], fold_norm)
    unseen = np.concatenate([bank.fake[i][: cfg.test_per_gm] for i in u_idx])
    seen = np.concatenate([bank.fake[i][cfg.train_per_gm : n_load] for i in t_idx])
    real = bank.real[plan.real_test]
    unseen_d = degraded(np.concatenate([bank.fake[i][: cfg.neutral_per_gm] for i in u_idx]), cfg)
    real_d = degraded(real, cfg)
    paired_of, paired = held_out_pairs(bank, u_idx, cfg.test_per_gm, held)
    paired_d_of, paired_d = held_out_pairs(bank, u_idx, cfg.neutral_per_gm, held)
    jpeg75 = CONDITIONS["jpeg75"][1]
    paired_jpeg75 = np.stack([jpeg75(a) for a in paired_d]) if len(paired_d) else paired_d
    return FoldInputs(
        train_bank,
        fold_norm,
        targets,
        unseen,
        seen,
        real,
        unseen_d,
        real_d,
        paired,
        paired_jpeg75,
        paired_of,
        paired_d_of,
    )


def held_out_pairs(
    bank: ImageBank, gms: list[int], n: int, held: tuple[set[str], set[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """The aligned real crops of the first `n` images of each GM of `gms` whose
    photograph is held out (its source in `held[0]` or its collection in
    `held[1]`): indices into the concatenation of those images, and the crops. A
    GM without pairs gives none. The pretrained tier's test: an upscaled photograph
    against the photograph itself, neither seen in training."""
    sources, collections = held
    idx, crops, offset = [], [], 0
    for i in gms:
        pairs, origins = bank.pair_of(i)[:n], bank.origins_of(i)[:n]
        for j, (s, c) in enumerate(origins[: len(pairs)]):
            if s in sources or c in collections:
                idx.append(offset + j)
                crops.append(pairs[j])
        offset += len(bank.fake[i][:n])
    if not crops:
        return np.zeros(0, int), np.zeros((0, 1, 1, 3), np.uint8)
    return np.array(idx), np.stack(crops)


def _fold_data(bank: ImageBank, plan: FoldPlan, fold_norm: Normalizer, cfg: EvalConfig) -> FoldData:
    """A fold's record before any method answers: the GM of each unseen image, the
    closed-set label of each held-out image, the fold's scale and each real crop's
    source."""
    n_load = _images_per_gm(cfg)
    fd = FoldData()
    fd.info["unseen_gm"] = np.concatenate(
        [[i] * len(bank.fake[i][: cfg.test_per_gm]) for i in plan.test_gms]
    )
    fd.info["degraded_gm"] = np.concatenate(
        [[i] * len(bank.fake[i][: cfg.neutral_per_gm]) for i in plan.test_gms]
    )
    fd.info["seen_label"] = np.concatenate(
        [[j] * len(bank.fake[i][cfg.train_per_gm : n_load]) for j, i in enumerate(plan.train_gms)]
    )
    fd.info["fold_norm"] = fold_norm
    fd.info["methods"] = {}
    fd.info["real_source"] = [bank.real_sources[i] for i in plan.real_test]
    return fd


def _fit_and_predict(
    m: Method,
    k: int,
    x: FoldInputs,
    fd: FoldData,
    ds: GMDataset,
    bank: ImageBank,
    zoo_gms: list[int],
    cfg: EvalConfig,
    out: Path,
    console: Console,
) -> None:
    """Fit `m` on fold k's training data and record in `fd` its answers on the
    fold's test images, its gallery of the training GMs `zoo_gms` and its timings
    (in fold 0 also its fingerprints and the leakage check)."""
    console.print(f"[bold]{LABELS[m.name]}[/]: fitting")
    info = m.fit(ds, x.train_bank, x.targets, out / f"fold{k}", console)
    fd.info.setdefault("grouper", {})[m.name] = m.group
    t0 = time.perf_counter()
    fd.unseen[m.name] = m.predict(x.unseen)
    fd.seen[m.name] = m.predict(x.seen)
    fd.real[m.name] = m.predict(x.real)
    fd.info.setdefault("gallery", {})[m.name] = gallery(m, bank, zoo_gms, cfg)
    for c in x.unseen_degraded:
        fd.unseen_degraded.setdefault(c, {})[m.name] = m.predict(x.unseen_degraded[c])
        fd.real_degraded.setdefault(c, {})[m.name] = m.predict(x.real_degraded[c])
    if len(x.paired_of):
        fd.paired[m.name] = m.predict(x.paired)
    if len(x.paired_degraded_of):
        fd.paired_jpeg75[m.name] = m.predict(x.paired_jpeg75)
    fd.info["paired_of"] = x.paired_of
    fd.info["paired_degraded_of"] = x.paired_degraded_of
    info["predict_seconds"] = time.perf_counter() - t0
    fd.info["methods"][m.name] = info
    if k == 0:
        _fold0_extras(m, fd, x.unseen, x.real, cfg, out, console)
    console.print(
        f"  trained {info['train_seconds']:.0f} s ({info['steps']} steps), "
        f"predicted {info['predict_seconds']:.0f} s"
    )


def _fold0_extras(m, fd: FoldData, unseen, real, cfg: EvalConfig, out: Path, console) -> None:
    """Fingerprints for the figures and the content-leakage check (fold 0 only)."""
    from gmtrace.core.spectrum import residual

    n = min(cfg.leakage_images, len(unseen) + len(real))
    rng = np.random.default_rng(cfg.seed)
    pool = np.concatenate([unseen, real])
    pick = np.sort(rng.choice(len(pool), n, replace=False))
    imgs = pool[pick]
    fps = m.fingerprints(imgs)
    if fps is None:
        return
    fd.info.setdefault("fingerprints", {})[m.name] = m.fingerprints(unseen)
    console.print("  content leakage check")
    inputs = {"fingerprint": fps}
    if "leakage" not in fd.info:  # the references, once
        inputs |= {"image": imgs.astype(np.float32) / 255.0, "high-pass residual": residual(imgs)}
    res = _cached_leakage(inputs, imgs, cfg.leakage_steps, cfg.seed, out / LEAKAGE_CACHE)
    lk = fd.info.setdefault("leakage", {"images": n, "steps": cfg.leakage_steps})
    for k in ("image", "high-pass residual"):
        if k in res:
            lk[k] = res[k]
    lk[f"fingerprint ({m.name})"] = res["fingerprint"]


LEAKAGE_CACHE = "leakage_cache.json"  # in the run folder: each input's PSNR, by content


def _cached_leakage(
    inputs: dict[str, np.ndarray], images: np.ndarray, steps: int, seed: int, path: Path
) -> dict:
    """`leakage`, each input's PSNR read from `path` where the same input, images,
    steps and seed were scored before (each input's decoder is seeded on its own,
    so an input's figure does not depend on the others'); a rerun of a run whose
    networks are cached rescored it every time (minutes on the 2 cores)."""
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        cache = {}  # our own cache, unreadable: computed again and rewritten
    keys = {}
    for name, x in inputs.items():
        h = hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes())
        h.update(np.ascontiguousarray(images).tobytes())
        keys[name] = f"{h.hexdigest()[:32]}-{steps}-{seed}"
    todo = {n: x for n, x in inputs.items() if keys[n] not in cache}
    if todo:
        cache |= {keys[n]: v for n, v in leakage(todo, images, steps, seed).items()}
        atomic_write_text(path, json.dumps(cache, indent=1) + "\n")
    return {n: cache[keys[n]] for n in inputs}


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gmtrace": __version__,
    }


def _score(ds, data: list[FoldData], folds, fold_of_gm, global_norm, cfg: EvalConfig) -> dict:
    """Every method's scores over all folds: parsing against the random ground
    truth, detection, attribution, open set and grouping per fold, and timings."""
    arch, bits = ds.arch_matrix(), ds.loss_matrix()
    gt_all = encode(arch, bits, global_norm)
    gt = {"cont": gt_all.continuous, "disc": gt_all.discrete, "loss": bits}
    res: dict = {"methods": {}, "n_gms": len(ds), "folds": [sorted(f) for f in folds]}
    res["family_prior_loss_f1"] = family_prior_loss_f1(
        ds.names, [g.family for g in ds.gms], bits, folds
    )
    # each fold's continuous predictions rescaled to the global normalized scale
    to_global = _to_global(data, global_norm, arch.shape[1])
    for name in cfg.methods:
        r: dict = {"label": LABELS[name]}
        r["parsing"] = None
        if method_parses(name):
            r["parsing"] = _parsing_scores(data, name, gt, to_global, fold_of_gm, cfg)
        r |= _fold_scores(ds, data, name)
        r["by_codebase"] = _rows_by(np.array(ds_codebases(ds)), data, name)
        r["by_tier"] = _rows_by(np.array(ds.tiers), data, name)
        r |= _timings(data, name)
        if data[0].unseen[name].unsure is not None:
            r["unsure"] = _unsure_scores(data, name)
        res["methods"][name] = r
    return res


def _unsure_scores(data: list[FoldData], name: str) -> dict:
    """For a method with an unsure band, folds pooled, clean and under each
    condition: the share of test images (unseen GMs' and held-out photographs')
    called unsure, the accuracy at p = 0.5 on the rest and on all of them, and how
    often each reason was given."""

    def pooled(unseen: list[Inference], real: list[Inference]) -> dict:
        p = np.concatenate([i.p_generated for i in unseen + real])
        y = np.concatenate(
            [np.ones(len(i.p_generated)) for i in unseen]
            + [np.zeros(len(i.p_generated)) for i in real]
        )
        unsure = np.concatenate([i.unsure for i in unseen + real])
        reasons = np.concatenate([i.unsure_reason for i in unseen + real])[unsure]
        right = (p > 0.5) == (y > 0.5)
        sure = ~unsure
        return {
            "images": int(len(p)),
            "unsure_share": float(unsure.mean()),
            "unsure_share_generated": float(unsure[y > 0.5].mean()),
            "unsure_share_real": float(unsure[y < 0.5].mean()),
            "accuracy_sure": float(right[sure].mean()) if sure.any() else None,
            "accuracy_all": float(right.mean()),
            "reasons": dict(Counter(reasons.tolist())),
        }

    out = {"clean": pooled([fd.unseen[name] for fd in data], [fd.real[name] for fd in data])}
    for c in data[0].unseen_degraded:
        out[c] = pooled(
            [fd.unseen_degraded[c][name] for fd in data], [fd.real_degraded[c][name] for fd in data]
        )
    return out


def _parsing_scores(
    data: list[FoldData], name: str, gt: dict, to_global: list, fold_of_gm, cfg: EvalConfig
) -> dict:
    """A method's parsing of the unseen GMs of all folds, per image and per GM,
    against the random ground truth (`permutation_test`), and its loss-type AUCs;
    for a method whose parsing abstains, the same on the fields that answered, with
    their coverage; and for every method, the same with a gate drawn across folds
    (`_gate_across_folds`)."""
    per_image, gm, lprob, dprob, spread = _per_image_parses(data, name, to_global)
    per_gm, u, agg_l = _per_gm_parses(data, name, to_global)
    gm_pos = {g: i for i, g in enumerate(u)}
    gt_u = {k: v[u] for k, v in gt.items()}
    row_u = np.array([gm_pos[g] for g in u])

    def test(ans_image=None, ans_gm=None) -> dict:
        return {
            "per_image": permutation_test(
                per_image, gt, gm, fold_of_gm, cfg.permutations, cfg.seed, ans_image
            ),
            "per_gm": permutation_test(
                per_gm, gt_u, row_u, fold_of_gm[u], cfg.permutations, cfg.seed, ans_gm
            ),
        }

    out = test() | {
        "loss_auc_per_image": loss_auc(lprob, gt["loss"][gm]),
        "loss_auc_per_gm": loss_auc(agg_l, gt["loss"][u]),
    }

    def answered(ans: np.ndarray) -> dict:
        # each field scored where it answered; a GM's field answers where it does
        # for most of the GM's images
        ans_gm = np.stack([ans[gm == g].mean(axis=0) >= 0.5 for g in u])
        n_fields = ans.sum(axis=1)
        return test(ans, ans_gm) | {
            "coverage": ans.mean(axis=0).tolist(),
            "coverage_gm": ans_gm.mean(axis=0).tolist(),
            "fields_answered_median": float(np.median(n_fields)),
            "fields_answered_mean": float(n_fields.mean()),
        }

    if data[0].unseen[name].parse_answered is not None:  # the method's own gate
        out["answered"] = answered(
            np.concatenate([fd.unseen[name].parse_answered for fd in data]).astype(bool)
        )
    if len(data) >= 2:
        parts = (per_image["cont"], dprob, lprob)
        ans, reliable, rules = _gate_across_folds(parts, spread, gm, fold_of_gm, gt, cfg.seed)
        out["answered_across_folds"] = answered(ans) | {
            "reliable_per_fold": reliable,
            "rule_per_fold": rules,
        }
    return out


def _gate_across_folds(
    parts: tuple, spread: np.ndarray | None, gm, fold_of_gm, gt: dict, seed: int
) -> tuple[np.ndarray, list[list[str]], list[dict]]:
    """Parsing that abstains, its gate drawn across folds (`abstain.ParseGate`): a
    fold's fields answer where the other folds' networks parsed them better than
    shuffled truth on their own test codebases (which those networks never saw), by
    the gate rule chosen with each of those folds left out in turn
    (`ParseGate.fit_nested`); no truth of the fold's own test GMs is read. `parts`:
    every unseen image's continuous values (global scale), class and loss-type
    probabilities (`_per_image_parses`), and the counts' spread where the parse has
    one. Returns the answered mask [images, 25], each fold's answering fields, and
    each fold's rule with every rule's score."""
    pred, conf = field_matrix(*parts), confidence(*parts, spread)
    truth = truth_matrix(gt["cont"], gt["disc"], gt["loss"])
    fold_of_row = fold_of_gm[gm]
    ans = np.zeros(conf.shape, bool)
    reliable, rules = [], []
    for k in np.unique(fold_of_row):
        other = fold_of_row != k
        gate, rule, scores = ParseGate.fit_nested(
            pred[other], conf[other], truth, gm[other], fold_of_row[other], seed
        )
        ans[~other] = gate.open(conf[~other])
        reliable.append(gate.reliable())
        rules.append({"rule": rule.word, "scores": scores})
    return ans, reliable, rules


def _per_image_parses(
    data: list[FoldData], name: str, to_global: list
) -> tuple[dict, np.ndarray, np.ndarray, list[np.ndarray], np.ndarray | None]:
    """A method's parse of each unseen image of all folds (continuous values on the
    global scale), the GM of each image, its loss-type probabilities, its class
    probabilities per discrete field, and its counts' spread (`Inference.count_spread`)
    on the global scale, None where a fold's parse has none."""
    conts, discs, losses, gms, spreads = [], [], [], [], []
    for fd, scale in zip(data, to_global, strict=True):
        inf = fd.unseen[name]
        conts.append(scale(inf.continuous))
        if inf.count_spread is not None:  # half the width of value +- spread, mapped
            lo, hi = inf.continuous - inf.count_spread, inf.continuous + inf.count_spread
            spreads.append(np.abs(scale(hi) - scale(lo)) / 2)
        discs.append(inf.discrete_prob)
        losses.append(inf.loss_prob)
        gms.append(fd.info["unseen_gm"])
    dprob = [np.concatenate([d[j] for d in discs]) for j in range(len(DISCRETE))]
    lprob = np.concatenate(losses)
    parses = {
        "cont": np.concatenate(conts),
        "disc": [p.argmax(1) for p in dprob],
        "loss": lprob >= LOSS_THRESHOLD,
    }
    spread = np.concatenate(spreads) if len(spreads) == len(data) else None
    return parses, np.concatenate(gms), lprob, dprob, spread


def _per_gm_parses(
    data: list[FoldData], name: str, to_global: list
) -> tuple[dict, np.ndarray, np.ndarray]:
    """A method's parse of each unseen GM, of its test images taken together
    (`Inference.parse_of`), in GM order: the parses, the GMs and their loss-type
    probabilities."""
    rows = []
    for fd, scale in zip(data, to_global, strict=True):
        inf, g_of = fd.unseen[name], fd.info["unseen_gm"]
        for g in np.unique(g_of):
            c, d, lp = inf.parse_of(g_of == g)
            rows.append((g, scale(c[None])[0], d, lp))
    rows.sort(key=lambda row: row[0])
    agg_d = [np.stack([row[2][j] for row in rows]) for j in range(len(DISCRETE))]
    agg_l = np.stack([row[3] for row in rows])
    parses = {
        "cont": np.stack([row[1] for row in rows]),
        "disc": [p.argmax(1) for p in agg_d],
        "loss": agg_l >= LOSS_THRESHOLD,
    }
    return parses, np.array([row[0] for row in rows]), agg_l


def _fold_scores(ds: GMDataset, data: list[FoldData], name: str) -> dict:
    """A method's detection, attribution, open-set and grouping scores over folds
    (`_fold_stats`), and where its detection fails, all folds pooled."""
    conds = list(data[0].unseen_degraded)
    per_fold = [
        _detection_fold(fd, name, conds) | _attribution_fold(fd, name) | _grouping_fold(fd, name)
        for fd in data
    ]

    def stats(key: str) -> dict:
        return _fold_stats([f[key] for f in per_fold])

    r = {"detection": stats("detection")}
    r["detection_errors"] = _detection_errors(ds, data, name)
    r["detection_degraded"] = {c: _fold_stats([f["degraded"][c] for f in per_fold]) for c in conds}
    r["detection_format_neutral"] = r["detection_degraded"]["format_neutral"]
    r["closed_set_accuracy"] = _fold_stats([{"acc": f["closed"]} for f in per_fold])["acc"]
    r["open_set_auroc"] = _fold_stats([{"auroc": f["open"]} for f in per_fold])["auroc"]
    r["gallery"] = stats("gallery")
    r["grouping"] = stats("grouping")
    r["grouping_half"] = stats("grouping_half")
    r["grouping_threshold"] = stats("grouping_threshold")
    r["detection_pooled"] = _pooled_detection(data, name, conds)
    if len(data) >= 2:
        r["detection_pooled_calibrated"] = _calibrated_across_folds(data, name, conds)
    return r


def _pooled_detection(
    data: list[FoldData], name: str, conds: list[str], maps: list | None = None
) -> dict:
    """Detection over every fold's images at once (one threshold for all, as a user
    gets it): clean and under each condition. With `maps` (one per fold,
    `fusion.fit_recalibration`), each fold's p read through its map."""
    maps = maps or [None] * len(data)

    def pool(unseen: list[Inference], real: list[Inference]) -> dict:
        def p(infs: list[Inference]) -> np.ndarray:
            return np.concatenate(
                [recalibrated(m, i.p_generated) for m, i in zip(maps, infs, strict=True)]
            )

        return detection_scores(p(unseen), p(real))

    out = {"clean": pool([fd.unseen[name] for fd in data], [fd.real[name] for fd in data])}
    for c in conds:
        out[c] = pool(
            [fd.unseen_degraded[c][name] for fd in data], [fd.real_degraded[c][name] for fd in data]
        )
    return out


def _calibrated_across_folds(data: list[FoldData], name: str, conds: list[str]) -> dict:
    """Detection over every fold's images at once, each fold's p read through a
    recalibration (`fusion.fit_recalibration`) fitted on the other folds' clean test
    answers (their unseen GMs' images and held-out photographs, which their networks
    never saw); no label of the fold's own test images is read. This is the
    calibration a shipped model adopts from a run (`gmtrace evaluate adopt`),
    measured. Clean and under each condition (the maps fitted on clean answers),
    and each fold's map (weight, bias on the logit)."""
    clean = [(fd.unseen[name].p_generated, fd.real[name].p_generated) for fd in data]
    maps = []
    for k in range(len(data)):
        f = np.concatenate([c[0] for i, c in enumerate(clean) if i != k])
        r = np.concatenate([c[1] for i, c in enumerate(clean) if i != k])
        maps.append(fit_recalibration(np.r_[f, r], np.r_[np.ones(len(f)), np.zeros(len(r))]))
    out = _pooled_detection(data, name, conds, maps)
    out["maps"] = [[float(m.weights[0]), m.bias] for m in maps]
    return out


def _rows_by(keys: np.ndarray, data: list[FoldData], name: str) -> dict:
    """A method's figures per key (a codebase or a tier) of the unseen GMs, pooled
    over the folds that test it: detection AUC of its images against those folds'
    held-out real crops, clean and with both classes JPEG-compressed at quality 75;
    where its GMs have aligned pairs, the same against the very photographs its images
    were made from (held-out photographs only); open-set AUROC against the folds'
    held-out images of training GMs; grouping of the key's own images per fold (the
    number of GMs unknown), ARI averaged over its folds."""
    from sklearn.metrics import roc_auc_score

    pools: dict[str, dict[str, list]] = {}
    for fd in data:
        unseen, real, seen = fd.unseen[name], fd.real[name], fd.seen[name]
        of_image = keys[fd.info["unseen_gm"]]
        of_degraded = keys[fd.info["degraded_gm"]]
        paired_of = fd.info.get("paired_of", np.zeros(0, int))
        paired_d_of = fd.info.get("paired_degraded_of", np.zeros(0, int))
        for cb in sorted(set(of_image)):
            mask = of_image == cb
            gms = fd.info["unseen_gm"][mask]
            p = pools.setdefault(cb, defaultdict(list))
            p["fake"].append(unseen.p_generated[mask])
            p["real"].append(real.p_generated)
            p["os"].append(unseen.open_score[mask])
            p["on"].append(seen.open_score)
            p["gms"].append(gms)
            p["ari"].append(
                grouping_scores(
                    _grouper(fd, name)(unseen.embedding[mask], _rows(unseen.description, mask)),
                    np.unique(gms, return_inverse=True)[1],
                )["ari"]
            )
            if "jpeg75" in fd.unseen_degraded:
                p["fj"].append(fd.unseen_degraded["jpeg75"][name].p_generated[of_degraded == cb])
                p["rj"].append(fd.real_degraded["jpeg75"][name].p_generated)
            if name in fd.paired:
                own = of_image[paired_of] == cb
                p["pf"].append(unseen.p_generated[paired_of[own]])
                p["pr"].append(fd.paired[name].p_generated[own])
            if name in fd.paired_jpeg75:
                own = of_degraded[paired_d_of] == cb
                p["pfj"].append(fd.unseen_degraded["jpeg75"][name].p_generated[paired_d_of[own]])
                p["prj"].append(fd.paired_jpeg75[name].p_generated[own])

    def auc(p, fake: str, real: str) -> float | None:
        f = np.concatenate(p[fake]) if p[fake] else np.zeros(0)
        r = np.concatenate(p[real]) if p[real] else np.zeros(0)
        return detection_scores(f, r)["auc"] if len(f) and len(r) else None

    rows = {}
    for cb, p in sorted(pools.items()):
        pos, neg = np.concatenate(p["os"]), np.concatenate(p["on"])
        rows[cb] = {
            "gms": int(len(set(np.concatenate(p["gms"]).tolist()))),
            "images": int(len(pos)),
            "auc": auc(p, "fake", "real"),
            "auc_jpeg75": auc(p, "fj", "rj"),
            "paired_images": int(sum(len(a) for a in p["pr"])),
            "auc_paired": auc(p, "pf", "pr"),
            "auc_paired_jpeg75": auc(p, "pfj", "prj"),
            "open_set_auroc": float(
                roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
            ),
            "ari": float(np.mean(p["ari"])),
        }
    return rows


def _detection_fold(fd: FoldData, name: str, conds: list[str]) -> dict:
    """A method's detection scores in one fold: clean and under each condition."""
    return {
        "detection": detection_scores(fd.unseen[name].p_generated, fd.real[name].p_generated),
        "degraded": {
            c: detection_scores(
                fd.unseen_degraded[c][name].p_generated, fd.real_degraded[c][name].p_generated
            )
            for c in conds
        },
    }


def _attribution_fold(fd: FoldData, name: str) -> dict:
    """A method's closed-set accuracy and open-set AUROC in one fold, by its
    attribution and open-set score, and by its gallery (nearest entry)."""
    from sklearn.metrics import roc_auc_score

    seen, unseen = fd.seen[name], fd.unseen[name]
    s = np.r_[unseen.open_score, seen.open_score]
    y = np.r_[np.ones(len(unseen.open_score)), np.zeros(len(seen.open_score))]
    centroids = fd.info["gallery"][name]
    sim_seen = seen.embedding @ centroids.T
    sim_unseen = unseen.embedding @ centroids.T
    return {
        "closed": float(np.mean(seen.attribution.argmax(1) == fd.info["seen_label"])),
        "open": float(roc_auc_score(y, s)),
        "gallery": {
            "closed": float(np.mean(sim_seen.argmax(1) == fd.info["seen_label"])),
            "open": float(roc_auc_score(y, -np.r_[sim_unseen.max(1), sim_seen.max(1)])),
        },
    }


def _grouping_fold(fd: FoldData, name: str) -> dict:
    """A method's grouping of one fold's unseen images (`grouping.group`), and
    the earlier design's for comparison: cut at a distance learned on the seen GMs."""
    seen, unseen = fd.seen[name], fd.unseen[name]
    gm = fd.info["unseen_gm"]
    truth = np.unique(gm, return_inverse=True)[1]
    thr = choose_threshold(seen.embedding, fd.info["seen_label"])
    half = first_half(gm)  # the case halved: half of each GM's images
    grouper = _grouper(fd, name)
    return {
        "grouping": grouping_scores(grouper(unseen.embedding, unseen.description), truth),
        "grouping_half": grouping_scores(
            grouper(unseen.embedding[half], _rows(unseen.description, half)), truth[half]
        ),
        "grouping_threshold": grouping_scores(cluster(unseen.embedding, thr), truth)
        | {"threshold": thr},
    }


def _grouper(fd: FoldData, name: str):
    """How the method `name` groups (`Method.group`: embedding, self-descriptions);
    the silhouette cut for runs recorded without it."""
    return fd.info.get("grouper", {}).get(name, lambda emb, _description=None: group(emb))


def _rows(a: np.ndarray | None, rows) -> np.ndarray | None:
    """`a[rows]`, or None where the method has no such answer."""
    return None if a is None else a[rows]


def _timings(data: list[FoldData], name: str) -> dict:
    """A method's training steps and seconds per fold, as its folds recorded them."""
    keys = ("train_seconds", "steps", "predict_seconds", "probe_seconds")
    return {k: [fd.info["methods"][name][k] for fd in data] for k in keys}


def _to_global(data: list[FoldData], global_norm, n_arch: int) -> list:
    """Each fold's map of its continuous predictions to the global normalized scale."""
    return [partial(_global_scale, fd.info["fold_norm"], global_norm, n_arch) for fd in data]


def save_out_of_fold(out: Path, ds, data: list[FoldData], global_norm, cfg: EvalConfig) -> Path:
    """What a shipped model adopts from this run (`gmtrace evaluate adopt`), every
    fold's test answers pooled, each from a network that never saw them: per method,
    the clean p of the unseen GMs' images and the held-out photographs (`M.p`, with
    their labels `M.y`), and where it parses, each unseen image's answers, their
    confidences and its GM (`M.pred`, `M.conf`, `M.gm`, `abstain.field_matrix`,
    `abstain.confidence`), against `truth` (`abstain.truth_matrix`, the global
    scale); each unseen image's embedding (`M.emb`), GM and fold (`unseen.gm`,
    `unseen.fold`), what `gmtrace index calibrate` fits the same-source map on.
    Safetensors: nothing is unpickled."""
    from safetensors.numpy import save_file

    arch, bits = ds.arch_matrix(), ds.loss_matrix()
    gt = encode(arch, bits, global_norm)
    arrays = {"truth": truth_matrix(gt.continuous, gt.discrete, bits)}
    # each unseen image's GM and fold: the pairs a same-source map is fitted on
    arrays["unseen.gm"] = np.concatenate([fd.info["unseen_gm"] for fd in data])
    arrays["unseen.fold"] = np.concatenate(
        [np.full(len(fd.info["unseen_gm"]), k) for k, fd in enumerate(data)]
    )
    to_global = _to_global(data, global_norm, arch.shape[1])
    for name in cfg.methods:
        emb = [fd.unseen[name].embedding for fd in data]
        if all(e is not None and e.ndim == 2 for e in emb):
            # each fold's own network's space, zero-padded to the widest (a fold's
            # discriminant directions are fewer where it trains on fewer GMs): the
            # pairs a map is fitted on never cross folds, so no distance changes
            width = max(e.shape[1] for e in emb)
            arrays[f"{name}.emb"] = np.concatenate(
                [np.pad(e, ((0, 0), (0, width - e.shape[1]))) for e in emb]
            )
        f = np.concatenate([fd.unseen[name].p_generated for fd in data])
        r = np.concatenate([fd.real[name].p_generated for fd in data])
        arrays[f"{name}.p"] = np.r_[f, r]
        arrays[f"{name}.y"] = np.r_[np.ones(len(f)), np.zeros(len(r))]
        if method_parses(name):
            per_image, gm, lprob, dprob, spread = _per_image_parses(data, name, to_global)
            parts = (per_image["cont"], dprob, lprob)
            arrays[f"{name}.pred"] = field_matrix(*parts)
            arrays[f"{name}.conf"] = confidence(*parts, spread)
            arrays[f"{name}.gm"] = gm.astype(np.float64)
    path = out / OUT_OF_FOLD
    with atomic_path(path) as tmp:
        save_file({k: np.ascontiguousarray(v, np.float64) for k, v in arrays.items()}, str(tmp))
    return path


def _global_scale(fold_norm, global_norm, n_arch: int, cont: np.ndarray) -> np.ndarray:
    """Continuous predictions [N, 9] on a fold's normalized scale -> the global one."""
    raw = np.zeros((len(cont), n_arch))
    counts = fold_norm.inverse(cont)
    for j, f in enumerate(CONTINUOUS):
        raw[:, ARCH_NAMES.index(f.name)] = counts[:, j]
    return global_norm.transform(raw)


def _detection_errors(ds: GMDataset, data: list[FoldData], name: str) -> dict:
    """Where detection fails, pooled over folds: the share of each held-out real
    source's crops called generated, and of each unseen GM's images called real
    (at p = 0.5)."""
    real: dict[str, list[float]] = {}
    for fd in data:
        for s, p in zip(fd.info["real_source"], fd.real[name].p_generated, strict=True):
            real.setdefault(s, []).append(float(p))
    fake = {}
    for fd in data:
        p, gm = fd.unseen[name].p_generated, fd.info["unseen_gm"]
        for g in np.unique(gm):
            fake[ds.names[g]] = float(np.mean(p[gm == g] < 0.5))
    return {
        "real_called_generated": {
            s: {"share": float(np.mean(np.array(v) >= 0.5)), "n": len(v)}
            for s, v in sorted(real.items())
        },
        "unseen_called_real": dict(sorted(fake.items(), key=lambda t: -t[1])),
    }


def _fold_stats(rows: list[dict]) -> dict:
    out = {}
    for k in rows[0]:
        v = np.array([row[k] for row in rows], dtype=float)
        out[k] = {"mean": float(v.mean()), "std": float(v.std()), "folds": v.tolist()}
    return out


# ---------------------------------------------------------------- figures and report


def _figures(ds, data: list[FoldData], folds, results, out: Path, cfg: EvalConfig) -> None:
    """Draw the figures of `FIGURES` into `out` (the fingerprint one only where the
    main method has fingerprints)."""
    fd = data[0]
    main = "gmtrace" if "gmtrace" in cfg.methods else cfg.methods[0]
    _save(_roc_figure(data, results, cfg), out, "roc")
    _save(_confusion_figure(fd, main), out, "confusion")
    _save(_embedding_figure(fd, main, cfg), out, "embedding")
    fig = _fingerprint_figure(ds, fd, main)
    if fig is not None:
        _save(fig, out, "fingerprints")


def _pyplot():
    """matplotlib's pyplot, drawing off screen (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, key: str) -> None:
    """Write figure `fig` to its file of `FIGURES` in `out` and close it."""
    fig.tight_layout()
    fig.savefig(out / FIGURES[key], dpi=110)
    _pyplot().close(fig)


def _roc_figure(data: list[FoldData], results: dict, cfg: EvalConfig):
    """Detection ROC curves of every method, pooled over folds: clean and
    format-neutral."""
    from sklearn.metrics import roc_curve

    fig, axes = _pyplot().subplots(1, 2, figsize=(9, 4))
    for ax, (title, c) in zip(
        axes,
        [("clean", None), ("format-neutral", "format_neutral")],
        strict=True,
    ):
        for name in cfg.methods:
            pf = np.concatenate(
                [(d.unseen if c is None else d.unseen_degraded[c])[name].p_generated for d in data]
            )
            pr = np.concatenate(
                [(d.real if c is None else d.real_degraded[c])[name].p_generated for d in data]
            )
            fpr, tpr, _ = roc_curve(np.r_[np.ones(len(pf)), np.zeros(len(pr))], np.r_[pf, pr])
            auc = results["methods"][name][
                "detection" if title == "clean" else "detection_format_neutral"
            ]["auc"]["mean"]
            ax.plot(fpr, tpr, label=f"{LABELS[name]} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_title(f"detection of unseen GMs, {title}")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=8, loc="lower right")
    return fig


def _confusion_figure(fd: FoldData, main: str):
    """The closed-set confusion matrix of method `main` in fold `fd` (fold 1)."""
    from sklearn.metrics import confusion_matrix

    seen = fd.seen[main]
    cm = confusion_matrix(
        fd.info["seen_label"], seen.attribution.argmax(1), labels=range(seen.attribution.shape[1])
    )
    fig, ax = _pyplot().subplots(figsize=(5.5, 5))
    ax.imshow(cm, cmap="viridis")
    ax.set_title(f"closed-set attribution, fold 1 ({LABELS[main]})")
    ax.set_xlabel("predicted GM")
    ax.set_ylabel("true GM")
    return fig


def _embedding_figure(fd: FoldData, main: str, cfg: EvalConfig):
    """A t-SNE map of the unseen GMs' images in method `main`'s embedding (fold 1)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    emb = fd.unseen[main].embedding
    lab = fd.info["unseen_gm"]
    x = PCA(n_components=min(30, emb.shape[1], len(emb))).fit_transform(emb)
    xy = TSNE(2, init="pca", random_state=cfg.seed, perplexity=min(30, len(emb) - 1)).fit_transform(
        x
    )
    fig, ax = _pyplot().subplots(figsize=(6, 5))
    ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab20", s=6)
    ax.set_title(f"embedding of unseen GMs' images, fold 1 (t-SNE, {LABELS[main]})")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _fingerprint_figure(ds, fd: FoldData, main: str):
    """For one unseen GM per family (at most 8, fold 1): an image, the mean
    fingerprint of method `main` and its spectrum; None without fingerprints."""
    fps = fd.info.get("fingerprints", {}).get(main)
    if fps is None:
        return None
    from gmtrace.data.images import load_rgb
    from gmtrace.nets.model import SpectrumEncoder

    lab = fd.info["unseen_gm"]
    fam = {}
    for g in np.unique(lab):
        fam.setdefault(ds.gms[g].family, g)
    chosen = list(fam.values())[:8]
    fig, axes = _pyplot().subplots(3, len(chosen), figsize=(1.6 * len(chosen), 5.2), squeeze=False)
    for c, g in enumerate(chosen):
        f = fps[np.flatnonzero(lab == g)]
        mean_fp = f.mean(0)
        spec = SpectrumEncoder.log_spectrum(torch.from_numpy(f).permute(0, 3, 1, 2)).mean(0).numpy()
        lo, hi = np.percentile(mean_fp, [1, 99])
        axes[0, c].imshow(load_rgb(ds.gms[g].images()[0]))
        axes[1, c].imshow(np.clip((mean_fp - lo) / (hi - lo + 1e-9), 0, 1))
        axes[2, c].imshow(spec, cmap="magma")
        axes[0, c].set_title(f"{ds.gms[g].family}\n{ds.gms[g].name}", fontsize=7)
        for r in range(3):
            axes[r, c].axis("off")
    axes[0, 0].text(-0.1, 0.5, "image", transform=axes[0, 0].transAxes, ha="right")
    axes[1, 0].text(-0.1, 0.5, "fingerprint", transform=axes[1, 0].transAxes, ha="right")
    axes[2, 0].text(-0.1, 0.5, "spectrum", transform=axes[2, 0].transAxes, ha="right")
    return fig
