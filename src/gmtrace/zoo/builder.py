"""`gmtrace zoo build`: plan GM configs, train each GM on real crops, sample its
images and write the zoo layout of DESIGN.md.

Resumable: a GM is trained and sampled into `.partial/`, and its folder appears
under `fake/` only when complete (rename), with `meta.json` written last. A rerun
keeps every finished GM and never trusts a partial one. Engines: `local` runs
GMs in this process (1 worker) or in a process pool; `ray` runs one Ray task per
GM on a local cluster or on an existing one (`--ray-address`).
"""

from __future__ import annotations

import json
import platform
import queue
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from gmtrace.core.files import atomic_dir, atomic_write_text
from gmtrace.core.runtime import (
    cpu_count,
    pick_device,
    progress,
    ray_start,
    seed_everything,
    set_threads,
)
from gmtrace.core.schema import LOSS_TYPES
from gmtrace.core.version import __version__
from gmtrace.data.dataset import (
    GMTRACE_CODEBASE,
    LOSS_COLUMNS,
    MODELS_COLUMNS,
    read_csv,
    write_csv,
)
from gmtrace.data.images import png_bytes, to_float
from gmtrace.zoo.catalog import FAMILIES, create_gm
from gmtrace.zoo.families import Balancer, describe_gm
from gmtrace.zoo.real import CropPool, RealSource, domains, write_real
from gmtrace.zoo.recipe import (
    BATCHES,
    COLLAPSE_BELOW,
    STABLE,
    Recipe,
    diversity,
    sample_recipe,
    to_8bit,
)


@dataclass(frozen=True)
class Preset:
    name: str
    families: dict[str, int]  # GMs per family
    resolution: int
    images_per_gm: int
    real_crops: int
    steps: tuple[int, int]  # training steps per GM: each draws log-uniformly in [lo, hi]
    batch: tuple[int, ...]  # batch sizes a GM draws from
    pool: int  # real crops in each GM's training pool
    catalog: bool = True  # default photos: embedded + Debian collections (False: embedded)

    @property
    def n_gms(self) -> int:
        return sum(self.families.values())


# one GM of each family (presets `tiny` and `demo`)
ONE_OF_EACH = {f: 1 for f in FAMILIES}
# GMs per family of the published-model families (zoo/published.py) in larger presets
PUBLISHED = {"fcgan": 6, "cgan": 8, "ddpm": 6, "vqvae": 8, "flow": 6}

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        ONE_OF_EACH,
        resolution=32,
        images_per_gm=12,
        real_crops=48,
        steps=(3, 3),
        batch=(4,),
        pool=32,
        catalog=False,  # tests: the 18 embedded photos, decoded in a second
    ),
    "demo": Preset(
        "demo",
        ONE_OF_EACH,
        resolution=64,
        images_per_gm=24,
        real_crops=48,
        steps=(20, 200),
        batch=(8, 12, 16),
        pool=128,
    ),
    "default": Preset(
        "default",
        {
            "dcgan": 18,
            "resgan": 14,
            "stylegan": 14,
            "vae": 16,
            "catvae": 10,
            "mmd": 14,
            "unet": 17,
            "resnet": 17,
            **PUBLISHED,
        },
        resolution=64,
        images_per_gm=300,
        real_crops=3000,
        steps=(6, 200),
        batch=BATCHES,
        pool=512,
    ),
    "full": Preset(
        "full",
        {
            "dcgan": 24,
            "resgan": 18,
            "stylegan": 18,
            "vae": 16,
            "catvae": 10,
            "mmd": 14,
            "unet": 20,
            "resnet": 20,
            **{f: 2 * n for f, n in PUBLISHED.items()},
        },
        resolution=128,
        images_per_gm=1000,
        real_crops=5000,
        steps=(300, 10000),
        batch=(16, 32, 64),
        pool=4096,
    ),
}


class ZooError(ValueError):
    """A zoo folder that cannot be built into; the message names it."""


@dataclass
class GMSpec:
    """Everything a worker needs to build one GM, and nothing it must share."""

    name: str
    family: str
    seed: int
    domain: str
    resolution: int
    config: dict
    steps: int
    batch: int
    pool: int
    n_images: int


def plan(preset: Preset, seed: int, domain_names: list[str]) -> list[GMSpec]:
    """The GMs of a preset, deterministic in (preset, seed, domains). Choices are
    balanced per family so every option of every choice is covered."""
    specs = []
    for fi, (family, count) in enumerate(preset.families.items()):
        rng = np.random.default_rng([seed, fi])
        b = Balancer(rng)
        for i in range(count):
            cfg = FAMILIES[family].sample_config(b, preset.resolution)
            recipe = sample_recipe(b, preset.steps, preset.batch)
            cfg["recipe"] = recipe.to_dict()
            specs.append(
                GMSpec(
                    name=f"{family}_{i:03d}",
                    family=family,
                    seed=int(rng.integers(0, 2**31 - 1)),
                    domain=str(b.pick("domain", domain_names)),
                    resolution=preset.resolution,
                    config=cfg,
                    steps=recipe.steps,
                    batch=recipe.batch,
                    pool=preset.pool,
                    n_images=preset.images_per_gm,
                )
            )
    return specs


# ---------------------------------------------------------------------------
# one GM (runs in a worker)

_PHOTOS: dict[RealSource, list] = {}


def _photos(source: RealSource):
    if source not in _PHOTOS:
        _PHOTOS[source] = source.load()[0]
    return _PHOTOS[source]


MAX_REDRAWS = 1  # retrainings of a GM whose probe images are not finite (diverged)


def build_gm(
    spec: GMSpec,
    source: RealSource,
    threads: int | None = None,
    report: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Train and sample one GM. Returns its models.csv row, timing and PNG bytes.

    Mode collapse is measured and fought, not hidden. A GM sampled with its
    normalization in eval mode first gets BigGAN's standing statistics (running
    statistics re-estimated over a few batches of the trained generator): after a
    short training the running averages lag far behind the batch statistics the
    generator trained with, and eval-mode images come out flat or saturated. Then a
    probe batch is sampled; a GM whose probe is not finite (diverged) is trained again
    from a new initialization with the zoo's known stable recipe (`recipe.STABLE`:
    Adam(0.5, 0.999) at 2e-4, torch's own init), the same steps, batch and sampling.
    The row records the redraw, the recipe used and the diversity of the images
    (collapsed under `COLLAPSE_BELOW`)."""
    t0 = time.perf_counter()
    set_threads(threads)
    device = pick_device()
    photos = [p for p in _photos(source) if p.domain == spec.domain] or _photos(source)
    arch = ground_truth(spec)
    for attempt in range(MAX_REDRAWS + 1):
        rng = seed_everything(spec.seed + 7919 * attempt)
        pool = CropPool(photos, spec.resolution, spec.pool, rng)
        config = spec.config
        if attempt:
            stable = replace(Recipe.from_dict(config.get("recipe")), **STABLE)
            config = {**config, "recipe": stable.to_dict()}
        gm = create_gm(spec.family, config, spec.resolution)
        last = _train(gm, spec, pool, device, report)
        if gm.recipe.sample_mode == "eval":
            standing_statistics(gm, pool, device)
        gm.train(gm.recipe.sample_mode == "train")  # normalization in eval or train mode
        inputs, pair_sources = _inputs(gm, spec, photos, spec.n_images)
        probe = _sample(gm, spec, inputs[:32], device, min(32, spec.n_images))
        if np.isfinite(probe).all():
            break
    t_train = time.perf_counter() - t0
    x = _sample(gm, spec, inputs, device, spec.n_images, report)
    pairs = [png_bytes(a) for a in inputs]
    if not np.isfinite(x).all():
        raise RuntimeError(f"{spec.name} produced non-finite pixels (training diverged)")
    images = [png_bytes(a) for a in to_8bit(x, gm.recipe.to_8bit)]
    div = diversity(to_8bit(x, "round"), pool.pixels)  # before the recipe's 8 bits
    row = {
        "name": spec.name,
        "family": spec.family,
        "seed": spec.seed,
        "domain": spec.domain,
        "resolution": spec.resolution,
        "n_images": len(images),
        **arch,
        "task": spec.config.get("task", ""),
        **{c: int(n in gm.loss_types()) for c, n in zip(LOSS_COLUMNS, LOSS_TYPES, strict=True)},
        **gm.recipe.row(),
        "diversity": round(div, 4),
        "collapsed": int(div < COLLAPSE_BELOW),
        "redraws": attempt,
        "codebase": GMTRACE_CODEBASE,
        "config": json.dumps(spec.config, sort_keys=True),
    }
    finite = {k: float(v) for k, v in last.items() if np.isfinite(v)}
    return {
        "row": row,
        "images": images,
        "pairs": pairs,  # translators: the real crop each image was made from, aligned
        "pair_sources": pair_sources,  # (source photograph, collection) of each pair
        "train_seconds": round(t_train, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "final_losses": finite,
    }


@torch.no_grad()
def standing_statistics(gm, pool: CropPool, device, batches: int = 4, n: int = 16) -> None:
    """Re-estimate the running statistics of the generator's batch norms as the
    plain average over `batches` batches of `n` samples in train mode (BigGAN's
    "standing statistics"); the layers keep their momentum afterwards."""
    bns = [m for m in gm.generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    gm.train()
    for _ in range(batches):
        real = torch.from_numpy(pool.batch(n)).to(device) if gm.kind == "translate" else None
        gm.sample(n, real)
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom


def _train(gm, spec: GMSpec, pool: CropPool, device, report) -> dict[str, float]:
    """The recipe's steps of the GM's own objective on batches of real crops
    (with the crops' source-photo labels for conditional GMs)."""
    gm.setup(device)
    gm.train()
    last: dict[str, float] = {}
    total = spec.steps + spec.n_images
    for step in range(spec.steps):
        real, labels = pool.batch_with_labels(spec.batch)
        real = torch.from_numpy(real).to(device)
        if gm.conditional:
            last = gm.train_step(real, torch.from_numpy(labels).to(device))
        else:
            last = gm.train_step(real)
        if report and (step % 5 == 4 or step == spec.steps - 1):
            report(spec.name, step + 1, total)
    return last


def _inputs(gm, spec: GMSpec, photos, n_images: int) -> tuple[np.ndarray, list]:
    """A translator's real input crops (uint8 [n, res, res, 3]; the same on every
    call, seeded by the GM's seed) and each one's (source photo, collection); none
    for noise-to-image GMs."""
    if gm.kind != "translate":
        return np.zeros((0, spec.resolution, spec.resolution, 3), np.uint8), []
    pool = CropPool(photos, spec.resolution, n_images, np.random.default_rng([spec.seed, 1]))
    return pool.pixels, pool.sources


def _sample(gm, spec: GMSpec, inputs, device, n_images: int, report=None) -> np.ndarray:
    """n_images from the GM as floats [N, 3, H, W]; translators map the real crops
    `inputs` (uint8, from `_inputs`; empty for noise-to-image GMs)."""
    out = []
    chunk = 50
    for start in range(0, n_images, chunk):
        n = min(chunk, n_images - start)
        real = None
        if len(inputs):
            real = torch.from_numpy(np.ascontiguousarray(to_float(inputs[start : start + n])))
            real = real.to(device)
        out.append(gm.sample(n, real).cpu().numpy())
        if report:
            report(spec.name, spec.steps + start + n, spec.steps + spec.n_images)
    return np.concatenate(out)


def _build_gm_queued(spec, source, threads, q):
    return build_gm(spec, source, threads, report=lambda *a: q.put(a))


# ---------------------------------------------------------------------------
# the zoo folder


def zoo_versions() -> dict[str, str]:
    import PIL
    import sklearn

    return {
        "gmtrace": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def finished_gms(out: Path) -> dict[str, dict]:
    """GMs whose folder is complete: fake/<name>/meta.json exists and parses."""
    done = {}
    fake = out / "fake"
    if fake.is_dir():
        for d in sorted(fake.iterdir()):
            meta = d / "meta.json"
            if meta.is_file():
                try:
                    done[d.name] = json.loads(meta.read_text())
                except (OSError, json.JSONDecodeError):
                    continue
    return done


def write_gm(out: Path, result: dict) -> dict:
    """Write a GM's images and meta.json under .partial/, then rename into fake/.
    A translator's aligned real inputs (`result["pairs"]`) go to pairs/<name>/ under
    the same file names, renamed into place before the GM's fake/ folder (which marks
    it complete). Returns the meta written."""
    name = result["row"]["name"]
    if result.get("pairs"):
        index = [
            {"file": f"{i:05d}.png", "source": s, "collection": c}
            for i, (s, c) in enumerate(result["pair_sources"])
        ]
        _write_folder(
            out / ".partial" / f"pairs.{name}", result["pairs"], out / "pairs" / name, index
        )
    meta = {k: v for k, v in result.items() if k not in ("images", "pairs", "pair_sources")}
    with atomic_dir(out / "fake" / name, out / ".partial" / name) as tmp:
        for i, data in enumerate(result["images"]):
            (tmp / f"{i:05d}.png").write_bytes(data)
        write_json(tmp / "meta.json", meta)
    return meta


def _write_folder(tmp: Path, files: list[bytes], final: Path, index: list[dict]) -> None:
    """PNG files 00000.png... and index.csv (file, source, collection) into `final`,
    atomically (written in `tmp`, then renamed)."""
    with atomic_dir(final, tmp) as work:
        for i, data in enumerate(files):
            (work / f"{i:05d}.png").write_bytes(data)
        write_csv(work / "index.csv", ("file", "source", "collection"), index)


def ground_truth(spec: GMSpec) -> dict:
    """The architecture columns of a GM's row: `describe()` of its generator, rebuilt
    from its config (no training needed: the architecture does not change)."""
    arch = describe_gm(create_gm(spec.family, spec.config, spec.resolution))
    return {**arch.values, "upsampling_kind": arch.extra["upsampling_kind"]}


def relabel(out: Path, specs: list[GMSpec], done: dict[str, dict]) -> list[str]:
    """Recompute the ground truth of finished GMs with today's `describe()` and
    rewrite the rows that changed (so labels never lag behind introspection)."""
    changed = []
    for spec in specs:
        meta = done[spec.name]
        fresh = ground_truth(spec)
        row = meta["row"]
        if any(str(row.get(k)) != str(v) for k, v in fresh.items()):
            row.update(fresh)
            write_json(out / "fake" / spec.name / "meta.json", meta)
            changed.append(spec.name)
    return changed


@dataclass
class BuildSummary:
    """What one build of a zoo or an outside tier did (`zoo build`, `zoo pretrained`,
    `zoo foreign`); the fields a builder has no use for stay empty."""

    out: Path
    preset: str
    kind: str = "zoo"  # the title of its table: zoo, pretrained tier, foreign-code tier
    planned: int = 0
    built: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    real_written: int = 0
    real_skipped: list[str] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # preset models not installed
    not_installed: list[str] = field(default_factory=list)  # packages of planned families
    adapter_problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing


def build_zoo(
    out: str | Path,
    preset: str = "tiny",
    seed: int = 0,
    real: str | None = None,
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    console: Console | None = None,
    limit: int | None = None,
) -> BuildSummary:
    """Build (or resume) a zoo in `out`. `limit` builds only the first N planned GMs."""
    t0 = time.perf_counter()
    console = console or Console()
    out = Path(out)
    if preset not in PRESETS:
        raise ZooError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    if engine not in ("local", "ray"):
        raise ZooError(f"unknown engine {engine!r}; use local or ray")
    if workers < 1:
        raise ZooError(f"--workers must be at least 1, got {workers}")
    p = PRESETS[preset]
    source = RealSource(str(Path(real).resolve()) if real else None, catalog=p.catalog)
    photos, skipped = source.load()
    for line in skipped:
        console.print(f"[yellow]skipped real image:[/] {line}")
    out.mkdir(parents=True, exist_ok=True)
    zoo_json = out / "zoo.json"
    state = _open_state(zoo_json, p, seed, source)
    shutil.rmtree(out / ".partial", ignore_errors=True)  # never trust partial work
    summary = BuildSummary(out=out, preset=preset, real_skipped=skipped)
    summary.real_written = write_real(out, photos, p.resolution, p.real_crops, seed)
    specs = plan(p, seed, domains(photos))[:limit]
    summary.planned = len(specs)
    done = finished_gms(out)
    for s in specs:
        if s.name in done and done[s.name]["row"]["config"] != json.dumps(s.config, sort_keys=True):
            raise ZooError(
                f"{out / 'fake' / s.name}: built from another config than this "
                f"gmtrace plans for it (a different version?); use another --out"
            )
    summary.relabelled = relabel(out, [s for s in specs if s.name in done], done)
    summary.resumed = [s.name for s in specs if s.name in done]
    pending = [s for s in specs if s.name not in done]
    for s in specs:
        state["gms"].setdefault(s.name, {"family": s.family, "status": "pending"})
        if s.name in done:
            state["gms"][s.name]["status"] = "done"
    write_json(zoo_json, state)
    _write_models(out, specs, done)

    def finish(spec: GMSpec, result: dict | None, error: str | None) -> None:
        entry = state["gms"][spec.name]
        if error is None:
            done[spec.name] = write_gm(out, result)
            entry.update(status="done", seconds=result["seconds"], error=None)
            summary.built.append(spec.name)
        else:
            entry.update(status="failed", error=error)
            summary.failed[spec.name] = error
            console.print(f"[red]failed:[/] {spec.name}: {error}")
        state["updated"] = _now()
        write_json(zoo_json, state)
        _write_models(out, specs, done)

    with progress(console) as bars:
        overall = bars.add_task(
            f"zoo {preset}", total=len(specs), status="", completed=len(summary.resumed)
        )
        rows: dict[str, int] = {}
        sizes = {s.name: s.n_images for s in specs}

        def on_report(name: str, done_units: int, total: int) -> None:
            if name not in rows:
                rows[name] = bars.add_task(f"  {name}", total=total, status="training")
            status = "training" if done_units < total - sizes[name] else "sampling"
            bars.update(rows[name], completed=done_units, status=status)

        def on_done(spec: GMSpec, result: dict | None, error: str | None) -> None:
            finish(spec, result, error)
            if spec.name in rows:
                bars.remove_task(rows.pop(spec.name))
            bars.advance(overall)
            bars.update(overall, status=f"{len(summary.failed)} failed" if summary.failed else "")

        if engine == "ray":
            _run_ray(pending, source, workers, ray_address, on_report, on_done)
        elif workers == 1:
            for spec in pending:
                try:
                    result = build_gm(spec, source, cpu_count(), report=on_report)
                    on_done(spec, result, None)
                except Exception as e:  # a GM that breaks is recorded; the rest go on
                    on_done(spec, None, one_line(e))
        else:
            _run_pool(pending, source, workers, on_report, on_done)
    summary.seconds = time.perf_counter() - t0
    # zoo.json files written before runs were counted hold at least one run
    state["runs"] = state.get("runs", 1 if "build_seconds" in state else 0) + 1
    state["build_seconds"] = state.get("build_seconds", 0.0) + round(summary.seconds, 1)
    write_json(zoo_json, state)
    return summary


def one_line(e: BaseException) -> str:
    """An exception in one line, with the file and line where it was raised."""
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{where}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def open_tier_state(out: Path, expected: dict, resolution: int, error: type[Exception]) -> dict:
    """zoo.json of an outside tier (pretrained, foreign), created from `expected` or
    read and checked against it: `error` naming the folder when it was built with
    other settings or is unreadable. Versions and resolution are refreshed."""
    path = out / "zoo.json"
    state = dict(expected)
    if path.is_file():
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise error(f"{path}: unreadable ({e}); move it away to start over") from None
    for key, value in expected.items():
        if state.get(key) != value:
            raise error(
                f"{out}: holds a zoo built with {key}={state.get(key)!r}, not {value!r}; "
                "use another --out"
            )
    state.update(versions=zoo_versions(), resolution=resolution)
    state.setdefault("gms", {})
    return state


def build_tier_gms(
    summary: BuildSummary,
    state: dict,
    names: list[str],
    build_one: Callable[[str, Callable[[], None]], dict],
    console: Console,
    t0: float,
    units_per_gm: int = 1,
    status: Callable[[str], str] = str,
) -> None:
    """The per-GM loop of the outside tiers (pretrained, foreign): build each planned GM
    whose folder is not finished yet, one at a time, writing zoo.json and models.csv
    after every GM so that a killed build resumes where it stopped. A GM that raises is
    recorded (zoo.json, `summary.failed`) and the rest go on. `build_one(name, tick)`
    returns what `write_gm` writes and may call `tick()` once per unit of progress
    (`units_per_gm` of them per GM)."""
    out = summary.out
    done = finished_gms(out)
    summary.planned = len(names)
    summary.resumed = [n for n in names if n in done]

    def save() -> None:
        write_json(out / "zoo.json", state)
        write_csv(out / "models.csv", MODELS_COLUMNS, [done[n]["row"] for n in names if n in done])

    save()
    with progress(console) as bars:
        task = bars.add_task(
            f"{summary.kind} {summary.preset}",
            total=len(names) * units_per_gm,
            completed=len(summary.resumed) * units_per_gm,
            status="",
        )
        for i, name in enumerate(names):
            if name in done:
                continue
            bars.update(task, status=status(name))
            try:
                result = build_one(name, lambda: bars.advance(task))
            except Exception as e:  # a GM that breaks is recorded; the rest go on
                line = one_line(e)
                summary.failed[name] = line
                state["gms"][name] = {"status": "failed", "error": line}
                console.print(f"[red]failed:[/] {name}: {line}")
            else:
                done[name] = write_gm(out, result)
                state["gms"][name] = {"status": "done", "seconds": result["seconds"]}
                summary.built.append(name)
            save()
            finished = sum(n in done or n in summary.failed for n in names[: i + 1])
            bars.update(task, completed=finished * units_per_gm)
    summary.seconds = time.perf_counter() - t0
    state["build_seconds"] = round(state.get("build_seconds", 0.0) + summary.seconds, 1)
    save()


def _open_state(path: Path, p: Preset, seed: int, source: RealSource) -> dict:
    expected = {
        "preset": p.name,
        "seed": seed,
        "resolution": p.resolution,
        "real": source.folder or ("embedded+catalog" if source.catalog else "embedded"),
    }
    if path.is_file():
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ZooError(f"{path}: unreadable ({e}); move it away to start over") from None
        for key, value in expected.items():
            if state.get(key) != value:
                raise ZooError(
                    f"{path.parent}: holds a zoo built with {key}="
                    f"{state.get(key)!r}, not {value!r}; use another --out"
                )
        state["versions"] = zoo_versions()
        return state
    return {
        **expected,
        "images_per_gm": p.images_per_gm,
        "steps": p.steps,
        "batch": p.batch,
        "families": p.families,
        "created": _now(),
        "updated": _now(),
        "versions": zoo_versions(),
        "gms": {},
    }


def _write_models(out: Path, specs: list[GMSpec], done: dict[str, dict]) -> None:
    """models.csv: the rows of the finished GMs (`done`, name -> meta), in plan order."""
    rows = [done[s.name]["row"] for s in specs if s.name in done]
    write_csv(out / "models.csv", MODELS_COLUMNS, rows)


def _run_pool(pending, source, workers, on_report, on_done) -> None:
    import multiprocessing as mp

    threads = max(1, cpu_count() // workers)
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        q = manager.Queue()
        futures = {pool.submit(_build_gm_queued, s, source, threads, q): s for s in pending}
        while futures:
            finished, _ = wait(futures, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(q, on_report)
            for f in finished:
                spec = futures.pop(f)
                try:
                    on_done(spec, f.result(), None)
                except Exception as e:
                    on_done(spec, None, one_line(e))
        _drain(q, on_report)


def _drain(q, on_report) -> None:
    while True:
        try:
            on_report(*q.get_nowait())
        except queue.Empty:
            return
        except (EOFError, OSError):
            return


def _run_ray(pending, source, workers, address, on_report, on_done) -> None:
    try:
        import ray
        from ray.util.queue import Empty as RayEmpty
        from ray.util.queue import Queue as RayQueue
    except ImportError:
        raise ZooError("--engine ray needs Ray: pip install 'gmtrace[ray]'") from None
    started = ray_start(ray, workers, address)
    try:
        q = RayQueue()

        @ray.remote(num_cpus=1)
        def task(spec, src, qq):
            return build_gm(spec, src, 1, report=lambda *a: qq.put(a))

        refs = {task.remote(s, source, q): s for s in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
            while True:
                try:
                    on_report(*q.get_nowait())
                except RayEmpty:
                    break
            for r in ready:
                spec = refs.pop(r)
                try:
                    on_done(spec, ray.get(r), None)
                except Exception as e:
                    on_done(spec, None, one_line(e))
    finally:
        if started:
            ray.shutdown()


def summary_table(summary: BuildSummary) -> Table:
    """Per-family counts and totals of a build of any tier, for the terminal (the loss
    column only where some GM's losses are known): the finished GMs that models.csv
    lists (a build of some families or packages lists only theirs; the folders of the
    others stay)."""
    done = finished_gms(summary.out)
    listed = summary.out / "models.csv"
    if listed.is_file():
        names = {row["name"] for row in read_csv(listed)}
        done = {n: meta for n, meta in done.items() if n in names}
    families: dict[str, list[dict]] = {}
    for meta in done.values():
        families.setdefault(meta["row"]["family"], []).append(meta)

    def losses(metas: list[dict]) -> str:
        used = {
            n
            for m in metas
            for c, n in zip(LOSS_COLUMNS, LOSS_TYPES, strict=True)
            if str(m["row"][c]) == "1"
        }
        return ",".join(sorted(used))

    def collapsed(metas: list[dict]) -> str:
        return str(sum(int(m["row"].get("collapsed") or 0) for m in metas))

    def images(metas: list[dict]) -> str:
        return str(sum(int(m["row"]["n_images"]) for m in metas))

    with_losses = bool(losses(list(done.values())))
    t = Table(
        title=f"{summary.kind} {summary.preset} -> {summary.out}",
        caption=f"built {len(summary.built)}, resumed {len(summary.resumed)}"
        + (f" ({len(summary.relabelled)} relabelled)" if summary.relabelled else "")
        + f", failed {len(summary.failed)}, {summary.seconds:.0f} s",
    )
    right = ("GMs", "images", "collapsed", "mean s/GM")
    for col in ("family", "codebase", *right, *(["losses"] if with_losses else [])):
        t.add_column(col, justify="right" if col in right else "left", overflow="fold")
    for fam, metas in sorted(families.items()):
        cells = [
            fam,
            metas[0]["row"].get("codebase", ""),
            str(len(metas)),
            images(metas),
            collapsed(metas),
            f"{np.mean([m['seconds'] for m in metas]):.1f}",
        ]
        t.add_row(*cells, *([losses(metas)] if with_losses else []))
    t.add_section()
    everything = list(done.values())
    cells = ["total", "", f"{len(done)}/{summary.planned}", images(everything)]
    t.add_row(*cells, collapsed(everything), "", *([""] if with_losses else []))
    return t


def as_dict(summary: BuildSummary) -> dict:
    d = asdict(summary)
    d["out"] = str(summary.out)
    return d
