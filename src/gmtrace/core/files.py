"""Files: one atomic write and one file hash for the whole package.

`atomic_path` is the one way gmtrace writes a file that must never be seen half
written (a zoo's records, a model, a report, a results file converted at the end):
the content goes to a temporary file beside the destination, which replaces it in
one rename once the writer finished; a writer that fails leaves the old file as it
was and no temporary file behind. `atomic_dir` does the same for a folder (a zoo's
GM, its real crops, an exported dataset). `data_dir` and `cache_dir` are the
user's own folders (calibrations and the fingerprint index; exported graphs and
nearest-neighbour caches), never inside the package."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block
    ends without an error, and is removed when it raises."""
    final = Path(path)
    tmp = final.with_name(f".{final.name}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | Path, work: str | Path | None = None) -> Iterator[Path]:
    """A fresh folder to fill (`work`, default beside `path`); it replaces `path` (an
    existing folder is removed first) when the block ends without an error, and is
    removed when it raises: a folder appears only when complete."""
    final = Path(path)
    tmp = Path(work) if work is not None else final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            shutil.rmtree(final)
        tmp.replace(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically (`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_dir() -> Path:
    """The user's gmtrace data folder: $GMTRACE_DATA, else $XDG_DATA_HOME/gmtrace,
    else ~/.local/share/gmtrace."""
    if os.environ.get("GMTRACE_DATA"):
        return Path(os.environ["GMTRACE_DATA"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "gmtrace"


def cache_dir() -> Path:
    """The user's gmtrace cache folder (what can be made again): $GMTRACE_CACHE,
    else $XDG_CACHE_HOME/gmtrace, else ~/.cache/gmtrace."""
    env = os.environ.get("GMTRACE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gmtrace"
