"""`gmtrace index`: a persistent fingerprint index, to learn that the images of one
case come from a generator seen in another (docs/index.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from gmtrace.cli.app import app, console, fail

index_app = typer.Typer(
    no_args_is_help=True,
    help="Keep every case's fingerprints; find where a generator was seen before.",
)
app.add_typer(index_app, name="index")

Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="the index: a folder (default: $GMTRACE_DATA/index, made by the first add) or a "
        "team's PostgreSQL server, postgresql://user@host/database",
    ),
]
RESULTS_SUFFIXES = (".jsonl", ".csv", ".parquet")


def _location(db: str | None) -> str | Path:
    """The index --db names: a PostgreSQL URL, a folder, or the user's own."""
    from gmtrace.core.files import data_dir
    from gmtrace.index.store import is_url

    if db is None:
        return data_dir() / "index"
    return db if is_url(db) else Path(db)


def _where(db: str | None) -> str:
    """The index --db names, as messages show it (no password)."""
    from gmtrace.index.store import redact

    return redact(str(_location(db)))


def _open(db: str | None, create: bool = False):
    from gmtrace.index.index import FingerprintIndex
    from gmtrace.index.store import IndexStoreError

    try:
        return FingerprintIndex(_location(db), create=create)
    except IndexStoreError as e:
        fail(str(e))


def _rows(results: Path) -> list[dict]:
    from gmtrace.product.scan import ScanError, read_results

    try:
        return read_results(results)
    except ScanError as e:
        fail(str(e))


@index_app.command("add")
def index_add(
    results: Annotated[
        Path, typer.Argument(help="a `gmtrace scan` output (.jsonl, .csv, .parquet)")
    ],
    case: Annotated[
        str, typer.Option(help="the case's name (an add under a known name adds to it)")
    ],
    groups: Annotated[
        Path | None,
        typer.Option(help="the case's groups.json (`gmtrace group`), kept with each row"),
    ] = None,
    db: Db = None,
) -> None:
    """Add a case's analyzed images (embedding, verdict, group, parse, model id) to the
    index. Run again after an interruption: the rows already there are skipped."""
    from gmtrace.core.runtime import progress
    from gmtrace.index.store import IndexStoreError

    rows = _rows(results)
    try:
        g = json.loads(groups.read_text()) if groups is not None else None
    except (OSError, ValueError) as e:
        fail(f"{groups}: not a readable groups file ({e})")
    with _open(db, create=True) as index:
        try:
            with progress(Console(stderr=True), transient=True) as bars:
                task = bars.add_task("index add", total=len(rows), status="")
                s = index.add(case, rows, g, on_batch=lambda n: bars.advance(task, n))
        except IndexStoreError as e:
            fail(str(e))
        total = sum(index.store.models().values())
    console.print(
        f"case {case!r}: {s.added} image(s) added, {s.already} already there, "
        f"{s.unusable} failed or without an embedding; the index holds {total}: {_where(db)}"
    )


@index_app.command("query")
def index_query(
    inputs: Annotated[
        list[Path],
        typer.Argument(help="a scan output (.jsonl, .csv, .parquet), or image files and folders"),
    ],
    k: Annotated[int, typer.Option(min=1, max=1000, help="nearest indexed images per image")] = 10,
    case: Annotated[
        str | None,
        typer.Option(help="the case these images belong to: its own rows are not answers"),
    ] = None,
    groups: Annotated[
        Path | None,
        typer.Option(help="their groups.json: answer per group too (default: group now)"),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="model folder that analyzes images (default: the shipped one)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="write the whole answer here (JSON)")] = None,
    db: Db = None,
) -> None:
    """Where were these images' generators seen before? Per image, the nearest images
    of other cases (distance, case, date, same-source probability) and exact re-posts;
    per group, the stored groups its images lead to."""
    from gmtrace.core.files import atomic_write_text
    from gmtrace.index.index import SameSource
    from gmtrace.index.store import IndexStoreError
    from gmtrace.product.analyze import default_model_dir
    from gmtrace.product.groups import group_rows

    if len(inputs) == 1 and inputs[0].suffix.lower() in RESULTS_SUFFIXES:
        rows = _rows(inputs[0])
    else:
        rows = _analyze(inputs, model)
    try:
        g = json.loads(groups.read_text()) if groups is not None else group_rows(rows)
    except (OSError, ValueError) as e:
        fail(f"{groups}: not a readable groups file ({e})")
    same = SameSource.of_model(model or default_model_dir())
    with _open(db) as index:
        try:
            ans = index.query(rows, k=k, exclude_case=case, same_source=same, groups=g)
        except IndexStoreError as e:
            fail(str(e))
    if out is not None:
        atomic_write_text(out, json.dumps(ans, indent=1) + "\n")
    _print_query(ans)


def _analyze(inputs: list[Path], model: Path | None) -> list[dict]:
    from gmtrace.cli.product import analyze_files, open_analyzer
    from gmtrace.data.images import find_images
    from gmtrace.product.rows import model_fields

    files, problems = find_images(inputs)
    if not files and not problems:
        fail("no image files given (folders are searched recursively)")
    analyzer = open_analyzer(model)
    return [r.to_row(model_fields(analyzer)) for r in analyze_files(analyzer, files, problems)]


def _print_query(ans: dict) -> None:
    t = Table(title=f"nearest indexed images ({ans['indexed']} indexed, model {ans['model_id']})")
    for c in ("image", "re-posted", "nearest: case / group", "distance", "same source", "date"):
        t.add_column(c)
    for im in ans["images"][:40]:
        nb = im["nearest"][0] if im["nearest"] else None
        t.add_row(
            Path(im["path"]).name,
            ", ".join(r["case"] for r in im["reposted"]) or "-",
            f"{nb['case']} / {nb['group'] if nb['group'] is not None else '-'}" if nb else "-",
            f"{nb['distance']:.3f}" if nb else "-",
            "-" if nb is None or nb["same_source"] is None else f"{nb['same_source']:.0%}",
            nb["date"] if nb else "-",
        )
    console.print(t)
    for g in ans["groups"][:20]:
        seen = "; ".join(
            f"{s['case']} group {s['group'] if s['group'] is not None else '-'} "
            f"({s['share']:.0%} of its images, median distance {s['median_distance']:.3f})"
            for s in g["seen_in"]
        )
        console.print(f"group {g['group']} ({g['size']} images): {seen or 'not seen before'}")
    reposts = sum(1 for im in ans["images"] if im["reposted"])
    cal = "" if ans["same_source"] else " (same-source probability: not calibrated for this model)"
    console.print(
        f"{len(ans['images'])} image(s) queried against {ans['indexed']} indexed; "
        f"{reposts} exact re-post(s){cal}"
    )


@index_app.command("show")
def index_show(
    db: Db = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
) -> None:
    """The indexed cases, their sizes, and the generators (groups) that recur across cases."""
    with _open(db) as index:
        s = index.show()
    if as_json:
        print(json.dumps(s, indent=1))
        return
    t = Table(title=f"cases in {_where(db)}")
    for c in ("case", "added", "images", "generated or unsure", "groups"):
        t.add_column(c)
    from gmtrace.index.index import _date

    for c in s["cases"]:
        t.add_row(
            c["case"], _date(c["created"]), str(c["images"]), str(c["generated"]), str(c["groups"])
        )
    console.print(t)
    for r in s["recurring"][:30]:
        console.print(
            f"{r['case']} group {r['group']} ({r['size']} images) -> {r['linked_case']} group "
            f"{r['linked_group']} ({r['share']:.0%} of its images)"
        )
    for r in s["sources"][:30]:
        console.print(
            f"source S{r['source']}: {r['images']} images in {r['cases']} cases "
            f"({', '.join(r['case_names'])})"
        )
    n = sum(c["images"] for c in s["cases"])
    console.print(
        f"{len(s['cases'])} case(s), {n} image(s), {len(s['models'])} model(s), "
        f"{len(s['recurring'])} group(s) recurring across cases, "
        f"{len(s['sources'])} source(s) seen in more than one"
    )


@index_app.command("reembed")
def index_reembed(
    model: Annotated[
        Path | None, typer.Option(help="the model to embed with (default: the shipped one)")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="re-embed the images of this model id (default: every other)")
    ] = None,
    db: Db = None,
) -> None:
    """Analyze again, with `--model`, the indexed images of other models whose files
    are still readable and unchanged (same sha256), and add them to their cases: the
    index can then answer that model's queries about them."""
    from gmtrace.cli.product import open_analyzer
    from gmtrace.core.files import file_sha256
    from gmtrace.index.store import IndexStoreError
    from gmtrace.product.rows import model_fields

    analyzer = open_analyzer(model)
    new_id = analyzer.model_id_
    with _open(db) as index:
        olds = [m for m in index.store.models() if m != new_id and source in (None, m)]
        todo, gone = {}, 0
        for m in olds:
            for r in index.store.readable_rows(m):
                p = Path(r["path"])
                if p.is_file() and file_sha256(p) == r["sha256"]:
                    todo.setdefault(r["case"], []).append(p)
                else:
                    gone += 1
        added = 0
        for case, files in todo.items():
            results = analyzer.analyze([str(f) for f in files], None)
            rows = [x.to_row(model_fields(analyzer)) for x in results]
            try:
                added += index.add(case, rows).added
            except IndexStoreError as e:
                fail(str(e))
    console.print(
        f"{added} image(s) of {len(todo)} case(s) re-embedded with model {new_id}; "
        f"{gone} no longer readable or changed since they were indexed"
    )


@index_app.command("calibrate")
def index_calibrate(
    run: Annotated[Path, typer.Option("--run", help="a finished `gmtrace evaluate` run folder")],
    model: Annotated[Path, typer.Option(help="the model folder whose queries the map serves")],
    method: Annotated[str, typer.Option(help="the run's method of the same design")] = "gmtrace",
    folds: Annotated[
        str | None,
        typer.Option(
            help="only these folds' unseen images (e.g. 0,2): keeps the GMs the map is "
            "checked on out of its fit (default: every fold)"
        ),
    ] = None,
) -> None:
    """Fit the "same source" probability of a distance on a run's held-out codebases'
    images (each fold's network never saw them) and keep it in MODEL/adopted.json."""
    from gmtrace.core.files import atomic_write_text
    from gmtrace.evaluation.adopt import read_out_of_fold
    from gmtrace.index.index import SAME_SOURCE, fit_on_run
    from gmtrace.readout.saved import ADOPTED, read_adopted

    try:
        arrays = read_out_of_fold(run)
    except ValueError as e:
        fail(str(e))
    if f"{method}.emb" not in arrays or "unseen.gm" not in arrays:
        fail(f"{run}: no embeddings of {method!r} among its out-of-fold answers (run it again)")
    if not model.is_dir():
        fail(f"{model}: not a model folder")
    chosen = None
    if folds is not None:
        try:
            chosen = sorted({int(v) for v in folds.split(",")})
        except ValueError:
            fail(f"--folds {folds}: fold numbers separated by commas (0, 1, ...)")
        held = set(arrays["unseen.fold"].astype(int).tolist())
        if missing := [f for f in chosen if f not in held]:
            fail(f"{run}: no fold {missing[0]} among its out-of-fold answers")
    try:
        m, rec = fit_on_run(arrays, method, chosen)
    except ValueError as e:
        fail(f"{run}: {e}")
    try:
        record = read_adopted(model)
    except ValueError as e:
        fail(str(e))
    record[SAME_SOURCE] = {"weight": m.weight, "bias": m.bias, "run": str(run), "method": method}
    record[SAME_SOURCE]["folds"] = folds or "all"
    record[SAME_SOURCE] |= rec
    path = atomic_write_text(model / ADOPTED, json.dumps(record, indent=1) + "\n")
    console.print(
        f"same source: p = sigmoid({m.bias:.2f} {m.weight:+.2f} x distance), 0.5 at distance "
        f"{rec['distance_at_half']}; on {rec['pairs']} neighbour pairs of unseen GMs "
        f"({rec['same_gm_share']:.0%} same GM): precision {rec['precision_at_half']}, "
        f"recall {rec['recall_at_half']} at p >= 0.5: {path}"
    )
