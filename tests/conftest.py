"""Shared fixtures: one tiny zoo and one small model trained on it for the whole
session (read-only for their users)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gmtrace.zoo.builder import build_zoo


@pytest.fixture(scope="session")
def tiny_zoo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_zoo")
    assert build_zoo(out, preset="tiny", seed=0).ok
    return out


@pytest.fixture(scope="session")
def small_model_dir(tiny_zoo_dir: Path, tmp_path_factory) -> Path:
    """A small network trained for 4 steps on the tiny zoo (32 px crops)."""
    from gmtrace.data.dataset import GMDataset
    from gmtrace.nets.config import FENConfig, ModelConfig, ParserConfig
    from gmtrace.train.config import TrainConfig
    from gmtrace.train.loop import train

    small = ModelConfig(
        fen=FENConfig(depth=3, width=8, highpass=True),
        parser=ParserConfig(width=8, stages=2, embed=16, dropout=0.0),
        proj=8,
    )
    out = tmp_path_factory.mktemp("model")
    cfg = TrainConfig(steps=4, batch=8, image_size=32, per_gm=8, log_every=2, ckpt_every=100)
    train(GMDataset.from_zoo(tiny_zoo_dir), out, cfg, small)
    return out


@pytest.fixture(scope="session")
def tiny_eval():
    """The evaluation protocol at its smallest (2 folds of families of the tiny zoo,
    32 px, a few images each), with the given settings changed."""
    from gmtrace.evaluation.config import EvalConfig

    base = {
        "holdout": "family",
        "folds": 2,
        "train_per_gm": 8,
        "seen_per_gm": 2,
        "test_per_gm": 4,
        "neutral_per_gm": 2,
        "real_test": 20,
        "image_size": 32,
        "permutations": 20,
    }
    return lambda **changes: EvalConfig(**(base | changes))


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL server (tests/pgserver.py); skipped, saying why, where
    its binaries or psycopg are missing (`make test` installs both)."""
    import tempfile

    from pgserver import Server, server_bin

    bindir = server_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (make test runs scripts/install_postgres.sh)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[dev]')")
    # a short folder: a Unix socket's path is bounded (107 bytes)
    server = Server(Path(tempfile.mkdtemp(prefix="gmtrace-pg-")), bindir)
    yield server
    server.stop()
    shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server, request) -> str:
    """The URL of a fresh database of the throwaway server, one per test."""
    import re

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:50]
    return pg_server.create_database(f"t_{name}")
