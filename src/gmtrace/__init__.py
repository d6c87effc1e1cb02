"""gmtrace: reverse-engineer generative models from the images they make.

The public API (everything else is internal and may change):

* `Analyzer(model_dir=None)`: the model (default: the one shipped); its
  `analyze`, `analyze_array(s)`, `scan` (files and folders into a results file)
  and `group` methods;
* `read_results(path)`: the rows of a results file of `Analyzer.scan` (.jsonl,
  .csv, .parquet), one row per file, schema `SCHEMA_VERSION` (`ROW_FIELDS`);
* `group(rows)`: a case's generated images grouped by source GM, with each
  group's parse (JSON-ready dict, schema `GROUPS_SCHEMA_VERSION`);
* `report(rows, out, analyzer=None)`: one self-contained HTML report of a case;
* `describe(module)`: the architecture hyperparameters of a PyTorch generator.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gmtrace.core.version import __version__


def __getattr__(name: str):
    """The API's heavier parts (torch, the network) load on first use."""
    home = {
        "Architecture": "gmtrace.zoo.architecture",
        "describe": "gmtrace.zoo.introspect",
        "Analyzer": "gmtrace.product.analyze",
        "ImageResult": "gmtrace.product.rows",
        "read_results": "gmtrace.product.scan",
        "ScanSummary": "gmtrace.product.scan",
        "SCHEMA_VERSION": "gmtrace.product.rows",
        "ROW_FIELDS": "gmtrace.product.rows",
        "GROUPS_SCHEMA_VERSION": "gmtrace.product.groups",
    }
    if name in home:
        return getattr(importlib.import_module(home[name]), name)
    raise AttributeError(f"module 'gmtrace' has no attribute {name!r}")


def group(rows: list[dict], generated_only: bool = True) -> dict:
    """`gmtrace.product.groups.group_rows`: the images of scan rows grouped by source GM."""
    from gmtrace.product.groups import group_rows

    return group_rows(rows, generated_only)


def report(
    rows: list[dict], out: str | Path, analyzer=None, groups: dict | None = None, title: str = ""
) -> Path:
    """`gmtrace.product.report.write_report`: a case as one self-contained HTML file."""
    from gmtrace.product.report import write_report

    return write_report(rows, out, analyzer, groups, title)


__all__ = [
    "GROUPS_SCHEMA_VERSION",
    "ROW_FIELDS",
    "SCHEMA_VERSION",
    "Analyzer",
    "Architecture",
    "ImageResult",
    "ScanSummary",
    "__version__",
    "describe",
    "group",
    "read_results",
    "report",
]
