"""`gmtrace evaluate`: the protocol (run), and `gmtrace evaluate render` (the reports
and the model card again from a finished run, or a report's curve section alone)."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from gmtrace.cli.app import Balance, app, console, fail
from gmtrace.evaluation.config import METHODS, EvalConfig

DEFAULT = EvalConfig()
evaluate_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)
app.add_typer(evaluate_app, name="evaluate")

Report = Annotated[
    Path | None, typer.Option(help="also write the report here (e.g. docs/results.md)")
]
Compare = Annotated[
    Path | None,
    typer.Option(help="folder of another run (the other holdout) to show side by side"),
]
Card = Annotated[
    Path | None,
    typer.Option(help="write the run's figures as DIR/card.json, the model card of DIR"),
]


@evaluate_app.callback()
def evaluate(
    ctx: typer.Context,
    out: Annotated[
        Path | None, typer.Option(help="folder for results.json, report.md, figures")
    ] = None,
    zoo: Annotated[
        list[Path] | None,
        typer.Option(
            help="zoo folder to evaluate on; repeat it to evaluate on several as one (the "
            "zoo, the pretrained tier, the foreign-code tier)"
        ),
    ] = None,
    folds: Annotated[int, typer.Option(help="folds of unseen GMs")] = DEFAULT.folds,
    holdout: Annotated[
        str,
        typer.Option(
            help="codebase: each fold tests whole codebases (the code that built and trained "
            "a GM) and real photo collections that training never saw; tier: gmtrace's own "
            "GMs, the pretrained and the foreign tier, each held out whole; family: whole "
            "families; gm: single GMs (stratified by family) and single photographs"
        ),
    ] = DEFAULT.holdout,
    compare: Compare = None,
    synth: Annotated[
        Path | None,
        typer.Option(help="a synthesized tier (`gmtrace zoo synth`) whose GMs join training"),
    ] = None,
    synth_gms: Annotated[
        int | None, typer.Option(help="how many of its GMs (default: all of them)")
    ] = None,
    curve: Annotated[
        str | None,
        typer.Option(
            help="comma-separated counts of synthesized GMs: one run per count into "
            "OUT/n<count>/, and the figures against the number of training GMs"
        ),
    ] = None,
    steps: Annotated[int, typer.Option(help="gmtrace training steps per fold")] = DEFAULT.steps,
    inner_families: Annotated[
        bool,
        typer.Option(
            "--inner-families/--no-inner-families",
            help="the fused method's inner validation also holds back a third of the "
            "largest codebase's families (--no-inner-families: the small codebases only, "
            "as before 2026-12-05)",
        ),
    ] = DEFAULT.inner_families,
    inner_tiers: Annotated[
        bool,
        typer.Option(
            "--inner-tiers/--no-inner-tiers",
            help="the fused method's inner validation also holds back a codebase of every "
            "tier among the small codebases (an upscaler package the inner network never "
            "saw; docs/realmodel.md)",
        ),
    ] = DEFAULT.inner_tiers,
    group_description: Annotated[
        bool,
        typer.Option(
            "--group-description/--no-group-description",
            help="the fused method's grouping may read the images' self-descriptions "
            "beside the embedding, where its inner validation says so (docs/realmodel.md)",
        ),
    ] = DEFAULT.group_description,
    cross_scale: Annotated[
        bool,
        typer.Option(
            "--cross-scale/--no-cross-scale",
            help="the real-photo model and the fused method's model of real photographs "
            "also model the cross-scale prediction (better on unseen upscalers, worse "
            "pooled: docs/realmodel.md)",
        ),
    ] = DEFAULT.cross_scale,
    red_steps: Annotated[
        int, typer.Option(help="RED-architecture training steps per fold (about equal CPU time)")
    ] = DEFAULT.red_steps,
    balance: Balance = DEFAULT.balance,
    precision: Annotated[
        str,
        typer.Option(
            help="arithmetic of the networks' answers on test images: fp32, or bf16 (the "
            "scan's --precision; training and fitting stay fp32)"
        ),
    ] = DEFAULT.precision,
    methods: Annotated[str, typer.Option(help=f"comma-separated: {', '.join(METHODS)}")] = ",".join(
        DEFAULT.methods
    ),
    train_per_gm: Annotated[
        int, typer.Option(help="training images per GM")
    ] = DEFAULT.train_per_gm,
    test_per_gm: Annotated[
        int, typer.Option(help="test images per unseen GM")
    ] = DEFAULT.test_per_gm,
    permutations: Annotated[
        int, typer.Option(help="random-ground-truth shuffles")
    ] = DEFAULT.permutations,
    report: Report = None,
    seed: Annotated[int, typer.Option()] = DEFAULT.seed,
    card: Card = None,
) -> None:
    """Cross-validate on unseen GMs: parsing, detection, attribution, grouping, leakage,
    with RED's architecture and the spectral baseline in the same run
    (`gmtrace evaluate render --help`: the reports again from a finished run)."""
    if ctx.invoked_subcommand is not None:
        return
    from gmtrace.data.dataset import DatasetError, GMDataset
    from gmtrace.evaluation.protocol import curve as run_curve
    from gmtrace.evaluation.protocol import evaluate as run_eval
    from gmtrace.evaluation.report import read_results
    from gmtrace.train.loop import TrainError

    if out is None:
        fail("--out DIR is required")
    from gmtrace.core.precision import PrecisionError, check_precision

    try:
        check_precision(precision)
    except PrecisionError as e:
        fail(str(e))
    if zoo is None:
        fail("--zoo DIR is required (`gmtrace evaluate render` rewrites a finished run's reports)")
    cfg = replace(
        DEFAULT,
        folds=folds,
        seed=seed,
        holdout=holdout,
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()),
        steps=steps,
        red_steps=red_steps,
        inner_families=inner_families,
        inner_tiers=inner_tiers,
        group_description=group_description,
        cross_scale=cross_scale,
        balance=balance,
        precision=precision,
        train_per_gm=train_per_gm,
        test_per_gm=test_per_gm,
        permutations=permutations,
    )
    command = "gmtrace " + " ".join(sys.argv[1:])
    try:
        ds = GMDataset.combine([GMDataset.from_zoo(z) for z in zoo])
        tier = GMDataset.from_zoo(synth) if synth else None
        if curve:
            if tier is None:
                fail("--curve needs --synth DIR")
            counts = [int(c) for c in curve.split(",") if c.strip()]
            run_curve(ds, tier, counts, out, cfg, console, report, command, compare)
            out = out / f"n{max(counts)}"
            results = read_results(out)
        else:
            n = 0 if tier is None else (len(tier) if synth_gms is None else synth_gms)
            cfg = replace(cfg, synth_gms=n)
            results = run_eval(
                ds,
                out,
                cfg,
                console=console,
                report=report,
                command=command,
                compare=compare,
                synth=tier,
            )
    except (DatasetError, TrainError, ValueError) as e:
        fail(str(e))
    _finish(results, out, report, card)


@evaluate_app.command("render")
def render(
    out: Annotated[
        Path | None, typer.Option(help="a finished run's folder (its results.json)")
    ] = None,
    report: Report = None,
    compare: Compare = None,
    curve: Annotated[
        str | None,
        typer.Option(help="a curve run's folder (or its curve.json) to show in the report"),
    ] = None,
    curve_only: Annotated[
        bool,
        typer.Option(
            "--curve-only",
            help="rewrite only the curve section of --report from --curve (the rest stays "
            "as its run wrote it; no --out needed)",
        ),
    ] = False,
    card: Card = None,
) -> None:
    """Rewrite a finished run's reports (OUT/report.md, --report) from OUT/results.json,
    or with --curve-only only the curve section of --report."""
    from gmtrace.evaluation.report import write_curve_section, write_reports

    try:
        if curve_only:
            if not (curve and report):
                fail("--curve-only needs --curve DIR and --report FILE")
            record = write_curve_section(report, _curve_json(curve))
            console.print(f"curve section of {report} rewritten; its record: {record}")
            return
        if out is None:
            fail("--out DIR is required")
        results = write_reports(out, report, compare, _curve_json(curve))
    except ValueError as e:
        fail(str(e))
    _finish(results, out, report, card)


@evaluate_app.command("adopt")
def adopt(
    out: Annotated[
        Path, typer.Option(help="a finished run's folder (its out_of_fold.safetensors)")
    ],
    model: Annotated[Path, typer.Option(help="model folder trained with --fuse")],
    method: Annotated[str, typer.Option(help="the run's method whose answers to fit on")] = "fused",
) -> None:
    """Give a model the calibration of its fused p and its parsing gate fitted on a
    finished run's out-of-fold answers (networks of its design, on codebases they
    never saw); recorded in MODEL/adopted.json."""
    from gmtrace.evaluation.adopt import adopt as adopt_run

    try:
        record = adopt_run(out, model, method)
    except ValueError as e:
        fail(str(e))
    fields = record["fields_answering"]
    across = record["map_across_folds"]
    if record["map_adopted"]:
        said = (
            f"p recalibrated on {record['images']} out-of-fold images of {out} "
            f"(balanced ECE there {record['ece_balanced_before']:.3f} -> "
            f"{record['ece_balanced_after']:.3f})"
        )
    else:
        said = (
            f"p not recalibrated: a map fitted on other folds' codebases raised the run's "
            f"balanced ECE ({across['uncalibrated']:.3f} -> {across['recalibrated']:.3f})"
        )
    console.print(
        f"{model}: {said}; parsing answers {len(fields)} of 25 fields"
        + (f" ({', '.join(fields)})" if fields else "")
    )


def _finish(results: dict, out: Path, report: Path | None, card: Path | None) -> None:
    """The summary table, where the reports are, and the model card when asked for."""
    from gmtrace.core.files import atomic_write_text
    from gmtrace.evaluation.report import fused_parts, model_card, summary_table
    from gmtrace.readout.saved import FUSION, FUSION_RECORD, read_adopted

    console.print(summary_table(results))
    console.print(f"report: {out / 'report.md'}" + (f" and {report}" if report else ""))
    if card is not None:
        if not (card / "config.json").is_file():
            fail(f"{card}: not a model folder (no config.json)")
        try:
            meta = json.loads((card / "config.json").read_text())
        except (OSError, ValueError) as e:
            fail(f"{card / 'config.json'}: unreadable ({e})")
        trained_on = (
            f"{len(meta.get('gm_names', []))} GMs of {meta.get('origin') or meta.get('zoo')}, "
            f"{meta.get('steps_done', '?')} steps"
        )
        # a fused model's card reads the fused method's figures, where the run has them
        fused = (card / FUSION).is_file() and "fused" in results["methods"]
        method = "fused" if fused else "gmtrace"
        shipped = meta.get("steps_done")
        body = model_card(results, method, trained_on=trained_on, shipped_steps=shipped)
        if fused:
            try:
                fusion = json.loads((card / FUSION_RECORD).read_text())
                body["fused"] = fused_parts(fusion, read_adopted(card) or None)
            except (OSError, ValueError) as e:
                fail(f"{card}: its fusion's record is unreadable ({e})")
        text = json.dumps(body, indent=1)
        atomic_write_text(card / "card.json", text + "\n")
        console.print(f"model card: {card / 'card.json'}")


def _curve_json(where: str | None) -> dict | None:
    """The curve.json named by --curve (a file or its folder)."""
    if where is None:
        return None
    p = Path(where)
    p = p / "curve.json" if p.is_dir() else p
    if not p.is_file():
        fail(f"{p}: no curve.json here (run `gmtrace evaluate --curve COUNTS` first)")
    try:
        return json.loads(p.read_text()) | {"folder": str(p.parent)}
    except (OSError, ValueError) as e:
        fail(f"{p}: not a readable curve.json ({e})")
