"""Add to a curve record (curve.json) the points an older rendered report shows
at counts the record lacks, marked with where they were read from: for points
whose run folders were lost with a machine (docs/results.md says which).

    .venv/bin/python scripts/curve_from_report.py OLD_REPORT.md runs/curve/curve.json \
        --source "read back from docs/results.md at commit ecf9dc3"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gmtrace.eval_report import curve_points_from_report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="the older rendered report (e.g. from git show)")
    ap.add_argument("record", type=Path, help="the curve.json to add its points to")
    ap.add_argument("--source", required=True, help="where the points were read from, in words")
    ap.add_argument("--method", default="gmtrace")
    a = ap.parse_args()
    try:
        record = json.loads(a.record.read_text())
        have = {p["synth_gms"] for p in record["points"]}
        found = curve_points_from_report(a.report.read_text(), a.method)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    added = [p | {"source": a.source} for p in found if p["synth_gms"] not in have]
    record["points"] = sorted(record["points"] + added, key=lambda p: p["synth_gms"])
    a.record.write_text(json.dumps(record, indent=1) + "\n")
    counts = ", ".join(str(p["synth_gms"]) for p in added) or "none"
    print(f"{a.record}: added the points at {counts} from {a.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
