"""Families modelled on published GMs that the first zoo lacked.

========== ========= ==========================================================
name       kind      what it is
========== ========= ==========================================================
fcgan      noise     fully connected generator, no convolution (GAN, MLP GANs);
                     up to 10-30 M parameters, as published ones
cgan       noise     class-conditional conv generator (cGAN): label embedding
                     beside z, discriminator sees the label as extra channels
ddpm       noise     denoising diffusion: a small time-conditioned U-Net trained
                     to predict the noise (MSE), linear or cosine schedule,
                     ancestral (eta = 1) or DDIM (eta = 0) sampling
vqvae      translate VQ-VAE (optionally VQGAN's patch adversary): encoder,
                     vector quantizer, decoder, applied to real photographs
flow       noise     RealNVP / Glow-style normalizing flow of affine couplings,
                     trained by likelihood of the quantized pixels (CE type)
========== ========= ==========================================================

The module whose images we keep is each GM's `generator` (for DDPM the denoiser,
for a flow its inverse, z -> x); `describe()` reads its ground truth.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from gmtrace.zoo import losses as L
from gmtrace.zoo.families import (
    GM,
    Balancer,
    ConvGenerator,
    MLPGenerator,
    NoiseGAN,
    Translator,
    adversary_config,
    gan_choices,
    register_family,
)
from gmtrace.zoo.layers import (
    ACTIVATIONS,
    LAST_ACTIVATIONS,
    NORMS,
    UPSAMPLERS,
    Discriminator,
    DownBlock,
    ResBlock,
    Up,
    UpBlock,
    act,
    last_act,
    norm,
    output_to_image,
)
from gmtrace.zoo.real import CLASSES
from gmtrace.zoo.recipe import latent, make_optimizer

# ---------------------------------------------------------------- fully connected


@register_family("fcgan", "noise", "fully connected generator, no convolution")
class FCGAN(NoiseGAN):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        # at most about 30 M parameters in the output layer, as published MLP generators
        cap = max(64, 30_000_000 // (3 * res * res))
        cfg = {
            "zdim": b.pick("f_zdim", (64, 100, 128)),
            "hidden": min(cap, b.pick("f_hidden", (256, 512, 1024))),
            "hidden_layers": b.pick("f_layers", (2, 3, 4)),
            "norm": b.pick("f_norm", ("none", "batch", "layer_group")),
            "act": b.pick("f_act", ACTIVATIONS),
            "last": b.pick("f_last", LAST_ACTIVATIONS),
        }
        cfg.update(adversary_config(b))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = MLPGenerator(cfg, res)


# ---------------------------------------------------------------- conditional


class CondGenerator(nn.Module):
    """(z, class) -> [z, embed(class)] -> conv generator (plain or residual blocks)."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.zdim = cfg["zdim"]
        self.embed = nn.Embedding(CLASSES, cfg["edim"])
        body = {**cfg, "zdim": cfg["zdim"] + cfg["edim"], "start": "linear"}
        self.body = ConvGenerator(body, res, residual=cfg["residual"])

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([z, self.embed(y)], dim=1))

    def example_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(2, self.zdim), torch.zeros(2, dtype=torch.long)


class CondDiscriminator(nn.Module):
    """A discriminator that sees the class as one-hot channels beside the image;
    `labels` is set before each call (the Adversary calls D(x) only)."""

    def __init__(self, res: int, spectral: bool):
        super().__init__()
        self.D = Discriminator(res, spectral=spectral, in_ch=3 + CLASSES)
        self.labels: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, return_features: bool = False):
        y = self.labels[: x.shape[0]]
        maps = F.one_hot(y, CLASSES).float()[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.D(torch.cat([x, maps], dim=1), return_features)


@register_family("cgan", "noise", "class-conditional conv generator (cGAN)")
class CGAN(NoiseGAN):
    conditional = True

    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = gan_choices(b)
        cfg["edim"] = b.pick("c_edim", (8, 16, 32))
        cfg["residual"] = b.pick("c_residual", (False, True))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = CondGenerator(cfg, res)
        spectral = cfg["adversarial"] == "hinge"
        adv = self.adversary
        adv.D = CondDiscriminator(res, spectral)
        if not (adv.kind == "wgan" and adv.wgan_mode == "clip"):
            adv.opt = make_optimizer(adv.D.parameters(), self.recipe)
        else:
            adv.opt = torch.optim.RMSprop(adv.D.parameters(), lr=5e-5)

    def fake(self, n: int, device, sampling: bool = False, y=None) -> torch.Tensor:
        if y is None:
            y = torch.randint(0, CLASSES, (n,), device=device)
        z = latent(n, self.zdim, self.recipe, device, sampling)
        return output_to_image(self.generator(z, y), self.last)

    def train_step(self, real: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        self.adversary.D.labels = labels
        fake = self.fake(real.shape[0], real.device, y=labels)
        d = self.adversary.d_step(real, fake)
        g = self.adversary.g_loss(fake, real, self.cfg.get("feature_matching", False))
        self._g_update(g)
        return {"d": d, "g": g.item()}


# ---------------------------------------------------------------- diffusion


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (Transformer / DDPM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


class TimeBlock(nn.Module):
    """conv - norm - act, plus the projected time embedding, then conv - norm - act."""

    gmtrace_block = True

    def __init__(self, cin: int, cout: int, tdim: int, norm_kind: str, act_kind: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.n1, self.a1 = norm(norm_kind, cout), act(act_kind)
        self.time = nn.Linear(tdim, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.n2, self.a2 = norm(norm_kind, cout), act(act_kind)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.a1(self.n1(self.conv1(x))) + self.time(temb)[:, :, None, None]
        return self.a2(self.n2(self.conv2(h)))


class TimeUNet(nn.Module):
    """The DDPM denoiser: eps(x_t, t). Levels of TimeBlocks, down by strided conv or
    pooling, up by the configured up-sampler, U-Net skips by concatenation."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.res, w, depth = res, cfg["width"], cfg["depth"]
        self.tdim = 4 * w
        self.time = nn.Sequential(nn.Linear(w, self.tdim), act(cfg["act"]))
        chans = [w * 2**i for i in range(depth + 1)]
        self.inp = nn.Conv2d(3, w, 3, 1, 1)
        nk, ak = cfg["norm"], cfg["act"]
        self.enc = nn.ModuleList(
            [TimeBlock(chans[i], chans[i], self.tdim, nk, ak) for i in range(depth)]
        )
        self.down = nn.ModuleList(
            [DownBlock(chans[i], chans[i + 1], nk, ak, pool=cfg["pool"]) for i in range(depth)]
        )
        self.mid = TimeBlock(chans[-1], chans[-1], self.tdim, nk, ak)
        self.up = nn.ModuleList(
            [Up(cfg["up"], chans[i + 1], chans[i]) for i in reversed(range(depth))]
        )
        self.dec = nn.ModuleList(
            [TimeBlock(2 * chans[i], chans[i], self.tdim, nk, ak) for i in reversed(range(depth))]
        )
        self.out = nn.Conv2d(w, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(_timestep_embedding(t, self.inp.out_channels))
        h, skips = self.inp(x), []
        for block, down in zip(self.enc, self.down, strict=True):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid(h, temb)
        for up, block in zip(self.up, self.dec, strict=True):
            h = block(torch.cat([up(h), skips.pop()], dim=1), temb)
        return self.out(h)

    def example_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(2, 3, self.res, self.res), torch.zeros(2, dtype=torch.long)


def noise_schedule(kind: str, steps: int) -> torch.Tensor:
    """alpha-bar_t for t = 0..steps-1: linear betas 1e-4..0.02 (Ho et al.) or the
    cosine schedule (Nichol and Dhariwal)."""
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02 * 1000 / steps, steps).clamp(max=0.999)
        return torch.cumprod(1 - betas, dim=0)
    s = 0.008
    t = torch.linspace(0, steps, steps + 1) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return (f[1:] / f[0]).clamp(1e-5, 1.0)


@register_family("ddpm", "noise", "denoising diffusion U-Net, ancestral or DDIM sampling")
class DDPM(GM):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        return {
            "width": b.pick("d_width", (8, 16, 24)),
            "depth": b.pick("d_depth", (2, 3)),
            "norm": b.pick("d_norm", NORMS),
            "act": b.pick("d_act", ("silu", "gelu", "relu", "leaky_relu")),
            "up": b.pick("d_up", UPSAMPLERS),
            "pool": b.pick("d_pool", (False, True)),
            "schedule": b.pick("d_schedule", ("linear", "cosine")),
            "timesteps": b.pick("d_T", (200, 500, 1000)),
            "sampler": b.pick("d_sampler", ("ancestral", "ddim")),
            "sample_steps": b.pick("d_sample_steps", (10, 20, 40)),
        }

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = TimeUNet(cfg, res)
        self.register_buffer("abar", noise_schedule(cfg["schedule"], cfg["timesteps"]))

    def loss_types(self) -> tuple[str, ...]:
        return ("mse",)

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        t = torch.randint(0, self.cfg["timesteps"], (real.shape[0],), device=real.device)
        a = self.abar[t][:, None, None, None]
        eps = torch.randn_like(real)
        loss = L.mse_loss(self.generator(a.sqrt() * real + (1 - a).sqrt() * eps, t), eps)
        self._g_update(loss)
        return {"mse": loss.item()}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        """Generalized DDIM over `sample_steps` evenly spaced timesteps: eta = 1 is
        the ancestral (DDPM) sampler on the respaced chain, eta = 0 is DDIM."""
        device = self.abar.device
        eta = 1.0 if self.cfg["sampler"] == "ancestral" else 0.0
        ts = torch.linspace(self.cfg["timesteps"] - 1, 0, self.cfg["sample_steps"]).long()
        x = torch.randn(n, 3, self.res, self.res, device=device) * self.recipe.truncation
        for i, t in enumerate(ts.tolist()):
            a = self.abar[t]
            a_prev = self.abar[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0, device=device)
            eps = self.generator(x, torch.full((n,), t, device=device, dtype=torch.long))
            x0 = ((x - (1 - a).sqrt() * eps) / a.sqrt()).clamp(-1, 1)
            sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)).clamp(min=0).sqrt()
            direction = (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps
            x = a_prev.sqrt() * x0 + direction + sigma * torch.randn_like(x)
        return x.clamp(-1, 1)


# ---------------------------------------------------------------- VQ-VAE


class Quantizer(nn.Module):
    """Nearest codebook vector per position, with the straight-through gradient."""

    gmtrace_role = "none"

    def __init__(self, codes: int, dim: int):
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(codes, dim) / math.sqrt(dim))
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        idx = torch.cdist(flat, self.codebook).argmin(dim=1)
        zq = self.codebook[idx].view(b, h, w, c).permute(0, 3, 1, 2)
        self.last = (z, zq)  # for the VQ loss
        return z + (zq - z).detach()


class VQAutoencoder(nn.Module):
    """x -> down blocks -> 1x1 conv to the code dimension -> quantizer -> decoder of
    residual blocks and up-sampling blocks -> RGB -> last activation."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.res, w, n = res, cfg["width"], cfg["n_down"]
        chans = [w * 2**i for i in range(n + 1)]
        nk, ak = cfg["norm"], cfg["act"]
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1),
            *[DownBlock(chans[i], chans[i + 1], nk, ak, pool=False) for i in range(n)],
            nn.Conv2d(chans[-1], cfg["code_dim"], 1),
        )
        self.quantizer = Quantizer(cfg["codes"], cfg["code_dim"])
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg["code_dim"], chans[-1], 3, 1, 1),
            *[ResBlock(chans[-1], nk, ak) for _ in range(cfg["n_res"])],
            *[UpBlock(cfg["up"], chans[i + 1], chans[i], nk, ak) for i in reversed(range(n))],
            nn.Conv2d(w, 3, 3, 1, 1),
            last_act(cfg["last"]),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.quantizer(self.encoder(x)))

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, 3, self.res, self.res)


@register_family("vqvae", "translate", "VQ-VAE (or VQGAN) autoencoder applied to real photos")
class VQVAE(Translator):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = {
            "task": "autoencode",
            "width": b.pick("q_width", (8, 16, 32)),
            "n_down": b.pick("q_down", (2, 3)),
            "n_res": b.pick("q_res", (0, 1, 2)),
            "codes": b.pick("q_codes", (32, 128, 512)),
            "code_dim": b.pick("q_dim", (8, 16, 32)),
            "up": b.pick("q_up", UPSAMPLERS),
            "norm": b.pick("q_norm", NORMS),
            "act": b.pick("q_act", ACTIVATIONS),
            "last": b.pick("q_last", LAST_ACTIVATIONS),
            "recon": b.pick("q_recon", ("l1", "mse")),
            "perceptual": False,
        }
        extra = b.pick("q_gan", (None, "hinge", "adv"))  # VQGAN: a patch adversary
        if extra:
            cfg["adversarial"] = extra
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = VQAutoencoder(cfg, res)

    def loss_types(self) -> tuple[str, ...]:
        return tuple(sorted(set(super().loss_types()) | {"l2"}))  # VQ terms are L2

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        out = self.translate(real)
        rec = L.l1_loss(out, real) if self.cfg["recon"] == "l1" else L.mse_loss(out, real)
        z, zq = self.generator.quantizer.last
        loss = 10.0 * rec + L.vq_loss(z, zq)
        d = 0.0
        if self.adversary is not None:
            d = self.adversary.d_step(real, out)
            loss = loss + 0.1 * self.adversary.g_loss(out)
        self._g_update(loss)
        return {"loss": loss.item(), "rec": rec.item(), "d": d}


# ---------------------------------------------------------------- normalizing flow


class Coupling(nn.Module):
    """Affine coupling: the second half of the channels is scaled and shifted by a
    conv net of the first half; the log-scale is bounded by tanh."""

    gmtrace_block = True

    def __init__(self, ch: int, hidden: int, act_kind: str, k: int):
        super().__init__()
        self.half = ch // 2
        self.net = nn.Sequential(
            nn.Conv2d(self.half, hidden, k, 1, k // 2),
            act(act_kind),
            nn.Conv2d(hidden, hidden, 1),
            act(act_kind),
            nn.Conv2d(hidden, 2 * (ch - self.half), k, 1, k // 2),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(a).chunk(2, dim=1)
        return torch.tanh(s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = x[:, : self.half], x[:, self.half :]
        s, t = self._scale_shift(a)
        return torch.cat([a, b * s.exp() + t], 1), s.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        a, b = y[:, : self.half], y[:, self.half :]
        s, t = self._scale_shift(a)
        return torch.cat([a, (b - t) * (-s).exp()], 1)


class Flow(nn.Module):
    """x [B, 3, H, W] -> squeeze (2x2 space-to-depth) -> couplings with channel
    reversal between them -> z. `forward` is the generator, z -> x (the inverse)."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.res, ch = res, 12
        self.couplings = nn.ModuleList(
            [
                Coupling(ch, cfg["hidden"], cfg["act"], cfg["kernel"])
                for _ in range(cfg["n_coupling"])
            ]
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, logdet = F.pixel_unshuffle(x, 2), torch.zeros(x.shape[0], device=x.device)
        for c in self.couplings:
            h, ld = c(h)
            h, logdet = h.flip(1), logdet + ld
        return h, logdet

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for c in reversed(self.couplings):
            h = c.inverse(h.flip(1))
        return F.pixel_shuffle(h, 2)

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, 12, self.res // 2, self.res // 2)


@register_family("flow", "noise", "normalizing flow of affine couplings (RealNVP / Glow)")
class FlowGM(GM):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        return {
            "n_coupling": b.pick("w_coupling", (4, 8, 12)),
            "hidden": b.pick("w_hidden", (16, 32, 64)),
            "kernel": b.pick("w_kernel", (3, 5)),
            "act": b.pick("w_act", ACTIVATIONS),
        }

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = Flow(cfg, res)

    def loss_types(self) -> tuple[str, ...]:
        return ("ce",)

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        x = real + torch.rand_like(real) * (2 / 256)  # uniform dequantization of 8-bit bins
        z, logdet = self.generator.encode(x)
        loss = L.flow_nll(z, logdet)
        self._g_update(loss)
        return {"bpd": loss.item()}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        z = torch.randn(n, 12, self.res // 2, self.res // 2, device=device) * self.recipe.truncation
        return self.generator(z).clamp(-1, 1)
