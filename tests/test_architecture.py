"""The product path (analyze, scan, group, report, serve) stands on nets/, data/
and the schema: it never loads the evaluation or the training code."""

from __future__ import annotations

import json
import subprocess
import sys

PRODUCT = (
    "gmtrace",
    "gmtrace.analyze",
    "gmtrace.scan",
    "gmtrace.groups",
    "gmtrace.html_report",
    "gmtrace.server",
    "gmtrace.web",
)


def test_product_path_does_not_import_evaluation_or_training():
    code = (
        "import importlib, json, sys\n"
        f"for m in {PRODUCT!r}: importlib.import_module(m)\n"
        "import gmtrace\n"
        "for name in gmtrace.__all__: getattr(gmtrace, name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('gmtrace'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    loaded = set(json.loads(out.stdout))
    assert set(PRODUCT) <= loaded
    for forbidden in (
        "gmtrace.evaluate",
        "gmtrace.train",
        "gmtrace.methods",
        "gmtrace.eval_report",
    ):
        assert forbidden not in loaded, forbidden
    assert not any(m.startswith("gmtrace.zoo") for m in loaded), sorted(loaded)
