"""The analyst's commands: analyze, scan, group, report, serve, check."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gmtrace.cli.app import app, console, fail
from gmtrace.product.config import INFER_BATCH, MAX_CROPS, TOP_K, Limits

LIMITS = Limits()

MaxCrops = Annotated[
    int,
    typer.Option(
        min=1,
        help="crops of the model's input size read per image, spread over it "
        "(fewer: faster on large images, less evidence)",
    ),
]


EngineRuntime = Annotated[
    str | None,
    typer.Option(
        "--runtime",
        help="inference engine: torch, compile (torch.compile: compiled once per process, "
        "for large cases), onnxruntime or openvino (auto: torch; default: $GMTRACE_RUNTIME, "
        "else auto)",
    ),
]
Precision = Annotated[
    str | None,
    typer.Option(
        help="arithmetic of the network: fp32, or bf16 (about 1.5x the images per second "
        "where the CPU has bfloat16 instructions; answers differ by about 1e-2; default: "
        "$GMTRACE_PRECISION, else fp32)",
    ),
]
Threads = Annotated[
    int | None, typer.Option(help="threads of the inference engine (default: torch's count)")
]
Batch = Annotated[
    int,
    typer.Option(
        min=1,
        help="crops per forward pass (32: the fastest measured on 2 cores)",
    ),
]


CalibrationName = Annotated[
    str | None,
    typer.Option(
        help="a calibration of a fused model (`gmtrace calibrate`; default: its active one, "
        "if any; none: no calibration)"
    ),
]


def open_analyzer(model: Path | None, **options):
    """`Analyzer(model, **options)` (the shipped model by default), or a one-line
    error naming what is wrong with the model folder."""
    from gmtrace.product.analyze import Analyzer

    try:
        return Analyzer(model, **options)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))


def analyze_files(analyzer, files: list[str], problems: dict, save_views: Path | None = None):
    """Every file analyzed, with a progress bar; a file that could not be listed
    (`problems`: path -> message) gets a failed result."""
    from gmtrace.core.runtime import progress
    from gmtrace.product.rows import ImageResult

    with progress(Console(stderr=True), transient=True) as bars:
        task = bars.add_task("analyze", total=len(files), status="")
        results = analyzer.analyze(files, save_views, on_done=lambda: bars.advance(task))
    return results + [ImageResult(p, False, msg) for p, msg in problems.items()]


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
    top: Annotated[int, typer.Option(help="known GMs listed per image")] = TOP_K,
    max_crops: MaxCrops = MAX_CROPS,
    group: Annotated[
        bool, typer.Option("--group", help="group the generated images by source GM")
    ] = False,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
    calibration: CalibrationName = None,
    runtime: EngineRuntime = None,
    precision: Precision = None,
    threads: Threads = None,
    batch: Batch = INFER_BATCH,
) -> None:
    """Is each image generated, by which known GM (or an unknown one), and what were
    that GM's architecture and training losses?"""
    from gmtrace.core.schema import format_count
    from gmtrace.data.images import find_images
    from gmtrace.product.rows import model_fields

    files, problems = find_images(images)
    if not files and not problems:
        fail("no image files given (folders are searched recursively)")
    analyzer = open_analyzer(
        model,
        device=device,
        top_k=top,
        max_crops=max_crops,
        calibration=calibration,
        runtime=runtime,
        precision=precision,
        threads=threads,
        batch=batch,
    )
    results = analyze_files(analyzer, files, problems, save_views)
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
                    f"{format_count('n_params', h['n_params'])} / "
                    f"{format_count('n_layers', h['n_layers'])} / "
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
    n_unsure = sum(r.verdict == "unsure" for r in ok)
    n_unknown = sum(bool(r.unknown_gm) and r.verdict == "generated" for r in ok)
    summary = (
        f"{len(ok)} analyzed, {len(results) - len(ok)} failed; {n_gen} look generated "
        f"({n_unknown} by a GM the model does not know), "
        + (f"{n_unsure} unsure, " if n_unsure else "")
        + f"{len(ok) - n_gen - n_unsure} look real"
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
    max_crops: MaxCrops = MAX_CROPS,
    engine: Annotated[str, typer.Option(help="local, or ray (Ray Data)")] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="an existing Ray cluster (default: start a local one)")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
    calibration: CalibrationName = None,
    runtime: EngineRuntime = None,
    precision: Precision = None,
    threads: Threads = None,
    batch: Batch = INFER_BATCH,
) -> None:
    """Scan images into one results file, one row per file (killed, rerun the same
    command: it finishes where it stopped, with the same rows)."""
    import time

    from rich.markup import escape

    from gmtrace.core.runtime import progress
    from gmtrace.product.scan import ScanError
    from gmtrace.product.scan import scan as run_scan

    analyzer = open_analyzer(
        model,
        device=device,
        max_crops=max_crops,
        calibration=calibration,
        runtime=runtime,
        precision=precision,
        threads=threads,
        batch=batch,
    )
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
            fail(str(e))
    t = Table(title=f"gmtrace scan: {out}")
    t.add_column("files", justify="right")
    t.add_column("analyzed", justify="right")
    t.add_column("failed", justify="right")
    t.add_column("kept from before", justify="right")
    t.add_column("called generated", justify="right")
    t.add_column("unsure", justify="right")
    t.add_column("of those, unknown GM", justify="right")
    t.add_column("images/s", justify="right")
    t.add_row(
        str(s.files),
        str(s.analyzed),
        str(s.failed),
        str(s.resumed),
        str(s.generated),
        str(s.unsure),
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
    model: Annotated[
        Path | None,
        typer.Option(
            help="the model that scanned them (default: the shipped one): a fused model's "
            "grouping is used when the rows are its own"
        ),
    ] = None,
    index: Annotated[
        str | None,
        typer.Option(
            help="a fingerprint index (folder or postgresql:// URL): each group's source id "
            "where it was seen before"
        ),
    ] = None,
    case: Annotated[
        str | None, typer.Option(help="this case's name in the index (its own rows left out)")
    ] = None,
) -> None:
    """Group a scan's generated (and unsure) images by source GM (the number of GMs
    unknown), with each group's parse over its images and the nearest known GM when
    one is close."""
    from gmtrace.core.schema import format_count
    from gmtrace.product.groups import group_rows, write_groups
    from gmtrace.product.scan import ScanError, read_results

    try:
        rows = read_results(results)
    except ScanError as e:
        fail(str(e))
    g = group_rows(rows, not all_images, *_grouping_settings(model, rows))
    if index is not None:
        from gmtrace.index.index import FingerprintIndex

        try:
            with FingerprintIndex(index) as fx:
                links = fx.link_sources(rows, g, exclude_case=case)
        except ValueError as e:
            fail(str(e))
        for grp in g["groups"]:
            grp["source"] = links[grp["group"]]
    write_groups(g, out)
    t = Table(title=f"gmtrace group: {len(g['groups'])} group(s) of {g['grouped']} images")
    t.add_column("group", justify="right")
    t.add_column("images", justify="right")
    t.add_column("nearest known GM")
    t.add_column("params / layers / upsampling (agreement)")
    t.add_column("losses")
    if index is not None:
        t.add_column("source (seen in)")
    for grp in g["groups"][:30]:
        h = grp["hyperparameters"]
        near = grp["nearest_known_gm"]
        src = grp.get("source")
        seen = (
            []
            if src is None
            else [f"S{src['id']} ({', '.join(src['seen_in'])})" if src["id"] else "new"]
        )
        t.add_row(
            str(grp["group"]),
            str(grp["size"]),
            f"{near['name']} ({near['share']:.0%})" if near else "none close: a new GM",
            f"{format_count('n_params', h['n_params']['value'])} / "
            f"{format_count('n_layers', h['n_layers']['value'])} / "
            f"{h['upsampling']['value']} ({h['upsampling']['agreement']:.0%})",
            ", ".join(grp["losses"]) or "-",
            *seen,
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
    index: Annotated[
        str | None,
        typer.Option(
            help="a fingerprint index (`gmtrace index`; folder or postgresql:// URL): add "
            "'seen before in other cases'"
        ),
    ] = None,
    case: Annotated[
        str | None, typer.Option(help="this case's name in the index (its own rows are left out)")
    ] = None,
) -> None:
    """Write one self-contained HTML report of a scan: summary, a sortable verdict
    table, per group a contact sheet, fingerprint, spectrum and parse, a model card
    (and, with --index, where its generators were seen before)."""
    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.groups import group_rows, own_grouping
    from gmtrace.product.report import write_report
    from gmtrace.product.scan import ScanError, read_results

    try:
        rows = read_results(results)
        g = json.loads(groups.read_text()) if groups is not None else None
        analyzer = Analyzer(model)
    except (ScanError, FileNotFoundError, ValueError) as e:
        fail(str(e))
    seen = None
    # without a groups file, the groups `gmtrace group` would make: the model's own
    # grouping where every row is its, as `_grouping_settings` reads it (the analyzer
    # has the model's own fusion and id loaded already)
    if g is None:
        grouping = own_grouping(rows, analyzer.base_model_id_, analyzer.base_fusion_)
        g = group_rows(rows, True, *grouping)
    if index is not None:
        from gmtrace.index.index import FingerprintIndex, SameSource

        same = SameSource.of_model(analyzer.model_dir_) if analyzer.model_dir_ else None
        try:
            with FingerprintIndex(index) as fx:
                seen = fx.query(rows, exclude_case=case, same_source=same, groups=g)
        except ValueError as e:
            fail(str(e))
    path = write_report(rows, out, analyzer, g, title, seen)
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
    max_files: Annotated[int, typer.Option(help="files per request")] = LIMITS.files,
    max_file_mb: Annotated[int, typer.Option(help="megabytes per file")] = LIMITS.file_bytes
    // 2**20,
    chunk_seconds: Annotated[
        float, typer.Option(help="longest wait for the next piece of an upload (then 408)")
    ] = LIMITS.chunk_seconds,
    device: Annotated[str | None, typer.Option(help="cpu, cuda (default: CUDA if present)")] = None,
    index: Annotated[
        str | None,
        typer.Option(
            help="a fingerprint index (folder or postgresql:// URL): answer 'seen before' "
            "for every upload"
        ),
    ] = None,
    index_add: Annotated[
        str | None,
        typer.Option(help="add what is analyzed to the index, under this case name (opt-in)"),
    ] = None,
) -> None:
    """Serve the analyzer over HTTP: /v1/analyze, /v1/group, /v1/model, /healthz, a
    web page at / and the API documentation at /docs."""
    from gmtrace.product.server import serve as run

    if index_add is not None and index is None:
        fail("--index-add needs --index (a folder or a postgresql:// URL)")
    analyzer = open_analyzer(model, device=device)
    fx = None
    if index is not None:
        from gmtrace.index.index import FingerprintIndex

        try:
            fx = FingerprintIndex(index, create=index_add is not None)
        except ValueError as e:
            fail(str(e))
    limits = replace(
        LIMITS, files=max_files, file_bytes=max_file_mb * 2**20, chunk_seconds=chunk_seconds
    )
    console.print(f"gmtrace {analyzer.model_id_} on http://{host}:{port}/ (API docs at /docs)")
    run(analyzer, host=host, port=port, token=token, limits=limits, index=fx, index_case=index_add)


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
        fail(str(e))
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
            r["true_losses"] if isinstance(r["true_losses"], str) else ",".join(r["true_losses"]),
            ",".join(r["predicted_losses"]) or "-",
            "-" if r["loss_f1"] is None else f"{r['loss_f1']:.2f}",
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
    known = sum(r["discrete_known"] for r in res["gms"]) / max(len(res["gms"]), 1)
    s.add_row(
        f"discrete hyperparameters right (of {known:.3g} known)",
        f"{res['mean_discrete_correct']:.1f}",
    )
    s.add_row("continuous, mean L1 (normalized)", f"{res['mean_continuous_l1']:.3f}")
    console.print(s)


def _grouping_settings(model: Path | None, rows: list[dict]) -> tuple[int, float]:
    """How the model folder `model` (default: the shipped one) groups `rows`
    (`groups.own_grouping`), read from its files without loading its network."""
    import json

    from gmtrace.product.analyze import default_model_dir
    from gmtrace.product.groups import own_grouping
    from gmtrace.readout.fused import Fusion
    from gmtrace.readout.saved import CONFIG, model_digest, model_id

    d = model or default_model_dir()
    try:
        fusion = Fusion.load(d)
        if fusion is None or not (fusion.min_size or fusion.group_weight):
            return 0, 0.0
        meta = json.loads((d / CONFIG).read_text())  # the id's version; no weights loaded
    except (OSError, ValueError):
        return 0, 0.0
    return own_grouping(rows, model_id(meta, model_digest(d)), fusion)


@app.command()
def calibrate(
    photos: Annotated[
        list[Path], typer.Argument(help="your own photographs (files or folders), 20 or more")
    ],
    model: Annotated[
        Path | None, typer.Option(help="model folder (default: the model shipped with gmtrace)")
    ] = None,
    name: Annotated[str, typer.Option(help="the calibration's name")] = "default",
) -> None:
    """Refit a fused model's real-photo model and threshold on your own photographs
    (your camera, your platform's JPEG); kept in your data folder and used from now on
    (`--calibration none` to do without)."""
    from gmtrace.product import calibration
    from gmtrace.product.analyze import Analyzer

    try:
        analyzer = Analyzer(model, calibration="none")
        cal = calibration.calibrate(analyzer, photos, name)
    except (FileNotFoundError, ValueError) as e:  # CalibrationError is a ValueError
        fail(str(e))
    r = cal.record
    console.print(
        f"calibration {cal.name!r} of {r['model_id']}: {r['photographs']} photographs "
        f"({r['crops']} crops, {len(r['unreadable'])} unreadable), threshold "
        f"{cal.threshold:.3f} ({r['called_generated_at_0.5']:.0%} of them at or above 0.5 "
        f"before); in force from now on -> {calibration.model_folder(r['model_id']) / cal.name}"
    )
