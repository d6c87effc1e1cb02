"""The ten loss types GMs in the zoo are trained with, one small function each.

Adversarial losses come as (discriminator loss, generator loss) pairs over the
discriminator's raw outputs: `d_real = D(x)`, `d_fake = D(G(z))`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ---- pixel / distance -------------------------------------------------------


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 = mean |x - y|."""
    return (x - y).abs().mean()


def mse_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE = mean (x - y)^2 over pixels."""
    return (x - y).pow(2).mean()


def l2_feature_loss(
    fx: list[torch.Tensor], fy: list[torch.Tensor], match_means: bool = False
) -> torch.Tensor:
    """L2 = sum_l ||phi_l(x) - phi_l(y)||_2^2 / |phi_l|: squared distance between
    feature maps (perceptual loss). With `match_means`, the batch means of the
    maps are compared instead (feature matching, Salimans et al. 2016):
    sum_l ||E phi_l(x) - E phi_l(y)||^2 / |phi_l|."""
    total = fx[0].new_zeros(())
    for a, b in zip(fx, fy, strict=True):
        if match_means:
            a, b = a.mean(0), b.mean(0)
        total = total + (a - b).pow(2).mean()
    return total


def mmd_loss(
    x: torch.Tensor, y: torch.Tensor, sigmas: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
) -> torch.Tensor:
    """Kernel maximum mean discrepancy, biased estimate, Gaussian kernels summed over
    bandwidths: MMD^2 = E k(x,x') + E k(y,y') - 2 E k(x,y),
    k(a,b) = sum_s exp(-||a-b||^2 / (2 s^2 d)) with d the feature dimension."""
    x, y = x.flatten(1), y.flatten(1)
    z = torch.cat([x, y])
    d2 = torch.cdist(z, z).pow(2) / z.shape[1]
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in sigmas)
    n = x.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


# ---- adversarial / divergence ----------------------------------------------


def adv_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """ADV (minimax BCE), discriminator: -E log s(D(x)) - E log(1 - s(D(G(z))))."""
    return F.binary_cross_entropy_with_logits(
        d_real, torch.ones_like(d_real)
    ) + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake))


def adv_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """ADV, non-saturating generator loss: -E log s(D(G(z)))."""
    return F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))


def hinge_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """HINGE, discriminator: E max(0, 1 - D(x)) + E max(0, 1 + D(G(z)))."""
    return F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()


def hinge_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """HINGE, generator: -E D(G(z))."""
    return -d_fake.mean()


def ls_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """LS (least squares GAN), discriminator: 1/2 E (D(x) - 1)^2 + 1/2 E D(G(z))^2."""
    return 0.5 * ((d_real - 1).pow(2).mean() + d_fake.pow(2).mean())


def ls_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """LS, generator: 1/2 E (D(G(z)) - 1)^2."""
    return 0.5 * (d_fake - 1).pow(2).mean()


def wgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """WGAN critic: E D(G(z)) - E D(x) (Kantorovich-Rubinstein dual)."""
    return d_fake.mean() - d_real.mean()


def wgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    """WGAN generator: -E D(G(z))."""
    return -d_fake.mean()


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: E (||grad_xhat D(xhat)||_2 - 1)^2, xhat = e x + (1 - e) G(z), e ~ U[0,1]."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    xhat = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(xhat)
    (grad,) = torch.autograd.grad(out.sum(), xhat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def clip_weights(critic, c: float = 0.01) -> None:
    """WGAN weight clipping: every critic parameter clamped to [-c, c]."""
    with torch.no_grad():
        for p in critic.parameters():
            p.clamp_(-c, c)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) = -1/2 sum_j (1 + log s_j^2 - m_j^2 - s_j^2), batch mean."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1).mean()


# ---- likelihood -------------------------------------------------------------


def quantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Images in [-1, 1] -> integer bins 0..levels-1."""
    return ((x.clamp(-1, 1) + 1) / 2 * (levels - 1)).round().long()


def dequantize(bins: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer bins -> bin centres in [-1, 1]."""
    return bins.float() / (levels - 1) * 2 - 1


def ce_loss(logits: torch.Tensor, target: torch.Tensor, levels: int) -> torch.Tensor:
    """CE on quantized pixels: -E log p(q(x) | .), logits [B, levels, C, H, W] over
    `levels` bins per channel and pixel, q the quantizer."""
    return F.cross_entropy(logits, quantize(target, levels))


def vq_loss(z: torch.Tensor, zq: torch.Tensor, beta: float = 0.25) -> torch.Tensor:
    """VQ-VAE's two squared distances between feature maps (L2 type): the codebook
    term ||sg(z) - e||^2 pulls codes to the encoder's outputs, the commitment term
    beta ||z - sg(e)||^2 keeps the encoder near its codes (sg = stop-gradient)."""
    return F.mse_loss(zq, z.detach()) + beta * F.mse_loss(z, zq.detach())


def flow_nll(z: torch.Tensor, logdet: torch.Tensor, bins: int = 256) -> torch.Tensor:
    """Negative log-likelihood of quantized pixels under a normalizing flow, in bits
    per dimension (CE type): with x dequantized by uniform noise into [-1, 1],
    -log p(x_bins) = -(log N(z; 0, I) + log|det dz/dx|) + D log(bins / 2)."""
    d = z[0].numel()
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
    nll = -(log_pz + logdet) + d * math.log(bins / 2)
    return (nll / (d * math.log(2))).mean()


ADVERSARIAL = {
    "adv": (adv_d_loss, adv_g_loss),
    "hinge": (hinge_d_loss, hinge_g_loss),
    "ls": (ls_d_loss, ls_g_loss),
    "wgan": (wgan_d_loss, wgan_g_loss),
}
