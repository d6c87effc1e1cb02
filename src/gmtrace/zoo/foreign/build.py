"""`gmtrace zoo foreign`: plan the foreign-code tier's GMs, train and sample each
with its package's own code, and write the zoo layout (models.csv, fake/<gm>/,
pairs/<gm>/ for translators, real/).

Resumable like `zoo build`: a GM's folder appears only when it is complete. A GM
that fails is recorded and the rest go on; a GM whose images are all alike
(diversity under `COLLAPSE_BELOW`) or not finite is kept and counted as collapsed,
never dropped silently. Several packages need torchvision, whose PyPI build breaks
beside the product's torch: build this tier in its own environment
(`make foreign-env`, docs/tiers.md).
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.console import Console

from gmtrace.core.runtime import pick_device, seed_everything, set_threads
from gmtrace.core.schema import LOSS_TYPES
from gmtrace.data.dataset import LOSS_COLUMNS
from gmtrace.data.images import png_bytes
from gmtrace.zoo.foreign.base import FAMILIES, ForeignJob, codebase, installed
from gmtrace.zoo.real import CropPool, RealSource, write_real
from gmtrace.zoo.recipe import COLLAPSE_BELOW, diversity

if TYPE_CHECKING:
    from gmtrace.zoo.builder import BuildSummary

# the adapter modules; each registers its families when imported
ADAPTERS = (
    "gmtrace.zoo.foreign.diffusers_gms",
    "gmtrace.zoo.foreign.pythae_gms",
    "gmtrace.zoo.foreign.torchgan_gms",
    "gmtrace.zoo.foreign.normflows_gms",
    "gmtrace.zoo.foreign.monai_gms",
    "gmtrace.zoo.foreign.rectified_flow_gms",
    "gmtrace.zoo.foreign.stylegan2_gms",
    "gmtrace.zoo.foreign.gigagan_gms",
    "gmtrace.zoo.foreign.lightweight_gan_gms",
    "gmtrace.zoo.foreign.super_image_gms",
)


class ForeignError(RuntimeError):
    """A foreign tier that cannot be built; the message names the folder or package."""


@dataclass(frozen=True)
class ForeignPreset:
    name: str
    per_family: int  # GMs of each installed family
    resolution: int
    images_per_gm: int
    real_crops: int
    steps: tuple[int, int]  # each GM draws its steps log-uniformly in [lo, hi]
    batch: tuple[int, ...]
    pool: int  # real crops each GM trains on
    families: tuple[str, ...] = ()  # empty: every registered family installed
    catalog: bool = True
    # families left out when `families` is empty (shell-style patterns), but those
    # `include` matches (`--include`)
    skip: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    # at least this many GMs of each package (several configurations of one code):
    # a package's families get one more GM each, in turn, until it has them
    per_package: int = 0


PRESETS: dict[str, ForeignPreset] = {
    # one GM of one package, a few steps: the tests
    "tiny": ForeignPreset(
        "tiny", 1, 32, 6, 8, (3, 3), (4,), 16, families=("diffusers-ddpm",), catalog=False
    ),
    # one GM of each family and at least two of each package: 19 GMs of 16 families
    # and 8 packages (with super-image's, 25 of 22 and 9); steps 40-200 (the zoo's
    # default preset: 6-185, median 30; a family's `steps_factor` times that), so
    # that the build fits about an hour on 2 cores.
    # lightweight-gan's fixed 32x32 discriminator head with local attention costs
    # 10-20 s a step on this CPU (a GM of 95 steps: 47 min): large preset only.
    # super-image's upscalers are built with `--include 'superimage-*'`: in training
    # they did not raise the detection of the real upscalers held out
    # (docs/realmodel.md, "super-image's upscalers in training"), and the shipped
    # model is trained on the tier without them
    "default": ForeignPreset(
        "default",
        1,
        64,
        120,
        600,
        (40, 200),
        (8, 16),
        512,
        skip=("lightweight-gan", "superimage-*"),
        per_package=2,
    ),
    "large": ForeignPreset("large", 10, 64, 400, 2000, (300, 3000), (16, 32), 2048),
}


def skipped(preset: ForeignPreset, family: str) -> bool:
    """Whether `preset` leaves `family` out: a pattern of its `skip` matches it and
    none of its `include` does."""
    return any(fnmatch.fnmatch(family, s) for s in preset.skip) and not any(
        fnmatch.fnmatch(family, i) for i in preset.include
    )


def wanted_families(preset: ForeignPreset) -> tuple[str, ...]:
    """The families `preset` names: its `families`, or every registered one it does
    not skip."""
    return preset.families or tuple(f for f in sorted(FAMILIES) if not skipped(preset, f))


def load_adapters() -> list[str]:
    """Import every adapter module whose package is importable; return one line per
    adapter that could not be imported (its families are then absent)."""
    problems = []
    for module in ADAPTERS:
        try:
            importlib.import_module(module)
        except ImportError as e:
            problems.append(f"{module}: {e}")
    return problems


@dataclass(frozen=True)
class ForeignSpec:
    name: str
    family: str
    config: dict
    seed: int
    steps: int
    batch: int


def plan(preset: ForeignPreset, seed: int) -> list[ForeignSpec]:
    """Each installed family's GMs: configs, steps and batches drawn from the seed."""
    names = tuple(
        f for f in wanted_families(preset) if f in FAMILIES and installed(FAMILIES[f].package)
    )
    counts = dict.fromkeys(names, preset.per_family)
    by_package: dict[str, list[str]] = {}
    for f in names:
        by_package.setdefault(FAMILIES[f].package, []).append(f)
    for fams in by_package.values():
        turn = 0
        while sum(counts[f] for f in fams) < preset.per_package:
            counts[fams[turn % len(fams)]] += 1
            turn += 1
    specs = []
    for fam_name in names:
        fam = FAMILIES[fam_name]
        for i in range(counts[fam_name]):
            rng = np.random.default_rng([seed, i, *fam_name.encode()])
            lo, hi = preset.steps
            steps = int(round(np.exp(rng.uniform(np.log(lo), np.log(hi))))) * fam.steps_factor
            specs.append(
                ForeignSpec(
                    name=f"{fam_name.replace('-', '_')}_{i:03d}",
                    family=fam_name,
                    config=fam.configs(rng),
                    seed=int(rng.integers(0, 2**31 - 1)),
                    steps=steps,
                    batch=int(rng.choice(preset.batch)),
                )
            )
    return specs


def build_foreign_gm(spec: ForeignSpec, preset: ForeignPreset, photos, threads: int) -> dict:
    """Train and sample one GM with its package's code; its row, images and pairs."""
    from gmtrace.zoo.introspect import describe

    t0 = time.perf_counter()
    fam = FAMILIES[spec.family]
    set_threads(threads)
    rng = seed_everything(spec.seed)
    pool = CropPool(photos, preset.resolution, preset.pool, rng)
    inputs, sources = None, []
    if fam.kind == "translate":
        held = CropPool(photos, preset.resolution, preset.images_per_gm, rng)
        inputs, sources = held.pixels, held.sources
    with tempfile.TemporaryDirectory(prefix=f"gmtrace-{spec.name}-") as work:
        job = ForeignJob(
            name=spec.name,
            family=spec.family,
            config=spec.config,
            seed=spec.seed,
            resolution=preset.resolution,
            steps=spec.steps,
            batch=spec.batch,
            n_images=preset.images_per_gm,
            crops=pool.pixels,
            workdir=Path(work),
            inputs=inputs,
            threads=threads,
        )
        gm = fam.train_and_sample(job)
    images = np.asarray(gm.images)
    want = (preset.images_per_gm, preset.resolution, preset.resolution, 3)
    if images.shape != want or images.dtype != np.uint8:
        raise ForeignError(
            f"{spec.family}: returned images {images.shape} {images.dtype}, not {want}"
        )
    arch = describe(gm.module, gm.example)
    unknown = set(gm.losses) - set(LOSS_TYPES)
    if unknown:
        raise ForeignError(f"{spec.family}: loss types {sorted(unknown)} are not in the schema")
    div = diversity(images, pool.pixels)
    row = {
        "name": spec.name,
        "family": spec.family,
        "seed": spec.seed,
        "domain": "mixed",
        "resolution": preset.resolution,
        "n_images": len(images),
        **arch.values,
        "upsampling_kind": arch.extra["upsampling_kind"],
        "task": fam.kind,
        **{c: int(n in gm.losses) for c, n in zip(LOSS_COLUMNS, LOSS_TYPES, strict=True)},
        "steps": gm.steps or spec.steps,
        "batch": spec.batch,
        "diversity": round(div, 4),
        "collapsed": int(div < COLLAPSE_BELOW),
        "redraws": 0,
        "codebase": codebase(fam.package),
        "loss_source": gm.loss_source,
        "config": json.dumps({**spec.config, "sampler": gm.sampler, **gm.checks}, sort_keys=True),
    }
    result = {
        "row": row,
        "images": [png_bytes(a) for a in images],
        "seconds": round(time.perf_counter() - t0, 2),
        "final_losses": {k: float(v) for k, v in gm.final_losses.items() if np.isfinite(v)},
    }
    if inputs is not None:
        result["pairs"] = [png_bytes(a) for a in inputs]
        result["pair_sources"] = sources
    return result


def build_foreign(
    out: str | Path,
    preset: str = "default",
    seed: int = 0,
    real: str | None = None,
    console: Console | None = None,
    limit: int | None = None,
    threads: int = 1,
    families: tuple[str, ...] = (),
    include: tuple[str, ...] = (),
) -> BuildSummary:
    """Build (or resume) the foreign-code tier in `out`: the preset's families, or
    `families` only; `include` (shell-style patterns) builds families the preset
    skips too."""
    from gmtrace.zoo.builder import BuildSummary, build_tier_gms, finished_gms, open_tier_state

    t0 = time.perf_counter()
    console = console or Console()
    if preset not in PRESETS:
        raise ForeignError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if families:
        p = replace(p, families=tuple(families))
    if include:
        p = replace(p, include=tuple(include))
    out = Path(out)
    summary = BuildSummary(out, preset, kind="foreign-code tier", adapter_problems=load_adapters())
    wanted = wanted_families(p)
    unknown = [f for f in wanted if f not in FAMILIES]
    if unknown:
        missing = f" (adapters not loaded here: {len(summary.adapter_problems)})"
        raise ForeignError(
            f"unknown foreign families {', '.join(unknown)}; known: {', '.join(sorted(FAMILIES))}"
            + (missing if summary.adapter_problems else "")
        )
    summary.not_installed = sorted(
        {
            FAMILIES[f].package
            for f in wanted
            if f in FAMILIES and not installed(FAMILIES[f].package)
        }
    )
    specs = plan(p, seed)[:limit]
    if not specs:
        raise ForeignError(
            "no foreign family is installed; build this tier in its own environment: "
            "make foreign-env (docs/tiers.md)"
        )
    source = RealSource(str(Path(real).resolve()) if real else None, catalog=p.catalog)
    photos, summary.real_skipped = source.load()
    for line in summary.real_skipped:
        console.print(f"[yellow]skipped real image:[/] {line}")
    out.mkdir(parents=True, exist_ok=True)
    expected = {"tier": "foreign", "preset": p.name, "seed": seed, "real": source.describe()}
    state = open_tier_state(out, expected, p.resolution, ForeignError)
    summary.real_written = write_real(out, photos, p.resolution, p.real_crops, seed)
    done = finished_gms(out)
    for s in specs:
        if s.name in done and json.loads(done[s.name]["row"]["config"]).get("sampler") is None:
            raise ForeignError(f"{out / 'fake' / s.name}: not a foreign-tier GM; use another --out")
    by_name = {s.name: s for s in specs}
    device = pick_device()

    def build_one(name: str, tick) -> dict:
        return build_foreign_gm(by_name[name], p, photos, threads)

    def status(name: str) -> str:
        return f"{name} ({by_name[name].steps} steps, {device})"

    build_tier_gms(summary, state, list(by_name), build_one, console, t0, status=status)
    return summary
