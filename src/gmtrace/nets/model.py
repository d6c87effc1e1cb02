r"""The gmtrace model: FEN -> fingerprint -> embedding -> parsing, detection,
attribution and a projection for contrastive learning and open-set scoring; saved as
safetensors plus a JSON config (nothing is unpickled).

    image -> FEN -> F -> conv trunk ------------------------\
                      -> log spectrum of F -> features -> MLP -+-> fuse -> e
    image -> 3x3 high-pass residual -> radial log spectrum -> r
    h = [e, features, r] -> parsing heads (15 + 10), detection logit, attribution
                            logits, projection z (unit norm, supervised contrastive)
    detection logit = linear(h) + linear(r)   (the second term: `spectrum_expert`)

`kind="red"` swaps in RED's architecture for the baseline: DnCNN-17 FEN, RED's
parsing network and losses (nets/red_arch.py), no spectrum branch; the detection,
attribution and projection heads are the same, so both answer the same questions.

After training, `fit_heads` refits the detection and attribution heads as a linear
probe on the frozen features (detection as the sum of two probes: one on all of h,
one on r alone), and `calibrate` stores in buffers (saved with the
weights) the Platt scaling of the detection logit, the open-set threshold and the
grouping embedding and threshold. With `parse_probe`, `fit_parse_probe` then fits
parsing afresh on the image's pixel statistics (`nets/pixel_stats.py`): a linear
probe for the discrete fields and loss types, chosen on families left out of the
training GMs, and (with `probe_trees`) a regression forest per continuous field
(`nets/forest.py`) averaged with the linear answer; once fitted it answers in place
of the parsing heads SGD trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from gmtrace.data.images import to_float
from gmtrace.grouping import open_set_score
from gmtrace.nets.fen import DnCNN, FENConfig, box_residual
from gmtrace.nets.forest import FOREST_ARRAYS, forest_predict
from gmtrace.nets.parser import ParseOutput, ParserConfig, ParsingNet, parsing_loss
from gmtrace.nets.pixel_stats import N_STATS, pixel_statistics
from gmtrace.nets.red_arch import RedParsingNet, red_parsing_loss
from gmtrace.schema import CONTINUOUS, GROUP_NAMES, parse_widths, read_linear
from gmtrace.spectrum import log_magnitude

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
KINDS = ("gmtrace", "red")
# filled after training by `fit_heads` / `calibrate`, not by the optimizer
CALIBRATION_BUFFERS = (
    "platt",
    "open_threshold",
    "group_threshold",
    "feature_mean",
    "feature_std",
    "group_mean",
    "group_projection",
    "detect_spectrum",
    "probe_mean",
    "probe_std",
    "probe_weight",
    "probe_bias",
    "probe_fitted",
    *(f"probe_forest_{n}" for n in FOREST_ARRAYS),
    "probe_forest_depth",
    "probe_forest_share",
    "gallery",
)

# config fields that only shape what `fit_heads` fits after training
POST_TRAINING = ("group_dims", "spectrum_expert", "parse_probe", "probe_trees", "open_gallery")
# values of config fields added later, for configs saved before they existed
LEGACY = {
    "image_spectrum": False,
    "spectrum_expert": False,
    "peaks": False,
    "parse_probe": False,
    "probe_trees": 0,
    "open_gallery": False,
}
# the probe answers each loss type directly: its group gates are held open
OPEN_GATE = 30.0
# leaves per tree of the probe's forests, and the nodes a tree holds then
PROBE_TREE_LEAVES = 64
PROBE_TREE_NODES = 2 * PROBE_TREE_LEAVES - 1


def probe_outputs() -> int:
    """Outputs of the parsing probe: a linear parse (`schema.parse_widths`)."""
    return sum(parse_widths())


# the frequencies (cycles per pixel) where up-sampling by 2, 4, 8 and 16 leaves its
# periodic peaks: k / N for odd k (k / N and 1 - k / N have the same magnitude)
PEAK_FREQUENCIES = (1 / 2, 1 / 4, 1 / 8, 3 / 8, 1 / 16, 3 / 16, 5 / 16, 7 / 16)
N_PEAK_FEATURES = 3 * len(PEAK_FREQUENCIES)


def peak_prominence(s: torch.Tensor) -> torch.Tensor:
    """The physics of up-sampling in a log spectrum s [B, H, W] (zero frequency
    centred): an up-sampler of factor N repeats the spectrum every 1/N, leaving
    peaks at k/N. For each f of `PEAK_FREQUENCIES`, three prominences over the
    neighbourhood (positions 2 bins away): the row of vertical frequency f, the column
    of horizontal frequency f (each averaged along its length) and the point (f, f).
    Returns [B, 3 * len(PEAK_FREQUENCIES)]; 0 where the spectrum is flat there."""
    s0 = torch.fft.ifftshift(s, dim=(-2, -1))
    b, h, w = s0.shape
    rows, cols = s0.mean(2), s0.mean(1)  # [B, H], [B, W]
    out = []
    for f in PEAK_FREQUENCIES:
        iy, ix = round(f * h) % h, round(f * w) % w
        ny = [(iy + d) % h for d in (-2, 2)]
        nx = [(ix + d) % w for d in (-2, 2)]
        out.append(rows[:, iy] - rows[:, ny].mean(1))
        out.append(cols[:, ix] - cols[:, nx].mean(1))
        ring = [s0[:, y, x] for y in ny + [iy] for x in nx + [ix] if (y, x) != (iy, ix)]
        out.append(s0[:, iy, ix] - torch.stack(ring, 1).mean(1))
    return torch.stack(out, 1)


@dataclass(frozen=True)
class ModelConfig:
    fen: FENConfig = FENConfig(depth=6, width=24, batch_norm=True, highpass=True)
    parser: ParserConfig = ParserConfig(width=24, stages=4, embed=128)
    n_gms: int = 1
    proj: int = 64
    kind: str = "gmtrace"
    spectrum: bool = True
    spectrum_bins: int = 48
    spectrum_grid: int = 16
    image_spectrum: bool = True  # also the radial spectrum of the image's residual
    group_dims: int = 32  # grouping embedding: discriminant directions kept
    # detection adds a second linear probe that reads the image's spectrum alone
    spectrum_expert: bool = True
    # up-sampling peak prominences (`peak_prominence`) of the fingerprint's and the
    # image residual's spectrum, beside the radial profiles
    peaks: bool = True
    # parsing read by a GM-level probe on the image's pixel statistics
    # (`heads.fit_parse_probe`), in place of the heads SGD trained
    parse_probe: bool = True
    # the probe's continuous fields read by the mean of a regression forest of this
    # many trees on the same statistics and the linear probe (`heads.fit_parse_probe`);
    # 0: linear like the rest
    probe_trees: int = 64
    # the open-set score also reads the distance to the nearest training GM in the
    # grouping embedding (a gallery of the training GMs, `grouping.open_set_score`)
    open_gallery: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.spectrum_expert and not (self.spectrum and self.image_spectrum):
            raise ValueError("spectrum_expert needs spectrum and image_spectrum")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"fen": self.fen.to_dict(), "parser": self.parser.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of `to_dict`; a field missing from `d` takes its value from
        before it existed (`LEGACY`), else its default; unknown keys are ignored."""
        names = {f.name for f in fields(cls)} - {"fen", "parser"}
        scalars = LEGACY | {k: d[k] for k in names if k in d}
        return cls(fen=FENConfig(**d["fen"]), parser=ParserConfig(**d["parser"]), **scalars)

    def with_gms(self, n_gms: int) -> ModelConfig:
        return replace(self, n_gms=n_gms)


def red_config(n_gms: int = 1, proj: int = 64) -> ModelConfig:
    """RED's architecture behind gmtrace's heads (the baseline of the evaluation)."""
    return ModelConfig(
        fen=FENConfig(depth=17, width=64, batch_norm=True, highpass=False),
        parser=ParserConfig(),
        n_gms=n_gms,
        proj=proj,
        kind="red",
        spectrum=False,
        image_spectrum=False,
        spectrum_expert=False,
        peaks=False,
        parse_probe=False,
    )


class SpectrumEncoder(nn.Module):
    """Fingerprint -> its log magnitude spectrum S (orthonormal DFT, mean over
    channels, zero frequency centred) -> features [radial profile of S over `bins`
    rings of normalized frequency r = |(u/H, v/W)| in [0, 1/sqrt(2)], S average-pooled
    to a `grid` x `grid` map], standardized by batch statistics (running ones at
    inference). Returns (MLP(features) [B, out], features [B, bins + grid^2]).
    Any image size gives the same features; the corners (diagonal Nyquist, where
    transposed-convolution checkerboards sit) are kept."""

    def __init__(self, bins: int = 48, grid: int = 16, out: int = 128, peaks: bool = False):
        super().__init__()
        self.bins, self.grid, self.peaks = bins, grid, peaks
        self.n_features = bins + grid * grid + (N_PEAK_FEATURES if peaks else 0)
        self.norm = nn.BatchNorm1d(self.n_features, affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(self.n_features, 256), nn.ReLU(inplace=True), nn.Linear(256, out)
        )
        self._rings: dict[tuple, torch.Tensor] = {}

    def rings(self, h: int, w: int, device) -> torch.Tensor:
        """[H*W, bins] averaging matrix of the radial profile (cached per size)."""
        key = (h, w, str(device))
        if key not in self._rings:
            yy = (torch.arange(h) - h // 2).float() / h
            xx = (torch.arange(w) - w // 2).float() / w
            r = torch.hypot(yy[:, None], xx[None, :]).flatten()
            idx = (r / (0.5**0.5) * self.bins).long().clamp(max=self.bins - 1)
            m = F.one_hot(idx, self.bins).float()
            self._rings[key] = (m / m.sum(0).clamp(min=1)).to(device)
        return self._rings[key]

    @staticmethod
    def log_spectrum(fp: torch.Tensor) -> torch.Tensor:
        """[B, H, W] centred log spectrum of fingerprints [B, C, H, W] (`gmtrace.spectrum`)."""
        return log_magnitude(fp, channel_dim=1)

    def radial(self, s: torch.Tensor) -> torch.Tensor:
        """Radial profile [B, bins] of log spectra [B, H, W]."""
        b, h, w = s.shape
        return s.reshape(b, h * w) @ self.rings(h, w, s.device)

    def forward(self, fp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.log_spectrum(fp)
        radial = self.radial(s)
        grid = F.adaptive_avg_pool2d(s[:, None], self.grid).flatten(1)
        parts = [radial, grid] + ([peak_prominence(s)] if self.peaks else [])
        feats = self.norm(torch.cat(parts, dim=1))
        return self.mlp(feats), feats


@dataclass
class ModelOutput:
    fingerprint: torch.Tensor
    parse: ParseOutput
    detect: torch.Tensor  # [B] logits, > 0 means generated
    attribute: torch.Tensor  # [B, n_gms] logits
    projection: torch.Tensor  # [B, proj], unit norm
    features: torch.Tensor  # [B, D] what every head reads

    def rows(self, sl: slice) -> ModelOutput:
        """The outputs of the images `sl` of the batch."""
        return ModelOutput(
            **{
                f.name: getattr(self, f.name).rows(sl)
                if f.name == "parse"
                else getattr(self, f.name)[sl]
                for f in fields(self)
            }
        )


class GMTraceModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.fen = DnCNN(cfg.fen)
        e = RedParsingNet.embed if cfg.kind == "red" else cfg.parser.embed
        self.spectrum = (
            SpectrumEncoder(cfg.spectrum_bins, cfg.spectrum_grid, e, cfg.peaks)
            if cfg.spectrum
            else None
        )
        self.fuse = (
            nn.Sequential(nn.Linear(2 * e, e), nn.ReLU(inplace=True)) if cfg.spectrum else None
        )
        d = e + (self.spectrum.n_features if self.spectrum is not None else 0)
        # the image's own high-pass spectrum, beside the fingerprint's: evidence the
        # FEN cannot reshape (what the spectral baseline reads), for every head
        self.image_norm = (
            nn.BatchNorm1d(cfg.spectrum_bins, affine=False)
            if cfg.spectrum and cfg.image_spectrum
            else None
        )
        d += cfg.spectrum_bins if self.image_norm is not None else 0
        self.image_peaks_norm = (
            nn.BatchNorm1d(N_PEAK_FEATURES, affine=False)
            if self.image_norm is not None and cfg.peaks
            else None
        )
        d += N_PEAK_FEATURES if self.image_peaks_norm is not None else 0
        self.n_features = d
        if cfg.kind == "red":
            self.parser: nn.Module = RedParsingNet(head_in=d)
        else:
            self.parser = ParsingNet(cfg.parser, head_in=d)
        self.detect = nn.Linear(d, 1)
        self.attribute = nn.Linear(d, cfg.n_gms)
        self.project = nn.Sequential(nn.Linear(d, e), nn.ReLU(inplace=True), nn.Linear(e, cfg.proj))
        # filled by `fit_heads` / `calibrate` (saved with the weights)
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))
        self.register_buffer("open_threshold", torch.tensor(1.0))
        self.register_buffer("group_threshold", torch.tensor(0.5))
        self.register_buffer("feature_mean", torch.zeros(d))
        self.register_buffer("feature_std", torch.ones(d))
        k = self.group_dims
        self.register_buffer("group_mean", torch.zeros(d))
        self.register_buffer("group_projection", torch.eye(d)[:, :k].clone())
        if cfg.spectrum_expert:
            # weights and bias of the image-spectrum detection probe; zero (no say)
            # until `fit_heads` fills them, so SGD trains `detect` alone
            self.register_buffer("detect_spectrum", torch.zeros(cfg.spectrum_bins + 1))
        if cfg.parse_probe:
            # standardization, weights and bias of the parsing probe on [h, pixel
            # statistics]; unused (the SGD heads answer) until `fit_parse_probe`
            n_in, n_out = d + N_STATS, probe_outputs()
            self.register_buffer("probe_mean", torch.zeros(n_in))
            self.register_buffer("probe_std", torch.ones(n_in))
            self.register_buffer("probe_weight", torch.zeros(n_in, n_out))
            self.register_buffer("probe_bias", torch.zeros(n_out))
            self.register_buffer("probe_fitted", torch.tensor(0.0))
        if cfg.open_gallery:
            # each training GM's unit-length mean embedding (`fit_heads`); zero
            # rows (the score is the classifier's alone) until fitted
            self.register_buffer("gallery", torch.zeros(cfg.n_gms, k))
        if cfg.parse_probe and cfg.probe_trees:
            # the continuous fields' forests (`nets.forest`); all leaves until fitted
            shape = (len(CONTINUOUS), cfg.probe_trees, PROBE_TREE_NODES)
            for name in FOREST_ARRAYS:
                kind = torch.float32 if name in ("threshold", "value") else torch.int32
                self.register_buffer(f"probe_forest_{name}", torch.zeros(shape, dtype=kind))
            self.register_buffer("probe_forest_depth", torch.tensor(0))
            # a count's answer: this share the forest's, the rest the linear probe's
            self.register_buffer("probe_forest_share", torch.tensor(0.0))

    @property
    def group_dims(self) -> int:
        """Size of the grouping embedding: at most one less than the training GMs."""
        return max(1, min(self.cfg.group_dims, self.cfg.n_gms - 1, self.n_features))

    def features(
        self, fp: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Trunk embedding (fused with the spectrum MLP) + raw spectrum features of
        the fingerprint [+ the radial spectrum of the image's 3x3 residual, which is
        `residual` when the caller has it]."""
        e = self.parser.forward_features(fp)
        if self.spectrum is None:
            return e
        mlp, raw = self.spectrum(fp)
        parts = [self.fuse(torch.cat([e, mlp], dim=1)), raw]
        if self.image_norm is not None:
            s = self.spectrum.log_spectrum(box_residual(x) if residual is None else residual)
            if self.image_peaks_norm is not None:
                parts.append(self.image_peaks_norm(peak_prominence(s)))
            parts.append(self.image_norm(self.spectrum.radial(s)))  # last: see below
        return torch.cat(parts, dim=1)

    def image_spectrum_part(self, h):
        """The image's residual spectrum r within head features h [..., D] (tensor
        or array): the last `spectrum_bins` columns, where `features` puts it."""
        return h[..., -self.cfg.spectrum_bins :]

    def detection_logit(self, e: torch.Tensor) -> torch.Tensor:
        """[B] logit, > 0 for generated: the probe on all head features, plus (with
        `spectrum_expert`) the probe on the image's residual spectrum."""
        z = self.detect(e).squeeze(1)
        if self.cfg.spectrum_expert:
            w = self.detect_spectrum
            z = z + self.image_spectrum_part(e) @ w[:-1] + w[-1]
        return z

    @property
    def probe_ready(self) -> bool:
        return self.cfg.parse_probe and bool(self.probe_fitted > 0)

    def probe_inputs(self, e: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The parsing probe's standardized inputs: head features h and the pixel
        statistics of the images x, clipped to 5 standard deviations."""
        u = torch.cat([e, pixel_statistics(x).to(e.dtype)], dim=1)
        return ((u - self.probe_mean) / self.probe_std).clamp(-5, 5)

    def probe_parse(self, e: torch.Tensor, x: torch.Tensor) -> ParseOutput:
        """Parsing by the fitted probe: continuous values clipped to [0, 1], the
        discrete fields' logits, and each loss type's logit (its gate open)."""
        u = self.probe_inputs(e, x)
        out = u @ self.probe_weight + self.probe_bias
        if self.cfg.probe_trees and int(self.probe_forest_depth) > 0:
            arrays = {n: getattr(self, f"probe_forest_{n}") for n in FOREST_ARRAYS}
            trees = forest_predict(u[:, -N_STATS:], arrays, int(self.probe_forest_depth))
            w, nc = self.probe_forest_share, len(CONTINUOUS)
            counts = w * trees.to(out.dtype) + (1 - w) * out[:, :nc]
            out = torch.cat([counts, out[:, nc:]], dim=1)
        parts = torch.split(out, parse_widths(), dim=1)
        fine = parts[-1]
        return ParseOutput(
            continuous=parts[0].clamp(0, 1),
            discrete=list(parts[1:-1]),
            coarse=torch.full((len(e), len(GROUP_NAMES)), OPEN_GATE, device=e.device),
            fine=fine,
            embedding=e,
            linear=out,
        )

    def forward(self, x: torch.Tensor) -> ModelOutput:
        # the 3x3 residual feeds the high-pass FEN and the image spectrum: made once
        needed = self.cfg.fen.highpass or self.image_norm is not None
        r = box_residual(x) if needed else None
        fp = self.fen(x, r)
        e = self.features(fp, x, r)
        return ModelOutput(
            fingerprint=fp,
            parse=self.probe_parse(e, x) if self.probe_ready else self.parser.forward_head(e),
            detect=self.detection_logit(e),
            attribute=self.attribute(e),
            projection=F.normalize(self.project(e), dim=1),
            features=e,
        )

    def parsing_loss(self, out: ParseOutput, *targets, balance=None) -> dict[str, torch.Tensor]:
        """Our parsing loss, or RED's for `kind="red"`."""
        fn = red_parsing_loss if self.cfg.kind == "red" else parsing_loss
        return fn(out, *targets, balance)


@dataclass
class Inference:
    """Per-image answers of a method, as numpy arrays (one row per image)."""

    p_generated: np.ndarray  # [N] calibrated probability that the image is generated
    attribution: np.ndarray  # [N, n_gms] probabilities over the training GMs
    open_score: np.ndarray  # [N] higher = less like any training GM
    embedding: np.ndarray  # [N, D], for grouping
    continuous: np.ndarray  # [N, 9] normalized scale
    discrete_prob: list[np.ndarray]  # per discrete field [N, C]
    loss_prob: np.ndarray  # [N, 10]
    fingerprint: np.ndarray | None = None  # [N, H, W, 3] when asked for
    # the parsing probe's raw outputs [N, probe_outputs()] (`schema.read_linear`),
    # where it answers
    parse_linear: np.ndarray | None = None

    def parse_of(self, rows=slice(None)) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """The parse of images `rows` taken together (one GM's images, one image's
        crops): continuous values [9] (normalized scale), class probabilities per
        discrete field, loss-type probabilities [10].

        Where the parsing probe answered, its raw outputs are averaged before
        they are read: its linear parts were fitted on GMs' mean inputs, so this is
        their answer for the images' mean input (each image's input clipped to 5
        standard deviations first); the forests' half of the continuous values
        (with `probe_trees`) is the mean of the images' own answers. Measured on
        family-held-out folds, a forest's answer for the mean input and the mean
        of its answers parse alike (docs/architecture.md). Averaging each image's
        probabilities instead lets a few confident images outvote the mean, and
        reads a GM's inputs at a spread the probe never saw. Otherwise (the SGD
        heads, the baselines) the images' answers are averaged."""
        if self.parse_linear is None:
            return (
                self.continuous[rows].mean(axis=0),
                [p[rows].mean(axis=0) for p in self.discrete_prob],
                self.loss_prob[rows].mean(axis=0),
            )
        return read_linear(self.parse_linear[rows].mean(axis=0))


def model_gallery(model: GMTraceModel) -> np.ndarray | None:
    """The model's gallery of training GMs [n_gms, group_dims] (`heads.fit_heads`),
    or None for a model without one (saved before it, or `open_gallery` off)."""
    g = getattr(model, "gallery", None)
    return None if g is None else g.detach().cpu().numpy()


@torch.no_grad()
def infer(
    model: GMTraceModel,
    images: np.ndarray,
    batch: int = 64,
    fingerprints: bool = False,
    features: bool = False,
) -> Inference:
    """Run `model` on uint8 images [N, H, W, 3] (one size) in batches.

    open_score is `grouping.open_set_score` of the attribution probabilities and the
    unit-length grouping embedding against the model's gallery of training GMs (1 -
    max attribution probability alone where the model has none); the grouping
    embedding is the head features standardized over the training images, projected
    on the discriminant directions of the training GMs (`fit_heads`) and scaled to
    unit length (with `features`, the raw head features)."""
    model.eval()
    dev = next(model.parameters()).device
    parts: dict[str, list] = {}
    for i in range(0, len(images), batch):
        x = torch.from_numpy(to_float(images[i : i + batch])).to(dev)
        o = model(x)
        a, b = model.platt
        attr = torch.softmax(o.attribute, dim=1)
        z = (o.features - model.feature_mean) / model.feature_std
        z = (z - model.group_mean) @ model.group_projection
        unit = F.normalize(z, dim=1)
        vals = {
            "p_generated": torch.sigmoid(a * o.detect + b),
            "attribution": attr,
            "embedding": o.features if features else unit,
            "continuous": o.parse.continuous,
            "loss_prob": o.parse.loss_prob,
        }
        for j, p in enumerate(o.parse.discrete_prob()):
            vals[f"d{j}"] = p
        if fingerprints:
            vals["fingerprint"] = o.fingerprint.permute(0, 2, 3, 1)
        if o.parse.linear is not None:
            vals["parse_linear"] = o.parse.linear
        if features:  # the open-set score reads the unit-length embedding
            vals["unit"] = unit
        for k, v in vals.items():
            parts.setdefault(k, []).append(v.float().cpu().numpy())
    if not parts:
        raise ValueError("infer: no images")
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    n_disc = sum(1 for k in cat if k[0] == "d" and k[1:].isdigit())
    unit = cat.pop("unit") if features else cat["embedding"]
    return Inference(
        p_generated=cat["p_generated"],
        attribution=cat["attribution"],
        open_score=open_set_score(cat["attribution"], unit, model_gallery(model)).astype(
            np.float32
        ),
        embedding=cat["embedding"],
        continuous=cat["continuous"],
        discrete_prob=[cat[f"d{j}"] for j in range(n_disc)],
        loss_prob=cat["loss_prob"],
        fingerprint=cat.get("fingerprint"),
        parse_linear=cat.get("parse_linear"),
    )


@dataclass
class SavedModel:
    model: GMTraceModel
    meta: dict = field(default_factory=dict)


def save_model(model: GMTraceModel, out_dir: str | Path, meta: dict) -> Path:
    """Write model.safetensors and config.json (model config + `meta`) atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(out / WEIGHTS)
    cfg = {"model": model.cfg.to_dict(), **meta}
    tmp = out / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    tmp.replace(out / CONFIG)
    return out


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Load a model written by `save_model` (safetensors: no code runs on load)."""
    d = Path(model_dir)
    for name in (CONFIG, WEIGHTS):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing; is {d} a gmtrace model folder?")
    try:
        cfg = json.loads((d / CONFIG).read_text())
        model = GMTraceModel(ModelConfig.from_dict(cfg["model"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{d / CONFIG}: not a gmtrace model config ({e})") from None
    try:
        state = load_file(str(d / WEIGHTS), device=str(device))
    except Exception as e:
        raise ValueError(f"{d / WEIGHTS}: not a readable safetensors file ({e})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{d / WEIGHTS}: does not match its config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    model.to(device).eval()
    return SavedModel(model=model, meta={k: v for k, v in cfg.items() if k != "model"})
