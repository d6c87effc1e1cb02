"""Fourier views of a generator's trace: residuals, log spectra, radial profiles.

Generators leave periodic traces (the checkerboard of a transposed convolution,
the grid of nearest up-sampling) that are faint in the image but show as sharp
peaks in the Fourier spectrum of its high-frequency residual. These functions
compute that view without a trained network, for the contact sheet of `zoo show`
and for the spectral baseline (radial profile + logistic regression).

`centred_magnitude` and `log_magnitude` (torch) are the one implementation of the
spectrum in gmtrace: these numpy views, the spectrum encoder of the network
(`nets.model.SpectrumEncoder`) and the fingerprint's spectral losses
(`nets.fingerprint_losses`) all go through them.

Images are arrays [H, W, C] (or [H, W] for one channel). Floats are used as they
are; integer arrays (uint8 from `gmtrace.data.images.load_rgb`) are scaled to
[0, 1] by their dtype's maximum. Images passed together must share one size:
resizing or centre-cropping is the caller's job.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from scipy import ndimage

EPS = 1e-6  # floor of the magnitude before the log: log(EPS) ~ -13.8 where a residual is 0
_CHUNK = 64  # images transformed together in `mean_spectrum`


def _as_float(img: np.ndarray) -> np.ndarray:
    """[..., H, W, C] float64; integers scaled to [0, 1], a 2-D image gets C = 1."""
    a = np.asarray(img)
    if np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64) / float(np.iinfo(a.dtype).max)
    else:
        a = a.astype(np.float64, copy=False)
    return a


def _as_hwc(img: np.ndarray) -> np.ndarray:
    a = _as_float(img)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an image [H, W] or [H, W, C], got shape {a.shape}")
    return a


def residual(img: np.ndarray) -> np.ndarray:
    """High-pass residual of an image, per channel: the image minus its 3x3 box blur.

        R_c = x_c - k * x_c,   k = (1/9) * ones(3, 3),   borders reflected

    In frequency (f_y, f_x in cycles/pixel) this multiplies the spectrum by
    1 - h(f_y) h(f_x), h(f) = (1 + 2 cos(2 pi f)) / 3: 0 at DC, 4/3 at (0, 1/2),
    8/9 at (1/2, 1/2), so image content is suppressed and pixel-scale generator
    traces are kept. Returns float64 of the input's shape ([H, W] or [H, W, C];
    a leading batch axis [N, H, W, C] is accepted too).
    """
    a = _as_float(img)
    if a.ndim == 2:
        size: tuple[int, ...] = (3, 3)
    elif a.ndim == 3:
        size = (3, 3, 1)
    elif a.ndim == 4:
        size = (1, 3, 3, 1)
    else:
        raise ValueError(f"expected [H, W], [H, W, C] or [N, H, W, C], got shape {a.shape}")
    return a - ndimage.uniform_filter(a, size=size, mode="reflect")


def centred_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|F[x]| over the last two dimensions: the 2-D DFT with orthonormal scaling, the
    zero frequency shifted to index (H // 2, W // 2)."""
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1)).abs()


def log_magnitude(x: torch.Tensor, channel_dim: int = -3) -> torch.Tensor:
    """log(EPS + mean over channels of `centred_magnitude(x)`): [..., C, H, W] ->
    [..., H, W]."""
    return torch.log(centred_magnitude(x).mean(channel_dim) + EPS)


def _log_spectra(batch: np.ndarray) -> np.ndarray:
    """[N, H, W, C] float -> [N, H, W] centred log-magnitude of the residual's FFT."""
    r = torch.from_numpy(np.ascontiguousarray(residual(batch), dtype=np.float64))
    return log_magnitude(r.permute(0, 3, 1, 2)).numpy()


def log_spectra(images: np.ndarray, chunk: int = 256) -> np.ndarray:
    """`log_spectrum` of every image of a batch [N, H, W, C] (uint8 or float), as
    [N, H, W], computed `chunk` images at a time."""
    out = [_log_spectra(_as_float(images[i : i + chunk])) for i in range(0, len(images), chunk)]
    return np.concatenate(out) if out else np.zeros((0,) + images.shape[1:3])


def log_spectrum(img: np.ndarray) -> np.ndarray:
    """Centred log-magnitude spectrum [H, W] of an image's residual.

        S(u, v) = log(EPS + (1/C) sum_c |F[R_c](u, v)|)

    with R = `residual(img)`, F the 2-D DFT with orthonormal scaling
    (F[x](u, v) = (HW)^(-1/2) sum_{y,x} x e^{-2 pi i (uy/H + vx/W)}, so white noise
    has the same level at any image size) and the zero frequency shifted to the
    centre, index (H // 2, W // 2). A period-p pattern along an axis of length N
    shows as a peak N / p pixels from the centre on that axis.
    """
    a = _as_hwc(img)
    return _log_spectra(a[None])[0]


def mean_spectrum(images: Iterable[np.ndarray]) -> np.ndarray:
    """Mean log spectrum [H, W] over many images of one size:

        S_mean(u, v) = (1/N) sum_n S_n(u, v),   S_n = `log_spectrum(image_n)`

    Averaging cancels the content of single images and leaves what their source
    has in common, its fingerprint. Images are transformed in chunks of 64.
    """
    total: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    count = 0
    chunk: list[np.ndarray] = []

    def flush() -> None:
        nonlocal total
        s = _log_spectra(np.stack(chunk)).sum(axis=0)
        total = s if total is None else total + s
        chunk.clear()

    for img in images:
        a = _as_hwc(img)
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(
                f"mean_spectrum: image {count} has shape {a.shape}, the first had "
                f"{shape}; resize or centre-crop them to one size first"
            )
        chunk.append(a)
        count += 1
        if len(chunk) == _CHUNK:
            flush()
    if chunk:
        flush()
    if total is None:
        raise ValueError("mean_spectrum: no images")
    return total / count


def azimuthal_average(spectrum: np.ndarray, corners: bool = False) -> np.ndarray:
    """Radially averaged profile of a centred spectrum [H, W] (the 1-D power spectrum).

        P(k) = mean of S(u, v) over the ring  k - 1/2 <= r(u, v) < k + 1/2,
        r(u, v) = sqrt((u - H // 2)^2 + (v - W // 2)^2)

    The centre is where `log_spectrum` puts the zero frequency. By default rings stop
    at the largest full circle, k = 0 .. min(H, W) // 2, so the profile has
    min(H, W) // 2 + 1 values for any aspect ratio. The corners outside that circle
    are real frequencies (up to Nyquist on both axes at once: the diagonal
    checkerboard of a transposed convolution sits there); `corners=True` keeps them,
    as partial rings up to the farthest corner. Index k is k / min(H, W) cycles per
    pixel.
    """
    s = np.asarray(spectrum, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"azimuthal_average: expected a 2-D spectrum, got shape {s.shape}")
    h, w = s.shape
    yy, xx = np.indices((h, w))
    r = np.rint(np.hypot(yy - h // 2, xx - w // 2)).astype(np.int64).ravel()
    n_bins = int(r.max()) + 1 if corners else min(h, w) // 2 + 1
    keep = r < n_bins
    sums = np.bincount(r[keep], weights=s.ravel()[keep], minlength=n_bins)
    counts = np.bincount(r[keep], minlength=n_bins)
    return sums / np.maximum(counts, 1)
