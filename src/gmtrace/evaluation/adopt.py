"""`gmtrace evaluate adopt`: a shipped model takes the calibration of its fused p and
its parsing gate from a finished run's out-of-fold answers (`OUT_OF_FOLD`, written by
`protocol.save_out_of_fold`): every fold's test images answered by networks of the
same design that never saw them, so what a field's confidence and the fused p are
worth on unseen code is measured there, not on the model's own training GMs. The
run's report measures the same device fold by fold (its "across folds" figures:
`protocol._calibrated_across_folds`, `protocol._gate_across_folds`);
docs/realmodel.md."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gmtrace.core.files import atomic_write_text
from gmtrace.core.metrics import calibration_error
from gmtrace.evaluation.config import OUT_OF_FOLD
from gmtrace.evaluation.report import pooled_values
from gmtrace.readout.abstain import FIELD_NAMES, ParseGate
from gmtrace.readout.fused import Fusion
from gmtrace.readout.saved import ADOPTED, read_adopted
from gmtrace.realmodel.fusion import fit_recalibration, recalibrated


def read_out_of_fold(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = Path(run) / OUT_OF_FOLD
    if not path.is_file():
        raise ValueError(
            f"{path}: no out-of-fold answers here (a run of `gmtrace evaluate` writes them; "
            "runs made before they were kept need running again, cached networks are reused)"
        )
    try:
        return load_file(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def map_across_folds(results: dict, method: str) -> dict | None:
    """The run's balanced ECE (clean, folds pooled) of `method`'s p as it is and with
    each fold's p read through a Platt map fitted on the other folds' answers
    (`protocol._calibrated_across_folds`); None where the run has not both."""
    v = pooled_values(results, results.get("methods", {}).get(method, {}))
    before, after = v["ece_pooled_balanced"], v["ece_cal_balanced"]
    if before is None or after is None:
        return None
    return {"uncalibrated": float(before), "recalibrated": float(after)}


def adopt(run: Path, model: Path, method: str = "fused", seed: int = 0) -> dict:
    """Fit `model`'s final Platt map (`Fusion.final`) on the run's out-of-fold fused
    p of `method` and its parsing gate (`Fusion.gate`) on the same method's
    out-of-fold parses (its rule chosen with each fold left out in turn,
    `ParseGate.fit_nested`); save them into the model's fusion and return the record
    (also written to MODEL/adopted.json). The map is adopted only where the run
    measured that such a map, fitted on some codebases, lowers the balanced ECE on
    others (`map_across_folds`); else the model keeps its stacker's p (and loses a
    map adopted before)."""
    arrays = read_out_of_fold(run)
    if f"{method}.p" not in arrays:
        have = sorted({k.split(".")[0] for k in arrays if "." in k})
        raise ValueError(f"{run}: the run has no answers of {method!r} (it has {', '.join(have)})")
    if f"{method}.pred" not in arrays:
        raise ValueError(f"{run}: {method!r} does not parse: no gate to adopt")
    fusion = Fusion.load(model)
    if fusion is None:
        raise ValueError(f"{model}: the model has no fusion (train it with --fuse)")
    p, y = arrays[f"{method}.p"], arrays[f"{method}.y"]
    results = Path(run) / "results.json"
    summary = json.loads(results.read_text()) if results.is_file() else {}
    across = map_across_folds(summary, method)
    # the map is adopted only where the run found it carries to unseen codebases
    use_map = across is None or across["recalibrated"] < across["uncalibrated"]
    final = fit_recalibration(p, y) if use_map else None
    # the gate's rule chosen with each fold left out in turn, the truth shuffled
    # within folds (as the run's random truth is)
    gm = arrays[f"{method}.gm"].astype(int)
    fold = np.full(len(arrays["truth"]), -1)
    fold[arrays["unseen.gm"].astype(int)] = arrays["unseen.fold"].astype(int)
    gate, rule, rule_scores = ParseGate.fit_nested(
        arrays[f"{method}.pred"], arrays[f"{method}.conf"], arrays["truth"], gm, fold[gm], seed
    )
    fusion = replace(fusion, final=final, gate=gate)
    fusion.save(model)
    command = summary.get("command", "")
    q = p if final is None else recalibrated(final, p)
    record = {
        "run": str(run),
        "run_command": command,
        "method": method,
        "adopted": datetime.now(UTC).isoformat(timespec="seconds"),
        "images": int(len(p)),
        "generated_images": int(y.sum()),
        "parsed_images": int(len(arrays[f"{method}.gm"])),
        "map_adopted": use_map,
        # each fold's p through a map fitted on the other folds', against none (the run's
        # "recalibrated across folds" figure): what decided `map_adopted`
        "map_across_folds": across,
        "platt_weight": None if final is None else float(final.weights[0]),
        "platt_bias": None if final is None else final.bias,
        # on the answers it was fitted on: how far off the p was, and is left
        "ece_balanced_before": calibration_error(p, y, balanced=True),
        "ece_balanced_after": calibration_error(q, y, balanced=True),
        "parse_gate": {
            n: {"coverage": round(float(c), 3), "p": None if np.isnan(v) else round(float(v), 4)}
            for n, c, v in zip(FIELD_NAMES, gate.coverage, gate.p, strict=True)
        },
        "fields_answering": gate.reliable(),
        "parse_gate_rule": rule.word,
        "parse_gate_rule_scores": rule_scores,
    }
    try:  # what `gmtrace index calibrate` kept there stays
        kept = {k: v for k, v in read_adopted(model).items() if k == "same_source"}
    except ValueError:
        kept = {}
    atomic_write_text(Path(model) / ADOPTED, json.dumps(record | kept, indent=1) + "\n")
    return record
