"""`gmtrace group`: a scan's generated images grouped by source GM, per group the
GM-level parse over its images and the nearest known GM when one is close.

Input: the rows of `gmtrace scan` (any of its formats). Images whose verdict is
"generated" are grouped by their embeddings (`grouping.group_scalable`: exact up
to 4,000 images, bounded memory beyond), without a number of GMs. Per group:

* `hyperparameters`: continuous fields as the median over the group's images with
  the interquartile range (`q25`, `q75`); discrete fields as the most common value
  with its share of the images (`agreement`) and the mean confidence;
* `losses`: the mean probability of each loss type over the images, and the types
  at 0.5 or above;
* where every row carries the parsing probe's linear outputs (`parse_linear`, a
  model with the GM-level probe), the discrete fields and loss probabilities are
  instead the probe's answer for the group's mean input (the mean of those
  outputs, `schema.read_linear`), as the evaluation scores a GM's parse;
  `agreement` is then the share of images whose own answer is that value;
* `parse_unknown`: where the model's parsing abstains (rows' `parse_unknown`), the
  fields unanswered for at least half of the group's images: their values read
  "unknown" and their loss types are left out of `losses`;
* `nearest_known_gm`: the known GM named first most often, with that share and the
  mean probability, when most of the group's images are *not* flagged "unknown
  GM"; otherwise null (the group looks like a GM the model was not trained on).

Everything is computed from the rows: no image is read again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gmtrace.core.files import atomic_write_text
from gmtrace.core.schema import (
    CONTINUOUS,
    DISCRETE,
    LOSS_THRESHOLD,
    LOSS_TYPES,
    UNKNOWN,
    is_unknown,
    parse_widths,
    read_linear,
)
from gmtrace.grouping.cluster import (
    density_group,
    group_scalable,
    grouping_features,
    grouping_words,
    number_groups,
)

if TYPE_CHECKING:
    from gmtrace.readout.fused import Fusion

GROUPS_SCHEMA_VERSION = 2  # 2: parse_unknown; a field's value may read "unknown"


def own_rows(rows: list[dict], model_id: str) -> bool:
    """Whether every analyzed row of `rows` is the model `model_id`'s, under any of
    its calibrations (a calibration, `+cal-...` in the id, refits the real-photo
    model, not the embedding or the description grouping reads): then the grouping
    that model chose on its own embedding applies (`Fusion.min_size`,
    `Fusion.group_weight`); else the silhouette cut on the embedding alone, which
    needs no choice made on one model's embedding. The CLI and the server both ask
    here."""

    def base(i: str) -> str:
        return i.split("+cal-")[0]

    ids = {r.get("model_id", "") for r in rows if r.get("ok")}
    return bool(ids) and all(base(i) == base(model_id) for i in ids)


def own_grouping(rows: list[dict], model_id: str, fusion: Fusion | None) -> tuple[int, float]:
    """`group_rows`'s (min_size, weight) for `rows`: the grouping the fused model
    `model_id` chose (`Fusion.min_size`, `Fusion.group_weight`) where every analyzed
    row is its (`own_rows`); else (0, 0.0), the silhouette cut on the embedding alone."""
    if fusion is None or not own_rows(rows, model_id):
        return 0, 0.0
    return fusion.min_size, fusion.group_weight


def group_rows(
    rows: list[dict], generated_only: bool = True, min_size: int = 0, weight: float = 0.0
) -> dict:
    """The groups of `rows` (scan rows) as a JSON-ready dict; see the module doc.
    `min_size` > 0: density clustering with that smallest group (a fused model's
    choice, `readout.fused.Fusion.min_size`), an image that fits no group alone.
    `weight` > 0: the rows' self-descriptions beside their embeddings, with that
    weight (`Fusion.group_weight`, `cluster.grouping_features`), where every row
    grouped carries one (rows of an older schema: the embedding alone)."""

    keep = [
        r
        for r in rows
        if r.get("ok")
        and r.get("embedding")
        and (r["verdict"] in ("generated", "unsure") or not generated_only)
    ]
    models = sorted({r["model_id"] for r in rows if r.get("model_id")})
    desc = descriptions_of(keep, weight)
    out = {
        "schema_version": GROUPS_SCHEMA_VERSION,
        "model_ids": models,
        "images": len(rows),
        "grouped": len(keep),
        "grouping": (f"density, groups of {min_size}+" if min_size else "silhouette cut")
        + (f" on {grouping_words(weight)}" if desc is not None else ""),
        "not_grouped": {
            "failed": sum(1 for r in rows if not r.get("ok")),
            "real": sum(1 for r in rows if r.get("ok") and r.get("verdict") == "real")
            if generated_only
            else 0,
        },
        "groups": [],
    }
    if not keep:
        return out
    emb = np.array([r["embedding"] for r in keep], dtype=np.float64)
    numbers = group_numbers(emb, min_size, weight, desc)
    for k in range(1, int(numbers.max()) + 1):
        members = [r for r, n in zip(keep, numbers, strict=True) if n == k]
        out["groups"].append(describe_group(k, members))
    return out


def group_numbers(
    emb: np.ndarray,
    min_size: int = 0,
    weight: float = 0.0,
    description: np.ndarray | None = None,
) -> np.ndarray:
    """Each image's group number (1, 2, ... by size), as `group_rows` groups: on the
    embeddings, and the self-descriptions `description` with `weight` where given
    (`cluster.grouping_features`); density clustering with groups of `min_size`+
    where given, else the silhouette cut."""
    x = grouping_features(emb, description, weight)
    return number_groups(density_group(x, min_size) if min_size else group_scalable(x))


def descriptions_of(items: list, weight: float) -> np.ndarray | None:
    """[N, K] the self-descriptions of rows (dicts) or results (`ImageResult`) where
    `weight` > 0 and every one carries one; else None (the embedding alone)."""
    if not weight or not items:
        return None
    got = [r.get("description") if isinstance(r, dict) else r.description for r in items]
    if any(d is None or len(d) == 0 for d in got):
        return None
    return np.asarray(got, dtype=np.float64)


def describe_group(k: int, members: list[dict]) -> dict:
    hp: dict = {}
    # parsing that abstains: a field the model left unanswered for most of the
    # group's images is unknown for the group
    unknown = {
        n
        for n, c in Counter(n for m in members for n in (m.get("parse_unknown") or [])).items()
        if c >= len(members) / 2
    }
    for f in CONTINUOUS:
        v = [m["hyperparameters"][f.name] for m in members]
        v = np.array([x for x in v if not is_unknown(x)], dtype=np.float64)
        if f.name in unknown or not len(v):
            hp[f.name] = {"value": UNKNOWN, "q25": None, "q75": None}
            continue
        q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
        hp[f.name] = {"value": float(med), "q25": float(q25), "q75": float(q75)}
    # the probe's answer for the group's mean input where every row carries its
    # linear outputs; otherwise the images' votes and mean probabilities
    linear = [m.get("parse_linear") for m in members]
    probe = None
    if all(isinstance(v, list) and len(v) == sum(parse_widths()) for v in linear):
        probe = read_linear(np.mean(np.array(linear, dtype=np.float64), axis=0))
    for j, f in enumerate(DISCRETE):
        votes = Counter(m["hyperparameters"][f.name] for m in members)
        value, count = votes.most_common(1)[0]
        if f.name in unknown:
            value, count = UNKNOWN, votes[UNKNOWN]
        elif probe is not None:
            value = f.classes[int(np.argmax(probe[1][j]))]
            count = votes[value]
        conf = [m["hyperparameters"].get(f.name + "_confidence", np.nan) for m in members]
        hp[f.name] = {
            "value": value,
            "agreement": count / len(members),
            "mean_confidence": float(np.nanmean(conf)) if np.isfinite(conf).any() else None,
        }
    if probe is not None:
        loss_p = {t: float(p) for t, p in zip(LOSS_TYPES, probe[2], strict=True)}
    else:
        loss_p = {
            t: float(np.mean([m["loss_probabilities"][t] for m in members])) for t in LOSS_TYPES
        }
    unknown_gm = float(np.mean([bool(m["unknown_gm"]) for m in members]))
    nearest = None
    if unknown_gm < 0.5:
        tops = Counter(m["top_gms"][0]["name"] for m in members if m["top_gms"])
        if tops:
            name, count = tops.most_common(1)[0]
            probs = [
                m["top_gms"][0]["probability"] for m in members if m["top_gms"][0]["name"] == name
            ]
            nearest = {
                "name": name,
                "share": count / len(members),
                "mean_probability": float(np.mean(probs)),
            }
    return {
        "group": k,
        "size": len(members),
        "mean_p_generated": float(np.mean([m["p_generated"] for m in members])),
        "unknown_share": unknown_gm,
        "nearest_known_gm": nearest,
        "hyperparameters": hp,
        "loss_probabilities": loss_p,
        "losses": [
            t for t, p in loss_p.items() if p >= LOSS_THRESHOLD and f"loss {t}" not in unknown
        ],
        "parse_unknown": sorted(unknown),
        "members": [m["path"] for m in members],
    }


def write_groups(groups: dict, out: str | Path) -> Path:
    """Write groups.json atomically (a reader never sees half a file)."""
    return atomic_write_text(out, json.dumps(groups, indent=1) + "\n")
