"""`gmtrace train`: a model trained on a zoo or RED116-format data (resumable)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from gmtrace.cli.app import Balance, app, console, fail
from gmtrace.nets.config import ModelConfig
from gmtrace.train.config import TrainConfig

TRAIN = TrainConfig()
MODEL = ModelConfig()


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="model folder (created, or resumed)")],
    zoo: Annotated[
        list[Path] | None,
        typer.Option(
            help="zoo folder to train on; repeat it to train on several as one (the zoo, "
            "the synthesized tier, the pretrained tier, the foreign-code tier)"
        ),
    ] = None,
    red_arch: Annotated[
        Path | None,
        typer.Option(help="RED116-format data instead of a zoo: architecture .npy or .txt"),
    ] = None,
    red_loss: Annotated[Path | None, typer.Option(help="RED116 loss bits .npy or .txt")] = None,
    red_images: Annotated[
        Path | None, typer.Option(help="RED116 image root (one folder per GM)")
    ] = None,
    real: Annotated[
        Path | None,
        typer.Option(help="folder of real photographs (subfolders = domains); default: the zoo's"),
    ] = None,
    steps: Annotated[int, typer.Option(help="optimization steps")] = TRAIN.steps,
    batch: Annotated[int, typer.Option(help="images per step, half generated")] = TRAIN.batch,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = TRAIN.lr,
    per_gm: Annotated[int, typer.Option(help="images per GM held in memory")] = TRAIN.per_gm,
    image_size: Annotated[int, typer.Option(help="training crop size")] = TRAIN.image_size,
    fen_depth: Annotated[int, typer.Option(help="FEN conv layers")] = MODEL.fen.depth,
    fen_width: Annotated[int, typer.Option(help="FEN channels")] = MODEL.fen.width,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="no JPEG/resize/blur")] = False,
    balance: Balance = TRAIN.balance,
    seed: Annotated[int, typer.Option()] = TRAIN.seed,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
    fuse: Annotated[
        bool,
        typer.Option(
            "--fuse",
            help="also fit the fusion with a model of real photographs and the unsure band, "
            "chosen on inner validation codebases (a second network in OUT/inner)",
        ),
    ] = False,
    inner_families: Annotated[
        bool,
        typer.Option(
            "--inner-families/--no-inner-families",
            help="with --fuse: the inner validation also holds back a third of the largest "
            "codebase's families (--no-inner-families: the small codebases only, as before "
            "2026-12-05)",
        ),
    ] = TRAIN.inner_families,
    inner_tiers: Annotated[
        bool,
        typer.Option(
            "--inner-tiers/--no-inner-tiers",
            help="with --fuse: the inner validation also holds back a codebase of every tier "
            "among the small codebases (docs/realmodel.md)",
        ),
    ] = TRAIN.inner_tiers,
    group_description: Annotated[
        bool,
        typer.Option(
            "--group-description/--no-group-description",
            help="with --fuse: the grouping may read the images' self-descriptions beside "
            "the embedding, where the inner validation says so (docs/realmodel.md)",
        ),
    ] = TRAIN.group_description,
    cross_scale: Annotated[
        bool,
        typer.Option(
            "--cross-scale/--no-cross-scale",
            help="with --fuse: the model of real photographs also models the cross-scale "
            "prediction (better on unseen upscalers, worse pooled: docs/realmodel.md)",
        ),
    ] = TRAIN.cross_scale,
) -> None:
    """Train the FEN, parsing network and heads on a zoo, or several (resumable)."""
    from gmtrace.data.dataset import DatasetError, GMDataset, real_records
    from gmtrace.data.red import read_red_npy, read_red_text
    from gmtrace.train.loop import TrainError, summary_table, training_bank
    from gmtrace.train.loop import train as run_train

    cfg = replace(
        TRAIN,
        steps=steps,
        batch=batch,
        lr=lr,
        per_gm=per_gm,
        image_size=image_size,
        augment=not no_augment,
        seed=seed,
        inner_families=inner_families,
        inner_tiers=inner_tiers,
        group_description=group_description,
        cross_scale=cross_scale,
        balance=balance,
    )
    mcfg = replace(MODEL, fen=replace(MODEL.fen, depth=fen_depth, width=fen_width))

    try:
        if red_arch is not None:
            if red_loss is None or red_images is None:
                fail("--red-arch needs --red-loss and --red-images too")
            read = read_red_npy if red_arch.suffix == ".npy" else read_red_text
            ds = read(red_arch, red_loss, red_images)
        elif zoo:
            ds = GMDataset.combine([GMDataset.from_zoo(z) for z in zoo])
        else:
            fail("give --zoo DIR, or RED116 data with --red-arch/--red-loss/--red-images")
        if real is not None:
            ds.real = real_records(real)
        if not ds.real:
            fail("no real photographs to train the detector on; add --real DIR")
        bank = training_bank(ds, cfg) if fuse else None  # decoded once for both networks
        result = run_train(ds, out, cfg, mcfg, console=console, device=device, bank=bank)
        if fuse:
            _fuse(ds, bank, out, cfg, mcfg)
    except typer.Exit:
        raise
    except (DatasetError, TrainError, ValueError) as e:
        fail(str(e))
    console.print(summary_table(result))


def _fuse(ds, bank, out: Path, cfg: TrainConfig, mcfg: ModelConfig) -> None:
    """Fit the fusion of the model just trained in `out` (`methods.fused.fit_fusion`)
    and save it beside it (fusion.safetensors, fusion.json)."""
    import json

    from gmtrace.core.files import atomic_write_text
    from gmtrace.methods.fused import fit_fusion
    from gmtrace.methods.network import NetMethod
    from gmtrace.readout.saved import FUSION_RECORD

    console.rule("fusion: inner network on the training codebases less a third")
    outer = NetMethod("gmtrace", mcfg, cfg)
    outer.load(out)  # the network just trained: the open-set densities are its
    fusion, record = fit_fusion(
        ds,
        bank,
        outer,
        NetMethod("gmtrace", mcfg, cfg),
        out / "inner",
        cfg.seed,
        console,
        cfg.inner_families,
        cfg.inner_tiers,
        cfg.group_description,
        cfg.cross_scale,
    )
    fusion.save(out)
    atomic_write_text(out / FUSION_RECORD, json.dumps(record, indent=1) + "\n")
    console.print(f"fusion -> {out / 'fusion.safetensors'} (record: fusion.json)")
