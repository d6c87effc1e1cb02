"""`gmtrace train`: fit the FEN, parsing network and heads on a GM dataset.

Each step draws a batch that is half generated images (GMs drawn uniformly, so
every training GM weighs the same) and half real crops, augments them, and
minimizes

    w_fp * (RED's four fingerprint constraints)          all images
  + w_parse * parsing loss (15 hyperparameters, 10 losses) generated images
  + w_detect * BCE(generated vs real)                     all images
  + w_attr * CE(which training GM)                        generated images
  + w_con * supervised contrastive(embedding, GM label)   generated images

Checkpoints (model, optimizer and random states, all safetensors + JSON) make a
killed run resume where it stopped; `metrics.jsonl` logs every `log_every` steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from safetensors.torch import load_file, save_file

from gmtrace.core.files import atomic_dir
from gmtrace.core.runtime import pick_device, progress, seed_everything
from gmtrace.core.schema import Normalizer, Targets, encode
from gmtrace.core.version import __version__
from gmtrace.data.augment import Augmenter, crop, jpeg
from gmtrace.data.dataset import GMDataset
from gmtrace.data.images import to_float
from gmtrace.data.loader import ImageBank, load_bank
from gmtrace.nets import fingerprint_losses as FL
from gmtrace.nets.config import POST_TRAINING, ModelConfig
from gmtrace.nets.model import GMTraceModel
from gmtrace.nets.parser import Balance
from gmtrace.readout.fit import fit_readout
from gmtrace.readout.saved import save_model
from gmtrace.train.config import BALANCES, TrainConfig

CHECKPOINT = "checkpoint"


class TrainError(ValueError):
    """A training run that cannot start or resume; the message says why."""


def fingerprint_loss(fp: torch.Tensor) -> dict[str, torch.Tensor]:
    """RED's constraints with RED's parsing weights:
    0.1 L_mag + 0.05 L_low + 0.001 L_rep + 1.0 L_sym (see nets/fingerprint_losses)."""
    s = FL.spectrum(fp)
    terms = {
        "mag": FL.magnitude_loss(fp),
        "low": FL.low_frequency_loss(s),
        "rep": FL.repetition_loss(s),
        "sym": FL.symmetry_loss(s),
    }
    terms["total"] = (
        0.1 * terms["mag"] + 0.05 * terms["low"] + 0.001 * terms["rep"] + 1.0 * terms["sym"]
    )
    return terms


class BatchSampler:
    """Half generated (uniform over GMs), half real; augmented uint8 -> [-1, 1].

    Aligned pairs (B-Free, Rajan et al.): with probability `p_pair`, a generated
    image whose GM made it from a real crop brings that crop into the real half of
    the batch, and both go through the same augmentation (same crop window, blur
    and JPEG quality), so only the generator's trace tells them apart. Consistency
    views: the first `cons_frac` of the batch also come back JPEG-degraded
    (quality 30-70), for a term that asks the model to read the same thing from
    both views."""

    def __init__(
        self, bank, cfg: TrainConfig, rng: np.random.Generator, tiers: list[str] | None = None
    ):
        self.bank, self.cfg, self.rng = bank, cfg, rng
        self.gms = [i for i, a in enumerate(bank.fake) if len(a)]
        if not self.gms:
            raise TrainError("no readable generated images to train on")
        self.p = gm_weights([tiers[g] for g in self.gms] if tiers else None, cfg.balance)
        if len(bank.real) == 0:
            raise TrainError("no readable real images to train on")
        self.aug = Augmenter(size=cfg.image_size) if cfg.augment else None
        self.paired = {g: bank.usable_pairs(g) for g in self.gms}

    def _prep(self, img: np.ndarray, seed: int) -> np.ndarray:
        """Augment with a generator seeded by `seed`: the same seed gives the same
        augmentation to images of the same size (a generated image and its pair)."""
        rng = np.random.default_rng(seed)
        if self.aug is not None:
            return self.aug(img, rng)
        return crop(img, self.cfg.image_size, rng)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        n_fake = self.cfg.batch // 2
        n_real = self.cfg.batch - n_fake
        gm = self.rng.choice(self.gms, size=n_fake, p=self.p)
        seeds = self.rng.integers(0, 2**62, size=self.cfg.batch)
        fakes, reals = [], []
        for j, g in enumerate(gm):
            usable = self.paired[g]
            if len(usable) and len(reals) < n_real and self.rng.random() < self.cfg.p_pair:
                i = int(usable[self.rng.integers(len(usable))])
                fakes.append(self._prep(self.bank.fake[g][i], seeds[j]))
                reals.append(self._prep(self.bank.pair_of(g)[i], seeds[j]))
            else:
                i = int(self.rng.integers(len(self.bank.fake[g])))
                fakes.append(self._prep(self.bank.fake[g][i], seeds[j]))
        for i in self.rng.integers(0, len(self.bank.real), n_real - len(reals)):
            reals.append(self._prep(self.bank.real[i], seeds[n_fake + len(reals)]))
        imgs = np.stack(fakes + reals)
        k = int(round(self.cfg.cons_frac * len(imgs)))
        views = [jpeg(a, int(self.rng.integers(30, 71))) for a in imgs[:k]]
        x = torch.from_numpy(to_float(imgs))
        degraded = torch.from_numpy(to_float(np.stack(views))) if views else x[:0]
        is_fake = torch.zeros(self.cfg.batch)
        is_fake[:n_fake] = 1
        return x, torch.from_numpy(gm.astype(np.int64)), is_fake, degraded


def gm_weights(tiers: list[str] | None, balance: str) -> np.ndarray | None:
    """The chance of each GM (tier `tiers[i]`) in the generated half of a batch:
    None for "gm" (uniform: the draws of every run before the option), for "tier"
    each tier's share equal and uniform within it."""
    if balance not in BALANCES:
        raise TrainError(f"unknown balance {balance!r}; choose one of {', '.join(BALANCES)}")
    if balance == "gm":
        return None
    if not tiers:
        raise TrainError('balance "tier" needs each GM\'s tier')
    _, inverse, counts = np.unique(np.asarray(tiers), return_inverse=True, return_counts=True)
    return 1.0 / (counts[inverse] * len(counts))


def consistency_loss(clean, degraded) -> torch.Tensor:
    """What a degraded view should still say: its detection probability and its
    embedding pulled to those of the clean view (held fixed as the target),
    KL(Bern(sg(p_clean)) || Bern(p_deg)) + (1 - cos(z_deg, sg(z_clean))). Bounded
    gradients: a squared distance between raw logits feeds back into ever larger
    logits (it did, within 150 steps)."""
    k = len(degraded.detect)
    p = torch.sigmoid(clean.detect[:k]).detach()
    bce = F.binary_cross_entropy_with_logits(degraded.detect, p, reduction="none")
    entropy = F.binary_cross_entropy(p, p, reduction="none")
    cos = F.cosine_similarity(degraded.projection, clean.projection[:k].detach(), dim=1)
    return (bce - entropy).mean() + (1 - cos).mean()


def hold_out(bank, cfg: TrainConfig):
    """Split off calibration images that training never sees: the last
    `calib_per_gm` images of each GM (only where a GM has twice as many) and every
    `calib_real_every`-th real crop (only where there are twice as many). Where too
    few images are held out, calibration falls back to the training images.
    Returns (training bank, calibration fakes per GM, calibration reals)."""
    fake_tr, fake_cal, pairs_tr = [], [], []
    for g, a in enumerate(bank.fake):
        c = cfg.calib_per_gm if len(a) >= 2 * cfg.calib_per_gm else 0
        fake_tr.append(a[: len(a) - c])
        fake_cal.append(a[len(a) - c :] if c else a)
        pairs_tr.append(bank.pair_of(g)[: len(a) - c])
    is_cal = np.zeros(len(bank.real), dtype=bool)
    if cfg.calib_real_every and len(bank.real) >= 2 * cfg.calib_real_every:
        is_cal[:: cfg.calib_real_every] = True
    kept = ImageBank(
        gm_names=bank.gm_names,
        fake=fake_tr,
        real=bank.real[~is_cal],
        real_sources=[s for s, c in zip(bank.real_sources, is_cal, strict=True) if not c],
        failures=bank.failures,
        pairs=pairs_tr,
        pair_origins=[bank.origins_of(g)[: len(f)] for g, f in enumerate(fake_tr)],
        pair_ok=None
        if bank.pair_ok is None
        else [m[: len(f)] for m, f in zip(bank.pair_ok, fake_tr, strict=True)],
    )
    return kept, fake_cal, bank.real[is_cal] if is_cal.any() else bank.real


def _optim_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors = {
        f"state.{k}.{name}": v.detach().cpu().contiguous()
        for k, st in sd["state"].items()
        for name, v in st.items()
        if isinstance(v, torch.Tensor)
    }
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optim(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("state."):
            _, k, name = key.split(".", 2)
            state.setdefault(int(k), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(
    out: Path, model, opt, step: int, rng, signature: dict, seconds: float
) -> None:
    with atomic_dir(out / CHECKPOINT) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(tmp / "model.safetensors"),
        )
        tensors, meta = _optim_state(opt)
        tensors["torch_rng"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optim.safetensors"))
        state = {
            "step": step,
            "seconds": seconds,
            "numpy_rng": rng.bit_generator.state,
            "optim": meta,
            "signature": signature,
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=1))


# settings of the fusion fitted after training (`gmtrace train --fuse`): they do not
# bind the network's checkpoint
FUSION_ONLY = ("inner_families", "inner_tiers", "group_description", "cross_scale")
# training settings a checkpoint saved before they existed ran with
TRAIN_LEGACY = {"balance": "gm"}


def _same_run(saved: dict, current: dict) -> bool:
    """Whether a checkpoint's signature is this run's. A model config saved before a
    field existed is read with that field's legacy value (`ModelConfig.from_dict`),
    a training setting likewise (`TRAIN_LEGACY`)."""
    try:
        model = _signature_model(ModelConfig.from_dict(saved["model"]))
        train = {**TRAIN_LEGACY, **saved["train"]}
        want = {**current, "train": {**TRAIN_LEGACY, **current["train"]}}
    except (KeyError, TypeError, ValueError):
        return False
    return {**saved, "model": model, "train": train} == want


def _signature_model(cfg: ModelConfig) -> dict:
    """The model config as a checkpoint signature holds it: settings used only after
    optimization (head refit) do not bind a checkpoint."""
    return {k: v for k, v in cfg.to_dict().items() if k not in POST_TRAINING}


def _resume(out: Path, model, opt, rng, signature: dict, device) -> tuple[int, float]:
    """Load the checkpoint in `out`, if any: (steps done, training seconds so far)."""
    ck = out / CHECKPOINT
    if not (ck / "state.json").is_file():
        return 0, 0.0
    state = json.loads((ck / "state.json").read_text())
    if not _same_run(state["signature"], signature):
        raise TrainError(
            f"{out}: holds a run with other settings or data; use another --out or delete it"
        )
    missing, unexpected = model.load_state_dict(
        load_file(str(ck / "model.safetensors"), device=str(device)), strict=False
    )
    if missing or unexpected:
        raise TrainError(
            f"{ck}: does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    tensors = load_file(str(ck / "optim.safetensors"))
    torch.set_rng_state(tensors.pop("torch_rng"))
    _load_optim(opt, {k: v.to(device) for k, v in tensors.items()}, state["optim"])
    rng.bit_generator.state = state["numpy_rng"]
    return int(state["step"]), float(state.get("seconds", 0.0))


@dataclass
class TrainSetup:
    """What the optimization loop and the finish need, built by `prepare_run`."""

    cfg: TrainConfig
    out: Path
    dev: torch.device
    rng: np.random.Generator
    names: list[str]
    idx: list[int]  # rows of `names` in the dataset
    bank: ImageBank  # training images (held-out calibration images removed)
    calib_fake: list[np.ndarray]
    calib_real: np.ndarray
    normalizer: Normalizer
    tg: Targets  # encoded parsing targets, one row per GM
    balance: Balance
    targets: dict[str, torch.Tensor]  # `tg` as tensors on `dev`
    model: GMTraceModel
    opt: torch.optim.Optimizer
    signature: dict  # what a checkpoint must match to be resumed
    start: int  # steps already done (resumed from a checkpoint)
    seconds_before: float  # optimization time of earlier runs
    sampler: BatchSampler


def _load_images(
    ds: GMDataset,
    cfg: TrainConfig,
    train_gms: list[str] | None,
    train_sources: list[str] | None,
    console: Console,
    bank: ImageBank | None,
) -> tuple[list[str], ImageBank, list[np.ndarray], np.ndarray]:
    """The training GMs and their images, calibration images held out (`hold_out`):
    (GM names, training bank, calibration fakes per GM, calibration reals)."""
    if bank is not None:
        names = list(bank.gm_names)
    else:
        names = list(train_gms) if train_gms is not None else ds.names
    if len(names) < 2:
        raise TrainError(f"need at least 2 training GMs, got {len(names)}")
    if bank is None:
        bank = training_bank(ds, cfg, names, train_sources)
    for line in bank.failures:
        console.print(f"[yellow]skipped:[/] {line}")
    return names, *hold_out(bank, cfg)


def training_bank(
    ds: GMDataset, cfg: TrainConfig, names: list[str] | None = None, sources=None
) -> ImageBank:
    """The images `train` decodes for the GMs `names` and real photographs `sources`
    of `ds` (default: all): `cfg.per_gm` per GM, `cfg.per_source` per photograph, at
    `cfg.image_size`."""
    return load_bank(
        ds,
        names,
        sources,
        per_gm=cfg.per_gm,
        per_source=cfg.per_source,
        seed=cfg.seed,
        size=cfg.image_size,
    )


def _fit_targets(
    ds: GMDataset, idx: list[int], dev: torch.device
) -> tuple[Normalizer, Targets, Balance, dict[str, torch.Tensor]]:
    """The parsing targets of the GMs at rows `idx`: (normalizer, encoded targets,
    loss balance, targets as tensors on `dev`)."""
    raw, bits = ds.arch_matrix()[idx], ds.loss_matrix()[idx]
    normalizer = Normalizer().fit(raw)
    tg = encode(raw, bits, normalizer)
    balance = Balance.fit(tg.discrete, tg.groups, tg.losses)
    targets = {
        k: torch.from_numpy(np.asarray(v)).to(dev)
        for k, v in {
            "continuous": tg.continuous,
            "discrete": tg.discrete,
            "groups": tg.groups,
            "losses": tg.losses,
        }.items()
    }
    return normalizer, tg, balance, targets


def _trim_metrics(path: Path, start: int) -> None:
    """Keep in `path` only the lines a checkpoint at step `start` had seen."""
    if path.exists():
        kept = [
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= start
        ]
        path.write_text("".join(ln + "\n" for ln in kept))


def _build_model(
    cfg: TrainConfig,
    model_cfg: ModelConfig | None,
    names: list[str],
    bank: ImageBank,
    dev: torch.device,
) -> tuple[GMTraceModel, torch.optim.Optimizer, dict]:
    """A fresh model for the GMs `names`, its optimizer, and the run's checkpoint
    signature (settings and data that a resumed run must share)."""
    mcfg = (model_cfg or ModelConfig()).with_gms(len(names))
    model = GMTraceModel(mcfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    signature = {
        "train": {k: v for k, v in asdict(cfg).items() if k not in FUSION_ONLY} | {"steps": None},
        "model": _signature_model(mcfg),
        "gms": names,
        "sources": sorted(set(bank.real_sources)),
        "n_fake": bank.n_fake,
        "n_real": len(bank.real),
    }
    return model, opt, signature


def prepare_run(
    ds: GMDataset,
    out_dir: str | Path,
    cfg: TrainConfig,
    model_cfg: ModelConfig | None,
    train_gms: list[str] | None,
    train_sources: list[str] | None,
    console: Console,
    device: str | None,
    bank: ImageBank | None,
) -> TrainSetup:
    """Seed, load the images and targets, build the model and optimizer and resume
    from the checkpoint in `out_dir` if there is one (see `train`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = pick_device(device)
    rng = seed_everything(cfg.seed)
    names, bank, calib_fake, calib_real = _load_images(
        ds, cfg, train_gms, train_sources, console, bank
    )
    idx = [ds.names.index(n) for n in names]
    normalizer, tg, balance, targets = _fit_targets(ds, idx, dev)
    model, opt, signature = _build_model(cfg, model_cfg, names, bank, dev)
    start, seconds_before = _resume(out, model, opt, rng, signature, dev)
    sampler = BatchSampler(bank, cfg, rng, [ds.gms[i].tier for i in idx])
    _trim_metrics(out / "metrics.jsonl", start)
    return TrainSetup(
        cfg=cfg,
        out=out,
        dev=dev,
        rng=rng,
        names=names,
        idx=idx,
        bank=bank,
        calib_fake=calib_fake,
        calib_real=calib_real,
        normalizer=normalizer,
        tg=tg,
        balance=balance,
        targets=targets,
        model=model,
        opt=opt,
        signature=signature,
        start=start,
        seconds_before=seconds_before,
        sampler=sampler,
    )


def _batch_losses(run: TrainSetup, batch: tuple) -> dict[str, torch.Tensor]:
    """Forward one batch (clean images and their degraded views together): the
    weighted `total`, each loss term, and the statistics logged with them (the
    accuracies and the L1 error of the continuous hyperparameters, not differentiated)."""
    cfg, dev, model = run.cfg, run.dev, run.model
    x, gm, is_fake, degraded = batch
    x, gm, is_fake = x.to(dev), gm.to(dev), is_fake.to(dev)
    both = model(torch.cat([x, degraded.to(dev)]))
    out_, views = both.rows(slice(0, len(x))), both.rows(slice(len(x), None))
    nf = len(gm)
    fp = fingerprint_loss(out_.fingerprint)
    t = {k: v[gm] for k, v in run.targets.items()}
    parsed = out_.parse.first(nf)
    parse = model.parsing_loss(
        parsed,
        t["continuous"],
        t["discrete"],
        t["groups"],
        t["losses"],
        balance=run.balance,
    )
    det = F.binary_cross_entropy_with_logits(out_.detect, is_fake)
    attr = F.cross_entropy(out_.attribute[:nf], gm)
    con = FL.supcon_loss(out_.projection[:nf], gm)
    cons = consistency_loss(out_, views) if len(degraded) else torch.zeros((), device=dev)
    total = (
        cfg.w_fp * fp["total"]
        + cfg.w_parse * parse["total"]
        + cfg.w_detect * det
        + cfg.w_attr * attr
        + cfg.w_con * con
        + cfg.w_cons * cons
    )
    with torch.no_grad():
        return {
            "total": total,
            "fingerprint": fp["total"],
            "parse": parse["total"],
            # over the counts known (a GM of another codebase may lack some: NaN)
            "parse_continuous_l1": (parsed.continuous - t["continuous"]).abs().nanmean(),
            "detect": det,
            "attribute": attr,
            "contrastive": con,
            "consistency": cons,
            "detect_acc": ((out_.detect > 0).float() == is_fake).float().mean(),
            "attribute_acc": (out_.attribute[:nf].argmax(1) == gm).float().mean(),
        }


def train_step(run: TrainSetup, batch: tuple, step: int) -> dict[str, float]:
    """One optimizer step on `batch` (a `BatchSampler` draw); the values to log.
    `step` counts from 0 and only names the step in the error a non-finite loss raises."""
    losses = _batch_losses(run, batch)
    total = losses["total"]
    if not torch.isfinite(total):
        raise TrainError(f"loss became non-finite at step {step + 1}; lower --lr")
    run.opt.zero_grad(set_to_none=True)
    total.backward()
    run.opt.step()
    return {k: v.item() for k, v in losses.items()}


def _optimize(run: TrainSetup, console: Console, t0: float) -> dict[str, float]:
    """Steps `run.start` to `cfg.steps`: log the mean values every `log_every` steps
    (and at the end) to metrics.jsonl, checkpoint every `ckpt_every` steps (the
    final checkpoint is the caller's). `t0`: when this run's optimization started.
    Returns the last logged means."""
    cfg = run.cfg
    metrics_path = run.out / "metrics.jsonl"
    acc: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    run.model.train()
    with progress(console) as bars:
        task = bars.add_task("train", total=cfg.steps, completed=run.start, status="")
        for step in range(run.start, cfg.steps):
            values = train_step(run, run.sampler(), step)
            for k, v in values.items():
                acc.setdefault(k, []).append(v)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                last = {k: float(np.mean(v)) for k, v in acc.items()}
                acc = {}
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": done, **last}) + "\n")
                bars.update(task, status=f"loss {last['total']:.3f}")
            if done % cfg.ckpt_every == 0 and done < cfg.steps:
                elapsed = run.seconds_before + time.perf_counter() - t0
                _save_checkpoint(run.out, run.model, run.opt, done, run.rng, run.signature, elapsed)
            bars.advance(task)
    return last


def finish_run(
    ds: GMDataset, run: TrainSetup, last: dict[str, float], train_seconds: float, t_trained: float
) -> dict:
    """Fit the readout on the trained network, save the model to `run.out` and
    return `train`'s summary. `t_trained`: when optimization ended."""
    cfg, bank = run.cfg, run.bank
    with torch.no_grad():
        readout, calibration = fit_readout(
            run.model,
            [a[: cfg.probe_per_gm] for a in bank.fake],
            bank.real[:: max(1, len(bank.real) // cfg.probe_real)],
            run.calib_fake,
            run.calib_real,
            targets=run.tg,
            families=[ds.gms[i].family for i in run.idx],
        )
    meta = {
        "gmtrace": __version__,
        "gm_names": run.names,
        "normalizer": json.loads(run.normalizer.to_json()),
        "image_size": cfg.image_size,
        "train": asdict(cfg),
        "zoo": str(ds.root) if ds.root else None,
        "origin": ds.origin,
        "real_sources": run.signature["sources"],
        "steps_done": cfg.steps,
        "calibration": calibration,
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    save_model(run.model, readout, run.out, meta)
    return {
        "out": str(run.out),
        "steps": cfg.steps,
        "resumed_from": run.start,
        "seconds": train_seconds,  # optimization time over all runs, resumes included
        "finish_seconds": time.perf_counter() - t_trained,  # probe + calibration + save
        "calibration": calibration,
        "final": last,
        "n_gms": len(run.names),
        "n_fake": bank.n_fake,
        "n_real": len(bank.real),
        "skipped": len(bank.failures),
    }


def train(
    ds: GMDataset,
    out_dir: str | Path,
    cfg: TrainConfig = TrainConfig(),
    model_cfg: ModelConfig | None = None,
    train_gms: list[str] | None = None,
    train_sources: list[str] | None = None,
    console: Console | None = None,
    device: str | None = None,
    bank: ImageBank | None = None,
) -> dict:
    """Train (or resume) a model on the GMs `train_gms` and real photographs
    `train_sources` of `ds` (default: all); write it to `out_dir`. A caller that
    already decoded the images passes them as `bank` (its GMs in `bank.gm_names`)."""
    console = console or Console()
    run = prepare_run(ds, out_dir, cfg, model_cfg, train_gms, train_sources, console, device, bank)
    t0 = time.perf_counter()
    last = _optimize(run, console, t0)
    run.model.eval()
    # the checkpoint holds the trained weights; the readout only feeds the saved
    # model, so a resumed run continues exactly where training stopped
    t_trained = time.perf_counter()
    train_seconds = run.seconds_before + t_trained - t0
    _save_checkpoint(run.out, run.model, run.opt, cfg.steps, run.rng, run.signature, train_seconds)
    return finish_run(ds, run, last, train_seconds, t_trained)


def summary_table(result: dict) -> Table:
    t = Table(title=f"trained model -> {result['out']}")
    t.add_column("item")
    t.add_column("value", justify="right")
    t.add_row(
        "steps",
        f"{result['steps']} (resumed from {result['resumed_from']})"
        if result["resumed_from"]
        else str(result["steps"]),
    )
    t.add_row("training GMs / images", f"{result['n_gms']} / {result['n_fake']}")
    t.add_row("real images", str(result["n_real"]))
    t.add_row("skipped files", str(result["skipped"]))
    for k in ("total", "parse_continuous_l1", "detect_acc", "attribute_acc"):
        if k in result["final"]:
            t.add_row(f"last {k}", f"{result['final'][k]:.3f}")
    t.add_row("training time (all runs)", f"{result['seconds']:.0f} s")
    t.add_row("probe + calibration", f"{result['finish_seconds']:.0f} s")
    for k in ("attribution_train_acc", "detection_train_acc", "open_threshold"):
        if k in result.get("calibration", {}):
            t.add_row(k.replace("_", " "), f"{result['calibration'][k]:.3f}")
    views = list(result.get("calibration", {}).get("probe_view", {}).values())
    if views:
        n_forest = views.count("forest")
        t.add_row(
            "parsing probe reads",
            f"pixel statistics for {views.count('pixels') + n_forest} of {len(views)} fields"
            + (f" ({n_forest} by forest + linear)" if n_forest else ""),
        )
    return t
