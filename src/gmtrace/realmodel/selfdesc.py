"""An image's self-description: how its own pixels are predicted from their
neighbours, at several scales.

A camera's pipeline (optics, demosaicing, denoising, JPEG) and a generator's last
layers (up-sampling, the output activation, the 8-bit conversion) leave different
dependencies between neighbouring pixels and between the colour channels. Forensic
Self-Descriptions (Nguyen, Azizpour, Stamm, CVPR 2025) describe an image by the
parameters of predictors fitted to that image alone, and model real photographs'
descriptions to score how unlike a photograph an image is, with no generated image
in training. This module is gmtrace's closed-form version of that idea (no learned
filter bank: every number is a least-squares fit on the image itself, so nothing
here depends on which generators were in training):

for each scale s in `SCALES` (the image box-averaged over s x s pixels) and each
channel c, every pixel (the border excepted) is predicted from its 8 neighbours in
channel c and from the two other channels at the same place, by ridge-regularized
least squares over the whole image, means removed. The description of (s, c) is
`PER_CHANNEL` = 18 numbers:

* the 10 coefficients (8 neighbours in `OFFSETS` order, then the other channels
  in RGB order);
* the prediction gain: log of the residual's mean square over the centred
  pixels' mean square;
* the residual's log kurtosis;
* the residual's correlation with itself one pixel across and one down;
* the residual's log energy on each of the four phases (row and column parity)
  over its mean energy: a 2x up-sampling or a checkerboard makes them unequal.

Then, at full resolution only, the periodicity of a fixed high-pass residual (each
pixel minus the mean of its 4 neighbours, averaged over the channels): an image
enlarged by a factor p (an up-sampling layer, a super-resolution network) leaves
its residual's energy unequal on the p phases of rows and of columns, where the
2x2 phases above see only p = 2. `PERIOD_NAMES` (18 numbers): for each period p in
`PERIODS` and each axis, the spread (standard deviation) of the log energy over
the p phases; and the correlation of the residual's magnitude with itself `LAGS`
pixels across and down.

Last, the spectrum of that same residual (`SPECTRUM_NAMES`, 4 numbers): a network's
resampling and its last layers leave lines and bands in it that a camera's residual
(noise, demosaicing, JPEG's blocks apart) has not, whatever the factor and the phase.
The log of its mean magnitude over its median magnitude (peakiness), the log of its
99th-percentile magnitude over the median (its strongest lines), the share of its
energy beyond 0.35 cycles per pixel on either axis, and the log of its spectral
flatness (geometric over arithmetic mean of the power). These four are modelled as a
part of their own (`BLOCKS`, `density.RealPhotoModel`): appended to the 180 above
and modelled together, they were drowned by them (docs/realmodel.md, "The residual's
spectrum").

Then how much of the image its own coarser version predicts (`CROSS_SCALE_NAMES`, 9
numbers), the same idea across scales instead of across neighbours: for each factor
k in `FACTORS`, the image's luminance is box-averaged over k x k cells (its parent),
and each of the k x k phases of the fine pixels (the pixel at (a, b) of every cell)
is predicted by least squares from the 3x3 parents around its own. The log of the
residual's mean square over that of the detail (the fine pixel less its own
parent) is the phase's gain; the block holds, per factor, the gains' mean, spread
(standard deviation over the phases) and minimum. A photograph's fine detail
(texture, noise, the sensor's) is largely not a function of its coarser version
(gain near 0); an image enlarged by a network from a smaller one is (far below 0),
and it stays so after JPEG, which erases the finest residual statistics above.
Measured on the pretrained tier's upscalers and under the codebase protocol, it is
an option (`real_parts`, `--cross-scale`): docs/realmodel.md, "Cross-scale prediction".

`describe_images` gives [N, len(SCALES) * 3 * 18 + 18 + 4 + 9] = [N, 193]:
scale-major, then channel, then `PER_CHANNEL` order, then `PERIOD_NAMES`, then
`SPECTRUM_NAMES`, then `CROSS_SCALE_NAMES` (`DESCRIPTION_NAMES`); `BLOCKS` the
column ranges of its three parts, the pixels' prediction and periodicity (the first
180), the residual's spectrum (the next 4), the cross-scale prediction (the last 9).
A model of real photographs reads a prefix of the description (`width`): one fitted
before a part existed reads the columns it knew, which have not changed, and
`describe(..., width=)` gives only those (without the cost of the cross-scale part
where they stop before it).
Computed in torch on a batch in float32, the normal equations solved in float64
(those of a flat image are ill-conditioned).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SCALES = (1, 2, 4)
OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
PER_CHANNEL = (
    *(f"w_{di:+d}_{dj:+d}" for di, dj in OFFSETS),
    "w_other_1",
    "w_other_2",
    "log_gain",
    "log_kurtosis",
    "corr_across",
    "corr_down",
    "phase_00",
    "phase_01",
    "phase_10",
    "phase_11",
)
PERIODS = (2, 3, 4, 5, 6, 8)
LAGS = (2, 3, 4)
PERIOD_NAMES = (
    *(f"period_{p}_{axis}" for p in PERIODS for axis in ("rows", "cols")),
    *(f"lag_{k}_{axis}" for k in LAGS for axis in ("across", "down")),
)
SPECTRUM_NAMES = (
    "spectrum_log_peakiness",
    "spectrum_log_lines",
    "spectrum_high",
    "spectrum_log_flatness",
)
FACTORS = (2, 3, 4)
CROSS_SCALE_NAMES = tuple(
    f"xscale_{k}_{stat}" for k in FACTORS for stat in ("mean", "spread", "min")
)
DESCRIPTION_NAMES = (
    *(f"s{s}_{'rgb'[c]}_{n}" for s in SCALES for c in range(3) for n in PER_CHANNEL),
    *PERIOD_NAMES,
    *SPECTRUM_NAMES,
    *CROSS_SCALE_NAMES,
)
_N_PIXELS = len(DESCRIPTION_NAMES) - len(SPECTRUM_NAMES) - len(CROSS_SCALE_NAMES)
_N_SPECTRUM = _N_PIXELS + len(SPECTRUM_NAMES)
# the parts of a description that the model of real photographs models apart
BLOCKS = ((0, _N_PIXELS), (_N_PIXELS, _N_SPECTRUM), (_N_SPECTRUM, len(DESCRIPTION_NAMES)))
WIDTHS = tuple(b for _, b in BLOCKS)  # the prefixes a model of real photographs may read


def real_parts(cross_scale: bool = False) -> tuple[tuple[int, int], ...]:
    """The parts a model of real photographs is fitted with: the pixels' prediction
    and the residual's spectrum, and with `cross_scale` the cross-scale prediction too
    (an option: under the codebase protocol it raised the upscalers' AUC and lowered
    the pooled one, docs/realmodel.md, "Cross-scale prediction")."""
    return BLOCKS if cross_scale else BLOCKS[:2]


HIGH = 0.35  # cycles per pixel: where `spectrum_high`'s band begins
MIN_SIDE = 4 * max(SCALES) + 2  # the coarsest scale keeps a 4x4 core of targets
_EPS = 1e-10
_RIDGE = 1e-5  # of the mean diagonal of the normal equations
_RIDGE_CROSS = 1e-6  # the same, of the cross-scale prediction's


def to_unit(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [N, H, W, 3] (or a float tensor [N, 3, H, W] in [-1, 1]) -> float32
    [N, 3, H, W] in [0, 1]."""
    if isinstance(images, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (images.float() + 1.0) / 2.0


def describe(images: np.ndarray, batch: int = 64, width: int | None = None) -> np.ndarray:
    """[N, D] self-descriptions of uint8 images [N, H, W, 3], in batches; with
    `width` (one of `WIDTHS`), their first `width` values (the cross-scale part is
    computed only where those hold it)."""
    if len(images) == 0:
        return np.zeros((0, width or len(DESCRIPTION_NAMES)))
    return np.concatenate(
        [
            describe_images(images[i : i + batch], width).numpy()
            for i in range(0, len(images), batch)
        ]
    )


def describe_images(images: np.ndarray | torch.Tensor, width: int | None = None) -> torch.Tensor:
    """[N, width or len(DESCRIPTION_NAMES)] self-descriptions of a batch (uint8 NHWC
    or float NCHW in [-1, 1]); every image at least `MIN_SIDE` pixels a side."""
    if width is not None and width not in WIDTHS:
        raise ValueError(f"a description is cut after one of its parts {WIDTHS}, not {width}")
    x = to_unit(images)
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch of RGB images, got shape {tuple(x.shape)}")
    if min(x.shape[2:]) < MIN_SIDE:
        raise ValueError(f"images must be at least {MIN_SIDE} pixels a side, got {x.shape[2:]}")
    parts = [describe_scale(x if s == 1 else F.avg_pool2d(x, s)) for s in SCALES]
    r = high_pass(x)
    parts += [periodicity(r), spectrum(r)]
    if width is None or width > _N_SPECTRUM:
        parts.append(cross_scale(x.mean(1)))
    return torch.cat(parts, 1)[:, :width].float()


def windows(x: torch.Tensor, k: int) -> torch.Tensor:
    """[N, C * k * k, P] every k x k window of x [N, C, H, W], valid positions only:
    the values and order of `F.unfold(x, k)`, read through a strided view and copied
    once, which the CPU does faster than unfold's im2col (docs/benchmarks.md, "Scan
    throughput": the self-description 27 % faster with `upper_quantile`)."""
    n, c = x.shape[:2]
    v = x.unfold(2, k, 1).unfold(3, k, 1)  # [N, C, H', W', k, k], no copy
    return v.permute(0, 1, 4, 5, 2, 3).reshape(n, c * k * k, -1)


def upper_quantile(v: torch.Tensor, q: float) -> torch.Tensor:
    """[N] `torch.quantile(v, q, dim=1)` of v [N, M] (linear interpolation, the same
    float32 arithmetic) for q near 1: the two order statistics it reads come from a
    partial sort of the top (1 - q) of each row instead of a sort of all of it."""
    m = v.shape[1]
    rank = torch.tensor(q, dtype=v.dtype) * (m - 1)
    below = int(rank.floor())
    top = v.topk(m - below, dim=1).values  # descending: [-1] is the rank `below`
    above = top[:, -2] if m - below >= 2 else top[:, -1]
    return torch.lerp(top[:, -1], above, rank - below)


def _unfold_order() -> torch.Tensor:
    """Where `F.unfold(x, 3)`'s rows (channel-major, then the 3x3 window row by row)
    put each column of the design below: the 8 `OFFSETS` of each channel
    (offset-major), then the three centres."""
    cols = [c * 9 + (di + 1) * 3 + (dj + 1) for di, dj in OFFSETS for c in range(3)]
    return torch.tensor(cols + [c * 9 + 4 for c in range(3)])


_ORDER = _unfold_order()


def describe_scale(x: torch.Tensor) -> torch.Tensor:
    """[N, 3 * 18] the description of each channel of a batch at one scale. One Gram
    matrix of every shifted channel serves the three channels' normal equations (each
    a sub-matrix of it), and one product gives the residuals. The shifted copies are
    `F.unfold`'s 3x3 windows; their centred Gram matrix is the raw one less the
    outer product of their means (one pass over the pixels, not two)."""
    n, _, h, w = x.shape
    r = max(max(abs(di), abs(dj)) for di, dj in OFFSETS)  # the border left out
    # each channel less its mean over the targets: the windows' own means, which the
    # Gram matrix is corrected by (in float64), are then small
    x = x - x[:, :, r : h - r, r : w - r].mean((2, 3), keepdim=True)
    U = windows(x, 2 * r + 1)  # [N, 27, P] in unfold's order
    m = U.mean(2).double()
    G = (U @ U.transpose(1, 2)).double() - U.shape[2] * m[:, :, None] * m[:, None, :]
    G = G[:, _ORDER][:, :, _ORDER]  # centred, in the design's order
    k = len(OFFSETS)
    centre = [k * 3 + c for c in range(3)]  # column of channel c's centre value
    coefs, weights = [], torch.zeros(n, G.shape[1], 3, dtype=torch.float64)
    for c in range(3):
        cols = [o * 3 + c for o in range(k)] + [centre[o] for o in range(3) if o != c]
        A = G[:, cols][:, :, cols]
        lam = _RIDGE * A.diagonal(dim1=1, dim2=2).mean(1) + _EPS
        A = A + lam[:, None, None] * torch.eye(len(cols), dtype=A.dtype)
        coef = torch.linalg.solve(A, G[:, cols, centre[c]].unsqueeze(-1)).squeeze(-1)
        coefs.append(coef)
        weights[:, _ORDER[cols], c] = -coef  # in unfold's order, as U
        weights[:, _ORDER[centre[c]], c] = 1.0
    # y - X w of every target pixel, less its mean
    shift = (m[:, None, :] @ weights).transpose(1, 2).to(U.dtype)  # [N, 3, 1]
    resid = (weights.transpose(1, 2).to(U.dtype) @ U - shift).reshape(n, 3, h - 2 * r, w - 2 * r)
    y2 = G.diagonal(dim1=1, dim2=2)[:, centre] / U.shape[2]  # [N, 3] centred mean squares
    out = []
    for c in range(3):
        stats = residual_stats(resid[:, c], y2[:, c].to(U.dtype))
        out.append(torch.cat([coefs[c].to(U.dtype), stats], 1))
    return torch.cat(out, 1)


def residual_stats(r: torch.Tensor, y2: torch.Tensor) -> torch.Tensor:
    """[N, 8] gain, kurtosis, two lag-1 correlations and four phase energies of the
    residual r [N, h, w] of targets whose centred mean square is y2 [N]."""
    r2 = r * r
    e2 = r2.mean((1, 2))
    gain = torch.log(e2 + _EPS) - torch.log(y2 + _EPS)
    kurt = torch.log((r2 * r2).mean((1, 2)) / (e2**2 + _EPS) + _EPS)
    across = (r[:, :, 1:] * r[:, :, :-1]).mean((1, 2)) / (e2 + _EPS)
    down = (r[:, 1:, :] * r[:, :-1, :]).mean((1, 2)) / (e2 + _EPS)
    h, w = (r.shape[1] // 2) * 2, (r.shape[2] // 2) * 2  # whole 2x2 cells only
    cells = r2[:, :h, :w]
    phases = torch.stack([cells[:, p::2, q::2].mean((1, 2)) for p in (0, 1) for q in (0, 1)], 1)
    phases = torch.log(phases + _EPS) - torch.log(phases.mean(1, keepdim=True) + _EPS)
    return torch.cat([gain[:, None], kurt[:, None], across[:, None], down[:, None], phases], 1)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """[N, H - 2, W - 2] the fixed high-pass residual of a batch x [N, 3, H, W] in
    [0, 1]: each pixel minus the mean of its 4 neighbours, averaged over the channels."""
    r = x[:, :, 1:-1, 1:-1] - 0.25 * (
        x[:, :, :-2, 1:-1] + x[:, :, 2:, 1:-1] + x[:, :, 1:-1, :-2] + x[:, :, 1:-1, 2:]
    )
    return r.mean(1)


def periodicity(r: torch.Tensor) -> torch.Tensor:
    """[N, len(PERIOD_NAMES)] how periodic a high-pass residual r [N, h, w]
    (`high_pass`) is: per period and axis, the spread of its log energy over the
    phases; per lag and axis, its magnitude's correlation."""
    e = r**2
    out = []
    for p in PERIODS:
        cells = e[:, : (e.shape[1] // p) * p, : (e.shape[2] // p) * p]  # whole periods only
        rows = torch.stack([cells[:, i::p].mean((1, 2)) for i in range(p)], 1)
        cols = torch.stack([cells[:, :, i::p].mean((1, 2)) for i in range(p)], 1)
        out += [torch.log(rows + _EPS).std(1), torch.log(cols + _EPS).std(1)]
    a = r.abs() - r.abs().mean((1, 2), keepdim=True)
    var = (a**2).mean((1, 2)) + _EPS
    for k in LAGS:
        out.append((a[:, :, k:] * a[:, :, :-k]).mean((1, 2)) / var)
        out.append((a[:, k:] * a[:, :-k]).mean((1, 2)) / var)
    return torch.stack(out, 1)


def spectrum(r: torch.Tensor) -> torch.Tensor:
    """[N, len(SPECTRUM_NAMES)] the shape of a high-pass residual's (`high_pass`)
    amplitude spectrum: peakiness, strongest lines, high-frequency share, flatness
    (the module's docstring). A flat image (no residual) gives finite values."""
    n = r.shape[0]
    mag = torch.fft.fft2(r - r.mean((1, 2), keepdim=True)).abs()
    fy = torch.fft.fftfreq(mag.shape[1]).abs()[:, None]
    fx = torch.fft.fftfreq(mag.shape[2]).abs()[None, :]
    high = (torch.maximum(fy, fx) > HIGH).reshape(-1)
    mag = mag.reshape(n, -1)
    med = mag.median(1).values + _EPS
    power = mag**2
    total = power.sum(1) + _EPS
    mean_log_power = torch.log(power + _EPS).mean(1)
    return torch.stack(
        [
            torch.log(mag.mean(1) / med + _EPS),
            torch.log(upper_quantile(mag, 0.99) / med + _EPS),
            power[:, high].sum(1) / total,
            mean_log_power - torch.log(power.mean(1) + _EPS),
        ],
        1,
    )


def cross_scale(y: torch.Tensor) -> torch.Tensor:
    """[N, len(CROSS_SCALE_NAMES)] how well each image's coarser versions predict it
    (the module's docstring): y [N, H, W] the luminance in [0, 1]. Per factor, one
    Gram matrix of the 3x3 parents (and a constant) serves the k x k phases' normal
    equations (ridge-regularized, in float64); the border's parents repeat the edge."""
    n = y.shape[0]
    out = []
    for k in FACTORS:
        h, w = (y.shape[1] // k) * k, (y.shape[2] // k) * k
        fine = y[:, :h, :w].double()
        parent = F.avg_pool2d(fine[:, None], k)  # [N, 1, h/k, w/k]
        U = windows(F.pad(parent, (1, 1, 1, 1), mode="replicate"), 3)  # [N, 9, P]
        U = torch.cat([U, torch.ones_like(U[:, :1])], 1)
        G = U @ U.transpose(1, 2)
        lam = _RIDGE_CROSS * G.diagonal(dim1=1, dim2=2).mean(1)
        G = G + lam[:, None, None] * torch.eye(G.shape[1], dtype=G.dtype)
        # [N, P, k * k]: each phase's fine pixels, in the parents' order
        T = torch.stack([fine[:, a::k, b::k].reshape(n, -1) for a in range(k) for b in range(k)], 2)
        coef = torch.linalg.solve(G, U @ T)  # [N, 10, k * k]
        resid = T - U.transpose(1, 2) @ coef
        detail = T - parent.reshape(n, -1, 1)
        gain = torch.log((resid**2).mean(1) + _EPS) - torch.log((detail**2).mean(1) + _EPS)
        out += [gain.mean(1), gain.std(1), gain.min(1).values]
    return torch.stack(out, 1).float()
