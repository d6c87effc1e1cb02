"""The evaluation report: `report.md` (and `docs/results.md`) rendered from a run's
`results.json` and figures, the targets of the issue checked row by row, and the
summary table `gmtrace evaluate` prints. Rendering reads only results.json, so a
report can be rewritten without rerunning anything (`gmtrace evaluate render`).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
from rich.table import Table

from gmtrace.core.files import atomic_write_text
from gmtrace.core.schema import CONTINUOUS, DISCRETE, LOSS_TYPES
from gmtrace.grouping.cluster import grouping_key, grouping_words

FIGURES = {
    "fingerprints": "fig_fingerprints.png",
    "roc": "fig_roc.png",
    "confusion": "fig_confusion.png",
    "embedding": "fig_embedding.png",
}


def read_results(out_dir: str | Path) -> dict:
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing; run `gmtrace evaluate` into {out_dir} first")
    return json.loads(path.read_text())


def probe_views(out_dir: Path, methods: list[str]) -> dict[str, dict[str, list[str]]]:
    """Per method and parsing field, the view its parsing probe read in each fold
    ("pixels": linear on the pixel statistics; "forest": a regression forest on
    them averaged with that linear answer; "all" in networks fitted when the probe
    could also read the head features, `readout.fit.fit_parse_probe`), from the fold
    networks' configs."""
    found: dict[str, dict[str, list[str]]] = {}
    for name in methods:
        for cfg in sorted(out_dir.glob(f"fold*/{name}/config.json")):
            try:
                chosen = json.loads(cfg.read_text())["calibration"]["probe_view"]
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
            for field, view in chosen.items():
                found.setdefault(name, {}).setdefault(field, []).append(view)
    return found


def fusion_records(out_dir: Path) -> list[dict]:
    """What the fused method's fusion chose in each fold (foldK/fused/fusion.json,
    `methods.fused.fit_fusion`), in fold order; none where the run has none."""
    found = []
    for path in sorted(out_dir.glob("fold*/fused/fusion.json")):
        try:
            found.append(json.loads(path.read_text()) | {"fold": path.parent.parent.name})
        except json.JSONDecodeError:
            continue
    return found


# how the probe read a field (`probe_view` in a fold network's calibration record)
VIEW_WORDS = {"pixels": "linear", "forest": "forest + linear", "all": "linear with h"}


def _field_row(views: dict[str, list[str]], field: str, cells: str) -> str:
    """A row of the per-field parsing table, with the probe's views when known."""
    v = views.get(field)
    if not v:
        return f"| {cells} |"
    counts = ", ".join(f"{v.count(k)} {VIEW_WORDS.get(k, k)}" for k in dict.fromkeys(v))
    return f"| {cells} | {counts} |"


def _threshold_cell(r: dict) -> str:
    g = r.get("grouping_threshold")
    return f"{_ms(g, 'ari')} ({g['clusters']['mean']:.1f})" if g else "n/a"


def write_reports(
    out_dir: str | Path,
    report: str | Path | None = None,
    compare: str | Path | None = None,
    curve: dict | None = None,
) -> dict:
    """(Re)write `out_dir/report.md` from its results.json and figures, and the
    report at `report` too, with the figures copied to img/<report's name>/ beside it
    (docs/results_family.md: docs/img/results_family/).
    `compare` names another run's folder (the other holdout) whose headline figures
    are shown next to this run's; `curve` (curve.json of `evaluate.curve`; by default
    the one in out_dir's parent folder, if any) adds the figures against the number
    of training GMs."""
    out = Path(out_dir)
    results = read_results(out)
    other = read_results(compare) if compare is not None else None
    if other is not None:
        other["probe_views"] = probe_views(Path(compare), list(other["methods"]))
    if curve is None and (out.parent / "curve.json").is_file():
        curve = json.loads((out.parent / "curve.json").read_text())
    if curve:
        curve = with_probe(curve, Path(curve.get("folder", out.parent)))
    results = results | ({"curve": curve} if curve else {})
    views = probe_views(out, list(results["methods"]))
    results = results | ({"probe_views": views} if views else {})
    chosen = fusion_records(out)
    results = results | ({"fusion_records": chosen} if chosen else {})
    figures = {k: out / f for k, f in FIGURES.items() if (out / f).is_file()}
    atomic_write_text(out / "report.md", render_report(results, figures, out, other))
    if report is not None:
        rp = Path(report)
        figdir = rp.parent / "img" / rp.stem  # each report its own figures
        figdir.mkdir(parents=True, exist_ok=True)
        copied = {k: Path(shutil.copy(v, figdir / v.name)) for k, v in figures.items()}
        atomic_write_text(rp, render_report(results, copied, rp.parent, other))
        if curve:
            write_curve_record(curve, rp)
    return results


def with_probe(curve: dict, folder: Path) -> dict:
    """`curve` with each gmtrace point saying whether its networks parse with the
    probe: as recorded when it was measured, else read from its run folder."""
    points = []
    for pt in curve["points"]:
        if "gmtrace" in pt and "probe" not in pt:
            pt = pt | {"probe": bool(probe_views(folder / f"n{pt['synth_gms']}", ["gmtrace"]))}
        points.append(pt)
    return curve | {"points": points}


def write_curve_record(curve: dict, report: Path) -> Path:
    """The curve's figures beside the report that shows them (curve.json in its
    folder), so that a clone without the run folders still has them and a curve
    can grow by a count on another machine."""
    path = report.parent / "curve.json"
    record = {k: v for k, v in curve.items() if k != "folder"}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


CURVE_HEADING = "## Against the number of training GMs"
BUDGET_HEADING = "## Training budget"  # the curve section goes before it
# the curve table's columns, in order after the two counts (see _curve)
CURVE_KEYS = [("auc", "det. AUC"), ("auc_q75", "AUC q75"), ("open", "open-set"), ("ari", "ARI")]
CURVE_KEYS += [("macro_f1", "disc. F1"), ("loss_f1", "loss F1"), ("fields", "fields")]


def write_curve_section(report: str | Path, curve: dict) -> Path:
    """Rewrite only the section of an existing report that shows the curve (the
    rest stays as its own run wrote it; a report without one gets it before
    "## Training budget"), and the curve record beside it, whose path it returns."""
    rp = Path(report)
    if not rp.is_file():
        raise ValueError(f"{rp}: no report here to put the curve in")
    curve = with_probe(curve, Path(curve.get("folder", rp.parent)))
    lines = rp.read_text().split("\n")
    methods = (k for pt in curve["points"] for k, v in pt.items() if isinstance(v, dict))
    names = list(dict.fromkeys(methods))
    section = "\n".join(_curve(curve, names, apart=True)).split("\n")
    if CURVE_HEADING in lines:
        start = lines.index(CURVE_HEADING)
        after = [i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")]
        end = after[0] if after else len(lines)
    elif BUDGET_HEADING in lines:
        start = end = lines.index(BUDGET_HEADING)
    else:
        raise ValueError(f"{rp}: no curve section and no '{BUDGET_HEADING}' to put one before")
    lines[start:end] = section
    atomic_write_text(rp, "\n".join(lines))
    return write_curve_record(curve, rp)


def split_text(results: dict) -> str:
    """How the run held data out, in words."""
    sp = results.get("split")
    if sp is None:  # runs made before the holdout option
        return "GMs held out stratified by family, real photographs held out one by one"
    gms = {
        "codebase": "whole codebases held out (no GM built and trained by a test GM's code "
        "in training)",
        "tier": "whole tiers held out (gmtrace's own GMs, the pretrained tier, the "
        "foreign-code tier)",
        "family": "whole families held out (no GM of a test family in training)",
    }.get(
        sp["holdout"],
        "GMs held out one by one, stratified by family (every test family in training)",
    )
    real = (
        "real photographs held out by collection (no photograph of a test collection in training)"
        if sp["real_by"] == "collection"
        else "real photographs held out one by one (crops of a photo stay together)"
    )
    return f"{gms}; {real}"


def curve_row(results: dict, name: str) -> dict:
    """A method's headline figures in one run, for the curve over training GMs."""
    v = target_values(results, name)
    return {k: v[k] for _, k in HEADLINE}


def _curve(curve: dict, names: list[str], apart: bool = False) -> list[str]:
    """The headline figures against the number of synthesized GMs in training
    (`apart`: rendered into a report written from another run)."""
    pts = curve["points"]
    # the command that reproduces each point (an older record names one for all)
    cmd = {p["synth_gms"]: p.get("command") or curve.get("command", "") for p in pts}
    commands = list(dict.fromkeys(cmd.values()))
    if len(commands) == 1:
        ran = f" (`{commands[0]}`)" if commands[0] else ""
    else:  # the points were measured by several invocations of the curve
        by_command = (
            ", ".join(str(c) for c in cmd if cmd[c] == command) + f": `{command}`"
            for command in commands
        )
        ran = " (" + "; ".join(by_command) + ")"
    caption = (
        "Each row is one run of the same protocol with that many synthesized GMs "
        "(`gmtrace zoo synth`) added to every fold's training; they are never tested"
        + ran
        + ". Every count trains for the same number of steps, so the more GMs, the "
        "fewer images of each the network sees (the zoo's own GMs included). Gains "
        "that turn into losses past some size have been reported (Community "
        "Forensics); this is where to see it."
    )
    if apart:
        caption += (
            " These rows come from the curve's own runs (their record: curve.json beside "
            "this report), not from the run the rest of this report shows; its count 0 "
            "is a run of its own, which differs from that run as far as their zoo builds "
            "or reruns differ."
        )
    L = [f"{CURVE_HEADING}\n", caption + "\n"]
    keys = CURVE_KEYS
    for n in names:
        if not all(n in p for p in pts):
            continue
        L.append(f"**{n}**\n")
        head = " | ".join(k[1] for k in keys)
        L.append(f"| synthesized GMs | training GMs per fold | {head} |")
        L.append("|---|---|" + "---|" * len(keys))
        for p in pts:
            cells = [
                "n/a" if p[n][k] is None else (str(p[n][k]) if k == "fields" else _f(p[n][k]))
                for k, _ in keys
            ]
            mark = " *" if n == "gmtrace" and p.get("probe") is False else ""
            L.append(
                f"| {p['synth_gms']}{mark} | {p['train_gms']:.0f} | " + " | ".join(cells) + " |"
            )
        L.append("")
    if any(p.get("probe") is False for p in pts):
        L.append(
            "\\* Networks fitted before the parsing probe (`readout.fit.fit_parse_probe`): their "
            "parsing columns (disc. F1, loss F1, fields) are the SGD heads'; the probe "
            "changes nothing else. Rerunning the curve's command refits them.\n"
        )
    return L


HEADLINE = [
    ("detection AUC, clean", "auc"),
    ("detection AUC, both classes JPEG q75", "auc_q75"),
    ("detection AUC, format-neutral", "auc_n"),
    ("detection ECE, clean", "ece"),
    ("open-set AUROC", "open"),
    ("open-set AUROC, nearest-gallery score", "open_gallery"),
    ("grouping ARI", "ari"),
    ("parsing per GM, cont. L1", "l1"),
    ("parsing per GM, disc. macro-F1", "macro_f1"),
    ("parsing per GM, loss F1", "loss_f1"),
    ("fields beating random GT (of 25)", "fields"),
]


# each holdout in a few words, and why its figures matter
HOLDOUT_TAGS = {
    "codebase": "codebases held out",
    "tier": "tiers held out",
    "family": "families held out",
    "gm": "GMs held out",
}
HOLDOUT_WHY = {
    "codebase": "Holding out whole codebases (and real photo collections) is what a "
    "user's images look like: the code that built and trained their generator, its "
    "family, its recipe and its photographs are not in the training data.",
    "tier": "Holding out whole tiers tests each kind of generator (gmtrace's own, real "
    "publicly trained networks, other packages' code) with none of its kind in training.",
    "family": "Holding out whole families (and real photo collections) keeps gmtrace's "
    "own code in training: the test GMs' family, recipe and photographs are not.",
    "gm": "Holding out single GMs keeps every test family in training.",
}


def _holdout(results: dict) -> str:
    return results.get("split", {}).get("holdout", "gm")


def _headline(results: dict, other: dict) -> list[str]:
    """This run's and the other holdout's headline figures side by side, method by
    method."""
    runs = [results, other]
    names = [n for n in results["methods"] if n in other["methods"]]
    tag = HOLDOUT_TAGS
    cols = [f"{results['methods'][n]['label']}, {tag[_holdout(r)]}" for n in names for r in runs]
    L = ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for text, key in HEADLINE:
        cells = []
        for n in names:
            for r in runs:
                v = target_values(r, n)[key] if n in r["methods"] else None
                cells.append("n/a" if v is None else (str(v) if key == "fields" else _f(v)))
        L.append(f"| {text} | " + " | ".join(cells) + " |")
    return L


def _f(x: float, d: int = 3) -> str:
    return f"{x:.{d}f}"


def _p(p: float, n: int) -> str:
    """A permutation p-value; at its floor 1 / (n + 1) it reads "<= 1/(n+1)"."""
    floor = 1 / (n + 1)
    return f"≤{floor:.2g}" if p <= floor * 1.0001 else f"{p:.2g}"


def _ms(d: dict, k: str) -> str:
    return f"{d[k]['mean']:.3f} ± {d[k]['std']:.3f}"


# The targets of the generalization issue (family-held-out folds); a GM-held-out run
# is checked against the same rows.
TARGETS = [
    ("parsing beats random GT, overall p < 0.01 (per GM)", "p_overall", "<", 0.01),
    ("fields beating random GT at p < 0.05, of 25 (per GM)", "fields", ">=", 15),
    ("beats RED's architecture on mean cont. L1, disc. macro-F1, loss F1", "vs_red", ">=", 3),
    ("detection AUC ≥ 0.97, clean", "auc", ">=", 0.97),
    ("detection AUC ≥ 0.95, both classes JPEG q75", "auc_q75", ">=", 0.95),
    ("detection calibration error (ECE, clean) ≤ 0.05", "ece", "<=", 0.05),
    ("open-set AUROC ≥ 0.90", "open", ">=", 0.90),
    ("grouping ARI ≥ 0.75", "ari", ">=", 0.75),
    ("fingerprint rebuilds the image ≥ 6 dB worse than the image (dB)", "leak_db", "<=", -6.0),
]

# The targets of the codebase protocol (issue 21's, raised by issue 22's where both
# set one): all folds pooled for detection, the weakest codebase, the pretrained
# tier held out whole (its images against the photographs they were made from; a
# tier run only), the unsure band and parsing that abstains (a method with them)
CODEBASE_TARGETS = [
    ("parsing beats random GT, overall p < 0.01 (per GM)", "p_overall", "<", 0.01),
    ("detection AUC ≥ 0.97, clean, folds pooled", "auc_pooled", ">=", 0.97),
    ("detection AUC ≥ 0.93, both classes JPEG q75, folds pooled", "auc_q75_pooled", ">=", 0.93),
    ("every held-out codebase: detection AUC ≥ 0.85, clean", "auc_codebase_min", ">=", 0.85),
    ("pretrained tier held out whole: AUC ≥ 0.95 vs its photographs", "pretrained_auc", ">=", 0.95),
    ("pretrained tier held out whole: same, JPEG q75, ≥ 0.85", "pretrained_auc_q75", ">=", 0.85),
    ("detection calibration error (ECE, clean, folds pooled) ≤ 0.03", "ece_pooled", "<=", 0.03),
    ("same, each class weighing half", "ece_pooled_balanced", "<=", 0.03),
    ("same, recalibrated across folds (each class half)", "ece_cal_balanced", "<=", 0.03),
    ("open-set AUROC ≥ 0.90", "open", ">=", 0.90),
    ("grouping ARI ≥ 0.7", "ari", ">=", 0.7),
    ("grouping ARI of the halved case within 0.05 of the whole's", "ari_half_gap", "<=", 0.05),
    ("share of test images called unsure ≤ 10 %, clean", "unsure_share", "<=", 0.10),
    ("parsing, gate across folds: answering fields beating random GT", "fields_answered", ">=", 10),
    ("parsing, gate across folds: fields answered per image (median)", "fields_median", ">=", 12.5),
]


def targets_of(results: dict) -> list[tuple[str, str, str, float]]:
    """The targets a run is checked against, by how it held out its test GMs."""
    holdout = results.get("split", {}).get("holdout", "family")
    return CODEBASE_TARGETS if holdout in ("codebase", "tier") else TARGETS


# label of each degraded detection condition (evaluate.degraded)
CONDITION_LABELS = {
    "format_neutral": "format-neutral",
    "jpeg95": "JPEG q95",
    "jpeg75": "JPEG q75",
    "jpeg50": "JPEG q50",
    "resize50": "resized 50 %",
}


def target_values(results: dict, name: str) -> dict[str, float | None]:
    """Each method's value for every row of TARGETS (None where it does not apply:
    no RED comparison for RED itself, no leakage for a method without fingerprints,
    no parsing figure for a method that does not parse)."""
    r = results["methods"][name]
    vs_red = None
    if r["parsing"] is None:
        s = None
        parsing = dict.fromkeys(("p_overall", "fields", "loss_f1", "macro_f1", "l1"))
    else:
        s = r["parsing"]["per_gm"]["summary"]
        parsing = {
            "p_overall": s["composite"]["p"],
            "fields": fields_beating(r["parsing"]["per_gm"]),
            "loss_f1": s["mean_loss_f1"]["actual"],
            "macro_f1": s["mean_macro_f1"]["actual"],
            "l1": s["mean_l1"]["actual"],
        }
    if s is not None and name != "red" and results["methods"].get("red", {}).get("parsing"):
        red = results["methods"]["red"]["parsing"]["per_gm"]["summary"]
        vs_red = (
            int(s["mean_l1"]["actual"] < red["mean_l1"]["actual"])
            + int(s["mean_macro_f1"]["actual"] > red["mean_macro_f1"]["actual"])
            + int(s["mean_loss_f1"]["actual"] > red["mean_loss_f1"]["actual"])
        )
    lk = results.get("leakage", {})
    key = f"fingerprint ({name})"
    leak = lk[key] - lk["image"] if key in lk and "image" in lk else None
    degraded = r.get("detection_degraded", {})
    return {
        **parsing,
        "vs_red": vs_red,
        "auc": r["detection"]["auc"]["mean"],
        "auc_n": r["detection_format_neutral"]["auc"]["mean"],
        "auc_q75": degraded["jpeg75"]["auc"]["mean"] if "jpeg75" in degraded else None,
        "ece": r["detection"]["ece"]["mean"] if "ece" in r["detection"] else None,
        "closed": r["closed_set_accuracy"]["mean"],
        "open": r["open_set_auroc"]["mean"],
        "open_gallery": r["gallery"]["open"]["mean"] if "gallery" in r else None,
        "ari": r["grouping"]["ari"]["mean"],
        "ari_half_gap": abs(r["grouping_half"]["ari"]["mean"] - r["grouping"]["ari"]["mean"])
        if "grouping_half" in r
        else None,
        "leak_db": leak,
        **pooled_values(results, r),
    }


def _split_detail(results: dict) -> str:
    sp = results.get("split")
    if not sp:
        return ""
    fams = "; ".join(", ".join(f) for f in sp["test_families"])
    out = f" Test families per fold: {fams}."
    if sp["real_by"] == "collection":
        out += " Test photo collections per fold: " + "; ".join(
            ", ".join(c) for c in sp["test_collections"]
        )
        out += "."
    return out


def _header(first: str, ms: dict, names: list[str]) -> list[str]:
    """A markdown table header: `first`, then one column per method."""
    return [
        f"| {first} | " + " | ".join(ms[n]["label"] for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]


def _detection_error_tables(ms: dict, names: list[str], worst: int = 8) -> list[str]:
    L = [
        "\nWhere the errors are (all folds pooled, threshold p = 0.5): the share of each "
        "held-out real source photograph's crops called generated,\n"
    ]
    L += _header("real source (crops)", ms, names)
    first = ms[names[0]]["detection_errors"]["real_called_generated"]
    for src, v in first.items():
        cells = [
            f"{ms[n]['detection_errors']['real_called_generated'][src]['share']:.0%}" for n in names
        ]
        L.append(f"| {src} ({v['n']}) | " + " | ".join(cells) + " |")
    L.append(
        f"\nand the {worst} unseen GMs whose images are most often called real "
        f"(by {ms[names[0]]['label']}, with the others beside):\n"
    )
    L += _header("unseen GM", ms, names)
    for gm in list(ms[names[0]]["detection_errors"]["unseen_called_real"])[:worst]:
        cells = [f"{ms[n]['detection_errors']['unseen_called_real'][gm]:.0%}" for n in names]
        L.append(f"| {gm} | " + " | ".join(cells) + " |")
    return L


def _intro(results: dict) -> list[str]:
    """The title, where the report comes from and the command that made it."""
    L = ["# gmtrace evaluation: unseen GMs, baselines side by side\n"]
    L.append(
        "Made by `gmtrace evaluate` (protocol in `docs/architecture.md`, code in "
        "`src/gmtrace/evaluation/protocol.py`); every number below is computed by that run.\n"
    )
    if results.get("command"):
        L.append(f"```\n{results['command']}\n```\n")
    return L


def _headline_section(results: dict, other: dict | None) -> list[str]:
    """This run's headline figures beside the other holdout's run (none without one),
    with a note when the other run's networks predate the parsing probe."""
    if other is None:
        return []
    this, that = _holdout(results), _holdout(other)
    L = [f"## Headline: {HOLDOUT_TAGS[this]}, next to {HOLDOUT_TAGS[that]}\n"]
    L.append(
        "The same metrics from two runs: this one, and the other holdout's"
        + (f" (`{other['command']}`)" if other.get("command") else "")
        + f". {HOLDOUT_WHY[this]} {HOLDOUT_WHY[that]}\n"
    )
    L += _headline(results, other)
    L.append("")
    stale = [
        results["methods"][n]["label"]
        for n in results["methods"]
        if n in other["methods"]
        and results.get("probe_views", {}).get(n)
        and not other.get("probe_views", {}).get(n)
    ]
    if stale:
        L.append(
            f"The other run's {', '.join(stale)} networks were fitted before the parsing "
            "probe (`readout.fit.fit_parse_probe`): their parsing rows are the SGD heads', "
            "not the probe's; rerunning its command refits them.\n"
        )
    return L


def _setup_section(results: dict) -> list[str]:
    """The zoo, the split, the machine and the run's duration, in one paragraph."""
    cfg = results["config"]
    m = results["machine"]
    # every zoo of the run (runs before `zoos` was recorded: from their command)
    zoos = results.get("zoos") or re.findall(r"--zoo (\S+)", results.get("command", ""))
    zoos = zoos or [results["zoo"]]
    return [
        f"{'Zoo' if len(zoos) == 1 else 'Zoos'} {', '.join(f'`{z}`' for z in zoos)}: "
        f"{results['n_gms']} GMs, {cfg['folds']} folds: "
        f"{split_text(results)}.{_split_detail(results)} Machine: {m['cores']} "
        f"cores ({m['cpu']}), torch {m['torch']}, CUDA {m['cuda']}; this run took "
        f"{results['seconds'] / 60:.1f} min. A network whose checkpoint in the output "
        "folder is complete is resumed, not retrained, and its answers on an image set "
        "kept beside its weights are read, not computed again; the training seconds "
        "below are those recorded while it trained.\n"
    ]


def _budget_section(results: dict) -> list[str]:
    """Steps and seconds per fold for each method, and the two networks' cost per step."""
    cfg = results["config"]
    ms = results["methods"]
    names = list(ms)
    L = [f"{BUDGET_HEADING}\n"]
    L.append(
        f"| method | steps per fold (batch {cfg['batch']}) | training s per fold "
        "| probe + calibration s | predict s per fold |"
    )
    L.append("|---|---|---|---|---|")
    for n in names:
        r = ms[n]
        L.append(
            f"| {r['label']} | {int(np.mean(r['steps']))} | {np.mean(r['train_seconds']):.0f} "
            f"| {np.mean(r['probe_seconds']):.0f} | {np.mean(r['predict_seconds']):.0f} |"
        )
    per_step = {
        n: np.sum(ms[n]["train_seconds"]) / max(1, np.sum(ms[n]["steps"]))
        for n in names
        if np.sum(ms[n]["steps"])
    }
    if "gmtrace" in per_step and "red" in per_step:
        L.append(
            f"\nMeasured here: {per_step['red']:.2f} s per training step for RED's "
            f"architecture (DnCNN-17 FEN, 64 channels at full resolution) against "
            f"{per_step['gmtrace']:.2f} s for gmtrace's, "
            f"{per_step['red'] / per_step['gmtrace']:.0f}x more. The two networks get "
            "about the same CPU time per fold rather than the same number of steps; "
            "equal steps would need that many times longer on 2 cores. Both get the same "
            "linear-probe refit of the detection and attribution heads and the same "
            "calibration; gmtrace's parsing is then read by its GM-level probe on the "
            "features and pixel statistics (`readout.fit.fit_parse_probe`), RED's by its own "
            "parsing network. The spectral baseline is fitted in closed form.\n"
        )
    else:
        L.append("")
    return L


def pooled_values(results: dict, r: dict) -> dict[str, float | None]:
    """The values of CODEBASE_TARGETS that runs before codebases were kept lack."""
    pooled = r.get("detection_pooled", {})
    cb_aucs = [
        row["auc"] for row in r.get("by_codebase", {}).values() if row.get("auc") is not None
    ]
    pre = r.get("by_tier", {}).get("pretrained", {})
    whole = results.get("split", {}).get("holdout") == "tier"
    parsing = r.get("parsing") or {}
    ans = parsing.get("answered_across_folds") or parsing.get("answered")
    return {
        "fields_answered": None if ans is None else fields_beating(ans["per_image"]),
        "fields_median": None if ans is None else ans["fields_answered_median"],
        "unsure_share": r["unsure"]["clean"]["unsure_share"] if r.get("unsure") else None,
        "auc_pooled": pooled.get("clean", {}).get("auc"),
        "auc_q75_pooled": pooled.get("jpeg75", {}).get("auc"),
        "ece_pooled": pooled.get("clean", {}).get("ece"),
        "ece_pooled_balanced": pooled.get("clean", {}).get("ece_balanced"),
        "ece_cal_balanced": (r.get("detection_pooled_calibrated") or {})
        .get("clean", {})
        .get("ece_balanced"),
        "auc_codebase_min": min(cb_aucs) if cb_aucs else None,
        "pretrained_auc": pre.get("auc_paired") if whole else None,
        "pretrained_auc_q75": pre.get("auc_paired_jpeg75") if whole else None,
    }


def _target_cell(v: float | None, key: str, op: str, thr: float, n_perm: int) -> str:
    """One method's value for a row of TARGETS, and whether it meets the target."""
    if v is None:
        return "n/a"
    ok = {"<": v < thr, "<=": v <= thr, ">=": v >= thr}[op]
    if key == "p_overall":
        shown = _p(v, n_perm)
    elif key in ("fields", "fields_answered"):
        shown = f"{v} of 25"
    elif key == "fields_median":
        shown = f"{v:g} of 25"
    elif key == "unsure_share":
        shown = f"{v:.1%}"
    elif key == "vs_red":
        shown = f"{v} of {thr}"
    else:
        shown = f"{v:.3g}"
    return f"{shown} {'met' if ok else 'missed'}"


def _targets_section(results: dict, other: dict | None = None) -> list[str]:
    """The targets of TARGETS, met or missed, method by method. A target this run
    cannot measure (the pretrained tier held out whole, in a codebase run) is read
    from the compared run `other` where that one measures it, and says so."""
    ms = results["methods"]
    names = list(ms)
    n_perm = results["config"]["permutations"]
    L = ["## Targets\n"]
    L += _header("target", ms, names)
    tv = {n: target_values(results, n) for n in names}
    ov = {n: target_values(other, n) for n in names if other and n in other["methods"]}
    borrowed = False
    for text, key, op, thr in targets_of(results):
        cells = []
        for n in names:
            v = tv[n][key]
            if v is None and ov.get(n, {}).get(key) is not None:
                cells.append(_target_cell(ov[n][key], key, op, thr, n_perm) + " (other run)")
                borrowed = True
            else:
                cells.append(_target_cell(v, key, op, thr, n_perm))
        L.append(f"| {text} | " + " | ".join(cells) + " |")
    if borrowed:
        L.append(
            f"\n*(other run)*: measured by the run beside this one in the headline, "
            f"{HOLDOUT_TAGS[_holdout(other)]}."
        )
    L.append("")
    return L


def fields_beating(test: dict, alpha: float = 0.05) -> int:
    """How many of the 25 fields of a permutation test beat the random GT at p < alpha."""
    return sum(
        int(np.sum(np.asarray(test["fields"][k]["p"], dtype=float) < alpha))
        for k in ("l1", "macro_f1", "loss_f1")
    )


def _parsing_summary(results: dict) -> list[str]:
    """The parsing heading and its summary table: per method and level, the mean
    scores against the random ground truth."""
    cfg = results["config"]
    ms = results["methods"]
    n_perm = cfg["permutations"]
    L = ["## Parsing (unseen GMs, all folds)\n"]
    L.append(
        "Continuous: mean L1 on the normalized scale (lower is better); discrete: mean "
        "macro-F1; loss types: mean F1 at 0.5. *Random GT* scores the same predictions "
        f"against GM rows shuffled within each fold ({cfg['permutations']} shuffles); "
        "p = share of shuffles scoring at least as well.\n"
    )
    L.append(
        "| method | level | cont. L1 (random, p) | disc. macro-F1 (random, p) "
        "| loss F1 (random, p) | composite p |"
    )
    L.append("|---|---|---|---|---|---|")
    for n in ms:
        if ms[n]["parsing"] is None:  # a method that does not parse
            continue
        for lvl in ("per_image", "per_gm"):
            s = ms[n]["parsing"][lvl]["summary"]
            cells = [
                f"{s[k]['actual']:.3f} ({s[k]['random']:.3f}, {_p(s[k]['p'], n_perm)})"
                for k in ("mean_l1", "mean_macro_f1", "mean_loss_f1")
            ]
            L.append(
                f"| {ms[n]['label']} | {lvl.replace('_', ' ')} | "
                + " | ".join(cells)
                + f" | {_p(s['composite']['p'], n_perm)} |"
            )
    L.append("")
    return L


def _family_prior(results: dict) -> list[str]:
    """What the family alone tells about loss types (none in runs without it)."""
    fp = results.get("family_prior_loss_f1")
    if not fp:
        return []
    per_type = zip(
        LOSS_TYPES, fp["majority"]["per_type"], fp["above_prevalence"]["per_type"], strict=True
    )
    return [
        "What the family alone tells about loss types (an oracle given each unseen "
        "GM's true family, not its images, predicting the types its family's "
        "training GMs used): mean loss F1 "
        f"{fp['majority']['mean']:.3f} predicting a type used by most of them, "
        f"{fp['above_prevalence']['mean']:.3f} predicting a type used more often "
        "in the family than among all training GMs. Per type (majority / above "
        "prevalence): "
        + ", ".join(f"{t} {a:.2f} / {b:.2f}" for t, a, b in per_type)
        + ". Where a family's loss is drawn at random from several (the GAN "
        "families' adversarial loss, the autoencoders' pixel loss), only the "
        "images can tell which one.\n"
    ]


def _field_table(results: dict, n: str) -> list[str]:
    """One method's score on every hyperparameter, per GM (per image), against the
    random ground truth, with what its parsing probe read where known."""
    ms = results["methods"]
    n_perm = results["config"]["permutations"]
    pg = ms[n]["parsing"]["per_gm"]["fields"]
    pi = ms[n]["parsing"]["per_image"]["fields"]
    L = [f"### {ms[n]['label']}: every hyperparameter, per GM (per image)\n"]
    views = results.get("probe_views", {}).get(n, {})
    if views:
        L.append(
            "*Probe reads*: in how many folds the parsing probe read the field by a "
            "linear model on the pixel statistics, by the mean of a regression forest "
            "on them and that linear model (`probe_trees`), or by a linear model on "
            "the head features too (which only networks fitted before the probe read "
            "the statistics alone could do), `readout.fit.fit_parse_probe`.\n"
        )
    L.append(
        "| hyperparameter | metric | score | random GT | p |" + (" probe reads |" if views else "")
    )
    L.append("|---|---|---|---|---|" + ("---|" if views else ""))
    for j, f in enumerate(CONTINUOUS):
        cells = (
            f"{f.name} | L1 | {pg['l1']['actual'][j]:.3f} ({pi['l1']['actual'][j]:.3f}) "
            f"| {pg['l1']['random'][j]:.3f} | {_p(pg['l1']['p'][j], n_perm)}"
        )
        L.append(_field_row(views, f.name, cells))
    for j, f in enumerate(DISCRETE):
        cells = (
            f"{f.name} | macro-F1 (acc) | {pg['macro_f1']['actual'][j]:.3f} "
            f"({pg['acc']['actual'][j]:.3f}) | {pg['macro_f1']['random'][j]:.3f} "
            f"| {_p(pg['macro_f1']['p'][j], n_perm)}"
        )
        L.append(_field_row(views, f.name, cells))
    aucs = ms[n]["parsing"]["loss_auc_per_gm"]
    for j, t in enumerate(LOSS_TYPES):
        a = "n/a" if aucs[j] is None else f"{aucs[j]:.3f}"
        cells = (
            f"loss {t} | F1 (AUC) | {pg['loss_f1']['actual'][j]:.3f} ({a}) "
            f"| {pg['loss_f1']['random'][j]:.3f} | {_p(pg['loss_f1']['p'][j], n_perm)}"
        )
        L.append(_field_row(views, f"loss_{t}", cells))
    L.append("")
    return L


def _parsing_section(results: dict) -> list[str]:
    """Parsing of unseen GMs: the summary, the family-only reference, and every
    hyperparameter method by method."""
    L = _parsing_summary(results) + _family_prior(results)
    for n, r in results["methods"].items():
        if r["parsing"] is not None:
            L += _field_table(results, n)
            L += _answered_table(results, n, "answered")
            L += _answered_table(results, n, "answered_across_folds")
    return L


# how each gate of parsing that abstains is chosen (`readout.abstain`)
GATES = {
    "answered": (
        "the fields that answer (gate from inner validation)",
        "Each field answers where its confidence reaches the threshold chosen on the "
        "fold's inner validation codebases (the fused method's, `readout.abstain`)",
    ),
    "answered_across_folds": (
        "the fields that answer (gate across folds)",
        "Each field answers where its confidence reaches the threshold chosen, for "
        "each fold, on the other folds' networks' parse of their own test codebases "
        "(`protocol._gate_across_folds`; no truth of the fold's own test GMs is read)",
    ),
}


def _rule_cell(record: dict) -> str:
    """A gate rule chosen nested, with the score of the best and of the strictest."""
    scores = record.get("scores") or {}
    if not scores:
        return record["rule"]
    strict = next(iter(scores))
    return (
        f"{record['rule']} (delivered {scores[record['rule']]:.1f}; {strict}: {scores[strict]:.1f})"
    )


def _answered_table(results: dict, n: str, key: str) -> list[str]:
    """Parsing that abstains (the method's own gate, or the gate across folds): each
    field scored on the test images (GMs) it answered, its coverage beside it."""
    ms = results["methods"]
    ans = ms[n]["parsing"].get(key)
    if ans is None:
        return []
    title, how = GATES[key]
    n_perm = results["config"]["permutations"]
    pi, pg = ans["per_image"]["fields"], ans["per_gm"]["fields"]
    per_fold = ans.get("reliable_per_fold")
    rules = ans.get("rule_per_fold")
    L = [
        f"### {ms[n]['label']}: {title}\n",
        f"{how}; scored on the test "
        "images that it answered (per image) and on the GMs for most of whose images it "
        "answered (per GM), against the random GT on the same rows. Coverage: the share "
        "of test images (GMs) answered. "
        f"A typical test image gets {ans['fields_answered_median']:g} of 25 fields answered "
        f"(median; mean {ans['fields_answered_mean']:.1f}); "
        f"{fields_beating(ans['per_image'])} fields beat the random GT at p < 0.05 per "
        f"image, {fields_beating(ans['per_gm'])} per GM."
        + (
            " Fields answering, fold by fold: "
            + "; ".join(", ".join(f) or "none" for f in per_fold)
            + "."
            if per_fold
            else ""
        )
        + (
            " The gate's rule, fold by fold (chosen with each of the other folds left "
            "out in turn, by what its gate delivered there: `abstain.choose_rule`): "
            + "; ".join(_rule_cell(r) for r in rules)
            + "."
            if rules
            else ""
        )
        + "\n",
        "| field | metric | coverage per image (per GM) | score per image | random GT | p "
        "| score per GM | random GT | p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = (
        [("l1", j, f.name, "L1") for j, f in enumerate(CONTINUOUS)]
        + [("macro_f1", j, f.name, "macro-F1") for j, f in enumerate(DISCRETE)]
        + [("loss_f1", j, f"loss {t}", "F1") for j, t in enumerate(LOSS_TYPES)]
    )

    def cells(f: dict, k: str, j: int) -> str:
        a, r, p = f[k]["actual"][j], f[k]["random"][j], f[k]["p"][j]
        if a is None or np.isnan(a):
            return "- | - | -"
        return f"{a:.3f} | {r:.3f} | {_p(p, n_perm)}"

    for i, (k, j, name, metric) in enumerate(rows):
        cov = f"{ans['coverage'][i]:.0%} ({ans['coverage_gm'][i]:.0%})"
        L.append(f"| {name} | {metric} | {cov} | {cells(pi, k, j)} | {cells(pg, k, j)} |")
    L.append("")
    return L


def _codebase_section(results: dict) -> list[str]:
    """One row per codebase, then per tier, of the unseen GMs and method: where a weak
    codebase shows (runs made before codebases were kept have none)."""
    ms = results["methods"]
    if not any(m.get("by_codebase") for m in ms.values()):
        return []
    L = ["## Per codebase of the unseen GMs\n"]
    L.append(
        "Each codebase's unseen images pooled over the folds that test it: detection AUC "
        "against those folds' held-out real crops, clean and with both classes JPEG q75; "
        "where its GMs restore photographs (aligned pairs), the AUC of their images "
        "against the very photographs they were made from (only photographs the fold "
        "held out), clean and JPEG q75; open-set AUROC against held-out images of the "
        "training GMs; grouping ARI of the codebase's own images, the number of its GMs "
        "unknown.\n"
    )
    L += _key_table(ms, "by_codebase", "codebase")
    if any(m.get("by_tier") for m in ms.values()):
        L.append("\n### Per tier of the unseen GMs\n")
        L.append(
            "The same figures pooled by tier: gmtrace's own GMs (`gmtrace`: its zoo and "
            "its synthesized tier), the real publicly trained networks (`pretrained`) and "
            "the foreign-code tier (`foreign`). With `--holdout tier` each tier is held out "
            "whole; with `--holdout codebase` a tier's other codebases may be in "
            "training.\n"
        )
        L += _key_table(ms, "by_tier", "tier")
    return L + [""]


def _key_table(ms: dict, field: str, what: str) -> list[str]:
    L = [
        f"| {what} | GMs | method | AUC | AUC JPEG q75 | AUC vs own photo (images) "
        "| same, JPEG q75 | open-set AUROC | ARI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def f(x) -> str:
        return "n/a" if x is None else _f(x)

    for key in sorted({k for m in ms.values() for k in m.get(field, {})}):
        for m in ms.values():
            r = m.get(field, {}).get(key)
            if r is None:
                continue
            own = (
                f"{f(r['auc_paired'])} ({r['paired_images']})"
                if r.get("auc_paired") is not None
                else "n/a"
            )
            L.append(
                f"| {key} | {r['gms']} | {m['label']} | {f(r['auc'])} | {f(r.get('auc_jpeg75'))} "
                f"| {own} | {f(r.get('auc_paired_jpeg75'))} | {f(r['open_set_auroc'])} "
                f"| {f(r['ari'])} |"
            )
    return L


def _detection_section(results: dict) -> list[str]:
    """Detection of unseen GMs: clean, under every degraded condition, and where
    the errors are (when the run recorded them)."""
    cfg = results["config"]
    ms = results["methods"]
    names = list(ms)
    L = ["## Detection of unseen GMs (mean ± std over folds)\n"]
    L.append(
        "Generated images of the fold's unseen GMs against crops of its held-out real "
        "photographs. Accuracy is at the calibrated threshold p = 0.5; ECE is the "
        "expected calibration error of p over 10 bins (both classes pooled).\n"
    )
    L.append("| method | AUC | AP | accuracy | balanced acc. | ECE |")
    L.append("|---|---|---|---|---|---|")
    for n in names:
        d = ms[n]["detection"]
        ece = _ms(d, "ece") if "ece" in d else "n/a"
        L.append(
            f"| {ms[n]['label']} | {_ms(d, 'auc')} | {_ms(d, 'ap')} | {_ms(d, 'acc')} | "
            f"{_ms(d, 'balanced_acc')} | {ece} |"
        )
    if all("detection_pooled" in ms[n] for n in names):
        pooled_conds = [c for c in ms[names[0]]["detection_pooled"] if c != "clean"]
        L.append(
            "\nAll folds pooled: every fold's unseen images against every fold's held-out "
            "real crops at once, one threshold for all (as a user meets the model). AUC "
            "(ECE):\n"
        )
        L.append(
            "| method | clean | "
            + " | ".join(CONDITION_LABELS.get(c, c) for c in pooled_conds)
            + " |"
        )
        L.append("|---|---|" + "---|" * len(pooled_conds))
        for n in names:
            p = ms[n]["detection_pooled"]
            cells = [f"{p[c]['auc']:.3f} ({p[c]['ece']:.3f})" for c in ["clean", *pooled_conds]]
            L.append(f"| {ms[n]['label']} | " + " | ".join(cells) + " |")
    degraded = {n: ms[n].get("detection_degraded") or {} for n in names}
    conds = list(degraded[names[0]]) or ["format_neutral"]
    for n in names:  # runs made before the robustness rows had format-neutral only
        degraded[n] = degraded[n] or {"format_neutral": ms[n]["detection_format_neutral"]}
    L.append(
        "\nThe same test images degraded, the same transform for real and generated "
        f"images alike. Format-neutral: resized to {cfg['image_size']} px on the short "
        f"side, centre-cropped, JPEG at quality {cfg['neutral_quality']}; JPEG qN: "
        "re-encoded at quality N; resized 50 %: both sides halved (bicubic). AUC (AP):\n"
    )
    L.append("| method | " + " | ".join(CONDITION_LABELS.get(c, c) for c in conds) + " |")
    L.append("|---|" + "---|" * len(conds))
    for n in names:
        cells = [
            f"{_ms(degraded[n][c], 'auc')} ({degraded[n][c]['ap']['mean']:.3f})" for c in conds
        ]
        L.append(f"| {ms[n]['label']} | " + " | ".join(cells) + " |")
    if all("detection_errors" in ms[n] for n in names):
        L.extend(_detection_error_tables(ms, names))
    L.extend(_calibration_table(ms, names))
    L.extend(_unsure_table(ms, names))
    L.extend(_fusion_table(results.get("fusion_records", [])))
    return L


def _fusion_table(records: list[dict]) -> list[str]:
    """What each fold's fusion chose on its inner validation: the rule (with every
    rule's AUC on held-back codebases left out in turn), the rule's weights, the
    band, the open-set score (with each score's AUROC there)."""
    if not records:
        return []
    from gmtrace.readout.embedding import OPEN_RULES
    from gmtrace.realmodel.fusion import RULES

    L = [
        "\n### What each fold's fusion chose\n",
        "On the fold's inner validation only (its held-back training codebases): the "
        "rule, chosen by leaving each held-back codebase out in turn (AUC of the "
        "left-out answers, as given and JPEG q75, averaged; a rule's Platt map or the "
        "stacker fitted on the rest; the stacker kept only where it beats the best "
        "fixed rule by more than the standard error of their difference over the "
        "left-out codebases, its *margin*, recorded since 2026-12-06), its weights "
        "fitted on all of them, the unsure band; and the open-set score "
        "(`methods.fused.choose_open_rule`: the held-back "
        "GMs' images against the inner network's held-out images of its training GMs, "
        "AUROC of each score; a fusion fitted before the choice reads the gallery "
        "score); and the grouping (`methods.fused.choose_grouping`: ARI of the held-back "
        "GMs' images, whole / halved case):\n",
        "| fold | groups left out in turn | rule | "
        + " | ".join(f"AUC, {r}" for r in RULES)
        + " | stacker's margin | weights | band width (logit) | open-set score | "
        + " | ".join(f"AUROC, {r}" for r in OPEN_RULES)
        + " | grouping (ARI) |",
        "|---|---|---|"
        + "---|" * len(RULES)
        + "---|---|---|---|"
        + "---|" * len(OPEN_RULES)
        + "---|",
    ]
    for rec in records:
        auc = rec.get("rule_validation_auc") or {}
        cells = [f"{auc[r]:.3f}" if r in auc else "-" for r in RULES]
        weights = " / ".join(f"{w:.3f}" for w in rec.get("stacker_weights", []))
        margin = rec.get("rule_stacker_margin")
        auroc = rec.get("open_rule_validation_auroc") or {}
        open_cells = [f"{auroc[r]:.3f}" if r in auroc else "-" for r in OPEN_RULES]
        L.append(
            f"| {rec['fold']} | {rec.get('rule_groups', '-')} | {rec.get('rule', 'stacker')} | "
            + " | ".join(cells)
            + (" | -" if margin is None else f" | {margin:.4f}")
            + f" | {weights} | {float(rec.get('band_width', 0.0)):.1f} | "
            + f"{rec.get('open_rule', 'gallery')} | "
            + " | ".join(open_cells)
            + f" | {_grouping_cell(rec)} |"
        )
    return L


def _grouping_cell(rec: dict) -> str:
    """The grouping a fold's fusion chose, with its inner validation ARI."""
    size = int(rec.get("grouping_min_size", 0))
    weight = float(rec.get("grouping_description_weight", 0.0))
    ari = (rec.get("grouping_validation_ari") or {}).get(grouping_key(size, weight))
    what = f"density, {size}+" if size else "silhouette cut"
    if weight:
        what += ", self-description " + ("alone" if math.isinf(weight) else f"{weight:g}")
    return what + (f" ({ari[0]:.3f} / {ari[1]:.3f})" if ari else "")


def _calibration_table(ms: dict, names: list[str]) -> list[str]:
    """Calibration, folds pooled, clean: each method's own p and the same p
    recalibrated across folds (`protocol._calibrated_across_folds`), its ECE at the
    test set's own mix of classes and with each class weighing half."""
    have = [n for n in names if ms[n].get("detection_pooled_calibrated")]
    if not have:
        return []
    L = [
        "\n### Calibration\n",
        "Folds pooled, clean. *Own*: p as the method gives it (a fused method's stacker, "
        "fitted on its inner validation codebases). *Across folds*: each fold's p read "
        "through a Platt map (a class-balanced logistic fit of its logit) fitted on the "
        "other folds' test answers, which no label of the fold's own test images "
        "enters: what a shipped model adopts from a run (`gmtrace evaluate adopt`). ECE "
        "at the test set's mix of generated and real images, and with each class weighing "
        "half (the 50/50 prior a detector's p states; the test mix is the protocol's "
        "choice of 30 images per GM, not a user's).\n",
        "| method | ECE own (mix / balanced) | ECE across folds (mix / balanced) "
        "| accuracy own / across folds | balanced acc. own / across folds | maps (weight, bias) |",
        "|---|---|---|---|---|---|",
    ]
    for n in have:
        o, c = ms[n]["detection_pooled"]["clean"], ms[n]["detection_pooled_calibrated"]
        cc = c["clean"]
        maps = "; ".join(f"{w:.2f}, {b:+.2f}" for w, b in c["maps"])
        own_bal = _f(o["ece_balanced"]) if "ece_balanced" in o else "n/a"
        L.append(
            f"| {ms[n]['label']} | {o['ece']:.3f} / {own_bal} "
            f"| {cc['ece']:.3f} / {cc['ece_balanced']:.3f} | {o['acc']:.3f} / {cc['acc']:.3f} "
            f"| {o['balanced_acc']:.3f} / {cc['balanced_acc']:.3f} | {maps} |"
        )
    return L


def _unsure_table(ms: dict, names: list[str]) -> list[str]:
    """The methods with an unsure band: how many test images they call unsure, and
    how often they are right on the rest (folds pooled)."""
    with_band = [n for n in names if ms[n].get("unsure")]
    if not with_band:
        return []
    L = [
        "\n### Unsure\n",
        "Test images (unseen GMs' and held-out photographs', folds pooled) whose fused "
        "probability sits in the band chosen on inner validation codebases, or whose two "
        "parts disagree, are scored again after JPEG q95, JPEG q75 and a 0.75 resize; "
        "where the verdicts differ or stay in the band, the verdict is `unsure`. Share "
        "called unsure (generated / real), accuracy at p = 0.5 on the rest and on all:\n",
        "| method | images | unsure | of generated / real | accuracy, the rest | "
        "accuracy, all | most given reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in with_band:
        for cond, u in ms[n]["unsure"].items():
            label = "clean" if cond == "clean" else CONDITION_LABELS.get(cond, cond)
            top = max(u["reasons"].items(), key=lambda kv: kv[1])[0] if u["reasons"] else "-"
            sure = "n/a" if u["accuracy_sure"] is None else f"{u['accuracy_sure']:.3f}"
            L.append(
                f"| {ms[n]['label']}, {label} | {u['images']} | {u['unsure_share']:.1%} | "
                f"{u['unsure_share_generated']:.1%} / {u['unsure_share_real']:.1%} | "
                f"{sure} | {u['accuracy_all']:.3f} | {top} |"
            )
    return L


def _attribution_section(results: dict) -> list[str]:
    """Closed-set attribution, open-set detection, the gallery and grouping."""
    ms = results["methods"]
    L = ["\n## Attribution, open set, grouping (mean ± std over folds)\n"]
    L.append(
        "Closed set: held-out images of the training GMs. Open set: images of unseen GMs "
        "(positive) against held-out images of training GMs, scored by the geometric mean "
        "of 1 - max attribution probability and (1 - the cosine similarity to the nearest "
        "training GM's mean embedding) / 2 (`readout.embedding.open_set_score`; networks fitted "
        "before it and the baselines without a gallery: 1 - max probability alone), or by "
        "the training GMs' densities in the embedding where a fused method's inner "
        "validation chose them (`readout.embedding.GMDensity`). "
        "Grouping: unseen GMs' images clustered (Ward linkage) in each "
        "method's discriminant embedding (LDA of its features over the training GMs, "
        "`grouping.cluster.group`), cut at the finest partition whose mean silhouette is within "
        "5 % of the highest, so the number of unseen GMs is not used (a method may choose "
        "otherwise on its inner validation codebases: the fused method's density "
        "clustering leaves an image that fits no group ungrouped, a group of one). Half the "
        "case: the same on the first half of each unseen GM's images. The last column is "
        "the earlier design (average linkage, cosine, cut at the distance that best groups "
        "the training GMs' held-out images).\n"
    )
    L.append(
        "Gallery: each training GM's entry is the mean grouping embedding of 16 of its "
        "training images; an image goes to the most similar entry, and its open-set "
        "score is minus that similarity (no classifier: a new GM joins by its images).\n"
    )
    L.append(
        "| method | closed-set acc. | open-set AUROC | closed / open (gallery) | ARI | NMI "
        "| purity | clusters found / GMs | ARI, half the case | ARI, learned threshold (clusters) |"
    )
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for n in ms:
        r = ms[n]
        g = r["grouping"]
        gal = r.get("gallery")
        gal_cell = f"{gal['closed']['mean']:.3f} / {gal['open']['mean']:.3f}" if gal else "n/a"
        L.append(
            f"| {r['label']} | {r['closed_set_accuracy']['mean']:.3f} ± "
            f"{r['closed_set_accuracy']['std']:.3f} | {r['open_set_auroc']['mean']:.3f} ± "
            f"{r['open_set_auroc']['std']:.3f} | {gal_cell} | {_ms(g, 'ari')} | "
            f"{_ms(g, 'nmi')} | {_ms(g, 'purity')} | "
            f"{g['clusters']['mean']:.1f} / {g['gms']['mean']:.1f} | "
            f"{_ms(r['grouping_half'], 'ari') if 'grouping_half' in r else 'n/a'} | "
            f"{_threshold_cell(r)} |"
        )
    return L


def _leakage_section(results: dict) -> list[str]:
    """How much of the picture a decoder rebuilds from each input (none in runs
    without the check)."""
    lk = results.get("leakage") or {}
    if not lk:
        return []
    L = ["\n## Content leakage (fold 1)\n"]
    L.append(
        f"The same small CNN decoder is trained ({lk['steps']} steps) to rebuild "
        f"{lk['images'] // 2} images from each input and scored on {lk['images'] // 2} "
        "others (PSNR, higher = more of the picture is recoverable). A fingerprint "
        "should hold the generator's trace, not the picture.\n"
    )
    L.append("| rebuilt from | PSNR (dB) | vs. the image itself |")
    L.append("|---|---|---|")
    for k, v in lk.items():
        if k not in ("images", "steps"):
            L.append(f"| {k} | {v:.2f} | {v - lk['image']:+.2f} dB |")
    return L


FIGURE_TITLES = {
    "fingerprints": "Mean fingerprint and its spectrum for one unseen GM per family",
    "roc": "Detection ROC, pooled over folds",
    "confusion": "Closed-set confusion matrix",
    "embedding": "Embedding map of unseen GMs (one colour per GM)",
}


def _figures_section(figures: dict, where: Path) -> list[str]:
    """The figures there are, linked relative to the report's folder `where`."""
    L = ["\n## Figures\n"]
    for k in ("fingerprints", "roc", "confusion", "embedding"):
        if k in figures:
            rel = os.path.relpath(figures[k], where)
            L.append(f"**{FIGURE_TITLES[k]}**\n\n![{k}]({rel})\n")
    return L


def render_report(results: dict, figures: dict, where: Path, other: dict | None = None) -> str:
    """The Markdown report of a run's `results` (from results.json), section by
    section, with `figures` linked relative to `where` and the other holdout's run
    `other` (if any) beside the headline figures."""
    L = _intro(results) + _headline_section(results, other) + _setup_section(results)
    if results.get("curve"):
        L += _curve(results["curve"], list(results["methods"]))
    L += _budget_section(results)
    L += _targets_section(results, other)
    L += _codebase_section(results)
    L += _parsing_section(results)
    L += _detection_section(results)
    L += _attribution_section(results)
    L += _leakage_section(results)
    L += _figures_section(figures, where)
    return "\n".join(L) + "\n"


def summary_table(results: dict) -> Table:
    t = Table(title="evaluation (unseen GMs, mean over folds)")
    t.add_column("method")
    for c in (
        "cont L1",
        "disc F1",
        "loss F1",
        "p",
        "det AUC",
        "AUC q75",
        "closed",
        "open",
        "ARI",
    ):
        t.add_column(c, justify="right")
    for name, r in results["methods"].items():
        v = target_values(results, name)

        def f(x) -> str:
            return "n/a" if x is None else _f(x)

        t.add_row(
            r["label"],
            f(v["l1"]),
            f(v["macro_f1"]),
            f(v["loss_f1"]),
            "n/a" if v["p_overall"] is None else f"{v['p_overall']:.3g}",
            _f(v["auc"]),
            "n/a" if v["auc_q75"] is None else _f(v["auc_q75"]),
            _f(v["closed"]),
            _f(v["open"]),
            _f(v["ari"]),
        )
    return t


def _band_shares(shares: dict | None) -> str:
    """The unsure band's validation shares as the card states them (fusions fitted
    before they were recorded: nothing)."""
    if not shares:
        return ""
    return "; unsure on the validation images: " + ", ".join(
        f"{v:.1%} of {k}" for k, v in shares.items()
    )


def fused_parts(fusion: dict, adopted: dict | None) -> dict:
    """A fused model's parts for its card: what its fusion chose on its inner
    validation (MODEL/fusion.json, written by `gmtrace train --fuse`) and the
    calibration it adopted from a run (MODEL/adopted.json, `gmtrace evaluate adopt`)."""
    from gmtrace.readout.fused import REENCODINGS
    from gmtrace.realmodel.fusion import RULE_WORDS

    ari = fusion.get("grouping_validation_ari") or {}
    size = str(fusion.get("grouping_min_size", 0))
    weight = float(fusion.get("grouping_description_weight", 0.0))
    key = grouping_key(int(size), weight)
    by_part = fusion.get("real_part_components") or []
    density = (
        f"density, {fusion.get('real_components', '?')} components"
        if len(by_part) < 2
        else "densities of the pixels' prediction and of the residual's spectrum, "
        f"{' + '.join(map(str, by_part))} components, Fisher-combined"
    )
    rule = fusion.get("rule", "stacker")  # a fusion fitted before rules were chosen: stacked
    inputs = (
        "supervised logit, real-photo unlikeness"
        if rule == "stacker"
        else f"the {RULE_WORDS[rule]} (a Platt map)"
    )
    parts = {
        "parts": f"supervised detector + model of real photographs (self-description {density}), "
        + ("stacked" if rule == "stacker" else f"fused by the {RULE_WORDS[rule]}"),
        **(
            {
                "photographs the model of real photographs was fitted on": fusion["real_variation"],
                "their variation chosen on the inner validation (AUC, as given and JPEG q75)": (
                    fusion["real_variation_validation_auc"]
                ),
            }
            if fusion.get("real_variation")
            else {}
        ),
        "stacker": {
            f"weights ({inputs})": [round(float(w), 3) for w in fusion.get("stacker_weights", [])],
            "bias": round(float(fusion.get("stacker_bias", 0.0)), 3),
        },
        **(
            {
                "fusion rule chosen on the inner validation, each held-back codebase left out "
                "in turn (AUC, as given and JPEG q75)": fusion["rule_validation_auc"]
            }
            | (
                {
                    "the stacker kept only where it beats the best fixed rule by more than "
                    "this (standard error over the left-out codebases)": fusion[
                        "rule_stacker_margin"
                    ]
                }
                if fusion.get("rule_stacker_margin") is not None
                else {}
            )
            if fusion.get("rule_validation_auc")
            else {}
        ),
        "unsure band": f"|logit| < {float(fusion.get('band_width', 0.0)):.2g}"
        + (", or the two parts disagree" if fusion.get("band_disagreement") else "")
        + f"; read again after {', '.join(REENCODINGS)} before it is called unsure"
        + _band_shares(fusion.get("band_unsure_validation")),
        "grouping": (
            "silhouette cut"
            if size == "0"
            else f"density (HDBSCAN), groups of {size}+, the rest ungrouped"
        )
        + f", on {grouping_words(weight)}",
        "grouping ARI on the inner validation (whole, halved)": ari.get(key),
        "open-set score": "each training GM's density in the grouping embedding"
        if fusion.get("open_rule") == "density"
        else "the gallery score (1 - top probability and nearest GM, together)",
        **(
            {
                "open-set score chosen on the inner validation (AUROC)": fusion[
                    "open_rule_validation_auroc"
                ]
            }
            if fusion.get("open_rule_validation_auroc")
            else {}
        ),
        "chosen on": f"an inner network of {fusion.get('inner_gms', '?')} GMs; "
        f"{fusion.get('validation_fake', '?')} generated images of held-back codebases "
        f"and {fusion.get('validation_real', '?')} crops of held-back photo collections",
    }
    if adopted:
        if adopted.get("platt_weight") is not None:
            how = (
                f"Platt map (weight {adopted['platt_weight']:.3f}, bias "
                f"{adopted['platt_bias']:.3f}) fitted on {adopted['images']} out-of-fold "
                f"images of {adopted['run']}"
            )
        else:
            across = adopted["map_across_folds"]  # what decided against the map
            how = (
                "no: in the run, a map fitted on other folds' codebases raised the balanced "
                f"ECE ({across['uncalibrated']:.3f} -> {across['recalibrated']:.3f}), so the "
                "stacker's p stands"
            )
        parts["calibration"] = {
            "p recalibrated": how,
            "balanced ECE there, before / after": [
                round(adopted["ece_balanced_before"], 3),
                round(adopted["ece_balanced_after"], 3),
            ],
            "parsing fields answering": adopted.get("fields_answering", []),
            **_gate_rule_item(adopted, "each fold of the run left out in turn"),
            "run": adopted.get("run_command", ""),
        }
    else:
        gate = fusion.get("parse_gate") or {}
        parts["calibration"] = {
            "p recalibrated": "no (the stacker's p on its inner validation)",
            "parsing fields answering": [n for n, g in gate.items() if g.get("coverage", 0) > 0],
            **_gate_rule_item(fusion, "each held-back codebase left out in turn"),
        }
    return parts


def _gate_rule_item(record: dict, how: str) -> dict:
    """The parsing gate's rule and how it was chosen, where a record has one
    (`abstain.choose_rule`; records made before name none)."""
    rule = record.get("parse_gate_rule")
    if not rule:
        return {}
    scores = record.get("parse_gate_rule_scores") or {}
    chosen = f", chosen with {how} (what each rule delivered there)" if scores else ""
    out = {"parsing gate rule": rule + chosen}
    if scores:
        out["parsing gate rules' scores"] = {k: round(v, 2) for k, v in scores.items()}
    return out


def model_card(
    results: dict,
    method: str = "gmtrace",
    limits: list[str] | None = None,
    trained_on: str | None = None,
    shipped_steps: int | None = None,
) -> dict:
    """A model card for `gmtrace report` and `GET /v1/model` (card.json in a model
    folder): the headline figures of an evaluation run of `method` (the recipe the
    shipped model was trained with, measured on GMs and photographs held out), the
    protocol in words, the command, and the known limits (the measured misses and
    where the detections fail), and what the shipped model was trained on."""
    v = target_values(results, method)
    figures = {label: (None if v[k] is None else round(float(v[k]), 3)) for label, k in HEADLINE}
    # and the targets' own figures not among them (folds pooled, the weakest codebase)
    shown = {k for _, k in HEADLINE}
    for label, key, _, _ in targets_of(results):
        if key not in shown and v.get(key) is not None:
            figures[label] = round(float(v[key]), 3)
    met = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
    misses = [
        f"missed: {label}: {_f(v[key])}"
        for label, key, op, goal in targets_of(results)
        if v.get(key) is not None and not met[op](v[key], goal)
    ]
    errs = results["methods"][method].get("detection_errors", {})
    worst = sorted(errs.get("unseen_called_real", {}).items(), key=lambda kv: -kv[1])[:3]
    notes = [f"images of {gm} called real: {share:.0%}" for gm, share in worst if share > 0.2]
    steps = results["methods"][method].get("steps") or []
    per_fold = max(steps, default=0)
    if shipped_steps is None:
        shipped = "a shipped model trains on all of them"
    elif shipped_steps == per_fold:
        shipped = "the shipped model was trained the same way on all of them"
    else:
        shipped = f"the shipped model trained on all of them for {shipped_steps} steps"
    return {
        **({"trained_on": trained_on} if trained_on else {}),
        "method": method,
        "protocol": split_text(results),
        "command": results.get("command", ""),
        "steps_per_fold": per_fold,
        "measured_on": (
            f"networks of this design trained fold by fold ({len(steps)} folds, "
            f"{per_fold} steps each) without the GMs and photographs they were "
            f"tested on; {shipped}"
        ),
        "figures": figures,
        "limits": misses + notes + list(limits or []),
    }
