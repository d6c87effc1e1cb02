"""Generator families: registered, trainable GMs built from sampled configs.

A family samples a config (`sample_config`) and builds a `GM` from it. Every GM
exposes the module whose images we keep (`generator`, the thing `describe()`
reads), the loss types it is trained with (`loss_types()`), one optimization
step on a batch of real images (`train_step`) and image sampling (`sample`).

Families (timm-style registry; `zoo.catalog.create_gm(family, config, res)` builds
any registered family, these and those of `zoo.published`):

========== ========= ==========================================================
name       kind      what it is
========== ========= ==========================================================
dcgan      noise     plain up-sampling blocks (DCGAN / resize-conv)
resgan     noise     residual up-sampling blocks (SNGAN / BigGAN style)
stylegan   noise     mapping MLP, modulated conv or AdaIN, noise injection
vae        noise     VAE; images are decoded from prior samples
catvae     noise     VAE whose decoder outputs per-pixel categorical logits (CE)
mmd        noise     moment-matching generator (GMMN), MLP or conv, kernel MMD
unet       translate U-Net with skips, applied to degraded real photographs
resnet     translate encoder - residual blocks - decoder (CycleGAN / pix2pixHD)
========== ========= ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmtrace.zoo import losses as L
from gmtrace.zoo.introspect import describe
from gmtrace.zoo.layers import (
    ACTIVATIONS,
    LAST_ACTIVATIONS,
    NORMS,
    UPSAMPLERS,
    AdaIN,
    Discriminator,
    DownBlock,
    ModulatedConv2d,
    NoiseInjection,
    PixelNorm,
    RandomFeatures,
    ResBlock,
    ResUpBlock,
    Up,
    UpBlock,
    act,
    last_act,
    norm,
    output_to_image,
)
from gmtrace.zoo.recipe import Recipe, initialize, latent, make_optimizer

TASKS = (
    "super_resolution",
    "denoising",
    "inpainting",
    "colorization",
    "color_transfer",
    "deblurring",
)

# ---------------------------------------------------------------------------
# config sampling


class Balancer:
    """Picks choices so that, over many GMs, every option of every choice comes up
    about equally often: each choice cycles through a shuffled list of its options."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.queues: dict[str, list] = {}

    def pick(self, key: str, options) -> object:
        options = list(options)
        q = self.queues.get(key)
        if not q:
            q = [options[i] for i in self.rng.permutation(len(options))]
            self.queues[key] = q
        return q.pop()

    def uniform(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))


@dataclass
class Family:
    name: str
    kind: str  # "noise" or "translate"
    sample_config: Callable[[Balancer, int], dict]
    build: Callable[[dict, int], GM]
    summary: str


# filled by `register_family` as family modules are imported; look families up in
# `zoo.catalog`, which imports every family module
FAMILIES: dict[str, Family] = {}


def register_family(name: str, kind: str, summary: str):
    def wrap(cls):
        FAMILIES[name] = Family(
            name, kind, cls.sample_config, lambda cfg, res: cls(cfg, res), summary
        )
        cls.family = name
        cls.kind = kind
        return cls

    return wrap


def n_ups(res: int, start: int = 4) -> int:
    n = int(round(math.log2(res / start)))
    if start * 2**n != res:
        raise ValueError(f"resolution {res} must be {start} times a power of two")
    return n


def adversary_config(b: Balancer, options=("adv", "hinge", "ls", "wgan")) -> dict:
    kind = b.pick("adversarial", options)
    cfg = {"adversarial": kind}
    if kind == "wgan":
        cfg["wgan_mode"] = b.pick("wgan_mode", ("gp", "clip"))
    return cfg


# ---------------------------------------------------------------------------
# shared training machinery


class Adversary:
    """The discriminator side of a GM's training: D, its optimizer and loss kind."""

    def __init__(
        self,
        kind: str,
        res: int,
        wgan_mode: str = "gp",
        patch: bool = False,
        width: int = 32,
        recipe: Recipe | None = None,
    ):
        self.kind, self.wgan_mode = kind, wgan_mode
        self.D = Discriminator(res, width=width, patch=patch, spectral=kind == "hinge")
        if kind == "wgan" and wgan_mode == "clip":  # the original WGAN's optimizer
            self.opt = torch.optim.RMSprop(self.D.parameters(), lr=5e-5)
        else:
            self.opt = make_optimizer(self.D.parameters(), recipe or Recipe())
        self.d_loss, self.g_loss_fn = L.ADVERSARIAL[kind]

    def to(self, device) -> Adversary:
        self.D.to(device)
        return self

    def d_step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        fake = fake.detach()
        loss = self.d_loss(self.D(real), self.D(fake))
        if self.kind == "wgan" and self.wgan_mode == "gp":
            loss = loss + 10.0 * L.gradient_penalty(self.D, real, fake)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.kind == "wgan" and self.wgan_mode == "clip":
            L.clip_weights(self.D)
        return loss.item()

    def g_loss(
        self, fake: torch.Tensor, real: torch.Tensor | None = None, feature_matching: bool = False
    ) -> torch.Tensor:
        out, feats = self.D(fake, return_features=True)
        loss = self.g_loss_fn(out)
        if feature_matching and real is not None:
            with torch.no_grad():
                _, real_feats = self.D(real, return_features=True)
            loss = loss + L.l2_feature_loss(feats, real_feats, match_means=True)
        return loss


class GM(nn.Module):
    """Base class: a generator, the losses it trains with, how to train and sample."""

    family = "base"
    kind = "noise"
    conditional = False  # True: train_step(real, labels) and samples of random classes

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.cfg, self.res = dict(cfg), res
        self.recipe = Recipe.from_dict(cfg.get("recipe"))
        self.adversary: Adversary | None = None

    def loss_types(self) -> tuple[str, ...]:
        raise NotImplementedError

    def setup(self, device: torch.device) -> None:
        """Initialize the trained networks as the recipe says and create the
        optimizer (after the module is on its device)."""
        for part in (self.generator, getattr(self, "encoder", None)):
            if part is not None:
                initialize(part, self.recipe)
        self.to(device)
        if self.adversary is not None:
            self.adversary.to(device)
        self.opt = make_optimizer(self.trainable(), self.recipe)

    def trainable(self):
        return self.parameters()

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        """n images in [-1, 1] ([n, 3, res, res]); translators need `real` inputs."""
        raise NotImplementedError

    def _g_update(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class NoiseGAN(GM):
    """Shared training of noise-to-image GANs: z -> G -> D, chosen adversarial loss,
    optional feature matching (L2 between D's mean feature maps)."""

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.zdim = cfg["zdim"]
        self.last = cfg["last"]
        self.adversary = Adversary(
            cfg["adversarial"], res, cfg.get("wgan_mode", "gp"), recipe=self.recipe
        )

    def loss_types(self) -> tuple[str, ...]:
        return (self.cfg["adversarial"],) + (("l2",) if self.cfg.get("feature_matching") else ())

    def trainable(self):
        return self.generator.parameters()

    def fake(self, n: int, device, sampling: bool = False) -> torch.Tensor:
        z = latent(n, self.zdim, self.recipe, device, sampling)
        return output_to_image(self.generator(z), self.last)

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        fake = self.fake(real.shape[0], real.device)
        d = self.adversary.d_step(real, fake)
        g = self.adversary.g_loss(fake, real, self.cfg.get("feature_matching", False))
        self._g_update(g)
        return {"d": d, "g": g.item()}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        return self.fake(n, device, sampling=True).clamp(-1, 1)


def gan_choices(b: Balancer) -> dict:
    cfg = {
        "zdim": b.pick("zdim", (32, 64, 128)),
        "up": b.pick("up", UPSAMPLERS),
        "norm": b.pick("norm", NORMS),
        "act": b.pick("act", ACTIVATIONS),
        "last": b.pick("last", LAST_ACTIVATIONS),
        "width": b.pick("width", (8, 16, 32)),
        "feature_matching": b.pick("feature_matching", (False, False, True)),
    }
    cfg.update(adversary_config(b))
    return cfg


class _Start(nn.Module):
    """z -> 4x4 map: a linear projection or a transposed conv from 1x1."""

    def __init__(self, kind: str, zdim: int, ch: int):
        super().__init__()
        self.kind, self.ch = kind, ch
        self.proj = (
            nn.Linear(zdim, ch * 16) if kind == "linear" else nn.ConvTranspose2d(zdim, ch, 4, 1, 0)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "linear":
            return self.proj(z).view(z.shape[0], self.ch, 4, 4)
        return self.proj(z.view(z.shape[0], -1, 1, 1))


class ConvGenerator(nn.Module):
    """z -> start (4x4) -> norm/act -> up-sampling blocks -> conv to RGB -> last act."""

    def __init__(self, cfg: dict, res: int, residual: bool):
        super().__init__()
        self.zdim = cfg["zdim"]
        n = n_ups(res)
        chans = [min(cfg["width"] * 2 ** (n - i), 256) for i in range(n + 1)]
        self.start = _Start(cfg.get("start", "linear"), self.zdim, chans[0])
        self.stem = nn.Sequential(norm(cfg["norm"], chans[0]), act(cfg["act"]))
        if residual:
            blocks = [
                ResUpBlock(cfg["up"], chans[i], chans[i + 1], cfg["norm"], cfg["act"])
                for i in range(n)
            ]
            tail = [norm(cfg["norm"], chans[-1]), act(cfg["act"])]
        else:
            blocks = [
                UpBlock(
                    cfg["up"],
                    chans[i],
                    chans[i + 1],
                    cfg["norm"],
                    cfg["act"],
                    extra=cfg.get("extra_convs", 0),
                )
                for i in range(n)
            ]
            tail = []
        self.blocks = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(*tail, nn.Conv2d(chans[-1], 3, 3, 1, 1), last_act(cfg["last"]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_rgb(self.blocks(self.stem(self.start(z))))

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, self.zdim)


@register_family("dcgan", "noise", "plain up-sampling blocks (DCGAN, resize-conv)")
class DCGAN(NoiseGAN):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = gan_choices(b)
        cfg["start"] = b.pick("start", ("linear", "transposed"))
        cfg["extra_convs"] = b.pick("extra_convs", (0, 1, 2))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = ConvGenerator(cfg, res, residual=False)


@register_family("resgan", "noise", "residual up-sampling blocks (SNGAN, BigGAN style)")
class ResGAN(NoiseGAN):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = gan_choices(b)
        cfg["start"] = "linear"
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = ConvGenerator(cfg, res, residual=True)


# ---------------------------------------------------------------------------
# style-based GAN


class ConstInput(nn.Module):
    """The learned constant 4x4 input of a style-based synthesis network."""

    gmtrace_role = "none"

    def __init__(self, ch: int):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, ch, 4, 4))

    def forward(self, n: int) -> torch.Tensor:
        return self.const.expand(n, -1, -1, -1)


class StyleLayer(nn.Module):
    """conv (modulated, or plain followed by AdaIN) + noise injection + activation."""

    def __init__(self, cin: int, cout: int, wdim: int, mode: str, act_kind: str):
        super().__init__()
        self.mode = mode
        self.conv = (
            ModulatedConv2d(cin, cout, wdim) if mode == "demod" else nn.Conv2d(cin, cout, 3, 1, 1)
        )
        self.noise = NoiseInjection(cout)
        self.act = act(act_kind)
        self.adain = AdaIN(cout, wdim) if mode == "adain" else None

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = self.conv(x, w) if self.mode == "demod" else self.conv(x)
        x = self.act(self.noise(x))
        return self.adain(x, w) if self.adain is not None else x


class StyleBlock(nn.Module):
    """Up-sample, two style layers, and a 1x1 to-RGB (modulated, no demodulation)."""

    gmtrace_block = True

    def __init__(
        self, up: str, cin: int, cout: int, wdim: int, mode: str, act_kind: str, first: bool
    ):
        super().__init__()
        self.up = None if first else Up(up, cin, cout)
        c = cin if first else cout
        self.layers = nn.ModuleList(
            [
                StyleLayer(c, cout, wdim, mode, act_kind),
                StyleLayer(cout, cout, wdim, mode, act_kind),
            ]
        )
        self.to_rgb = ModulatedConv2d(cout, 3, wdim, k=1, demod=False)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.up is not None:
            x = self.up(x)
        for layer in self.layers:
            x = layer(x, w)
        return x, self.to_rgb(x, w)


class StyleGenerator(nn.Module):
    """z -> PixelNorm -> mapping MLP -> w; const 4x4 -> style blocks -> RGB.

    With `skip_rgb` the RGB outputs of all resolutions are up-sampled and summed
    (StyleGAN2's skip generator); otherwise only the last block's RGB is used.
    """

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.zdim, wdim = cfg["zdim"], cfg["wdim"]
        mapping: list[nn.Module] = [PixelNorm()]
        d = self.zdim
        for _ in range(cfg["n_mapping"]):
            mapping += [nn.Linear(d, wdim), nn.LeakyReLU(0.2)]
            d = wdim
        self.mapping = nn.Sequential(*mapping)
        n = n_ups(res)
        chans = [min(cfg["width"] * 2 ** (n - i), 256) for i in range(n + 1)]
        self.input = ConstInput(chans[0])
        self.blocks = nn.ModuleList(
            [
                StyleBlock(
                    cfg["up"],
                    chans[max(i - 1, 0)],
                    chans[i],
                    wdim,
                    cfg["mode"],
                    cfg["act"],
                    first=i == 0,
                )
                for i in range(n + 1)
            ]
        )
        self.skip_rgb = cfg["skip_rgb"]
        self.out = last_act(cfg["last"])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.mapping(z)
        x = self.input(z.shape[0])
        rgb = None
        for block in self.blocks:
            x, y = block(x, w)
            if self.skip_rgb and rgb is not None:
                rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False) + y
            else:
                rgb = y
        return self.out(rgb)

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, self.zdim)


@register_family("stylegan", "noise", "mapping MLP, modulated conv or AdaIN, noise injection")
class StyleGAN(NoiseGAN):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = {
            "zdim": b.pick("s_zdim", (32, 64, 128)),
            "wdim": b.pick("wdim", (32, 64, 128)),
            "n_mapping": b.pick("n_mapping", (2, 4, 8)),
            "mode": b.pick("mode", ("demod", "adain")),
            "up": b.pick("s_up", UPSAMPLERS),
            "act": b.pick("s_act", ACTIVATIONS),
            "last": b.pick("s_last", LAST_ACTIVATIONS),
            "width": b.pick("s_width", (8, 16, 32)),
            "skip_rgb": b.pick("skip_rgb", (True, False)),
            "feature_matching": b.pick("s_fm", (False, False, True)),
        }
        cfg.update(adversary_config(b))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = StyleGenerator(cfg, res)


# ---------------------------------------------------------------------------
# VAEs


class Encoder(nn.Module):
    """x -> strided conv blocks -> (mu, logvar) by two linear heads."""

    def __init__(self, res: int, zdim: int, width: int, norm_kind: str, act_kind: str):
        super().__init__()
        blocks, ch, size = [], 3, res
        for i in range(n_ups(res)):
            cout = min(width * 2**i, 256)
            blocks.append(DownBlock(ch, cout, norm_kind, act_kind, pool=False))
            ch, size = cout, size // 2
        self.body = nn.Sequential(*blocks)
        self.mu = nn.Linear(ch * size * size, zdim)
        self.logvar = nn.Linear(ch * size * size, zdim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x).flatten(1)
        return self.mu(h), self.logvar(h).clamp(-10, 10)


class CategoricalHead(nn.Module):
    """Per-pixel categorical output: conv to levels x 3 channels, viewed as
    [B, levels, 3, H, W] logits (optionally log-softmax over the levels)."""

    def __init__(self, cin: int, levels: int, log_softmax: bool):
        super().__init__()
        self.levels, self.log_softmax = levels, log_softmax
        self.conv = nn.Conv2d(cin, 3 * levels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        logits = self.conv(x).view(b, self.levels, 3, h, w)
        return F.log_softmax(logits, dim=1) if self.log_softmax else logits


class Decoder(nn.Module):
    """z -> linear to 4x4 -> up-sampling blocks -> RGB (or categorical) output."""

    def __init__(self, cfg: dict, res: int, levels: int = 0):
        super().__init__()
        self.zdim = cfg["zdim"]
        n = n_ups(res)
        chans = [min(cfg["width"] * 2 ** (n - i), 256) for i in range(n + 1)]
        self.start = _Start("linear", self.zdim, chans[0])
        self.stem = nn.Sequential(norm(cfg["norm"], chans[0]), act(cfg["act"]))
        self.blocks = nn.Sequential(
            *[
                UpBlock(
                    cfg["up"],
                    chans[i],
                    chans[i + 1],
                    cfg["norm"],
                    cfg["act"],
                    extra=cfg.get("extra_convs", 0),
                )
                for i in range(n)
            ]
        )
        if levels:
            self.head = CategoricalHead(chans[-1], levels, cfg["log_softmax"])
        else:
            self.head = nn.Sequential(nn.Conv2d(chans[-1], 3, 3, 1, 1), last_act(cfg["last"]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(self.start(z))))

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, self.zdim)


def _vae_choices(b: Balancer, prefix: str) -> dict:
    return {
        "zdim": b.pick(prefix + "zdim", (16, 32, 64, 128)),
        "up": b.pick(prefix + "up", UPSAMPLERS),
        "norm": b.pick(prefix + "norm", NORMS),
        "act": b.pick(prefix + "act", ACTIVATIONS),
        "width": b.pick(prefix + "width", (8, 16, 32)),
        "extra_convs": b.pick(prefix + "extra", (0, 1)),
        "beta": b.pick(prefix + "beta", (0.5, 1.0, 2.0)),
    }


@register_family("vae", "noise", "VAE decoder; images decoded from prior samples")
class VAE(GM):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = _vae_choices(b, "v_")
        cfg["last"] = b.pick("v_last", LAST_ACTIVATIONS)
        cfg["recon"] = b.pick("v_recon", ("mse", "l1"))
        cfg["perceptual"] = b.pick("v_perc", (False, True, False))
        extra = b.pick("v_gan", (None, None, "adv", "ls"))
        if extra:
            cfg["adversarial"] = extra
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.encoder = Encoder(res, cfg["zdim"], cfg["width"], cfg["norm"], cfg["act"])
        self.generator = Decoder(cfg, res)
        self.features = RandomFeatures(seed=0) if cfg.get("perceptual") else None
        if cfg.get("adversarial"):
            self.adversary = Adversary(cfg["adversarial"], res, recipe=self.recipe)

    def loss_types(self) -> tuple[str, ...]:
        out = ["kl", self.cfg["recon"]]
        if self.cfg.get("perceptual"):
            out.append("l2")
        if self.cfg.get("adversarial"):
            out.append(self.cfg["adversarial"])
        return tuple(out)

    def trainable(self):
        return list(self.encoder.parameters()) + list(self.generator.parameters())

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        mu, logvar = self.encoder(real)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = output_to_image(self.generator(z), self.cfg["last"])
        rec = L.mse_loss(recon, real) if self.cfg["recon"] == "mse" else L.l1_loss(recon, real)
        loss = rec * 10.0 + self.cfg["beta"] * L.kl_loss(mu, logvar) / real[0].numel()
        if self.features is not None:
            loss = loss + L.l2_feature_loss(self.features(recon), self.features(real))
        d = 0.0
        if self.adversary is not None:
            d = self.adversary.d_step(real, recon)
            loss = loss + 0.1 * self.adversary.g_loss(recon)
        self._g_update(loss)
        return {"loss": loss.item(), "rec": rec.item(), "d": d}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        z = torch.randn(n, self.cfg["zdim"], device=device) * self.recipe.truncation
        return output_to_image(self.generator(z), self.cfg["last"]).clamp(-1, 1)


@register_family("catvae", "noise", "VAE with per-pixel categorical decoder (CE on bins)")
class CatVAE(GM):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = _vae_choices(b, "c_")
        cfg["levels"] = b.pick("levels", (8, 16, 32))
        cfg["log_softmax"] = b.pick("log_softmax", (False, True))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.encoder = Encoder(res, cfg["zdim"], cfg["width"], cfg["norm"], cfg["act"])
        self.generator = Decoder(cfg, res, levels=cfg["levels"])

    def loss_types(self) -> tuple[str, ...]:
        return ("kl", "ce")

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        mu, logvar = self.encoder(real)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = self.generator(z)
        ce = L.ce_loss(logits, real, self.cfg["levels"])
        loss = ce + self.cfg["beta"] * L.kl_loss(mu, logvar) / real[0].numel()
        self._g_update(loss)
        return {"loss": loss.item(), "ce": ce.item()}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        z = torch.randn(n, self.cfg["zdim"], device=device) * self.recipe.truncation
        return L.dequantize(self.generator(z).argmax(dim=1), self.cfg["levels"])


# ---------------------------------------------------------------------------
# moment matching


class MLPGenerator(nn.Module):
    """z -> fully connected hidden layers -> 3*res*res pixels -> last act."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.zdim, self.res = cfg["zdim"], res
        layers, d = [], self.zdim
        for _ in range(cfg["hidden_layers"]):
            layers += [nn.Linear(d, cfg["hidden"])]
            if cfg["norm"] == "batch":
                layers.append(nn.BatchNorm1d(cfg["hidden"]))
            elif cfg["norm"] == "layer_group":
                layers.append(nn.LayerNorm(cfg["hidden"]))
            layers.append(act(cfg["act"]))
            d = cfg["hidden"]
        layers += [nn.Linear(d, 3 * res * res), last_act(cfg["last"])]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], 3, self.res, self.res)

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, self.zdim)


@register_family("mmd", "noise", "moment-matching generator (GMMN) trained with kernel MMD")
class MMDNet(GM):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = {
            "arch": b.pick("m_arch", ("mlp", "conv")),
            "zdim": b.pick("m_zdim", (16, 32, 64)),
            "act": b.pick("m_act", ACTIVATIONS),
            "last": b.pick("m_last", LAST_ACTIVATIONS),
            "norm": b.pick("m_norm", ("none", "batch", "layer_group")),
            "hidden": b.pick("m_hidden", (32, 64, 128)),
            "hidden_layers": b.pick("m_layers", (1, 2, 3)),
            "up": b.pick("m_up", UPSAMPLERS),
            "width": b.pick("m_width", (8, 16, 32)),
        }
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        if cfg["arch"] == "mlp":
            self.generator = MLPGenerator(cfg, res)
        else:
            self.generator = ConvGenerator({**cfg, "start": "linear"}, res, residual=False)

    def loss_types(self) -> tuple[str, ...]:
        return ("mmd",)

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        z = latent(real.shape[0], self.cfg["zdim"], self.recipe, real.device)
        fake = output_to_image(self.generator(z), self.cfg["last"])
        # MMD on pixels and on a 4x coarser view: the kernel sees layout and detail.
        loss = L.mmd_loss(fake, real) + L.mmd_loss(F.avg_pool2d(fake, 4), F.avg_pool2d(real, 4))
        self._g_update(loss)
        return {"mmd": loss.item()}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        z = latent(n, self.cfg["zdim"], self.recipe, device, sampling=True)
        return output_to_image(self.generator(z), self.cfg["last"]).clamp(-1, 1)


# ---------------------------------------------------------------------------
# image-to-image translators


def degrade(x: torch.Tensor, task: str, gen: torch.Generator | None = None) -> torch.Tensor:
    """The translator's input made from a real image x in [-1, 1]."""
    b, _, h, w = x.shape
    if task == "autoencode":  # the photograph itself (VQ-VAE, synthesized autoencoders)
        return x
    if task == "super_resolution":
        small = F.interpolate(x, scale_factor=0.25, mode="area")
        return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(-1, 1)
    if task == "denoising":
        return x + 0.2 * torch.randn(x.shape, generator=gen).to(x.device)
    if task == "inpainting":
        mask = torch.ones_like(x[:, :1])
        s = h // 2
        tops = torch.randint(0, h - s + 1, (b,), generator=gen)
        lefts = torch.randint(0, w - s + 1, (b,), generator=gen)
        for i in range(b):
            mask[i, :, tops[i] : tops[i] + s, lefts[i] : lefts[i] + s] = 0
        return x * mask
    if task == "colorization":
        gray = 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        return gray.expand(-1, 3, -1, -1).contiguous()
    if task == "color_transfer":
        # a random affine colour transform per image, x' = M x + t; the GM undoes it
        m = torch.eye(3) + 0.25 * torch.randn(b, 3, 3, generator=gen)
        t = 0.2 * torch.randn(b, 3, 1, 1, generator=gen)
        y = torch.einsum("bij,bjhw->bihw", m.to(x.device), x) + t.to(x.device)
        return y.clamp(-1, 1)
    if task == "deblurring":
        k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device)
        k = (k[:, None] * k[None, :]) / 256.0
        k = k.expand(3, 1, 5, 5).contiguous()
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=3)
    raise ValueError(f"unknown task {task!r}")


class Translator(GM):
    """Shared training of image-to-image GMs: G(degrade(x)) ~ x with a pixel loss,
    optional L2 perceptual loss and optional PatchGAN adversarial loss."""

    kind = "translate"

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.features = RandomFeatures(seed=1) if cfg.get("perceptual") else None
        if cfg.get("adversarial"):
            self.adversary = Adversary(cfg["adversarial"], res, patch=True, recipe=self.recipe)

    @staticmethod
    def translator_choices(b: Balancer, prefix: str) -> dict:
        cfg = {
            "task": b.pick(prefix + "task", TASKS),
            "up": b.pick(prefix + "up", UPSAMPLERS),
            "norm": b.pick(prefix + "norm", NORMS),
            "act": b.pick(prefix + "act", ACTIVATIONS),
            "last": b.pick(prefix + "last", LAST_ACTIVATIONS),
            "width": b.pick(prefix + "width", (4, 8, 16, 24)),
            "recon": b.pick(prefix + "recon", ("l1", "mse")),
            "perceptual": b.pick(prefix + "perc", (False, True, False)),
        }
        extra = b.pick(prefix + "gan", (None, "adv", "ls", "hinge"))
        if extra:
            cfg["adversarial"] = extra
        return cfg

    def loss_types(self) -> tuple[str, ...]:
        out = [self.cfg["recon"]]
        if self.cfg.get("perceptual"):
            out.append("l2")
        if self.cfg.get("adversarial"):
            out.append(self.cfg["adversarial"])
        return tuple(out)

    def trainable(self):
        return self.generator.parameters()

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return output_to_image(self.generator(x), self.cfg["last"])

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        out = self.translate(degrade(real, self.cfg["task"]))
        rec = L.l1_loss(out, real) if self.cfg["recon"] == "l1" else L.mse_loss(out, real)
        loss = 10.0 * rec
        if self.features is not None:
            loss = loss + L.l2_feature_loss(self.features(out), self.features(real))
        d = 0.0
        if self.adversary is not None:
            d = self.adversary.d_step(real, out)
            loss = loss + self.adversary.g_loss(out)
        self._g_update(loss)
        return {"loss": loss.item(), "rec": rec.item(), "d": d}

    @torch.no_grad()
    def sample(self, n: int, real: torch.Tensor | None = None) -> torch.Tensor:
        if real is None or real.shape[0] != n:
            raise ValueError("a translator samples from real inputs: pass n real images")
        gen = torch.Generator().manual_seed(int(self.cfg.get("sample_seed", 0)))
        return self.translate(degrade(real, self.cfg["task"], gen)).clamp(-1, 1)


class UNet(nn.Module):
    """Encoder of down blocks, decoder of up blocks, each decoder level concatenated
    with the encoder map of the same size (U-Net skips)."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.res = res
        depth, w = cfg["depth"], cfg["width"]
        chans = [min(w * 2**i, 256) for i in range(depth + 1)]
        self.inp = nn.Sequential(nn.Conv2d(3, chans[0], 3, 1, 1), act(cfg["act"]))
        self.down = nn.ModuleList(
            [
                DownBlock(chans[i], chans[i + 1], cfg["norm"], cfg["act"], pool=cfg["pool"])
                for i in range(depth)
            ]
        )
        self.up = nn.ModuleList(
            [
                UpBlock(
                    cfg["up"],
                    chans[i + 1] * (1 if i == depth - 1 else 2),
                    chans[i],
                    cfg["norm"],
                    cfg["act"],
                )
                for i in reversed(range(depth))
            ]
        )
        self.out = nn.Sequential(nn.Conv2d(chans[0] * 2, 3, 3, 1, 1), last_act(cfg["last"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inp(x)]
        for d in self.down:
            skips.append(d(skips[-1]))
        h = skips.pop()
        for u in self.up:
            h = torch.cat([u(h), skips.pop()], dim=1)
        return self.out(h)

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, 3, self.res, self.res)


@register_family("unet", "translate", "U-Net with skips applied to degraded real photos")
class UNetTranslator(Translator):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = Translator.translator_choices(b, "u_")
        cfg["depth"] = b.pick("u_depth", (2, 3, 4))
        cfg["pool"] = b.pick("u_pool", (False, True))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = UNet(cfg, res)


class ResNetGenerator(nn.Module):
    """7x7 conv, strided down blocks, residual blocks, up blocks, 7x7 conv to RGB."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.res = res
        w, n_down = cfg["width"], cfg["n_down"]
        layers: list[nn.Module] = [nn.Conv2d(3, w, 7, 1, 3), norm(cfg["norm"], w), act(cfg["act"])]
        ch = w
        for _ in range(n_down):
            layers.append(DownBlock(ch, ch * 2, cfg["norm"], cfg["act"], pool=cfg["pool"]))
            ch *= 2
        layers += [ResBlock(ch, cfg["norm"], cfg["act"]) for _ in range(cfg["n_res"])]
        for _ in range(n_down):
            layers.append(UpBlock(cfg["up"], ch, ch // 2, cfg["norm"], cfg["act"]))
            ch //= 2
        layers += [nn.Conv2d(ch, 3, 7, 1, 3), last_act(cfg["last"])]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, 3, self.res, self.res)


@register_family("resnet", "translate", "encoder, residual blocks, decoder (CycleGAN style)")
class ResNetTranslator(Translator):
    @staticmethod
    def sample_config(b: Balancer, res: int) -> dict:
        cfg = Translator.translator_choices(b, "r_")
        cfg["n_down"] = b.pick("r_down", (1, 2))
        cfg["n_res"] = b.pick("r_res", (1, 2, 4, 6, 9))
        cfg["pool"] = b.pick("r_pool", (False, True))
        return cfg

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        self.generator = ResNetGenerator(cfg, res)


def describe_gm(gm: GM):
    """The ground-truth architecture of a GM: `describe()` of its generator."""
    return describe(gm.generator)
