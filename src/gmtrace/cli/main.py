"""The `gmtrace` command line: thin commands that parse, call the API and print."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reverse-engineer generative models from the images they make.",
)
zoo_app = typer.Typer(no_args_is_help=True, help="Build, inspect and export GM zoos.")
app.add_typer(zoo_app, name="zoo")
console = Console()


def _fail(message: str) -> None:
    console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def describe(
    target: Annotated[
        str,
        typer.Argument(
            help="FILE.py:NAME - a module instance, a Module class or a zero-argument factory"
        ),
    ],
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="shape of a random example input, e.g. 2,128 or 2,3,64,64 (default: the "
            "module's example_input(), else a static walk)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Compute the 15 architecture hyperparameters of a torch module."""
    import torch

    from gmtrace.core.schema import ARCH_FIELDS, format_count
    from gmtrace.zoo.introspect import describe as describe_module
    from gmtrace.zoo.introspect import load_object, module_from

    try:
        module = module_from(load_object(target))
        example = None
        if input_shape:
            try:
                shape = tuple(int(s) for s in input_shape.split(","))
            except ValueError:
                _fail(f"--input-shape {input_shape!r}: expected integers separated by commas")
            example = torch.randn(*shape)
        arch = describe_module(module, example)
    except typer.Exit:
        raise
    except Exception as e:
        _fail(f"{target}: {type(e).__name__}: {e}")
    if as_json:
        print(
            json.dumps(
                {"values": arch.values, "extra": arch.extra, "traced": arch.traced}, indent=2
            )
        )
        return
    t = Table(title=f"{target} ({type(module).__name__})")
    t.add_column("hyperparameter")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    for f in ARCH_FIELDS:
        v = arch.values[f.name]
        t.add_row(f.name, format_count(f.name, v) if f.kind == "continuous" else str(v), f.meaning)
    for k, v in arch.extra.items():
        t.add_row(k, str(v), "extra")
    console.print(t)
    console.print(
        "traced with an example input"
        if arch.traced
        else "[yellow]static walk only[/] (no example input): order-dependent fields "
        "follow registration order; pass --input-shape for a trace"
    )


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="model folder (created, or resumed)")],
    zoo: Annotated[Path | None, typer.Option(help="zoo folder to train on")] = None,
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
    steps: Annotated[int, typer.Option(help="optimization steps")] = 3000,
    batch: Annotated[int, typer.Option(help="images per step, half generated")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 1e-3,
    per_gm: Annotated[int, typer.Option(help="images per GM held in memory")] = 200,
    image_size: Annotated[int, typer.Option(help="training crop size")] = 64,
    fen_depth: Annotated[int, typer.Option(help="FEN conv layers")] = 6,
    fen_width: Annotated[int, typer.Option(help="FEN channels")] = 24,
    no_augment: Annotated[bool, typer.Option("--no-augment", help="no JPEG/resize/blur")] = False,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
) -> None:
    """Train the FEN, parsing network and heads on a zoo (resumable)."""
    from gmtrace.data.dataset import DatasetError, GMDataset
    from gmtrace.nets.fen import FENConfig
    from gmtrace.nets.model import ModelConfig
    from gmtrace.train.loop import TrainConfig, TrainError, summary_table
    from gmtrace.train.loop import train as run_train

    cfg = TrainConfig(
        steps=steps,
        batch=batch,
        lr=lr,
        per_gm=per_gm,
        image_size=image_size,
        augment=not no_augment,
        seed=seed,
    )
    mcfg = replace(ModelConfig(), fen=FENConfig(depth=fen_depth, width=fen_width, highpass=True))
    from gmtrace.data.dataset import real_records
    from gmtrace.data.red import read_red_npy, read_red_text

    try:
        if red_arch is not None:
            if red_loss is None or red_images is None:
                _fail("--red-arch needs --red-loss and --red-images too")
            read = read_red_npy if red_arch.suffix == ".npy" else read_red_text
            ds = read(red_arch, red_loss, red_images)
        elif zoo is not None:
            ds = GMDataset.from_zoo(zoo)
        else:
            _fail("give --zoo DIR, or RED116 data with --red-arch/--red-loss/--red-images")
        if real is not None:
            ds.real = real_records(real)
        if not ds.real:
            _fail("no real photographs to train the detector on; add --real DIR")
        result = run_train(ds, out, cfg, mcfg, console=console, device=device)
    except typer.Exit:
        raise
    except (DatasetError, TrainError, ValueError) as e:
        _fail(str(e))
    console.print(summary_table(result))


MaxCrops = Annotated[
    int,
    typer.Option(
        min=1,
        help="crops of the model's input size read per image, spread over it "
        "(fewer: faster on large images, less evidence)",
    ),
]


@app.command()
def analyze(
    images: Annotated[list[Path], typer.Argument(help="image files or folders of images")],
    model: Annotated[
        Path | None, typer.Option(help="model folder (default: the model shipped with gmtrace)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
    save_views: Annotated[
        Path | None, typer.Option(help="write each image's fingerprint and spectrum PNG here")
    ] = None,
    top: Annotated[int, typer.Option(help="known GMs listed per image")] = 3,
    max_crops: MaxCrops = 9,
    group: Annotated[
        bool, typer.Option("--group", help="group the generated images by source GM")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
) -> None:
    """Is each image generated, by which known GM (or an unknown one), and what were
    that GM's architecture and training losses?"""
    from gmtrace.core.runtime import progress
    from gmtrace.core.schema import format_count
    from gmtrace.data.images import find_images
    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.rows import ImageResult, model_fields

    files, problems = find_images(images)
    if not files and not problems:
        _fail("no image files given (folders are searched recursively)")
    try:
        analyzer = Analyzer(model, device=device, top_k=top, max_crops=max_crops)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    with progress(Console(stderr=True), transient=True) as bars:
        task = bars.add_task("analyze", total=len(files), status="")
        results = analyzer.analyze(files, save_views, on_done=lambda: bars.advance(task))
    results += [ImageResult(p, False, msg) for p, msg in problems.items()]
    n_groups = analyzer.group(results) if group else None
    ok = [r for r in results if r.ok]
    if as_json:
        extras = ("group",) * group + ("fingerprint_png", "spectrum_png") * bool(save_views)
        model_f = model_fields(analyzer)
        rows = [r.to_row(model_f) | {k: getattr(r, k) for k in extras} for r in results]
        print(json.dumps(rows, indent=2))
    else:
        t = Table(title=f"gmtrace analyze ({len(results)} images)")
        t.add_column("image", overflow="fold")
        t.add_column("p(gen)", justify="right")
        t.add_column("source GM")
        t.add_column("parsed: params / layers / upsampling")
        t.add_column("losses")
        if group:
            t.add_column("group", justify="right")
        for r in results:
            if not r.ok:
                t.add_row(r.path, "-", "[red]error[/]", r.error or "", "", *([""] if group else []))
                continue
            h = r.hyperparameters
            gm = r.top_gms[0]
            note = " (padded)" if r.padded else ""
            if r.verdict == "real":  # no generator to name or parse (--json keeps the numbers)
                src = parsed = losses = "-"
            else:
                src = "unknown GM" if r.unknown_gm else f"{gm['name']} ({gm['probability']:.2f})"
                parsed = (
                    f"{format_count('n_params', h['n_params'])} / {h['n_layers']:.0f} / "
                    f"{h['upsampling']} ({h['upsampling_confidence']:.2f})"
                )
                losses = ", ".join(r.losses) or "-"
            t.add_row(
                r.path + note,
                f"{r.p_generated:.2f}",
                src,
                parsed,
                losses,
                *([str(r.group or "-")] if group else []),
            )
        console.print(t)
    for r in results:
        if not r.ok:
            console.print(f"[red]error:[/] {r.error}", soft_wrap=True)
    n_gen = sum(r.verdict == "generated" for r in ok)
    n_unknown = sum(bool(r.unknown_gm) and r.verdict == "generated" for r in ok)
    summary = (
        f"{len(ok)} analyzed, {len(results) - len(ok)} failed; {n_gen} look generated "
        f"({n_unknown} by a GM the model does not know), {len(ok) - n_gen} look real"
    )
    if n_groups is not None:
        summary += f"; the generated ones form {n_groups} group(s) by source GM"
    (Console(stderr=True) if as_json else console).print(summary)
    if not ok:
        raise typer.Exit(1)


@app.command()
def scan(
    paths: Annotated[
        list[Path], typer.Argument(help="image files or folders (searched recursively)")
    ],
    out: Annotated[
        Path, typer.Option(help="results file: .jsonl, .csv or .parquet (resumed if present)")
    ],
    model: Annotated[
        Path | None, typer.Option(help="model folder (default: the model shipped with gmtrace)")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="decoding threads beside the network (ray: workers)")
    ] = 2,
    max_crops: MaxCrops = 9,
    engine: Annotated[str, typer.Option(help="local, or ray (Ray Data)")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="an existing Ray cluster (default: start a local one)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
) -> None:
    """Scan images into one results file, one row per file (killed, rerun the same
    command: it finishes where it stopped, with the same rows)."""
    import time

    from rich.markup import escape

    from gmtrace.core.runtime import progress
    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.scan import ScanError
    from gmtrace.product.scan import scan as run_scan

    try:
        analyzer = Analyzer(model, device=device, max_crops=max_crops)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    t0 = time.perf_counter()
    with progress(Console(stderr=True)) as bars:
        task = bars.add_task("scan", total=None, status="")

        def tick(done: int, total: int) -> None:
            rate = done / max(time.perf_counter() - t0, 1e-9)
            bars.update(task, completed=done, total=total, status=f"{rate:.0f} images/s")

        try:
            s = run_scan(
                analyzer,
                paths,
                out,
                workers=workers,
                on_progress=tick,
                engine=engine,
                ray_address=ray_address,
            )
        except ScanError as e:
            _fail(str(e))
    t = Table(title=f"gmtrace scan: {out}")
    t.add_column("files", justify="right")
    t.add_column("analyzed", justify="right")
    t.add_column("failed", justify="right")
    t.add_column("kept from before", justify="right")
    t.add_column("called generated", justify="right")
    t.add_column("of those, unknown GM", justify="right")
    t.add_column("images/s", justify="right")
    t.add_row(
        str(s.files),
        str(s.analyzed),
        str(s.failed),
        str(s.resumed),
        str(s.generated),
        str(s.unknown_gm),
        f"{s.images_per_second:.0f}",
    )
    console.print(t)
    for e in s.errors[:5]:
        console.print(f"[yellow]failed:[/] {escape(e)}", soft_wrap=True, highlight=False)
    if s.failed > 5:
        console.print(f"... and {s.failed - 5} more failures (rows with an error in {out})")
    console.print(
        f"{s.files} files, one row each, in {out} ({s.seconds:.1f} s, model {analyzer.model_id_})"
    )


@app.command("group")
def group_cmd(
    results: Annotated[
        Path, typer.Argument(help="a `gmtrace scan` output (.jsonl, .csv, .parquet)")
    ],
    out: Annotated[Path, typer.Option(help="groups file to write (JSON)")] = Path("groups.json"),
    all_images: Annotated[
        bool,
        typer.Option("--all", help="group every analyzed image, not only those called generated"),
    ] = False,
) -> None:
    """Group a scan's generated images by source GM (the number of GMs unknown), with
    each group's parse over its images and the nearest known GM when one is close."""
    from gmtrace.core.schema import format_count
    from gmtrace.product.groups import group_rows, write_groups
    from gmtrace.product.scan import ScanError, read_results

    try:
        rows = read_results(results)
    except ScanError as e:
        _fail(str(e))
    g = group_rows(rows, generated_only=not all_images)
    write_groups(g, out)
    t = Table(title=f"gmtrace group: {len(g['groups'])} group(s) of {g['grouped']} images")
    t.add_column("group", justify="right")
    t.add_column("images", justify="right")
    t.add_column("nearest known GM")
    t.add_column("params / layers / upsampling (agreement)")
    t.add_column("losses")
    for grp in g["groups"][:30]:
        h = grp["hyperparameters"]
        near = grp["nearest_known_gm"]
        t.add_row(
            str(grp["group"]),
            str(grp["size"]),
            f"{near['name']} ({near['share']:.0%})" if near else "none close: a new GM",
            f"{format_count('n_params', h['n_params']['value'])} / {h['n_layers']['value']:.0f} / "
            f"{h['upsampling']['value']} ({h['upsampling']['agreement']:.0%})",
            ", ".join(grp["losses"]) or "-",
        )
    console.print(t)
    if len(g["groups"]) > 30:
        console.print(f"... {len(g['groups']) - 30} more groups in {out}")
    nf, nr = g["not_grouped"]["failed"], g["not_grouped"]["real"]
    console.print(
        f"{g['grouped']} of {g['images']} images in {len(g['groups'])} group(s) "
        f"({nr} called real, {nf} failed, not grouped): {out}"
    )


@app.command("report")
def report_cmd(
    results: Annotated[
        Path, typer.Argument(help="a `gmtrace scan` output (.jsonl, .csv, .parquet)")
    ],
    out: Annotated[Path, typer.Option(help="HTML file to write")] = Path("report.html"),
    groups: Annotated[
        Path | None, typer.Option(help="groups.json of `gmtrace group` (default: group now)")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="model folder for fingerprints and the model card (default: shipped)"),
    ] = None,
    title: Annotated[str, typer.Option(help="a title for the case")] = "",
) -> None:
    """Write one self-contained HTML report of a scan: summary, a sortable verdict
    table, per group a contact sheet, fingerprint, spectrum and parse, a model card."""
    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.report import write_report
    from gmtrace.product.scan import ScanError, read_results

    try:
        rows = read_results(results)
        g = json.loads(groups.read_text()) if groups is not None else None
        analyzer = Analyzer(model)
    except (ScanError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    path = write_report(rows, out, analyzer, g, title)
    n = len(g["groups"]) if g else None
    size = path.stat().st_size / 1e6
    console.print(
        f"report of {len(rows)} files"
        + (f", {n} group(s)" if n is not None else "")
        + f": {path} ({size:.1f} MB, self-contained)"
    )


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    token: Annotated[
        str | None, typer.Option(help="require 'Authorization: Bearer TOKEN' on /v1/*")
    ] = None,
    model: Annotated[
        Path | None, typer.Option(help="model folder (default: the model shipped with gmtrace)")
    ] = None,
    max_files: Annotated[int, typer.Option(help="files per request")] = 64,
    max_file_mb: Annotated[int, typer.Option(help="megabytes per file")] = 20,
    chunk_seconds: Annotated[
        float, typer.Option(help="longest wait for the next piece of an upload (then 408)")
    ] = 10.0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
) -> None:
    """Serve the analyzer over HTTP: /v1/analyze, /v1/group, /v1/model, /healthz, a
    web page at / and the API documentation at /docs."""
    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.server import Limits
    from gmtrace.product.server import serve as run

    try:
        analyzer = Analyzer(model, device=device)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    limits = Limits(
        files=max_files, file_bytes=max_file_mb * 1024 * 1024, chunk_seconds=chunk_seconds
    )
    console.print(f"gmtrace {analyzer.model_id_} on http://{host}:{port}/ (API docs at /docs)")
    run(analyzer, host=host, port=port, token=token, limits=limits)


@app.command()
def check(
    zoo: Annotated[Path, typer.Argument(help="zoo folder whose truth is known")],
    model: Annotated[
        Path | None, typer.Option(help="model folder (default: the model shipped with gmtrace)")
    ] = None,
    per_gm: Annotated[int, typer.Option(help="images analyzed per GM")] = 12,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Analyze a zoo with known truth (e.g. GMs the model never saw) and show how the
    answers compare with it."""
    from gmtrace.core.runtime import progress
    from gmtrace.data.dataset import DatasetError
    from gmtrace.product.analyze import Analyzer, check_zoo

    try:
        analyzer = Analyzer(model)
        with progress(Console(stderr=True), transient=True) as bars:
            task = bars.add_task("check", total=None, status="")
            res = check_zoo(analyzer, zoo, per_gm, on_done=lambda: bars.advance(task))
    except (DatasetError, FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(res, indent=2))
        return
    t = Table(title=f"{zoo}: answers vs truth (GM level, {per_gm} images each)")
    for c in (
        "GM",
        "family",
        "gen.",
        "unknown",
        "upsampling true/pred",
        "losses true",
        "pred",
        "F1",
    ):
        t.add_column(c, justify="right" if c in ("gen.", "unknown", "F1") else "left")
    for r in res["gms"]:
        t.add_row(
            r["gm"],
            r["family"],
            f"{r['called_generated']:.0%}",
            f"{r['called_unknown']:.0%}",
            f"{r['true_upsampling']} / {r['predicted_upsampling']}",
            ",".join(r["true_losses"]),
            ",".join(r["predicted_losses"]) or "-",
            f"{r['loss_f1']:.2f}",
        )
    console.print(t)
    for line in res["failures"]:
        console.print(f"[yellow]skipped:[/] {line}")
    s = Table(title="summary")
    s.add_column("check")
    s.add_column("value", justify="right")
    s.add_row("generated images called generated", f"{res['fake_called_generated']:.0%}")
    if res["real_called_real"] is not None:
        s.add_row(
            f"real crops called real ({res['real_images']})", f"{res['real_called_real']:.0%}"
        )
    s.add_row("loss types, mean F1 per GM", f"{res['mean_loss_f1']:.2f}")
    s.add_row("discrete hyperparameters right (of 6)", f"{res['mean_discrete_correct']:.1f}")
    s.add_row("continuous, mean L1 (normalized)", f"{res['mean_continuous_l1']:.3f}")
    console.print(s)


@app.command()
def evaluate(
    out: Annotated[
        Path | None, typer.Option(help="folder for results.json, report.md, figures")
    ] = None,
    zoo: Annotated[Path | None, typer.Option(help="zoo folder to evaluate on")] = None,
    folds: Annotated[int, typer.Option(help="folds of unseen GMs")] = 4,
    holdout: Annotated[
        str,
        typer.Option(
            help="family: each fold tests whole families and real photo collections that "
            "training never saw; gm: single GMs (stratified by family) and single photographs"
        ),
    ] = "family",
    compare: Annotated[
        Path | None,
        typer.Option(help="folder of another run (the other holdout) to show side by side"),
    ] = None,
    synth: Annotated[
        Path | None,
        typer.Option(help="a synthesized tier (`gmtrace zoo synth`) whose GMs join training"),
    ] = None,
    synth_gms: Annotated[
        int | None, typer.Option(help="how many of its GMs (default: all of them)")
    ] = None,
    curve: Annotated[
        str | None,
        typer.Option(
            help="comma-separated counts of synthesized GMs: one run per count into "
            "OUT/n<count>/, and the figures against the number of training GMs; with "
            "--render-only, a curve run's folder (or its curve.json) to show in the report"
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="gmtrace training steps per fold")] = 400,
    red_steps: Annotated[
        int, typer.Option(help="RED-architecture training steps per fold (about equal CPU time)")
    ] = 34,
    methods: Annotated[
        str, typer.Option(help="comma-separated: gmtrace, red, spectral")
    ] = "gmtrace,red,spectral",
    train_per_gm: Annotated[int, typer.Option(help="training images per GM")] = 160,
    test_per_gm: Annotated[int, typer.Option(help="test images per unseen GM")] = 30,
    permutations: Annotated[int, typer.Option(help="random-ground-truth shuffles")] = 1000,
    report: Annotated[
        Path | None, typer.Option(help="also write the report here (e.g. docs/results.md)")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    render_only: Annotated[
        bool, typer.Option("--render-only", help="only rewrite the reports from OUT/results.json")
    ] = False,
    card: Annotated[
        Path | None,
        typer.Option(help="write the run's figures as DIR/card.json, the model card of DIR"),
    ] = None,
    curve_only: Annotated[
        bool,
        typer.Option(
            "--curve-only",
            help="with --render-only: rewrite only the curve section of --report from "
            "--curve (the rest stays as its run wrote it; no --out needed)",
        ),
    ] = False,
) -> None:
    """Cross-validate on unseen GMs: parsing, detection, attribution, grouping, leakage,
    with RED's architecture and the spectral baseline in the same run."""
    import sys

    from gmtrace.data.dataset import DatasetError, GMDataset
    from gmtrace.evaluation.protocol import EvalConfig
    from gmtrace.evaluation.protocol import curve as run_curve
    from gmtrace.evaluation.protocol import evaluate as run_eval
    from gmtrace.evaluation.report import read_results, summary_table, write_reports
    from gmtrace.train.loop import TrainError

    if curve_only:
        from gmtrace.evaluation.report import write_curve_section

        if not (render_only and curve and report):
            _fail("--curve-only goes with --render-only, --curve DIR and --report FILE")
        try:
            record = write_curve_section(report, _curve_json(curve))
        except ValueError as e:
            _fail(str(e))
        console.print(f"curve section of {report} rewritten; its record: {record}")
        return
    if out is None:
        _fail("--out DIR is required")
    if zoo is None and not render_only:
        _fail("--zoo DIR is required (unless --render-only)")
    cfg = EvalConfig(
        folds=folds,
        seed=seed,
        holdout=holdout,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        steps=steps,
        red_steps=red_steps,
        train_per_gm=train_per_gm,
        test_per_gm=test_per_gm,
        permutations=permutations,
    )
    command = "gmtrace " + " ".join(sys.argv[1:])
    try:
        if render_only:
            results = write_reports(out, report, compare, _curve_json(curve))
        else:
            ds = GMDataset.from_zoo(zoo)
            tier = GMDataset.from_zoo(synth) if synth else None
            if curve:
                if tier is None:
                    _fail("--curve needs --synth DIR")
                counts = [int(c) for c in curve.split(",") if c.strip()]
                run_curve(ds, tier, counts, out, cfg, console, report, command, compare)
                out = out / f"n{max(counts)}"
                results = read_results(out)
            else:
                n = 0 if tier is None else (len(tier) if synth_gms is None else synth_gms)
                results = run_eval(
                    ds,
                    out,
                    replace(cfg, synth_gms=n),
                    console=console,
                    report=report,
                    command=command,
                    compare=compare,
                    synth=tier,
                )
    except (DatasetError, TrainError, ValueError) as e:
        _fail(str(e))
    console.print(summary_table(results))
    console.print(f"report: {out / 'report.md'}" + (f" and {report}" if report else ""))
    if card is not None:
        from gmtrace.core.files import atomic_write_text
        from gmtrace.evaluation.report import model_card

        if not (card / "config.json").is_file():
            _fail(f"{card}: not a model folder (no config.json)")
        atomic_write_text(card / "card.json", json.dumps(model_card(results), indent=1) + "\n")
        console.print(f"model card: {card / 'card.json'}")


def _curve_json(where: str | None) -> dict | None:
    """The curve.json named by --curve in --render-only mode (a file or its folder)."""
    import json

    if where is None:
        return None
    p = Path(where)
    p = p / "curve.json" if p.is_dir() else p
    if not p.is_file():
        _fail(f"{p}: no curve.json here (run `gmtrace evaluate --curve COUNTS` first)")
    try:
        return json.loads(p.read_text()) | {"folder": str(p.parent)}
    except (OSError, ValueError) as e:
        _fail(f"{p}: not a readable curve.json ({e})")


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
        _fail(str(e))
    console.print(summary_table(summary, out))
    if summary.failed:
        console.print(
            f"[red]{len(summary.failed)} GM(s) failed[/]; rerun the same command "
            "to retry them (finished GMs are kept)"
        )
        raise typer.Exit(1)


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
        _fail(str(e))
    console.print(summary_table(summary))
    if summary.failed:
        console.print(
            f"[red]{len(summary.failed)} GM(s) failed[/]; rerun the same command "
            "to retry them (finished GMs are kept)"
        )
        raise typer.Exit(1)


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
        _fail(str(e))


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
        _fail(str(e))
    t = Table(title=f"RED116 export of {zoo} ({len(ds)} GMs)")
    t.add_column("file")
    t.add_column("path")
    for k, v in paths.items():
        t.add_row(k, str(v))
    console.print(t)
