"""Shared fixtures: one tiny zoo for the whole session (read-only for its users)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gmtrace.zoo.builder import build_zoo


@pytest.fixture(scope="session")
def tiny_zoo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_zoo")
    assert build_zoo(out, preset="tiny", seed=0).ok
    return out
