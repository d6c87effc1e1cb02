"""RED's four fingerprint constraints and a supervised contrastive term.

Notation (as in docs/red_notes.md): F is the fingerprint [B, 3, H, W] the FEN
estimates, g = 0.299 F_R + 0.587 F_G + 0.114 F_B its luma, and
S = |fftshift(DFT2(g))| its centred magnitude spectrum. Departures from RED's
released code, and why:

* the DFT is orthonormal (Parseval: sum |X|^2 = sum g^2), so loss weights do not
  change with image size;
* the low-frequency window scales with the image (RED fixes a 51 x 51 window,
  which at 64 px covers 63 % of all frequencies): half-size r = round(0.195 * side),
  RED's relative window at 128 px;
* the repetition term averages a per-image maximum (RED takes one maximum over the
  whole batch, so one image and one bin get the gradient per step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmtrace.core.spectrum import centred_magnitude

LUMA = (0.299, 0.587, 0.114)
WINDOW_FRACTION = 25 / 128


def luma(fp: torch.Tensor) -> torch.Tensor:
    """g = 0.299 F_R + 0.587 F_G + 0.114 F_B, [B, H, W]."""
    w = fp.new_tensor(LUMA).view(1, 3, 1, 1)
    return (fp * w).sum(dim=1)


def spectrum(fp: torch.Tensor) -> torch.Tensor:
    """S = |fftshift(DFT2(g))| with an orthonormal DFT, DC at (H//2, W//2)."""
    return centred_magnitude(luma(fp))


def low_window(h: int, w: int, device=None, fraction: float = WINDOW_FRACTION) -> torch.Tensor:
    """Boolean mask [H, W] of the centred low-frequency square |u|, |v| <= r."""
    ry, rx = max(1, round(fraction * h)), max(1, round(fraction * w))
    yy = (torch.arange(h, device=device) - h // 2).abs() <= ry
    xx = (torch.arange(w, device=device) - w // 2).abs() <= rx
    return yy[:, None] & xx[None, :]


def magnitude_loss(fp: torch.Tensor) -> torch.Tensor:
    """L_mag = mean(g^2): the fingerprint is a small trace, not the picture."""
    return luma(fp).pow(2).mean()


def low_frequency_loss(s: torch.Tensor, fraction: float = WINDOW_FRACTION) -> torch.Tensor:
    """L_low = mean over the low window of S^2: generator traces live at high
    frequencies, content at low ones."""
    mask = low_window(s.shape[-2], s.shape[-1], s.device, fraction)
    return s[..., mask].pow(2).mean()


def repetition_loss(s: torch.Tensor, fraction: float = WINDOW_FRACTION) -> torch.Tensor:
    """L_rep = -mean_b max_{(u,v) outside the low window} S_b(u, v): up-sampling
    repeats a pattern, which shows as a strong high-frequency peak."""
    mask = low_window(s.shape[-2], s.shape[-1], s.device, fraction)
    high = s.masked_fill(mask, float("-inf")).flatten(1)
    return -high.max(dim=1).values.mean()


def symmetry_loss(s: torch.Tensor) -> torch.Tensor:
    """L_sym = mean (S - S^T)^2, transposing the two frequency axes (needs H = W)."""
    return (s - s.transpose(-2, -1)).pow(2).mean()


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) on embeddings z [B, D]:
    L = mean_i -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p / tau) /
                                              sum_{a != i} exp(z_i.z_a / tau) ),
    z normalized to unit length, P(i) the other samples with i's label; anchors
    without a positive are skipped."""
    z = F.normalize(z, dim=1)
    sim = z @ z.t() / tau
    n = z.shape[0]
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    if not has.any():
        return z.new_zeros(())
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(dim=1)[has]) / n_pos[has]
    return per_anchor.mean()
