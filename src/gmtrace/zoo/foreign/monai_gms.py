"""Foreign families of `monai` (its generative networks, formerly MONAI Generative
Models): a DiffusionModelUNet denoiser trained and sampled through its
DiffusionInferer and schedulers, its VQVAE reconstructing photographs, and its
AutoencoderKL decoding samples of its prior, the autoencoders optionally against its
PatchDiscriminator.

monai ships networks, schedulers, inferers and losses, not a trainer: the loops are
those of MONAI's generative tutorials (`generation/2d_ddpm`, `2d_vqvae`,
`2d_autoencoderkl`), without their perceptual loss (`PerceptualLoss` downloads
weights).

* monai-ddpm: `DiffusionInferer.__call__` noises the crops with the
  `DDPMScheduler` and runs the UNet; `F.mse_loss` against the target of the
  scheduler's `prediction_type` (the noise, `Scheduler.get_velocity`, or the clean
  crop). Sampling: `DiffusionInferer.sample` with the DDPM (every training step)
  or DDIM scheduler. Its PNDMScheduler is not drawn: it does not clip the predicted
  clean image, and the UNets of this budget diverge under it to saturated noise.
* monai-vqvae: `VQVAE.forward` returns the reconstruction and the
  `EMAQuantizer` commitment loss (a squared distance between feature maps, "l2"),
  plus an L1 or MSE reconstruction loss.
* monai-autoencoderkl: L1 or MSE reconstruction plus the KL of
  `AutoencoderKL.encode`'s (z_mu, z_sigma) to N(0, I), computed as the tutorial
  does (the package ships no KL function).
* adversarial term (autoencoders, when drawn): `PatchDiscriminator` and
  `PatchAdversarialLoss`, whose criterion maps to the schema's type: least_squares
  "ls", bce "adv", hinge "hinge".

monai has no 8-bit writer for these outputs: images in [-1, 1] go through
`base.to_uint8`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.losses import PatchAdversarialLoss
from monai.networks.nets import VQVAE, AutoencoderKL, DiffusionModelUNet, PatchDiscriminator
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, Scheduler
from torch import nn

from gmtrace.data.images import to_float
from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, register, to_uint8

PACKAGE = "monai"
ADV_TYPES = {"least_squares": "ls", "bce": "adv", "hinge": "hinge"}
REC_TYPES = {"l1": "l1", "mse": "mse"}
DDPM_WIDTHS = ((16, 32, 32), (16, 32, 64), (16, 16, 32), (16, 32, 32, 64), (16, 32, 64, 64))


def _widths(rng: np.random.Generator, levels: int, bases: tuple[int, ...]) -> list[int]:
    base = int(rng.choice(bases))
    return [base * min(2**i, 2) for i in range(levels)]


def _chunks(n: int, size: int = 32) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(size, n - start)


# ---------------------------------------------------------------------------
# DDPM


def ddpm_config(rng: np.random.Generator) -> dict:
    # three or four levels, narrow at full resolution: the UNet's middle block
    # always attends, which costs too much at half of 64 px on a CPU
    widths = DDPM_WIDTHS[int(rng.integers(0, len(DDPM_WIDTHS)))]
    sampler = str(rng.choice(["ddpm", "ddim"], p=[0.25, 0.75]))
    return {
        "channels": list(widths),
        "num_res_blocks": int(rng.choice([1, 2], p=[0.7, 0.3])),
        "attention_last": bool(rng.random() < 0.5),
        "num_head_channels": int(rng.choice([8, 16])),
        "resblock_updown": bool(rng.random() < 0.5),
        "norm_num_groups": 8,
        "sampler": sampler,
        # DDPM's step goes back one training step at a time, so it samples every one
        # of a short cosine schedule; DDIM strides through a long one
        "train_timesteps": 30 if sampler == "ddpm" else 1000,
        "schedule": "cosine"
        if sampler == "ddpm"
        else str(rng.choice(["linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"])),
        # predicting the clean image gives the mean image early in training: rarer
        "prediction_type": str(
            rng.choice(["epsilon", "v_prediction", "sample"], p=[0.45, 0.4, 0.15])
        ),
        "inference_steps": 30 if sampler == "ddpm" else int(rng.choice([15, 20, 25])),
        "lr": float(rng.choice([1e-4, 2.5e-4, 5e-4])),
    }


def _sampling_scheduler(cfg: dict) -> Scheduler:
    kwargs = {
        "num_train_timesteps": cfg["train_timesteps"],
        "schedule": cfg["schedule"],
        "prediction_type": cfg["prediction_type"],
    }
    if cfg["sampler"] == "ddim":
        scheduler: Scheduler = DDIMScheduler(**kwargs)
    else:
        scheduler = DDPMScheduler(**kwargs)
    scheduler.set_timesteps(cfg["inference_steps"])
    return scheduler


def ddpm_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    levels = len(cfg["channels"])
    unet = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=3,
        out_channels=3,
        channels=tuple(cfg["channels"]),
        attention_levels=(False,) * (levels - 1) + (cfg["attention_last"],),
        num_res_blocks=cfg["num_res_blocks"],
        num_head_channels=cfg["num_head_channels"],
        norm_num_groups=cfg["norm_num_groups"],
        resblock_updown=cfg["resblock_updown"],
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg["train_timesteps"],
        schedule=cfg["schedule"],
        prediction_type=cfg["prediction_type"],
    )
    inferer = DiffusionInferer(scheduler)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg["lr"])
    batches = job.batches(np.random.default_rng(job.seed))
    unet.train()
    loss = torch.tensor(float("nan"))
    for _ in range(job.steps):
        images = torch.from_numpy(next(batches))
        noise = torch.randn_like(images)
        t = torch.randint(0, cfg["train_timesteps"], (len(images),)).long()
        pred = inferer(inputs=images, diffusion_model=unet, noise=noise, timesteps=t)
        if cfg["prediction_type"] == "epsilon":
            target = noise
        elif cfg["prediction_type"] == "v_prediction":
            target = scheduler.get_velocity(images, noise, t)
        else:
            target = images
        loss = F.mse_loss(pred.float(), target.float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    unet.eval()
    sampling = _sampling_scheduler(cfg)
    out = []
    for _, n in _chunks(job.n_images):
        noise = torch.randn(n, 3, job.resolution, job.resolution)
        x = inferer.sample(
            input_noise=noise, diffusion_model=unet, scheduler=sampling, verbose=False
        )
        out.append(to_uint8(x.clamp(-1, 1)))
    example = (torch.zeros(1, 3, job.resolution, job.resolution), torch.tensor([1]))
    return ForeignGM(
        images=np.concatenate(out),
        module=unet,
        example=example,
        losses=("mse",),
        loss_source="monai DiffusionInferer.__call__ (DDPMScheduler.add_noise, "
        "DiffusionModelUNet); "
        f"F.mse_loss on the {cfg['prediction_type']} target (Scheduler.get_velocity for "
        "v_prediction), as MONAI's 2d_ddpm tutorial",
        final_losses={"mse": loss.item()},
        sampler=f"DiffusionInferer.sample, {cfg['sampler']} {cfg['inference_steps']} steps",
    )


register(
    Family(
        "monai-ddpm",
        PACKAGE,
        "noise",
        ddpm_config,
        ddpm_train_and_sample,
        "DiffusionModelUNet, DDPM schedule, DDPM or DDIM sampling by DiffusionInferer",
    )
)


# ---------------------------------------------------------------------------
# autoencoders (with an optional PatchDiscriminator)


def _adv_config(rng: np.random.Generator) -> dict:
    adv = bool(rng.random() < 0.5)
    return {
        "adversarial": str(rng.choice(list(ADV_TYPES))) if adv else "none",
        "adv_weight": float(rng.choice([0.01, 0.05])),
        "adv_start": float(rng.choice([0.0, 0.25])),  # fraction of steps before it starts
        "disc_channels": int(rng.choice([16, 32])),
        "disc_layers": int(rng.integers(2, 4)),
        "disc_norm": str(rng.choice(["BATCH", "INSTANCE"])),
        "recon": str(rng.choice(list(REC_TYPES))),
        "lr": float(rng.choice([2e-4, 5e-4, 1e-3])),
    }


class _Adversary:
    """MONAI's PatchDiscriminator and PatchAdversarialLoss, stepped as in its
    autoencoder tutorials: the generator term and the discriminator's half-sum of
    its real and fake terms, both weighted by adv_weight."""

    def __init__(self, cfg: dict) -> None:
        self.weight = cfg["adv_weight"]
        self.disc = PatchDiscriminator(
            spatial_dims=2,
            channels=cfg["disc_channels"],
            in_channels=3,
            out_channels=1,
            num_layers_d=cfg["disc_layers"],
            norm=cfg["disc_norm"],
        )
        self.loss = PatchAdversarialLoss(criterion=cfg["adversarial"])
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=2 * cfg["lr"])

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        logits = self.disc(fake.contiguous().float())[-1]
        return self.weight * self.loss(logits, target_is_real=True, for_discriminator=False)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        fake_logits = self.disc(fake.contiguous().detach())[-1]
        real_logits = self.disc(real.contiguous().detach())[-1]
        d_fake = self.loss(fake_logits, target_is_real=False, for_discriminator=True)
        d_real = self.loss(real_logits, target_is_real=True, for_discriminator=True)
        loss = self.weight * (d_fake + d_real) * 0.5
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


Terms = Callable[[nn.Module, torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]]


def _train_autoencoder(job: ForeignJob, model: nn.Module, terms: Terms) -> dict[str, float]:
    """The tutorial loop: `terms(model, x)` returns the reconstruction and the
    model's own loss terms; the reconstruction loss and, after the warm-up, the
    adversarial term are added."""
    cfg = job.config
    adversary = _Adversary(cfg) if cfg["adversarial"] != "none" else None
    start = int(cfg["adv_start"] * job.steps)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    batches = job.batches(np.random.default_rng(job.seed))
    rec_loss = F.l1_loss if cfg["recon"] == "l1" else F.mse_loss
    model.train()
    final: dict[str, float] = {}
    for step in range(job.steps):
        x = torch.from_numpy(next(batches))
        recon, extra = terms(model, x)
        losses = {cfg["recon"]: rec_loss(recon.float(), x), **extra}
        if adversary is not None and step >= start:
            losses["generator"] = adversary.generator_loss(recon)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        final = {k: v.item() for k, v in losses.items()}
        if adversary is not None and step >= start:
            final["discriminator"] = adversary.step(x, recon)
    model.eval()
    return final


def _losses(cfg: dict, own: tuple[str, ...]) -> tuple[str, ...]:
    adv = (ADV_TYPES[cfg["adversarial"]],) if cfg["adversarial"] != "none" else ()
    return (REC_TYPES[cfg["recon"]], *own, *adv)


def _adv_source(cfg: dict) -> str:
    if cfg["adversarial"] == "none":
        return ""
    return f"; PatchAdversarialLoss(criterion={cfg['adversarial']!r}) on PatchDiscriminator"


def vqvae_config(rng: np.random.Generator) -> dict:
    levels = int(rng.integers(2, 4))
    return {
        **_adv_config(rng),
        "channels": _widths(rng, levels, (16, 32)),
        "num_res_layers": int(rng.integers(1, 3)),
        "num_embeddings": int(rng.choice([64, 256, 512])),
        "embedding_dim": int(rng.choice([16, 32, 64])),
        "commitment_cost": float(rng.choice([0.25, 0.5])),
        "decay": float(rng.choice([0.5, 0.9, 0.99])),
        "act": str(rng.choice(["RELU", "LEAKYRELU", "ELU", "GELU"])),
        "output_act": str(rng.choice(["none", "TANH"])),
    }


def _vq_terms(model: VQVAE, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    recon, quantization_loss = model(x)
    return recon, {"commitment": quantization_loss}


def vqvae_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    levels = len(cfg["channels"])
    model = VQVAE(
        spatial_dims=2,
        in_channels=3,
        out_channels=3,
        channels=tuple(cfg["channels"]),
        num_res_layers=cfg["num_res_layers"],
        num_res_channels=tuple(cfg["channels"]),
        downsample_parameters=((2, 4, 1, 1),) * levels,
        upsample_parameters=((2, 4, 1, 1, 0),) * levels,
        num_embeddings=cfg["num_embeddings"],
        embedding_dim=cfg["embedding_dim"],
        commitment_cost=cfg["commitment_cost"],
        decay=cfg["decay"],
        act=cfg["act"],
        output_act=None if cfg["output_act"] == "none" else cfg["output_act"],
        ddp_sync=False,
    )
    final = _train_autoencoder(job, model, _vq_terms)
    out = []
    with torch.no_grad():
        for start, n in _chunks(job.n_images):
            x = torch.from_numpy(np.ascontiguousarray(to_float(job.inputs[start : start + n])))
            out.append(to_uint8(model(x)[0].clamp(-1, 1)))
    return ForeignGM(
        images=np.concatenate(out),
        module=model,
        example=(torch.zeros(1, 3, job.resolution, job.resolution),),
        losses=_losses(cfg, ("l2",)),
        loss_source=f"F.{'l1_loss' if cfg['recon'] == 'l1' else 'mse_loss'} on VQVAE's "
        "reconstruction; VQVAE.forward's quantization loss (EMAQuantizer commitment term)"
        + _adv_source(cfg),
        final_losses=final,
        sampler="reconstruction of a real crop",
    )


register(
    Family(
        "monai-vqvae",
        PACKAGE,
        "translate",
        vqvae_config,
        vqvae_train_and_sample,
        "VQVAE (EMA codebook) reconstructing photographs, optionally with a PatchGAN",
    )
)


class _Decoder(nn.Module):
    """AutoencoderKL's decoding path for describe(): its own post_quant_conv and
    decoder, run by the package's `AutoencoderKL.decode`."""

    def __init__(self, model: AutoencoderKL) -> None:
        super().__init__()
        self.post_quant_conv = model.post_quant_conv
        self.decoder = model.decoder
        self._decode = model.decode  # a bound method: registers nothing

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self._decode(z)


def kl_config(rng: np.random.Generator) -> dict:
    # three levels: a latent at a quarter of the side; on a finer grid its prior
    # samples decode to textures around one mean colour, on a coarser one the short
    # training leaves them all alike
    return {
        **_adv_config(rng),
        "channels": _widths(rng, 3, (16, 24)),
        "num_res_blocks": int(rng.choice([1, 2], p=[0.7, 0.3])),
        "latent_channels": int(rng.choice([3, 4])),
        "attention_last": bool(rng.random() < 0.3),
        "encoder_nonlocal_attn": bool(rng.random() < 0.5),
        "decoder_nonlocal_attn": bool(rng.random() < 0.5),
        "use_convtranspose": bool(rng.random() < 0.5),
        "norm_num_groups": 8,
        # on the KL summed over the latent, the tutorial's 1e-6 and up: stronger, it
        # collapses the posterior of so short a training (every decoded sample alike)
        "kl_weight": float(rng.choice([1e-6, 1e-5, 1e-4])),
        "lr": float(rng.choice([5e-4, 1e-3])),
    }


def kl_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    levels = len(cfg["channels"])
    model = AutoencoderKL(
        spatial_dims=2,
        in_channels=3,
        out_channels=3,
        channels=tuple(cfg["channels"]),
        num_res_blocks=cfg["num_res_blocks"],
        attention_levels=(False,) * (levels - 1) + (cfg["attention_last"],),
        latent_channels=cfg["latent_channels"],
        norm_num_groups=cfg["norm_num_groups"],
        with_encoder_nonlocal_attn=cfg["encoder_nonlocal_attn"],
        with_decoder_nonlocal_attn=cfg["decoder_nonlocal_attn"],
        use_convtranspose=cfg["use_convtranspose"],
    )

    def terms(model: AutoencoderKL, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        recon, z_mu, z_sigma = model(x)
        kl = 0.5 * torch.sum(
            z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2)) - 1, dim=[1, 2, 3]
        )
        return recon, {"kl": cfg["kl_weight"] * kl.mean()}

    final = _train_autoencoder(job, model, terms)
    side = job.resolution // 2 ** (levels - 1)
    out = []
    with torch.no_grad():
        for _, n in _chunks(job.n_images):
            z = torch.randn(n, cfg["latent_channels"], side, side)
            out.append(to_uint8(model.decode(z).clamp(-1, 1)))
    return ForeignGM(
        images=np.concatenate(out),
        module=_Decoder(model),
        example=(torch.zeros(1, cfg["latent_channels"], side, side),),
        losses=_losses(cfg, ("kl",)),
        loss_source=f"F.{'l1_loss' if cfg['recon'] == 'l1' else 'mse_loss'} on AutoencoderKL's "
        "reconstruction; KL of AutoencoderKL.encode's (z_mu, z_sigma) to N(0, I) as MONAI's "
        "2d_autoencoderkl tutorial computes it" + _adv_source(cfg),
        final_losses=final,
        sampler="AutoencoderKL.decode of N(0, I) latents",
    )


register(
    Family(
        "monai-autoencoderkl",
        PACKAGE,
        "noise",
        kl_config,
        kl_train_and_sample,
        "AutoencoderKL decoding samples of its prior (a VAE), optionally with a PatchGAN",
    )
)
