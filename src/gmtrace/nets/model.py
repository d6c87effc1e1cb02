r"""The gmtrace network: FEN -> fingerprint -> embedding -> parsing, detection,
attribution and a projection for contrastive learning, the heads SGD trains.

    image -> FEN -> F -> conv trunk ------------------------\
                      -> log spectrum of F -> features -> MLP -+-> fuse -> e
    image -> 3x3 high-pass residual -> radial log spectrum -> r
    h = [e, features, r] -> parsing heads (15 + 10), detection logit, attribution
                            logits, projection z (unit norm, supervised contrastive)

`kind="red"` swaps in RED's architecture for the baseline: DnCNN-17 FEN, RED's
parsing network and losses (nets/red_arch.py), no spectrum branch; the detection,
attribution and projection heads are the same, so both answer the same questions.

After training, the readout (`readout/`) is fitted on the frozen head features h
and saved apart from the network: the probes that answer detection (one on h, one
on r alone), attribution and parsing (on the pixel statistics), the calibration, the
grouping embedding and the open-set gallery.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from gmtrace.core.spectrum import log_magnitude
from gmtrace.nets.config import ModelConfig
from gmtrace.nets.fen import DnCNN, box_residual
from gmtrace.nets.parser import ParseOutput, ParsingNet, parsing_loss
from gmtrace.nets.red_arch import RedParsingNet, red_parsing_loss

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
        """[B, H, W] centred log spectrum of fingerprints [B, C, H, W] (`gmtrace.core.spectrum`)."""
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

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fingerprint and the head features e of images x (what every head
        reads)."""
        # the 3x3 residual feeds the high-pass FEN and the image spectrum: made once
        needed = self.cfg.fen.highpass or self.image_norm is not None
        r = box_residual(x) if needed else None
        fp = self.fen(x, r)
        return fp, self.features(fp, x, r)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        fp, e = self.embed(x)
        return ModelOutput(
            fingerprint=fp,
            parse=self.parser.forward_head(e),
            detect=self.detect(e).squeeze(1),
            attribute=self.attribute(e),
            projection=F.normalize(self.project(e), dim=1),
            features=e,
        )

    def parsing_loss(self, out: ParseOutput, *targets, balance=None) -> dict[str, torch.Tensor]:
        """Our parsing loss, or RED's for `kind="red"`."""
        fn = red_parsing_loss if self.cfg.kind == "red" else parsing_loss
        return fn(out, *targets, balance)
