"""The `gmtrace` command line: thin commands that parse, call the API and print.
Each module of this package registers its commands on the one app (`cli.app`), in
the order `gmtrace --help` lists them."""

from __future__ import annotations

# isort: off
from gmtrace.cli import zoo  # noqa: F401 (describe, zoo ...)
from gmtrace.cli import training  # noqa: F401 (train)
from gmtrace.cli import product  # noqa: F401 (analyze, scan, group, report, serve, check)
from gmtrace.cli import evaluation  # noqa: F401 (evaluate, evaluate render)
from gmtrace.cli import index  # noqa: F401 (index add, query, show, reembed)
from gmtrace.cli.app import app

# isort: on

__all__ = ["app"]
