"""Hand-made statistics of an image's pixels: evidence that a convolution on the
high-pass residual cannot see, for the parsing probe (`heads.fit_parse_probe`).

The FEN reads the 3x3 residual, which removes what the last layers of a generator
leave in the pixel values themselves: the range its output activation allows and
how it saturates (tanh and sigmoid approach their bounds, an unbounded output is
clipped to 0 and 255), the conversion to 8 bits (rounding or flooring leaves even
and odd bins filled alike; a narrow output range leaves empty bins), and the
correlation of neighbouring pixels that up-sampling, skips and depth shape. Forty
numbers per image, in four groups (`STAT_NAMES` in order):

* the histogram of the 8-bit values of all three channels (14): mass at 0, at
  255, within 2 of either end, entropy, share of empty bins inside the occupied
  range, total variation of the histogram there, mass on even values, mean, std,
  skewness and kurtosis of the values, the lowest and highest value;
* the grey image's 4-neighbour Laplacian residual (14): log std and kurtosis, its
  correlation with itself shifted by 1-4 pixels across and down, and its
  log-power spectrum on 8 rings of width 1/16 cycle per pixel;
* up-sampling peaks (4): the log power of the columns and rows of that spectrum
  nearest 1/2 and 1/4 cycle per pixel, less its mean;
* colour (4): the correlations between channels and the mean chroma (max - min).

Every statistic is computed in torch on a batch of images in [-1, 1], so it runs
where the network runs, on every crop the scan reads.
"""

from __future__ import annotations

import numpy as np
import torch

_HIST = (
    "at_0",
    "at_255",
    "within_2_of_0",
    "within_2_of_255",
    "entropy",
    "empty_bins",
    "histogram_variation",
    "even_mass",
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "lowest",
    "highest",
)
RINGS = 8
LAGS = (1, 2, 3, 4)
PEAKS = (0.5, 0.25)
STAT_NAMES: tuple[str, ...] = (
    tuple(f"hist_{n}" for n in _HIST)
    + ("residual_log_std", "residual_kurtosis")
    + tuple(f"residual_corr_{a}{k}" for k in LAGS for a in ("x", "y"))
    + tuple(f"residual_ring_{i}" for i in range(RINGS))
    + tuple(f"peak_{a}_{q}" for q in PEAKS for a in ("x", "y"))
    + ("colour_corr_rg", "colour_corr_rb", "colour_corr_gb", "colour_chroma")
)
N_STATS = len(STAT_NAMES)


def _corr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation along the last axis; 0 where either side is constant."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    den = (a.pow(2).mean(-1) * b.pow(2).mean(-1)).sqrt()
    return torch.where(den > 1e-8, (a * b).mean(-1) / den.clamp_min(1e-8), torch.zeros_like(den))


def _moments(v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Mean, std, skewness and kurtosis along the last axis (0 for a constant)."""
    m = v.mean(-1)
    d = v - m[..., None]
    var = d.pow(2).mean(-1)
    sd = var.sqrt()
    skew = d.pow(3).mean(-1) / (sd.pow(3) + 1e-9)
    kurt = d.pow(4).mean(-1) / (var.pow(2) + 1e-9)
    return m, sd, skew, kurt


def _histogram_stats(x: torch.Tensor) -> list[torch.Tensor]:
    b = x.shape[0]
    v = ((x + 1) * 127.5).round().clamp(0, 255).reshape(b, -1)
    h = torch.zeros(b, 256, dtype=x.dtype, device=x.device)
    h.scatter_add_(1, v.long(), torch.ones_like(v))
    h = h / v.shape[1]
    bins = torch.arange(256, device=x.device)
    filled = h > 0
    lo = filled.float().argmax(1)
    hi = 255 - filled.flip(1).float().argmax(1)
    inside = (bins[None] >= lo[:, None]) & (bins[None] <= hi[:, None])
    empty = ((h == 0) & inside).sum(1) / inside.sum(1)
    # steps between two neighbouring bins that both lie in the occupied range
    step_inside = inside[:, 1:] & inside[:, :-1]
    variation = ((h[:, 1:] - h[:, :-1]).abs() * step_inside).sum(1)
    entropy = -(h * torch.log(h.clamp_min(1e-12))).sum(1)
    mean, sd, skew, kurt = _moments(v / 255)
    return [
        h[:, 0],
        h[:, 255],
        h[:, :3].sum(1),
        h[:, 253:].sum(1),
        entropy,
        empty,
        variation,
        h[:, ::2].sum(1),
        mean,
        sd,
        skew,
        kurt,
        lo / 255,
        hi / 255,
    ]


def _residual_stats(x: torch.Tensor) -> list[torch.Tensor]:
    g = (x.mean(1) + 1) * 127.5  # grey, 0..255
    around = g.roll(1, 1) + g.roll(-1, 1) + g.roll(1, 2) + g.roll(-1, 2)
    r = (g - around / 4)[:, 1:-1, 1:-1]  # interior: no wrapped neighbour
    b, n, m = r.shape
    flat = r.reshape(b, -1)
    _, sd, _, kurt = _moments(flat)
    out = [torch.log(sd + 1e-3), kurt]
    for k in LAGS:
        out.append(_corr(r[:, :, :-k].reshape(b, -1), r[:, :, k:].reshape(b, -1)))
        out.append(_corr(r[:, :-k].reshape(b, -1), r[:, k:].reshape(b, -1)))
    power = torch.log(torch.fft.fft2(r).abs().pow(2) + 1e-6)
    fy = _fftfreq(n, x.device)[:, None]
    fx = _fftfreq(m, x.device)[None, :]
    radius = (fx.pow(2) + fy.pow(2)).sqrt()
    for i in range(RINGS):
        ring = (radius >= i / (2 * RINGS)) & (radius < (i + 1) / (2 * RINGS))
        out.append((power * ring).sum((1, 2)) / ring.sum().clamp_min(1))
    overall = power.mean((1, 2))
    for q in PEAKS:
        col, row = _nearest_bin(m, q), _nearest_bin(n, q)
        out.append(power[:, :, col].mean(1) - overall)
        out.append(power[:, row, :].mean(1) - overall)
    return out


def _fftfreq(n: int, device) -> torch.Tensor:
    """`torch.fft.fftfreq(n)` (the same float32 values) from the size alone, made of
    operations an ONNX graph has."""
    k = torch.cat([torch.arange((n + 1) // 2), torch.arange(-(n // 2), 0)]).float()
    return (k * (1.0 / n)).to(device)


def _nearest_bin(n: int, q: float) -> int:
    """The first index of `torch.fft.fftfreq(n)` whose magnitude is nearest q, in the
    same float32 arithmetic, from the size alone (an exported graph has no
    data-dependent index)."""
    # numpy, not `_fftfreq`: under export a torch tensor made here is traced, and an
    # index must be a plain number
    k = np.r_[np.arange((n + 1) // 2), np.arange(-(n // 2), 0)].astype(np.float32)
    freq = k * np.float32(1.0 / n)
    return int(np.argmin(np.abs(np.abs(freq) - np.float32(q))))


def _colour_stats(x: torch.Tensor) -> list[torch.Tensor]:
    c = x.flatten(2)  # [B, 3, HW]
    chroma = (c.max(1).values - c.min(1).values).mean(1) / 2  # [-1, 1] -> share of 255
    return [_corr(c[:, 0], c[:, 1]), _corr(c[:, 0], c[:, 2]), _corr(c[:, 1], c[:, 2]), chroma]


@torch.no_grad()
def pixel_statistics(x: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] images in [-1, 1] (H, W >= 8) -> [B, N_STATS] statistics."""
    if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 8:
        raise ValueError(f"pixel_statistics needs [B, 3, H>=8, W>=8], got {tuple(x.shape)}")
    x = x.float()
    parts = _histogram_stats(x) + _residual_stats(x) + _colour_stats(x)
    return torch.nan_to_num(torch.stack(parts, dim=1), nan=0.0, posinf=0.0, neginf=0.0)
