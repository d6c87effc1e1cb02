"""The fingerprint index: add, query, show, the model guard, a kill during an add,
two writers at once, foreign and corrupt files, the cache rebuilt from the record;
each on both stores (an index folder, and a real PostgreSQL server started for the
session: tests/pgserver.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gmtrace.index.index import FingerprintIndex, IndexModelError, SameSource
from gmtrace.index.store import (
    DB,
    SCHEMA_VERSION,
    IndexStoreError,
    PostgresStore,
    SQLiteStore,
    open_store,
    pack,
)
from gmtrace.index.vectors import ANN

DIM = 16
CENTRES = np.random.default_rng(0).normal(size=(8, DIM))


def rows_of(case: str, gms: list[int], per_gm: int, model: str = "m1", seed: int = 0) -> list[dict]:
    """Scan-like rows: each GM's images near its own direction."""
    rng = np.random.default_rng(seed)
    out = []
    for g in gms:
        for j in range(per_gm):
            e = CENTRES[g] + 0.15 * rng.normal(size=DIM)
            out.append(
                {
                    "path": f"{case}/gm{g}/{j:04d}.png",
                    "sha256": f"{case}-{g}-{j}",
                    "ok": True,
                    "verdict": "generated",
                    "p_generated": 0.9,
                    "embedding": list(e / np.linalg.norm(e)),
                    "model_id": model,
                }
            )
    return out


def groups_of(rows: list[dict]) -> dict:
    """A `gmtrace group` output grouping rows by their true GM."""
    by: dict[int, list[str]] = {}
    for r in rows:
        by.setdefault(int(r["path"].split("/")[1][2:]), []).append(r["path"])
    return {"groups": [{"group": g + 1, "members": m} for g, m in sorted(by.items())]}


def gm_of(path: str) -> int:
    return int(path.split("/")[1][2:])


@pytest.fixture(params=["sqlite", "postgres"])
def where(request, tmp_path: Path, monkeypatch) -> str | Path:
    """An index's location on each store: a folder, or a fresh PostgreSQL database
    (its client cache in the test's folder)."""
    monkeypatch.setenv("GMTRACE_CACHE", str(tmp_path / "cache"))
    if request.param == "sqlite":
        return tmp_path / "idx"
    return request.getfixturevalue("pg_url")


def _count(where: str | Path, check: bool = True) -> int:
    """The rows an index holds, read without opening it as a store (no write)."""
    if isinstance(where, str):
        import psycopg

        with psycopg.connect(where) as c:
            return c.execute("SELECT COUNT(*) FROM gmtrace.images").fetchone()[0]
    with sqlite3.connect(where / DB, timeout=1) as c:
        if check:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return c.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def _count_or_zero(where: str | Path) -> int:
    try:
        return _count(where, check=False)
    except Exception:  # not made yet (either store's error)
        return 0


def test_a_generator_seen_in_one_case_is_found_from_another(where):
    a, b = rows_of("A", [0, 1, 2], 30), rows_of("B", [1, 2, 3], 20, seed=1)
    b[0]["sha256"] = a[35]["sha256"]  # the same file posted again in case B
    with FingerprintIndex(where, create=True) as index:
        s = index.add("A", a, groups_of(a))
        assert (s.added, s.already, s.unusable) == (90, 0, 0)
        assert index.add("A", a + [{"path": "x.png", "ok": False}]).already == 90  # idempotent
        index.add("B", b, groups_of(b))
        ans = index.query(b, k=5, exclude_case="B", groups=groups_of(b))
    assert ans["indexed"] == 150 and len(ans["images"]) == 60
    for im in ans["images"]:
        assert all(n["case"] == "A" for n in im["nearest"])  # its own case is no answer
        if gm_of(im["path"]) in (1, 2):  # seen in case A: the nearest are the same GM's
            assert all(gm_of(n["path"]) == gm_of(im["path"]) for n in im["nearest"])
            assert im["nearest"][0]["distance"] < 0.2
        else:  # GM 3 is new: nothing as close
            assert im["nearest"][0]["distance"] > 0.3
    assert ans["images"][0]["reposted"] == [{"case": "A", "path": a[35]["path"]}]
    assert not ans["images"][1]["reposted"]
    linked = {g["group"]: g["seen_in"][0] for g in ans["groups"]}
    assert linked[2]["case"] == "A" and linked[2]["group"] == 2 and linked[2]["share"] == 1.0
    assert linked[4]["median_distance"] > 0.3  # GM 3 (group 4 of B) leads nowhere close


def test_show_lists_cases_and_the_groups_that_recur(where):
    a, b = rows_of("A", [0, 1], 20), rows_of("B", [1, 5], 20, seed=2)
    with FingerprintIndex(where, create=True) as index:
        index.add("A", a, groups_of(a))
        index.add("B", b, groups_of(b))
        s = index.show()
    assert [c["case"] for c in s["cases"]] == ["A", "B"]
    assert [c["images"] for c in s["cases"]] == [40, 40] and s["models"] == {"m1": 80}
    pairs = {(r["case"], r["group"], r["linked_case"], r["linked_group"]) for r in s["recurring"]}
    assert ("B", 2, "A", 2) in pairs or ("A", 2, "B", 2) in pairs  # GM 1 in both
    assert not any(
        r["group"] in (1, 6) and r["case"] in "AB" and r["share"] > 0.5
        for r in s["recurring"]
        if {r["group"], r["linked_group"]} != {2}
    )


def test_a_generator_keeps_its_source_id_from_case_to_case(where):
    a, b, c = (
        rows_of("A", [0, 1], 20),
        rows_of("B", [1, 2], 20, seed=1),
        rows_of("C", [2], 9, seed=2),
    )
    with FingerprintIndex(where, create=True) as index:
        index.add("A", a, groups_of(a))  # two new generators
        gb = groups_of(b)
        links = index.link_sources(b, gb, exclude_case="B")  # `gmtrace group --index`
        assert links[2]["id"] is not None and links[2]["seen_in"] == ["A"]  # GM 1
        assert links[3]["id"] is None  # GM 2: not seen before
        for g in gb["groups"]:
            g["source"] = links[g["group"]]
        index.add("B", b, gb)
        index.add("C", c, groups_of(c))  # linked at add time
        src = dict(index.store.db.execute("SELECT path, source FROM images"))
        gm1_a, gm1_b = src[a[20]["path"]], src[b[0]["path"]]
        assert gm1_a == gm1_b and src[a[0]["path"]] != gm1_a  # GM 1 one source, GM 0 another
        assert src[c[0]["path"]] == src[b[20]["path"]] != gm1_a  # GM 2: B's, again in C
        recurring = {r["source"]: r["case_names"] for r in index.show()["sources"]}
    assert recurring == {gm1_a: ["A", "B"], src[c[0]["path"]]: ["B", "C"]}


def test_a_resumed_add_keeps_its_source_ids_and_a_new_model_gets_its_own(where):
    a = rows_of("A", [0, 1], 30)

    def killed(n: int) -> None:
        raise KeyboardInterrupt  # the add dies after its first batch

    with FingerprintIndex(where, create=True) as index:
        with pytest.raises(KeyboardInterrupt):
            index.add("A", a, groups_of(a), batch=10, on_batch=killed)
        index.add("A", a, groups_of(a), batch=10)  # run again: it resumes
        src = dict(index.store.db.execute("SELECT path, source FROM images"))
        one, two = {src[r["path"]] for r in a[:30]}, {src[r["path"]] for r in a[30:]}
        assert len(src) == 60 and len(one) == len(two) == 1 and one != two
        # a case of another model, with its groups: nothing of its model to link to
        m2 = rows_of("B", [0], 10, model="m2")
        assert index.add("B", m2, groups_of(m2)).added == 10


def test_rows_of_another_model_are_refused_with_what_to_do(where):
    with FingerprintIndex(where, create=True) as index:
        index.add("A", rows_of("A", [0], 10))
        with pytest.raises(IndexModelError, match="holds embeddings of m1 .10 images.*reembed"):
            index.query(rows_of("B", [0], 5, model="m2"))


def test_the_cache_is_rebuilt_from_the_record(where):
    a = rows_of("A", [0, 1], 20)
    q = rows_of("Q", [1], 3, seed=9)
    with FingerprintIndex(where, create=True) as index:
        index.add("A", a)
        first = index.query(q, k=3)
        ann = index.store.folder / ANN
    assert ann.is_dir()
    with open_store(where) as store:  # another writer, while no cache was open
        store.add("C", rows_of("C", [1], 5, seed=4))
    with FingerprintIndex(where) as index:
        caught_up = index.query(q, k=3)
    assert caught_up["indexed"] == 45
    for f in ann.iterdir():
        f.unlink()
    with FingerprintIndex(where) as index:
        again = index.query(q, k=3)
    assert again["indexed"] == 45
    paths = [[n["path"] for n in im["nearest"]] for im in again["images"]]
    assert paths == [[n["path"] for n in im["nearest"]] for im in caught_up["images"]]
    # case A's images as near as they were before case C came (a nearest-first list)
    near_a = [n["distance"] for n in first["images"][0]["nearest"]]
    assert near_a == sorted(near_a) and {n["case"] for n in again["images"][0]["nearest"]} <= {
        "A",
        "C",
    }


def test_a_cache_is_never_taken_for_another_database_of_the_same_place(tmp_path: Path):
    """An index deleted and made again in the same folder, its old cache left
    beside it: the new database's rows are answered, not the old cache's."""
    folder = tmp_path / "idx"
    with FingerprintIndex(folder, create=True) as index:
        index.add("A", rows_of("A", [0], 1200))  # over SAVE_AFTER: the cache is written
        index.query(rows_of("Q", [0], 1, seed=3))
    assert any((folder / ANN).iterdir())
    (folder / DB).unlink()
    with FingerprintIndex(folder, create=True) as index:
        index.add("B", rows_of("B", [0], 5, seed=1))
        ans = index.query(rows_of("Q", [0], 1, seed=3), k=3)
    assert ans["indexed"] == 5
    assert {n["case"] for n in ans["images"][0]["nearest"]} == {"B"}


def test_a_case_that_crowds_the_neighbourhood_is_left_out_exactly(where):
    big, small = rows_of("big", [0], 300), rows_of("small", [0], 4, seed=3)
    with FingerprintIndex(where, create=True) as index:
        index.add("big", big)
        index.add("small", small)
        ans = index.query(big[:5], k=3, exclude_case="big")
    for im in ans["images"]:
        assert len(im["nearest"]) == 3 and {n["case"] for n in im["nearest"]} == {"small"}


def test_foreign_corrupt_and_newer_files_are_refused_and_left_alone(tmp_path: Path):
    garbage = tmp_path / "g"
    garbage.mkdir()
    (garbage / DB).write_bytes(b"not a database at all" * 10)
    with pytest.raises(IndexStoreError, match=f"{DB}: not a gmtrace index"):
        FingerprintIndex(garbage, create=True)
    assert (garbage / DB).read_bytes() == b"not a database at all" * 10
    other = tmp_path / "o"
    other.mkdir()
    with sqlite3.connect(other / DB) as c:
        c.execute("CREATE TABLE photos (x)")
    before = (other / DB).read_bytes()
    with pytest.raises(IndexStoreError, match="not a gmtrace index"):
        FingerprintIndex(other, create=True)
    assert (other / DB).read_bytes() == before
    newer = tmp_path / "n"
    with SQLiteStore(newer, create=True) as s:
        assert s.schema_version == SCHEMA_VERSION
        s.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(IndexStoreError, match="schema 99, made by a newer gmtrace"):
        SQLiteStore(newer)
    with pytest.raises(IndexStoreError, match="no fingerprint index here"):
        SQLiteStore(tmp_path / "none")


def test_a_postgres_schema_of_something_else_is_refused_and_left_alone(pg_url: str):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE SCHEMA gmtrace")
        c.execute("CREATE TABLE gmtrace.photos (x int)")
    with pytest.raises(IndexStoreError, match="schema gmtrace.*a database, but not a gmtrace"):
        FingerprintIndex(pg_url, create=True)
    with psycopg.connect(pg_url) as c:
        tables = c.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gmtrace'"
        ).fetchall()
    assert tables == [("photos",)]
    with PostgresStore(pg_url, create=True, schema="other") as s:  # a schema of its own
        assert s.schema_version == SCHEMA_VERSION
        s.db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(IndexStoreError, match="schema 99, made by a newer gmtrace"):
        PostgresStore(pg_url, schema="other")
    with pytest.raises(IndexStoreError, match="no fingerprint index here"):
        PostgresStore(pg_url, schema="none")


def test_an_unreachable_server_is_one_clear_line_without_its_password(tmp_path: Path):
    pytest.importorskip("psycopg")
    url = f"postgresql://u:secret@/x?host={tmp_path}&port=1"
    with pytest.raises(IndexStoreError, match="cannot connect") as e:
        FingerprintIndex(url)
    assert "secret" not in str(e.value) and "u:***@" in str(e.value)


def test_an_index_of_schema_1_is_migrated_and_keeps_its_rows(tmp_path: Path):
    from gmtrace.index.store import FORMAT, MIGRATIONS

    with sqlite3.connect(tmp_path / DB) as c:  # as the first version wrote it
        c.executescript(MIGRATIONS[0])
        c.execute("INSERT INTO meta VALUES ('format', ?), ('schema_version', '1')", (FORMAT,))
    rows = rows_of("A", [0], 5)
    with sqlite3.connect(tmp_path / DB) as c:
        c.execute("INSERT INTO cases (name, created) VALUES ('A', 0)")
        c.executemany(
            "INSERT INTO images (case_id, path, sha256, model_id, added, row, embedding)"
            " VALUES (1, ?, ?, 'm1', 0, '{}', ?)",
            [(r["path"], r["sha256"], pack(r["embedding"])) for r in rows],
        )
    with FingerprintIndex(tmp_path) as index:
        assert index.store.schema_version == SCHEMA_VERSION == 3
        names = {r[0] for r in index.store.db.execute("SELECT name FROM sqlite_master")}
        assert {"images_by_case", "sources", "images_by_source"} <= names
        ans = index.query(rows_of("B", [0], 1, seed=8), k=5, exclude_case="B")
        assert len(ans["images"][0]["nearest"]) == 5


ADDER = """
import sys, time, json
from gmtrace.index.store import open_store
rows = json.load(open(sys.argv[2]))
with open_store(sys.argv[1], create=True) as s:
    pause = float(sys.argv[5])
    s.add(sys.argv[3], rows, batch=int(sys.argv[4]), on_batch=lambda n: time.sleep(pause))
"""


def _adder(where: str | Path, rows: list[dict], case: str, batch: int, pause: float, tmp: Path):
    src = tmp / f"rows_{case}.json"
    src.write_text(json.dumps(rows))
    env = os.environ | {"PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    args = [sys.executable, "-c", ADDER, str(where), str(src), case, str(batch), str(pause)]
    return subprocess.Popen(args, env=env)


def test_an_add_killed_midway_leaves_whole_batches_and_resumes(where, tmp_path: Path):
    rows = rows_of("K", [0, 1, 2, 3], 100)
    proc = _adder(where, rows, "K", 25, 0.05, tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline:
        if _count_or_zero(where) >= 50:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = _count(where)
    assert 0 < n < 400 and n % 25 == 0  # whole batches only
    with FingerprintIndex(where) as index:
        s = index.add("K", rows)
        assert (s.added, s.already) == (400 - n, n)
        assert index.show()["cases"][0]["images"] == 400


def test_two_writers_at_once_both_land(where, tmp_path: Path):
    with open_store(where, create=True):
        pass
    a, b = rows_of("A", [0, 1], 150), rows_of("B", [2, 3], 150, seed=5)
    procs = [_adder(where, r, c, 10, 0.0, tmp_path) for r, c in ((a, "A"), (b, "B"))]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert _count(where) == 600
    with FingerprintIndex(where) as index:
        assert {c["case"]: c["images"] for c in index.show()["cases"]} == {"A": 300, "B": 300}


def test_same_source_map_reads_from_a_model_folder(tmp_path: Path):
    assert SameSource.of_model(tmp_path) is None
    (tmp_path / "adopted.json").write_text(json.dumps({"same_source": {"weight": -20, "bias": 4}}))
    m = SameSource.of_model(tmp_path)
    assert m(np.array([0.0]))[0] > 0.98 and m(np.array([0.5]))[0] < 0.01


def test_cli_add_query_show(where, tmp_path: Path):
    from gmtrace.cli.main import app

    a, q = rows_of("A", [0, 1], 10), rows_of("Q", [1], 3, seed=7)
    for name, rows in (("a.jsonl", a), ("q.jsonl", q)):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = str(where)
    run = CliRunner().invoke
    r = run(app, ["index", "add", str(tmp_path / "a.jsonl"), "--case", "monday", "--db", db])
    assert r.exit_code == 0, r.output
    assert "20 image(s) added" in r.output
    out = tmp_path / "ans.json"
    (tmp_path / "g.json").write_text(json.dumps(groups_of(q)))
    args = ["--groups", str(tmp_path / "g.json"), "--out", str(out), "--k", "2"]
    r = run(app, ["index", "query", str(tmp_path / "q.jsonl"), "--db", db, *args])
    assert r.exit_code == 0, r.output
    ans = json.loads(out.read_text())
    assert all(gm_of(n["path"]) == 1 for im in ans["images"] for n in im["nearest"])
    assert "3 image(s) queried against 20 indexed" in r.output
    assert "group 2 (3 images): monday group -" in r.output  # added without its groups
    r = run(app, ["index", "show", "--db", db])
    assert r.exit_code == 0 and "monday" in r.output and "1 case(s), 20 image(s)" in r.output
    r = run(app, ["index", "show", "--db", str(tmp_path / "nowhere")])
    assert r.exit_code == 2 and "no fingerprint index here" in r.output


def test_scan_rows_are_indexed_queried_from_images_and_reembedded(
    small_model_dir: Path, tiny_zoo_dir: Path, tmp_path: Path
):
    from gmtrace.cli.main import app

    images = sorted((tiny_zoo_dir / "fake").rglob("*.png"))[:6]
    case = tmp_path / "case"
    case.mkdir()
    for i, p in enumerate(images):
        (case / f"{i}.png").write_bytes(p.read_bytes())
    run = CliRunner().invoke
    model, db = str(small_model_dir), str(tmp_path / "idx")
    r = run(app, ["scan", str(case), "--out", str(tmp_path / "c.jsonl"), "--model", model])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    for row in rows:  # as if an older model had scanned them
        row["model_id"] = "an-older-model"
    (tmp_path / "old.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    r = run(app, ["index", "add", str(tmp_path / "old.jsonl"), "--case", "A", "--db", db])
    assert r.exit_code == 0 and "6 image(s) added" in r.output, r.output
    q = ["index", "query", str(case / "0.png"), "--model", model, "--db", db]
    r = run(app, q)
    assert r.exit_code == 2 and "reembed" in r.output  # the guard: another model's rows
    (case / "5.png").unlink()
    r = run(app, ["index", "reembed", "--model", model, "--db", db])
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())  # the console wraps long lines
    assert "5 image(s) of 1 case(s) re-embedded" in said and "1 no longer readable" in said
    r = run(app, [*q, "--out", str(tmp_path / "ans.json")])  # grouped now, from the images
    assert r.exit_code == 0, r.output
    ans = json.loads((tmp_path / "ans.json").read_text())
    (im,) = ans["images"]
    assert im["reposted"] == [{"case": "A", "path": rows[0]["path"]}]
    assert im["nearest"][0]["same_file"] and im["nearest"][0]["distance"] < 1e-4
    # grouping with the index: each group's source (here none: A was indexed ungrouped)
    gfile = tmp_path / "g.json"
    r = run(
        app,
        ["group", str(tmp_path / "c.jsonl"), "--all", "--model", model, "--out", str(gfile)]
        + ["--index", db, "--case", "B"],
    )
    assert r.exit_code == 0, r.output
    grouped = json.loads(gfile.read_text())["groups"]
    assert grouped and all(g["source"]["id"] is None for g in grouped)
    # the report's section: where this case's images were seen before
    page = tmp_path / "r.html"
    r = run(
        app,
        ["report", str(tmp_path / "c.jsonl"), "--model", model, "--out", str(page)]
        + ["--index", db, "--case", "B"],
    )
    assert r.exit_code == 0, r.output
    text = page.read_text()
    assert "<h2>Seen before in other cases</h2>" in text
    assert "6 exact re-post(s)" in text and "not calibrated for this model" in text


def test_same_source_map_is_fitted_on_unseen_generators_within_each_fold():
    from gmtrace.index.index import fit_same_source

    rng = np.random.default_rng(3)
    emb, gm, fold = [], [], []
    for f in range(2):  # two folds, two embedding spaces: pairs never cross them
        centres = rng.normal(size=(6, DIM))
        for g in range(6):
            emb.append(centres[g] + 1.0 * rng.normal(size=(25, DIM)))
            gm += [10 * f + g] * 25
            fold += [f] * 25
    m, rec = fit_same_source(np.concatenate(emb), np.array(gm), np.array(fold), k=10)
    assert rec["pairs"] == 300 * 10 and m.weight < 0  # farther: less likely the same GM
    assert rec["precision_at_half"] > rec["same_gm_share"] and rec["recall_at_half"] > 0.9
    near, far = m(np.array([0.05, 0.9]))
    assert near > 0.9 and far < 0.1


def test_calibrate_fits_the_map_on_the_folds_asked_and_keeps_it_in_the_model(tmp_path: Path):
    from safetensors.numpy import save_file

    from gmtrace.cli.main import app

    rng = np.random.default_rng(4)
    emb, gm, fold = [], [], []
    for f in range(3):
        centres = rng.normal(size=(5, DIM))
        for g in range(5):
            emb.append(centres[g] + 1.0 * rng.normal(size=(20, DIM)))
            gm += [10 * f + g] * 20
            fold += [f] * 20
    run, model = tmp_path / "run", tmp_path / "model"
    run.mkdir(), model.mkdir()
    arrays = {"gmtrace.emb": np.concatenate(emb), "unseen.gm": gm, "unseen.fold": fold}
    save_file(
        {k: np.asarray(v, np.float64) for k, v in arrays.items()},
        str(run / "out_of_fold.safetensors"),
    )
    (model / "adopted.json").write_text(json.dumps({"kept": 1}))
    invoke = CliRunner().invoke
    args = ["index", "calibrate", "--run", str(run), "--model", str(model)]
    r = invoke(app, [*args, "--folds", "0,2"])
    assert r.exit_code == 0, r.output
    rec = json.loads((model / "adopted.json").read_text())
    assert rec["kept"] == 1  # what the model had adopted stays
    assert rec["same_source"]["folds"] == "0,2" and rec["same_source"]["pairs"] == 200 * 10
    assert SameSource.of_model(model)(np.array([0.0]))[0] > 0.5
    r = invoke(app, [*args, "--folds", "7"])
    assert r.exit_code == 2 and "no fold 7" in r.output


def test_the_server_answers_seen_before_and_adds_when_asked(small_model_dir: Path, tmp_path: Path):
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.server import create_app

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(buf, "PNG")
    files = [("files", ("a.png", buf.getvalue(), "image/png"))]
    analyzer = Analyzer(small_model_dir)
    with FingerprintIndex(tmp_path / "idx", create=True) as index:
        client = TestClient(create_app(analyzer, index=index, index_case="uploads"))
        first = client.post("/v1/analyze", files=files).json()
        assert first["index"] == {"indexed": 0, "added": 1, "case": "uploads", "error": None}
        assert first["results"][0]["seen_before"] == {"reposted": [], "nearest": []}
        again = client.post("/v1/analyze", files=files).json()
        sb = again["results"][0]["seen_before"]
        assert sb["reposted"] == [{"case": "uploads", "path": "a.png"}]
        assert sb["nearest"][0]["same_file"] and again["index"]["added"] == 0
        client.post(
            "/v1/analyze?views=true", files=[("files", ("b.png", buf.getvalue(), "image/png"))]
        )
        (kept,) = index.store.db.execute("SELECT row FROM images WHERE path = 'b.png'").fetchone()
        assert "views" not in json.loads(kept) and "seen_before" not in json.loads(kept)
        # an index of another model's embeddings: said, not a failure
        other = FingerprintIndex(tmp_path / "other", create=True)
        other.add("A", rows_of("A", [0], 3))
        client = TestClient(create_app(analyzer, index=other))
        ans = client.post("/v1/analyze", files=files).json()
        assert ans["results"][0]["ok"] and "reembed" in ans["index"]["error"]
        other.close()
    assert "seenLine(r.seen_before)" in client.get("/").text  # the page shows it
