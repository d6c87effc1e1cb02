"""The one atomic write: a file or folder appears whole or not at all."""

from __future__ import annotations

import hashlib

import pytest

from gmtrace.core.files import atomic_dir, atomic_path, atomic_write_text, file_sha256


def test_atomic_file_keeps_the_old_one_when_the_writer_fails(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_path(path) as tmp:
        tmp.write_text("new")
        assert path.read_text() == "old"  # not replaced before the writer finished
    assert path.read_text() == "new" and len(list(tmp_path.iterdir())) == 1


def test_atomic_dir_replaces_a_folder_whole(tmp_path):
    final = tmp_path / "gm"
    with atomic_dir(final) as work:
        (work / "0.png").write_bytes(b"x")
    assert [p.name for p in final.iterdir()] == ["0.png"]
    with pytest.raises(RuntimeError), atomic_dir(final, tmp_path / ".partial" / "gm") as work:
        (work / "1.png").write_bytes(b"y")
        raise RuntimeError("killed")
    assert [p.name for p in final.iterdir()] == ["0.png"]
    assert not (tmp_path / ".partial" / "gm").exists()
    with atomic_dir(final) as work:
        (work / "2.png").write_bytes(b"z")
    assert [p.name for p in final.iterdir()] == ["2.png"]  # the old folder is gone


def test_file_sha256(tmp_path):
    data = bytes(range(256)) * 9000  # more than one 1 MiB block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
