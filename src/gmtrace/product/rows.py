"""The one row schema of an analyzed image: what `gmtrace analyze --json` prints,
what a scan writes (a line of .jsonl, a row of .csv or .parquet), what the server
answers and what the report reads. `ImageResult` holds an image's answers;
`ImageResult.to_row` makes its row, with the keys of `ROW_FIELDS` in that order
(values None where they do not apply). Versioned by `SCHEMA_VERSION`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gmtrace.data.images import display_path

VERDICTS = ("generated", "unsure", "real")
SCHEMA_VERSION = 5  # 2: parse_linear; 3: verdict "unsure", unsure_reason, p_supervised;
# 4: parse_unknown; 5: description

# every row has these keys, in this order (values None where they do not apply)
ROW_FIELDS = (
    "schema_version",
    "path",
    "sha256",
    "bytes",
    "ok",
    "error",
    "width",
    "height",
    "crops",
    "padded",
    "p_generated",
    "verdict",  # "generated", "unsure" (a fused model only) or "real"
    "unsure_reason",  # why "unsure"; None otherwise
    # a fused model's parts: the supervised detector's p and the real-photo model's
    # unlikeness (the share of reference photographs more likely than the image)
    "p_supervised",
    "real_unlikeness",
    "top_gms",  # [{"name", "probability"}], most likely first
    "open_set_score",
    "unknown_gm",
    "hyperparameters",  # {field: value, field_confidence: p} (discrete fields)
    "continuous_spread",  # {field: std over the image's crops}, normalized scale
    "losses",
    "loss_probabilities",
    # the fields a model whose parsing abstains does not answer for this image
    # (`readout.abstain.FIELD_NAMES`: "n_layers", ..., "loss l1"); their values in
    # `hyperparameters` read "unknown", their loss types are left out of `losses` (their
    # probabilities stay); None where the model's parsing does not abstain
    "parse_unknown",
    "embedding",  # the grouping embedding (unit length), for `gmtrace group`
    # the parsing probe's linear outputs (`schema.read_linear`), mean over the crops,
    # for `gmtrace group`; None where the model has no probe
    "parse_linear",
    # a fused model's self-description of the image (`realmodel.selfdesc.describe`), mean
    # over the crops, for `gmtrace group` where the model groups on it too
    # (`cluster.grouping_features`); None without a fusion
    "description",
    "model_id",
    "weights_sha256",
)
NESTED = ("top_gms", "hyperparameters", "continuous_spread", "losses", "loss_probabilities")
NESTED += ("parse_unknown", "embedding", "parse_linear", "description")
# answered from the image itself; the rest of a row is the file's and the model's
ANSWERS = ROW_FIELDS[ROW_FIELDS.index("width") : ROW_FIELDS.index("model_id")]


@dataclass
class ImageResult:
    """One image's answers, named as its row names them (`ROW_FIELDS`)."""

    path: str
    ok: bool
    error: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    width: int | None = None
    height: int | None = None
    crops: int = 0
    padded: bool = False
    p_generated: float | None = None
    verdict: str | None = None  # "generated" | "unsure" | "real"
    unsure_reason: str | None = None
    p_supervised: float | None = None
    real_unlikeness: float | None = None
    top_gms: list[dict] = field(default_factory=list)  # [{"name", "probability"}]
    open_set_score: float | None = None
    unknown_gm: bool | None = None
    hyperparameters: dict = field(default_factory=dict)
    continuous_spread: dict = field(default_factory=dict)  # std over crops, normalized
    losses: list[str] = field(default_factory=list)
    loss_probabilities: dict = field(default_factory=dict)
    parse_unknown: list[str] | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    # the parsing probe's linear outputs, mean over the crops (`Inference.parse_of`);
    # None where the model has no probe. `gmtrace group` reads a group's parse from them
    parse_linear: np.ndarray | None = field(default=None, repr=False)
    # a fused model's self-description, mean over the crops; None without a fusion
    description: np.ndarray | None = field(default=None, repr=False)
    # beside the row, where asked for: the saved views and the group of `Analyzer.group`
    fingerprint_png: str | None = None
    spectrum_png: str | None = None
    group: int | None = None

    def to_row(self, model: dict) -> dict:
        """The row (`ROW_FIELDS`); `model`: its `model_id` and `weights_sha256`
        (`model_fields`). A failed image's row holds its file's fields and the error.
        The embedding is scaled to unit length and rounded to 7 decimals, the probe's
        outputs to 5, the self-description to 5 significant digits."""
        row = dict.fromkeys(ROW_FIELDS)
        row |= {
            "schema_version": SCHEMA_VERSION,
            "path": display_path(self.path),
            "sha256": self.sha256,
            "bytes": self.bytes,
            "ok": self.ok,
            "error": self.error,
        }
        if self.ok:
            row |= {k: getattr(self, k) for k in ANSWERS}
            emb = np.asarray(self.embedding, dtype=np.float64)
            emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
            row["embedding"] = [round(float(v), 7) for v in emb]
            if self.parse_linear is not None:
                row["parse_linear"] = [round(float(v), 5) for v in self.parse_linear]
            if self.description is not None:
                row["description"] = [float(f"{v:.5g}") for v in self.description]
        return row | {k: model[k] for k in ("model_id", "weights_sha256")}


def model_fields(analyzer) -> dict:
    """The fields of a row that name the model (`ImageResult.to_row`)."""
    return {"model_id": analyzer.model_id_, "weights_sha256": analyzer.weights_sha256_}
