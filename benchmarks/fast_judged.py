"""A fast inference setting judged by the protocol's figures (issue 23): the same
evaluation run twice, once with the reference settings and once with the fast one
(`gmtrace evaluate ... --precision bf16 --out FAST`, its networks resumed from a
copy of the reference run's folder, so only the test answers change), and each
figure of docs/results.md beside its reference. A per-fold figure is within the
spread of its folds where the two means differ by at most the reference's standard
deviation over the folds; a figure of the folds pooled has no spread, so its
difference is shown alone.

    .venv/bin/python benchmarks/fast_judged.py --base runs/eval_codebase_inner \\
        --fast runs/eval_codebase_bf16 --methods gmtrace,fused [--write]

Prints the table; with --write puts it in docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_build  # noqa: E402  (write_section)

# (label, path in a method's results, per fold?)
FIGURES = (
    ("detection AUC, clean", ("detection", "auc"), True),
    ("detection AUC, both classes JPEG q75", ("detection_degraded", "jpeg75", "auc"), True),
    ("detection ECE, each class half", ("detection", "ece_balanced"), True),
    ("open-set AUROC", ("open_set_auroc",), True),
    ("grouping ARI", ("grouping", "ari"), True),
    ("closed-set attribution accuracy", ("closed_set_accuracy",), True),
    ("detection AUC, clean, folds pooled", ("detection_pooled", "clean", "auc"), False),
    ("detection AUC, JPEG q75, folds pooled", ("detection_pooled", "jpeg75", "auc"), False),
    ("detection ECE, folds pooled", ("detection_pooled", "clean", "ece"), False),
    ("share of test images called unsure", ("unsure", "clean", "unsure_share"), False),
    ("accuracy on the images not unsure", ("unsure", "clean", "accuracy_sure"), False),
)


def _get(d: dict, path: tuple[str, ...]):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def rows(base: dict, fast: dict, method: str) -> list[tuple[str, str, str, str]]:
    """(figure, reference, fast, verdict) of one method."""
    from gmtrace.evaluation.report import pooled_values

    b, f = base["methods"][method], fast["methods"][method]
    out = []
    for label, path, per_fold in FIGURES:
        vb, vf = _get(b, path), _get(f, path)
        if vb is None or vf is None:
            continue
        if per_fold:
            diff = vf["mean"] - vb["mean"]
            within = abs(diff) <= vb["std"]
            out.append(
                (
                    label,
                    f"{vb['mean']:.3f} ± {vb['std']:.3f}",
                    f"{vf['mean']:.3f} ± {vf['std']:.3f}",
                    f"{diff:+.3f}: {'within' if within else 'outside'} the folds' spread",
                )
            )
        else:
            out.append((label, f"{vb:.3f}", f"{vf:.3f}", f"{vf - vb:+.3f}"))
    # parsing: the answering fields beating the random truth at p < 0.05 (the gate
    # across folds), as docs/results.md's targets read it
    fb = pooled_values(base, b)["fields_answered"]
    ff = pooled_values(fast, f)["fields_answered"]
    if fb is not None and ff is not None:
        label = "parsing, gate across folds: answering fields beating random truth"
        out.append((label, str(fb), str(ff), f"{ff - fb:+d}"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="the reference run's folder")
    ap.add_argument("--fast", type=Path, required=True, help="the fast setting's run folder")
    ap.add_argument("--methods", default="gmtrace,fused")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    base = json.loads((a.base / "results.json").read_text())
    fast = json.loads((a.fast / "results.json").read_text())
    table = ["| method | figure | reference | fast | fast - reference |", "|---|---|---|---|---|"]
    for m in a.methods.split(","):
        if m not in base["methods"] or m not in fast["methods"]:
            sys.exit(f"{m}: not in both runs")
        label = base["methods"][m]["label"]
        table += [f"| {label} | {' | '.join(r)} |" for r in rows(base, fast, m)]
    text = "\n".join(table)
    print(text)
    if a.write:
        cmd = zoo_build.command()
        head = (
            f"## A fast setting judged by the protocol's figures (issue 23)\n\n{cmd}: reference "
            f"`{base.get('command', a.base)}`; fast `{fast.get('command', a.fast)}`. Each "
            "figure's mean ± standard deviation over the folds where it has one:\n\n"
        )
        zoo_build.write_section("fast-judged", head + text)
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
