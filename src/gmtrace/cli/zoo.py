"""`gmtrace zoo ...` (build, synth, pretrained, foreign, real, show, export-red) and
`gmtrace describe`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gmtrace.cli.app import app, console, fail

zoo_app = typer.Typer(no_args_is_help=True, help="Build, inspect and export GM zoos.")
app.add_typer(zoo_app, name="zoo")


# the --real option of the commands that cut real crops from photographs
RealPhotos = Annotated[
    Path | None,
    typer.Option(
        help="folder of real photographs; default: the embedded photos and the "
        "installed Debian photo collections"
    ),
]


def finish_build(summary, table: Table) -> None:
    """The end of every build command: its table, what was not installed or not loaded,
    and the failed GMs; exit status 1 when any GM failed or a planned model is missing."""
    for line in getattr(summary, "adapter_problems", ()):
        console.print(f"[yellow]adapter not loaded:[/] {line}")
    if getattr(summary, "not_installed", ()):
        console.print(f"[yellow]not installed:[/] {', '.join(summary.not_installed)}")
    console.print(table)
    if getattr(summary, "missing", ()):
        console.print(f"[red]not installed:[/] {', '.join(summary.missing)}")
    if summary.failed:
        console.print(
            f"[red]{len(summary.failed)} GM(s) failed[/]; rerun the same command "
            "to retry them (finished GMs are kept)"
        )
    if summary.failed or getattr(summary, "missing", ()):
        raise typer.Exit(1)


@app.command()
def describe(
    target: Annotated[
        str,
        typer.Argument(
            help="FILE.py:NAME (a module instance, a Module class or a zero-argument "
            "factory), or a graph file: an ncnn model.param or an ONNX model.onnx"
        ),
    ],
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="shape of a random example input, e.g. 2,128 or 2,3,64,64 (default: the "
            "module's example_input(), else a static walk; not for graph files)"
        ),
    ] = None,
    norms_kept: Annotated[
        bool | None,
        typer.Option(
            "--norms-kept/--norms-folded",
            help="graph files: the converter kept every normalization layer, or may have "
            "folded batch norms into the convolutions (default: kept only when the graph "
            "shows a batch norm after a convolution; else n_norm and norm_type are unknown)",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Compute the 15 architecture hyperparameters of a torch module or a graph file."""
    from gmtrace.core.schema import ARCH_FIELDS, format_count
    from gmtrace.zoo.graphs import GRAPH_SUFFIXES

    if Path(target).suffix in GRAPH_SUFFIXES and ":" not in Path(target).name:
        from gmtrace.zoo.graphs import describe_graph
        from gmtrace.zoo.ncnn import GraphError

        if input_shape:
            fail(f"{target}: --input-shape is for torch modules; a graph file has its own shapes")
        try:
            arch = describe_graph(target, norms_kept)
        except GraphError as e:
            fail(str(e))
        kind = "ncnn" if Path(target).suffix == ".param" else "ONNX"
        title = f"{target} ({kind} graph)"
    else:
        arch, title = _describe_module(target, input_shape)
    if as_json:
        print(json.dumps(arch.to_json(), indent=2))
        return
    t = Table(title=title)
    t.add_column("hyperparameter")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    for f in ARCH_FIELDS:
        v = arch.values[f.name]
        t.add_row(f.name, format_count(f.name, v) if f.kind == "continuous" else str(v), f.meaning)
    for k, v in arch.extra.items():
        t.add_row(k, str(v), "extra")
    console.print(t)
    for note in arch.notes:
        console.print(f"[yellow]{note}[/]")
    if title.endswith("graph)"):
        return
    console.print(
        "traced with an example input"
        if arch.traced
        else "[yellow]static walk only[/] (no example input): order-dependent fields "
        "follow registration order; pass --input-shape for a trace"
    )


def _describe_module(target: str, input_shape: str | None):
    """`describe` of FILE.py:NAME: the architecture and a title naming the class."""
    import torch

    from gmtrace.zoo.introspect import describe as describe_module
    from gmtrace.zoo.introspect import load_object, module_from

    try:
        module = module_from(load_object(target))
        example = None
        if input_shape:
            try:
                shape = tuple(int(s) for s in input_shape.split(","))
            except ValueError:
                fail(f"--input-shape {input_shape!r}: expected integers separated by commas")
            example = torch.randn(*shape)
        arch = describe_module(module, example)
    except typer.Exit:
        raise
    except Exception as e:
        fail(f"{target}: {type(e).__name__}: {e}")
    return arch, f"{target} ({type(module).__name__})"


@zoo_app.command("build")
def zoo_build(
    out: Annotated[Path, typer.Option(help="zoo folder to create or resume")],
    preset: Annotated[str, typer.Option(help="tiny | demo | default | full")] = "tiny",
    seed: Annotated[int, typer.Option(help="seed of the GM plan and every GM")] = 0,
    real: Annotated[
        Path | None,
        typer.Option(
            help="folder of real photographs (subfolders = content domains); default: the "
            "photos shipped in scikit-image, scikit-learn and matplotlib"
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="GMs built at once")] = 1,
    engine: Annotated[str, typer.Option(help="local | ray")] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(help="address of an existing Ray cluster (default: start a local one)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="build only the first N planned GMs")] = None,
) -> None:
    """Train a zoo of generative models and sample their images (resumable)."""
    from gmtrace.data.dataset import DatasetError
    from gmtrace.zoo.builder import ZooError, build_zoo, summary_table
    from gmtrace.zoo.real import RealImageError

    try:
        summary = build_zoo(
            out,
            preset=preset,
            seed=seed,
            real=str(real) if real else None,
            workers=workers,
            engine=engine,
            ray_address=ray_address,
            console=console,
            limit=limit,
        )
    except (ZooError, RealImageError, DatasetError) as e:
        fail(str(e))
    finish_build(summary, summary_table(summary))


@zoo_app.command("synth")
def zoo_synth(
    out: Annotated[Path, typer.Option(help="zoo folder to create or resume")],
    n: Annotated[int, typer.Option(help="number of synthesized GMs")] = 3000,
    seed: Annotated[int, typer.Option(help="seed of the GM plan and every GM")] = 0,
    images_per_gm: Annotated[int, typer.Option(help="images (input crops) per GM")] = 24,
    resolution: Annotated[int, typer.Option(help="image size in pixels")] = 64,
    real: Annotated[
        Path | None,
        typer.Option(
            help="folder of real photographs (subfolders = content domains); default: the "
            "embedded photos and the installed Debian photo collections"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default: one per core)")
    ] = None,
) -> None:
    """Synthesize a tier of shallow random decoders and translators applied to real
    photographs (resumable; the layout of `zoo build`)."""
    from gmtrace.data.dataset import DatasetError
    from gmtrace.zoo.builder import ZooError
    from gmtrace.zoo.real import RealImageError
    from gmtrace.zoo.synth import summary_table, synth_zoo

    try:
        summary = synth_zoo(
            out,
            n=n,
            seed=seed,
            images_per_gm=images_per_gm,
            resolution=resolution,
            real=str(real) if real else None,
            workers=workers,
            console=console,
        )
    except (ZooError, RealImageError, DatasetError) as e:
        fail(str(e))
    finish_build(summary, summary_table(summary))


@zoo_app.command("pretrained")
def zoo_pretrained(
    out: Annotated[Path, typer.Option(help="zoo folder to create or resume")],
    preset: Annotated[
        str, typer.Option(help="tiny (one model, for tests), default or large")
    ] = "default",
    seed: Annotated[int, typer.Option(help="seed of the crops, JPEG qualities and photos")] = 0,
    real: RealPhotos = None,
    limit: Annotated[int | None, typer.Option(help="build only the first N models")] = None,
    threads: Annotated[
        int,
        typer.Option(
            help="ncnn threads per model (1: ncnn's spinning worker threads slow to a crawl "
            "when another job shares the cores)"
        ),
    ] = 1,
    package: Annotated[
        list[str] | None,
        typer.Option(
            help="only these packages' models (pip names; repeat the option); default: "
            "every installed one"
        ),
    ] = None,
) -> None:
    """Run the real, publicly trained super-resolution and restoration networks that
    PyPI wheels ship (waifu2x, Real-CUGAN, SRMD; ncnn on the CPU) on real
    photographs: one GM per model file (SRMD's noise-aware ones: per noise level),
    each image paired with the photograph crop it restores (resumable; the layout of
    `zoo build`)."""
    from gmtrace.zoo.builder import summary_table
    from gmtrace.zoo.pretrained import PretrainedError, build_pretrained
    from gmtrace.zoo.real import RealImageError

    try:
        summary = build_pretrained(
            out, preset, seed, str(real) if real else None, console, limit, threads, package
        )
    except (PretrainedError, RealImageError) as e:
        fail(str(e))
    finish_build(summary, summary_table(summary))


@zoo_app.command("foreign")
def zoo_foreign(
    out: Annotated[Path, typer.Option(help="zoo folder to create or resume")],
    preset: Annotated[
        str, typer.Option(help="tiny (one GM, for tests), default or large")
    ] = "default",
    seed: Annotated[int, typer.Option(help="seed of the GM plan and every GM")] = 0,
    family: Annotated[
        list[str] | None,
        typer.Option(help="only these families (repeat the option); default: all installed"),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            help="families the preset skips, built too (repeatable; shell patterns, "
            "e.g. 'superimage-*')"
        ),
    ] = None,
    real: RealPhotos = None,
    limit: Annotated[int | None, typer.Option(help="build only the first N planned GMs")] = None,
) -> None:
    """Train GMs with third-party packages' own code (diffusers, pythae, torchgan ...)
    on real photographs and sample them: the foreign-code tier (resumable; the layout
    of `zoo build`). Run it in the tier's own environment: make foreign-env."""
    from gmtrace.core.runtime import cpu_count
    from gmtrace.zoo.builder import summary_table
    from gmtrace.zoo.foreign.build import ForeignError, build_foreign
    from gmtrace.zoo.real import RealImageError

    try:
        summary = build_foreign(
            out,
            preset,
            seed,
            str(real) if real else None,
            console,
            limit,
            cpu_count(),
            tuple(family or ()),
            tuple(include or ()),
        )
    except (ForeignError, RealImageError) as e:
        fail(str(e))
    finish_build(summary, summary_table(summary))


@zoo_app.command("real")
def zoo_real(
    zoo: Annotated[Path, typer.Argument(help="a zoo or tier folder (zoo.json, real/)")],
    real: RealPhotos = None,
    native_share: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="share of the crops cut at the photograph file's own resolution, as a "
            "scan reads it (the rest: random-size squares resized)",
        ),
    ] = 0.5,
) -> None:
    """Cut a zoo's real crops again (as many, same seed and size), a share of them at
    the photographs' own resolution; its GMs' images stay as they are."""
    from gmtrace.zoo.real import RealImageError, rewrite_real

    try:
        written, native, skipped = rewrite_real(zoo, str(real) if real else None, native_share)
    except RealImageError as e:
        fail(str(e))
    for line in skipped:
        console.print(f"[yellow]skipped:[/] {line}")
    console.print(
        f"{zoo}: {written} real crops written, {native} of them native, "
        f"{len(skipped)} photographs skipped"
    )


@zoo_app.command("show")
def zoo_show(
    zoo: Annotated[Path, typer.Argument(help="zoo folder")],
    out: Annotated[
        Path | None, typer.Option(help="contact sheet PNG (default ZOO/contact_sheet.png)")
    ] = None,
) -> None:
    """Table of the zoo's GMs and their hyperparameters, and a contact sheet PNG."""
    from gmtrace.data.dataset import DatasetError
    from gmtrace.zoo.show import show

    try:
        show(zoo, out, console=console)  # prints the tables and a summary
    except (DatasetError, FileNotFoundError, ValueError) as e:
        fail(str(e))


@zoo_app.command("export-red")
def zoo_export_red(
    zoo: Annotated[Path, typer.Argument(help="zoo folder")],
    out: Annotated[Path, typer.Option(help="folder for RED116-format ground truth")],
    copy_images: Annotated[bool, typer.Option(help="also copy each GM's images")] = False,
) -> None:
    """Export a zoo's ground truth in RED116's format (.npy arrays and text lines)."""
    from gmtrace.data.dataset import DatasetError, GMDataset
    from gmtrace.data.red import export_red, natural_key

    try:
        ds = GMDataset.from_zoo(zoo)
        # rows in natural name order pair with sorted image folders, as RED's readers expect
        ds.gms.sort(key=lambda g: natural_key(g.name))
        paths = export_red(ds, out, copy_images=copy_images)
    except (DatasetError, ValueError, OSError) as e:
        fail(str(e))
    t = Table(title=f"RED116 export of {zoo} ({len(ds)} GMs)")
    t.add_column("file")
    t.add_column("path")
    for k, v in paths.items():
        t.add_row(k, str(v))
    console.print(t)
