"""`gmtrace scan`: images in folders into one results file, one row per file.

Files are found recursively (every extension Pillow opens; a path named on the
command line is read whatever its name), sorted by path, and cut into fixed
batches of `BATCH_FILES` files. Each batch is decoded by a thread pool while the
previous one runs through the network (`Analyzer.analyze_crops`; a thread keeps
only the crops the network reads of each image), and its rows
are appended to the output and flushed to disk before the next batch is written.

Resuming: run the same command again on the same output. The rows already there
are kept (a torn last line, from a kill in the middle of a write, is cut off), the
files they cover are skipped, and the rest are analyzed in the same batches as
before, so the finished file holds the rows an uninterrupted scan writes, in its
order (its floats can differ in the last digits: `results_differ`). A row is keyed
by its path; it also carries the file's sha256, the model id and the weights'
sha256, and `schema_version` (see `ROW_FIELDS`). An output written by another
model is not appended to.

Formats, by the output's suffix: `.jsonl` (nested values as JSON), `.csv` and
`.parquet` (nested values as JSON text in their column). A Parquet file cannot be
appended to, so the scan writes `FILE.partial.jsonl` and converts it at the end.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gmtrace.core.files import atomic_path
from gmtrace.core.runtime import ray_start
from gmtrace.data.crops import Crops, crop_count
from gmtrace.data.images import (
    MAX_FILE_BYTES,
    ImageError,
    display_path,
    find_images,
    read_bytes,
)
from gmtrace.product.config import INFER_BATCH
from gmtrace.product.rows import NESTED, ROW_FIELDS, SCHEMA_VERSION, ImageResult, model_fields

BATCH_FILES = 32  # fixed: a resumed scan must cut its files into the same batches
FORMATS = (".jsonl", ".csv", ".parquet")


class ScanError(ValueError):
    """A scan that cannot start (output of another model, unknown format, ...)."""


@dataclass
class ScanSummary:
    out: str
    files: int = 0
    analyzed: int = 0
    failed: int = 0
    resumed: int = 0  # rows already in the output, kept
    generated: int = 0
    unsure: int = 0  # a fused model's "unsure" verdicts
    unknown_gm: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few, for the summary

    @property
    def images_per_second(self) -> float:
        return (self.analyzed + self.failed) / self.seconds if self.seconds > 0 else 0.0


# ----------------------------------------------------------------------------- rows


# --------------------------------------------------------------------------- output


def _complete_lines(path: Path) -> bytes:
    """A results file up to its last line break (b"" when it does not exist); a torn
    last line, from a kill in the middle of a write, is cut off the file itself."""
    if not path.exists():
        return b""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return data[:end]


def _append_synced(path: Path, text: str, encoding: str) -> None:
    """Append `text` and have it on disk before returning (flush + fsync)."""
    with open(path, "a", encoding=encoding) as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


class JsonlOut:
    """Rows as JSON lines, appended and flushed to disk batch by batch."""

    def __init__(self, path: Path):
        self.path = path

    def existing(self) -> list[dict]:
        """The rows already written; a torn last line is cut off the file."""
        rows = []
        for i, line in enumerate(_complete_lines(self.path).splitlines(), 1):
            try:
                rows.append(json.loads(line))
            except ValueError:
                raise ScanError(
                    f"{self.path}: line {i} is not a JSON row; not resuming into it"
                ) from None
        return rows

    def append(self, rows: list[dict]) -> None:
        _append_synced(self.path, "".join(json.dumps(r) + "\n" for r in rows), "ascii")

    def finish(self) -> None:
        pass


def _flat(row: dict) -> dict:
    """A row with nested values as JSON text (CSV cells, Parquet columns)."""
    return {k: json.dumps(row[k]) if k in NESTED and row[k] is not None else row[k] for k in row}


def _unflat(row: dict) -> dict:
    return {k: json.loads(v) if k in NESTED and v not in (None, "") else v for k, v in row.items()}


class CsvOut(JsonlOut):
    """Rows as CSV (a header, then one line per row; no cell holds a line break)."""

    def existing(self) -> list[dict]:
        data = _complete_lines(self.path)
        end = len(data)
        reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
        if end and reader.fieldnames is not None and tuple(reader.fieldnames) != ROW_FIELDS:
            raise ScanError(
                f"{self.path}: not a gmtrace scan CSV of schema {SCHEMA_VERSION} (other columns)"
            )
        rows = [_unflat({k: _cell(k, v) for k, v in r.items()}) for r in reader]
        if end == 0 and self.path.exists():
            self.path.unlink()  # torn header: start again
        return rows

    def append(self, rows: list[dict]) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=ROW_FIELDS, lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            w.writeheader()
        for r in rows:
            w.writerow(_flat(r))
        _append_synced(self.path, buf.getvalue(), "utf-8")


class ParquetOut(JsonlOut):
    """Rows journaled as JSON lines beside the output, converted at the end."""

    def __init__(self, path: Path):
        super().__init__(path.with_name(path.name + ".partial.jsonl"))
        self.final = path

    def existing(self) -> list[dict]:
        if self.final.exists() and not self.path.exists():
            rows = read_results(self.final)
            if rows:
                super().append(rows)
        return super().existing()

    def finish(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [_flat(r) for r in super().existing()]
        table = pa.Table.from_pylist(rows, schema=parquet_schema())
        with atomic_path(self.final) as tmp:
            pq.write_table(table, tmp)
        self.path.unlink()


# the scalar fields that are not text, with their types (CSV cells are read back
# through these; Parquet columns are typed by them)
TYPED = {
    "schema_version": int,
    "bytes": int,
    "ok": bool,
    "width": int,
    "height": int,
    "crops": int,
    "padded": bool,
    "p_generated": float,
    "p_supervised": float,
    "real_unlikeness": float,
    "open_set_score": float,
    "unknown_gm": bool,
}


def _cell(name: str, text: str | None):
    if text is None or text == "":
        return None
    kind = TYPED.get(name)
    if kind is bool:
        return text == "True"
    return kind(text) if kind else text


def parquet_schema():
    import pyarrow as pa

    arrow = {int: pa.int64(), bool: pa.bool_(), float: pa.float64()}
    return pa.schema([(k, arrow[TYPED[k]] if k in TYPED else pa.string()) for k in ROW_FIELDS])


def output_for(path: str | Path):
    path = Path(path)
    kinds = {".jsonl": JsonlOut, ".csv": CsvOut, ".parquet": ParquetOut}
    if path.suffix.lower() not in kinds:
        raise ScanError(f"{path}: unknown output format; name it .jsonl, .csv or .parquet")
    return kinds[path.suffix.lower()](path)


def read_results(path: str | Path) -> list[dict]:
    """The rows of a scan output (any of the formats), nested values decoded."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return [json.loads(x) for x in path.read_text(encoding="ascii").splitlines() if x]
        if suffix == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return [_unflat({k: _cell(k, v) for k, v in r.items()}) for r in csv.DictReader(f)]
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return [_unflat(r) for r in pq.read_table(path).to_pylist()]
    except (OSError, ValueError) as e:
        raise ScanError(f"{path}: not a readable scan output ({e})") from None
    raise ScanError(f"{path}: unknown results format; expected .jsonl, .csv or .parquet")


def _value_differs(a, b, atol: float, where: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where}: keys {sorted(a)} != {sorted(b)}"
        return next((d for k in a if (d := _value_differs(a[k], b[k], atol, f"{where}.{k}"))), None)
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        pairs = zip(a, b, strict=True)
        return next(
            (
                d
                for i, (x, y) in enumerate(pairs)
                if (d := _value_differs(x, y, atol, f"{where}[{i}]"))
            ),
            None,
        )
    if type(a) is float and type(b) is float:
        return None if abs(a - b) <= atol else f"{where}: {a!r} != {b!r}"
    return None if a == b else f"{where}: {a!r} != {b!r}"


def results_differ(a: str | Path, b: str | Path, atol: float = 1e-4) -> str | None:
    """The first difference between two scan outputs' rows (their order, every field;
    floats to `atol`), or None when they hold the same rows. The same batch run
    through the network in another process can come out different in the last
    digits when the machine is busy (seen for the first network batch a process
    runs, with another process using the CPU: up to 1.6e-5 on an attribution
    probability of the shipped model), so a resumed output is compared with an
    uninterrupted one to a tolerance, not byte for byte."""
    ra, rb = read_results(a), read_results(b)
    if len(ra) != len(rb):
        return f"{len(ra)} rows != {len(rb)} rows"
    for i, (x, y) in enumerate(zip(ra, rb, strict=True)):
        if d := _value_differs(x, y, atol, f"row {i + 1} ({x.get('path')})"):
            return d
    return None


# ----------------------------------------------------------------------------- scan


def _load(analyzer, path: str) -> tuple[str, Crops | None, str | None, str | None, int | None]:
    """(path, its crops or None, error or None, sha256, bytes) of one file. Only the
    crops the network reads are kept (`Analyzer.crops`), so a batch of large images
    holds 32 x `max_crops` crops, not 32 decoded images."""
    try:
        data = read_bytes(path, MAX_FILE_BYTES)
    except ImageError as e:
        return path, None, str(e), None, None
    d, crops = analyzer.decode_crops(data, path)
    return path, crops, d.error, d.sha256, d.nbytes


def _note(summary: ScanSummary, error: str, keep: int = 20) -> None:
    if len(summary.errors) < keep:
        summary.errors.append(error)


def _batches(files: list[str], todo: set[str]) -> Iterator[list[str]]:
    """The fixed batches of `files` that hold at least one file of `todo`."""
    for i in range(0, len(files), BATCH_FILES):
        block = files[i : i + BATCH_FILES]
        if any(f in todo for f in block):
            yield block


def _block_rows(analyzer, loaded: list, todo: set[str], model: dict) -> list[dict]:
    """The rows of one batch's files that are still to do (`loaded`: `_load` of
    every file of the batch, so the network always sees the whole batch)."""
    ok = [x for x in loaded if x[1] is not None]
    results = analyzer.analyze_crops([x[1] for x in ok], [x[0] for x in ok])
    by_path = {x[0]: r for x, r in zip(ok, results, strict=True)}
    rows = []
    for path, _img, err, sha, nbytes in loaded:
        if path not in todo:
            continue  # its row is already in the output
        r = ImageResult(path, False, err) if err is not None else by_path[path]
        r.sha256, r.bytes = sha, nbytes
        rows.append(r.to_row(model))
    return rows


def _tally(summary: ScanSummary, rows: list[dict]) -> None:
    for r in rows:
        if not r["ok"]:
            summary.failed += 1
            _note(summary, r["error"])
            continue
        summary.analyzed += 1
        summary.generated += r["verdict"] == "generated"
        summary.unsure += r["verdict"] == "unsure"
        summary.unknown_gm += bool(r["unknown_gm"] and r["verdict"] == "generated")


def _local_batches(analyzer, blocks, todo, model, workers: int) -> Iterator[list[dict]]:
    """Each batch's new rows, in order; the next batch decodes in threads while
    this one runs through the network."""
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [pool.submit(_load, analyzer, f) for f in blocks[0]] if blocks else []
        for b in range(len(blocks)):
            loaded = [f.result() for f in pending]
            nxt = blocks[b + 1] if b + 1 < len(blocks) else []
            pending = [pool.submit(_load, analyzer, f) for f in nxt]
            yield _block_rows(analyzer, loaded, todo, model)


class _RayBlockScanner:
    """A Ray Data actor: its own analyzer (of the scanning analyzer's class), the rows
    of one batch per call."""

    def __init__(
        self,
        analyzer_class: type,
        model_dir: str,
        device: str | None,
        max_crops: int,
        calibration: str = "none",
        runtime: str = "torch",
        batch: int = INFER_BATCH,
        precision: str = "fp32",
    ):
        # one CPU per actor: its engine runs one thread
        self.analyzer = analyzer_class(
            model_dir,
            device=device,
            max_crops=max_crops,
            calibration=calibration,
            runtime=runtime,
            threads=1,
            batch=batch,
            precision=precision,
        )

    def __call__(self, batch: dict) -> dict:
        out = []
        for files, todo in zip(batch["files"], batch["todo"], strict=True):
            loaded = [_load(self.analyzer, f) for f in files]
            rows = _block_rows(self.analyzer, loaded, set(todo), model_fields(self.analyzer))
            out.append(json.dumps(rows))
        return {"i": batch["i"], "rows": out}


def _ray_batches(analyzer, blocks, todo, workers: int, address: str | None) -> Iterator[list[dict]]:
    """The same batches as Ray Data: one actor per worker, each loading the model
    once; rows come back in batch order (Ray Data's `preserve_order`). The files
    must be readable at the same paths on every node (a shared filesystem)."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise ScanError("--engine ray needs Ray Data: pip install 'gmtrace[ray]'") from None
    started = ray_start(ray, workers, address)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # the scan has its own bar
        items = [
            {"i": b, "files": list(block), "todo": [f for f in block if f in todo]}
            for b, block in enumerate(blocks)
        ]
        if not items:
            return
        ds = ray.data.from_items(items, override_num_blocks=min(len(items), 200))
        rows = ds.map_batches(
            _RayBlockScanner,
            fn_constructor_args=(
                type(analyzer),
                str(analyzer.model_dir_),
                analyzer.device,
                analyzer.max_crops,
                # the same calibration (read from this machine's data folder)
                analyzer.calibration_.name if analyzer.calibration_ else "none",
                # the same engine (its graph is built once, in this machine's cache)
                analyzer.runtime_.name,
                analyzer.batch,
                analyzer.precision_,  # and arithmetic
            ),
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=max(1, workers)),
            num_cpus=1,
            batch_format="numpy",
        )
        for item in rows.iter_rows():
            yield json.loads(item["rows"])
    finally:
        if started:
            ray.shutdown()


ENGINES = ("local", "ray")


def _check_crops(rows: list[dict], analyzer, out) -> None:
    """Refuse to resume rows that read their images with another crop setting
    (`max_crops`): the finished file would mix two ways of reading images."""
    for r in rows:
        if not r["ok"]:
            continue
        want = crop_count(r["width"], r["height"], analyzer.image_size_, analyzer.max_crops)
        if r["crops"] != want:
            raise ScanError(
                f"{out}: its rows read {r['crops']} crop(s) of {r['path']}, this scan would "
                f"read {want} (another --max-crops): write to a new file"
            )


def scan(
    analyzer,
    paths: Iterable[str | Path],
    out: str | Path,
    workers: int = 2,
    on_progress: Callable[[int, int], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> ScanSummary:
    """Scan `paths` into `out` (resuming it if it exists); see the module doc.
    `on_progress(done, total)` is called after each batch. `engine="ray"` runs the
    batches as Ray Data on a local cluster of `workers` CPUs, or on the cluster at
    `ray_address`; the output is the same."""
    if engine not in ENGINES:
        raise ScanError(f"unknown engine {engine!r}; use local or ray")
    t0 = time.perf_counter()
    sink = output_for(out)
    model = model_fields(analyzer)
    files, problems = find_images(paths)
    rows = sink.existing()
    others = {r.get("weights_sha256") for r in rows} - {model["weights_sha256"]}
    if others:
        raise ScanError(
            f"{out}: holds rows of another model ({sorted(map(str, others))[0][:12]}); "
            f"this scan uses {model['model_id']}: write to a new file"
        )
    _check_crops(rows, analyzer, out)
    done = {r["path"] for r in rows}
    summary = ScanSummary(out=str(out), files=len(files) + len(problems), resumed=len(done))
    new_problems = [
        ImageResult(p, False, msg).to_row(model) for p, msg in problems.items() if p not in done
    ]
    if new_problems:
        sink.append(new_problems)
        _tally(summary, new_problems)
    todo = {f for f in files if display_path(f) not in done}
    blocks = list(_batches(files, todo))
    batches = (
        _ray_batches(analyzer, blocks, todo, workers, ray_address)
        if engine == "ray"
        else _local_batches(analyzer, blocks, todo, model, workers)
    )
    total, finished = len(todo), 0
    for new in batches:
        sink.append(new)
        _tally(summary, new)
        finished += len(new)
        if on_progress is not None:
            on_progress(finished, total)
    sink.finish()
    summary.seconds = time.perf_counter() - t0
    return summary
