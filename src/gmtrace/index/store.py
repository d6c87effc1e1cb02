"""The rows of a fingerprint index: every analyzed image of every case added, in
SQLite (one file, `DB`, in the index folder; WAL, one transaction per batch).

The database is the index's only record: the nearest-neighbour structure beside it
(`vectors`) is rebuilt from it whenever it lags. An add is a sequence of batches,
each committed whole: a process killed in the middle leaves the batches before it,
never half a row, and the same add run again skips the rows already there (a row is
one image of one case under one model: `(case, path, sha256, model_id)`). Two
writers (the server and a CLI) take turns: a batch waits for the other's to commit
(`BUSY_SECONDS`), it does not fail.

A file that is not a gmtrace index (another database, a foreign or truncated file)
is refused with its name and never written to; an index of an older schema is
migrated (`MIGRATIONS`, in order, each in its own transaction), one of a newer
gmtrace refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DB = "index.sqlite"
FORMAT = "gmtrace-fingerprint-index"
SCHEMA_VERSION = 3
BUSY_SECONDS = 60.0
BATCH = 500
# a row's keys not kept in its JSON: the embedding (a column of its own), the
# server's views (images as data URIs) and its own answer about the index
NOT_KEPT = ("embedding", "views", "seen_before")

# MIGRATIONS[v] takes a database of schema v to v + 1
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE cases (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        case_id INTEGER NOT NULL REFERENCES cases(id),
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        verdict TEXT,
        p_generated REAL,
        grp INTEGER,
        model_id TEXT NOT NULL,
        added REAL NOT NULL,
        row TEXT NOT NULL,
        embedding BLOB NOT NULL,
        UNIQUE (case_id, path, sha256, model_id)
    );
    CREATE INDEX images_by_model ON images (model_id, id);
    CREATE INDEX images_by_sha256 ON images (sha256);
    """,
    # 2: a case's rows found without reading every row of its model (a query that
    # leaves its own case out counts them: linear in the index without it)
    """
    CREATE INDEX images_by_case ON images (case_id, model_id);
    """,
    # 3: a generator's stable identity from case to case (`gmtrace group --index`)
    """
    CREATE TABLE sources (id INTEGER PRIMARY KEY, created REAL NOT NULL, first_case TEXT);
    ALTER TABLE images ADD COLUMN source INTEGER REFERENCES sources(id);
    CREATE INDEX images_by_source ON images (source);
    """,
)


class IndexStoreError(ValueError):
    """An index that cannot be read or written: the message names its file."""


@dataclass
class AddSummary:
    added: int = 0
    already: int = 0  # the same image of the same case and model, there before
    unusable: int = 0  # failed images and rows without an embedding


@dataclass
class Stored:
    """Rows of the index (one per image), as arrays and lists of the same length."""

    ids: np.ndarray  # [N] row ids
    case: list[str]
    path: list[str]
    sha256: list[str]
    verdict: list[str | None]
    group: list[int | None]
    added: np.ndarray  # [N] seconds since the epoch


def pack(embedding) -> bytes:
    """A unit-length float32 vector, little-endian."""
    v = np.asarray(embedding, dtype=np.float64).ravel()
    v = v / max(float(np.linalg.norm(v)), 1e-12)
    return v.astype("<f4").tobytes()


def unpack(blobs: Iterable[bytes]) -> np.ndarray:
    rows = [np.frombuffer(b, dtype="<f4") for b in blobs]
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


class SQLiteStore:
    """The rows of the index in `folder`/`DB`. `create`: make the folder and the
    database when missing (never over a file that is not one)."""

    def __init__(self, folder: str | Path, create: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DB
        if not self.path.is_file():
            if not create:
                raise IndexStoreError(
                    f"{self.folder}: no fingerprint index here (`gmtrace index add` makes one)"
                )
            if self.folder.exists() and not self.folder.is_dir():
                raise IndexStoreError(f"{self.folder}: not a folder")
            self.folder.mkdir(parents=True, exist_ok=True)
        elif self.path.stat().st_size:  # an empty file: a creation killed before it wrote
            self._check_readonly()
        # a server's worker threads take turns on one connection (under its lock)
        self.db = sqlite3.connect(
            self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            self.db.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise IndexStoreError(f"{self.path}: not a readable gmtrace index ({e})") from None

    def _check_readonly(self) -> None:
        """Refuse a file that is not a gmtrace index, or of a newer one, before
        anything (even the journal mode) is written to it."""
        with open(self.path, "rb") as f:
            head = f.read(16)
        if head != b"SQLite format 3\x00":
            raise IndexStoreError(f"{self.path}: not a gmtrace index (not an SQLite database)")
        self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            self._too_new(self._version())
        except sqlite3.DatabaseError as e:
            raise IndexStoreError(f"{self.path}: not a readable gmtrace index ({e})") from None
        finally:
            self.db.close()

    def _too_new(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise IndexStoreError(
                f"{self.path}: schema {version}, made by a newer gmtrace (this one reads "
                f"up to {SCHEMA_VERSION})"
            )

    def _version(self) -> int:
        tables = {
            r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return 0
        if "meta" not in tables:
            raise IndexStoreError(f"{self.path}: an SQLite database, but not a gmtrace index")
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise IndexStoreError(f"{self.path}: an SQLite database, but not a gmtrace index")
        return int(meta["schema_version"])

    def _migrate(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version()  # 0: no table yet (nothing to lose)
            self._too_new(version)
            for v in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[v].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('format', ?), ('schema_version', ?)",
                    (FORMAT, str(v + 1)),
                )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return self._version()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------

    def case_id(self, name: str) -> int:
        """The id of case `name`, made when new."""
        self.db.execute(
            "INSERT OR IGNORE INTO cases (name, created) VALUES (?, ?)", (name, time.time())
        )
        return int(self.db.execute("SELECT id FROM cases WHERE name = ?", (name,)).fetchone()[0])

    def add(
        self,
        case: str,
        rows: list[dict],
        groups: dict[str, int] | None = None,
        batch: int = BATCH,
        on_batch: Callable[[int], None] | None = None,
        sources: dict[str, int] | None = None,
    ) -> AddSummary:
        """Add a scan's rows to case `case`, `batch` rows per transaction; `groups`:
        each path's group (`gmtrace group`), if known; `sources`: each path's source
        id (`new_source`, `gmtrace group --index`). `on_batch(n)` after each
        committed batch of n rows."""
        if not case.strip():
            raise IndexStoreError("a case needs a name")
        summary = AddSummary()
        usable = []
        for r in rows:
            if r.get("ok") and r.get("embedding") and r.get("sha256") and r.get("model_id"):
                usable.append(r)
            else:
                summary.unusable += 1
        cid = self.case_id(case)
        groups, sources = groups or {}, sources or {}
        for chunk in _chunks(usable, batch):
            now = time.time()
            values = [
                (
                    cid,
                    r["path"],
                    r["sha256"],
                    r.get("verdict"),
                    r.get("p_generated"),
                    groups.get(r["path"]),
                    r["model_id"],
                    now,
                    json.dumps({k: v for k, v in r.items() if k not in NOT_KEPT}),
                    pack(r["embedding"]),
                    sources.get(r["path"]),
                )
                for r in chunk
            ]
            self.db.execute("BEGIN IMMEDIATE")
            try:
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT OR IGNORE INTO images (case_id, path, sha256, verdict, p_generated,"
                    " grp, model_id, added, row, embedding, source) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    values,
                )
                n = self.db.total_changes - before
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            summary.added += n
            summary.already += len(chunk) - n
            if on_batch:
                on_batch(len(chunk))
        return summary

    def new_source(self, first_case: str) -> int:
        """A new source id (a generator first seen in `first_case`)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = self.db.execute(
                "INSERT INTO sources (created, first_case) VALUES (?, ?)", (time.time(), first_case)
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return int(cur.lastrowid)

    # -- reading ---------------------------------------------------------------

    def sources_of(self, ids: Iterable[int]) -> dict[int, int]:
        """The source id of each stored row of `ids` that has one."""
        q = "SELECT id, source FROM images WHERE source IS NOT NULL AND id IN ({})"
        return dict(self._select_in(q, [int(i) for i in ids]))

    def case_sources(self, case: str) -> dict[str, int]:
        """Each path of case `case` stored with a source id: that id."""
        q = """SELECT i.path, i.source FROM images i JOIN cases c ON c.id = i.case_id
               WHERE c.name = ? AND i.source IS NOT NULL"""
        return dict(self.db.execute(q, (case,)))

    def cases_of_source(self, source: int) -> list[str]:
        q = """SELECT DISTINCT c.name FROM images i JOIN cases c ON c.id = i.case_id
               WHERE i.source = ? ORDER BY c.created"""
        return [r[0] for r in self.db.execute(q, (source,))]

    def recurring_sources(self) -> list[dict]:
        """Each source id seen in more than one case: its cases and images."""
        q = """SELECT i.source, COUNT(DISTINCT i.case_id), COUNT(*), GROUP_CONCAT(DISTINCT c.name)
               FROM images i JOIN cases c ON c.id = i.case_id WHERE i.source IS NOT NULL
               GROUP BY i.source HAVING COUNT(DISTINCT i.case_id) > 1 ORDER BY 3 DESC"""
        return [
            {"source": s, "cases": n, "images": k, "case_names": sorted(names.split(","))}
            for s, n, k, names in self.db.execute(q)
        ]

    def holds(self, model_id: str) -> bool:
        """Whether any row is of `model_id` (an index lookup, not a count)."""
        q = "SELECT 1 FROM images WHERE model_id = ? LIMIT 1"
        return self.db.execute(q, (model_id,)).fetchone() is not None

    def models(self) -> dict[str, int]:
        """Rows per model id."""
        q = "SELECT model_id, COUNT(*) FROM images GROUP BY model_id ORDER BY 2 DESC"
        return dict(self.db.execute(q))

    def cases(self) -> list[dict]:
        """Each case: name, created, images, generated (or unsure) images, groups."""
        q = """SELECT c.name, c.created, COUNT(i.id),
                      SUM(i.verdict IN ('generated', 'unsure')), COUNT(DISTINCT i.grp)
               FROM cases c LEFT JOIN images i ON i.case_id = c.id
               GROUP BY c.id ORDER BY c.created"""
        return [
            {"case": n, "created": t, "images": k, "generated": int(g or 0), "groups": ng}
            for n, t, k, g, ng in self.db.execute(q)
        ]

    def vectors_after(
        self, model_id: str, after: int, chunk: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, embeddings) of model `model_id`'s rows with id > `after`, in id order."""
        while True:
            got = self.db.execute(
                "SELECT id, embedding FROM images WHERE model_id = ? AND id > ? ORDER BY id"
                " LIMIT ?",
                (model_id, after, chunk),
            ).fetchall()
            if not got:
                return
            yield np.array([g[0] for g in got], dtype=np.int64), unpack(g[1] for g in got)
            after = got[-1][0]

    def vectors(
        self, model_id: str, exclude_case: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, embeddings) of every row of `model_id` (outside case `exclude_case`)."""
        q = "SELECT i.id, i.embedding FROM images i JOIN cases c ON c.id = i.case_id"
        q += " WHERE i.model_id = ? AND c.name IS NOT ? ORDER BY i.id"
        got = self.db.execute(q, (model_id, exclude_case)).fetchall()
        return np.array([g[0] for g in got], dtype=np.int64), unpack(g[1] for g in got)

    def rows(self, ids: Iterable[int]) -> Stored:
        """The stored rows `ids`, in that order."""
        ids = [int(i) for i in ids]
        q = """SELECT i.id, c.name, i.path, i.sha256, i.verdict, i.grp, i.added
               FROM images i JOIN cases c ON c.id = i.case_id WHERE i.id IN ({})"""
        found = {r[0]: r for r in self._select_in(q, ids)}
        got = [found[i] for i in ids if i in found]
        return Stored(
            ids=np.array([g[0] for g in got], dtype=np.int64),
            case=[g[1] for g in got],
            path=[g[2] for g in got],
            sha256=[g[3] for g in got],
            verdict=[g[4] for g in got],
            group=[g[5] for g in got],
            added=np.array([g[6] for g in got], dtype=np.float64),
        )

    def same_files(self, sha256s: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
        """Each sha256 already indexed: its (case, path) places."""
        q = """SELECT DISTINCT i.sha256, c.name, i.path FROM images i
               JOIN cases c ON c.id = i.case_id WHERE i.sha256 IN ({})"""
        out: dict[str, list[tuple[str, str]]] = {}
        for sha, case, path in self._select_in(q, sorted(set(sha256s))):
            out.setdefault(sha, []).append((case, path))
        return out

    def embeddings(self, ids: Iterable[int]) -> np.ndarray:
        """The embeddings of the stored rows `ids`, in that order."""
        ids = [int(i) for i in ids]
        found = dict(self._select_in("SELECT id, embedding FROM images WHERE id IN ({})", ids))
        return unpack(found[i] for i in ids)

    def case_size(self, case: str, model_id: str) -> int:
        """Rows of case `case` under `model_id`."""
        q = """SELECT COUNT(*) FROM images INDEXED BY images_by_case
               WHERE case_id = (SELECT id FROM cases WHERE name = ?) AND model_id = ?"""
        return int(self.db.execute(q, (case, model_id)).fetchone()[0])

    def grouped(self, model_id: str) -> list[tuple[int, str, int]]:
        """(id, case, group) of every row of `model_id` stored with a group."""
        q = """SELECT i.id, c.name, i.grp FROM images i JOIN cases c ON c.id = i.case_id
               WHERE i.model_id = ? AND i.grp IS NOT NULL"""
        return self.db.execute(q, (model_id,)).fetchall()

    def _select_in(self, query: str, values: list, chunk: int = 900) -> Iterator[tuple]:
        """The rows of `query`, whose `{}` is an IN list of `values`, asked `chunk`
        values at a time (SQLite bounds the parameters of one statement)."""
        for part in _chunks(values, chunk):
            yield from self.db.execute(query.format(",".join("?" * len(part))), part)

    def readable_rows(self, model_id: str) -> list[dict]:
        """The scan rows (without embeddings) of every image indexed under
        `model_id`, with their case: what a re-embedding starts from."""
        q = """SELECT c.name, i.row FROM images i JOIN cases c ON c.id = i.case_id
               WHERE i.model_id = ? ORDER BY i.id"""
        return [json.loads(r) | {"case": n} for n, r in self.db.execute(q, (model_id,))]


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
