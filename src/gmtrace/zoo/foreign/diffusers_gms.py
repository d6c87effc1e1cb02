"""Foreign families of `diffusers` (Hugging Face): its UNet2DModel denoisers trained
with its DDPM noise schedule and sampled by its own DDPM or DDIM pipeline, its
VQModel autoencoder reconstructing photographs, and its AutoencoderKL decoding
samples of its prior.

diffusers ships models and schedulers, not a trainer: the objective is the one of
its own unconditional training example (`examples/unconditional_image_generation`):
noise added by `DDPMScheduler.add_noise`, the UNet predicts it, mean squared error.
The autoencoders train on what their forward returns: VQModel's reconstruction and
its `commit_loss` (the VQ codebook and commitment terms, squared distances between
feature maps), AutoencoderKL's reconstruction and `latent_dist.kl()`.
Images: the pipelines' own 8-bit conversion (`output_type="pil"`); the
autoencoders' outputs through `VaeImageProcessor.postprocess`, the package's own.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    UNet2DModel,
    VQModel,
)
from diffusers.image_processor import VaeImageProcessor
from torch import nn

from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, register, train_steps

PACKAGE = "diffusers"


def _widths(rng: np.random.Generator, levels: int) -> tuple[int, ...]:
    base = int(rng.choice([16, 32]))
    return tuple(base * min(2**i, 4) for i in range(levels))


def _pil_to_uint8(images) -> np.ndarray:
    return np.stack([np.asarray(im.convert("RGB"), dtype=np.uint8) for im in images])


def _optimizer(module: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    return torch.optim.AdamW(module.parameters(), lr=cfg["lr"])


# ---------------------------------------------------------------------------
# DDPM / DDIM


def ddpm_config(rng: np.random.Generator) -> dict:
    levels = int(rng.integers(2, 4))
    attn = bool(rng.random() < 0.5)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if attn:  # attention at the coarsest level, as the package's examples do
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return {
        "block_out_channels": list(_widths(rng, levels)),
        "layers_per_block": int(rng.integers(1, 3)),
        "down_block_types": down,
        "up_block_types": up,
        "norm_num_groups": 8,
        "train_timesteps": int(rng.choice([200, 500, 1000])),
        "beta_schedule": str(rng.choice(["linear", "squaredcos_cap_v2"])),
        "sampler": str(rng.choice(["ddpm", "ddim"])),
        "inference_steps": int(rng.choice([20, 30, 50])),
        "lr": float(rng.choice([1e-4, 2e-4, 5e-4])),
    }


def ddpm_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    unet = UNet2DModel(
        sample_size=job.resolution,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        down_block_types=tuple(cfg["down_block_types"]),
        up_block_types=tuple(cfg["up_block_types"]),
        norm_num_groups=cfg["norm_num_groups"],
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=cfg["train_timesteps"], beta_schedule=cfg["beta_schedule"]
    )
    opt = _optimizer(unet, cfg)
    rng = np.random.default_rng(job.seed)
    batches = job.batches(rng)
    unet.train()
    loss = torch.tensor(float("nan"))
    for _ in range(job.steps):
        clean = torch.from_numpy(next(batches))
        noise = torch.randn_like(clean)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(clean),))
        noisy = scheduler.add_noise(clean, noise, t)
        loss = F.mse_loss(unet(noisy, t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    unet.eval()
    if cfg["sampler"] == "ddim":
        pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(scheduler.config))
    else:
        pipe = DDPMPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(job.seed)
    images = []
    with torch.no_grad():
        for start in range(0, job.n_images, 32):
            n = min(32, job.n_images - start)
            out = pipe(
                batch_size=n,
                generator=generator,
                num_inference_steps=min(cfg["inference_steps"], cfg["train_timesteps"]),
                output_type="pil",
            )
            images.append(_pil_to_uint8(out.images))
    example = (torch.zeros(1, 3, job.resolution, job.resolution), torch.tensor([1]))
    return ForeignGM(
        images=np.concatenate(images),
        module=unet,
        example=example,
        losses=("mse",),
        loss_source="diffusers DDPMScheduler.add_noise; F.mse_loss on the predicted noise "
        "(the package's unconditional training example)",
        final_losses={"mse": loss.item()},
        sampler=f"{cfg['sampler']} {cfg['inference_steps']} steps",
    )


register(
    Family(
        "diffusers-ddpm",
        PACKAGE,
        "noise",
        ddpm_config,
        ddpm_train_and_sample,
        "UNet2DModel, DDPM noise schedule, DDPM or DDIM sampling",
    )
)


# ---------------------------------------------------------------------------
# autoencoders


def _ae_config(rng: np.random.Generator) -> dict:
    levels = int(rng.integers(2, 4))
    return {
        "block_out_channels": list(_widths(rng, levels)),
        "layers_per_block": int(rng.integers(1, 3)),
        "latent_channels": int(rng.choice([3, 4])),
        "norm_num_groups": 8,
        "lr": float(rng.choice([2e-4, 5e-4, 1e-3])),
    }


def vq_config(rng: np.random.Generator) -> dict:
    return {**_ae_config(rng), "num_vq_embeddings": int(rng.choice([64, 256, 512]))}


def _postprocess(x: torch.Tensor) -> np.ndarray:
    """The package's own float-to-8-bit path for decoded images."""
    return _pil_to_uint8(VaeImageProcessor().postprocess(x.detach(), output_type="pil"))


def vq_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    levels = len(cfg["block_out_channels"])
    model = VQModel(
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        latent_channels=cfg["latent_channels"],
        num_vq_embeddings=cfg["num_vq_embeddings"],
        norm_num_groups=cfg["norm_num_groups"],
        sample_size=job.resolution,
    )

    def losses(x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = model(x)
        return {"mse": F.mse_loss(out.sample, x), "commit": out.commit_loss.mean()}

    final = train_steps(job, model, _optimizer(model, cfg), losses)
    from gmtrace.data.images import to_float

    images = []
    with torch.no_grad():
        for start in range(0, job.n_images, 32):
            x = torch.from_numpy(np.ascontiguousarray(to_float(job.inputs[start : start + 32])))
            images.append(_postprocess(model(x).sample))
    return ForeignGM(
        images=np.concatenate(images),
        module=model,
        example=(torch.zeros(1, 3, job.resolution, job.resolution),),
        losses=("mse", "l2"),
        loss_source="F.mse_loss on VQModel's reconstruction; VQModel's commit_loss "
        "(VectorQuantizer codebook and commitment terms)",
        final_losses=final,
        sampler="reconstruction of a real crop",
    )


register(
    Family(
        "diffusers-vq",
        PACKAGE,
        "translate",
        vq_config,
        vq_train_and_sample,
        "VQModel autoencoder reconstructing photographs",
    )
)


class _Decoder(nn.Module):
    """AutoencoderKL's decoding path (its own post_quant_conv and decoder), as one
    module for describe(): the images come from it alone."""

    def __init__(self, model: AutoencoderKL) -> None:
        super().__init__()
        self.post_quant_conv = model.post_quant_conv
        self.decoder = model.decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


def kl_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    levels = len(cfg["block_out_channels"])
    model = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg["block_out_channels"]),
        layers_per_block=cfg["layers_per_block"],
        latent_channels=cfg["latent_channels"],
        norm_num_groups=cfg["norm_num_groups"],
        sample_size=job.resolution,
    )

    def losses(x: torch.Tensor) -> dict[str, torch.Tensor]:
        posterior = model.encode(x).latent_dist
        recon = model.decode(posterior.sample()).sample
        return {"mse": F.mse_loss(recon, x), "kl": posterior.kl().mean() / x[0].numel()}

    weights = {"kl": cfg["kl_weight"]}
    final = train_steps(job, model, _optimizer(model, cfg), losses, weights)
    side = job.resolution // 2 ** (levels - 1)
    generator = torch.Generator().manual_seed(job.seed)
    images = []
    with torch.no_grad():
        for start in range(0, job.n_images, 32):
            n = min(32, job.n_images - start)
            z = torch.randn(n, cfg["latent_channels"], side, side, generator=generator)
            images.append(_postprocess(model.decode(z).sample))
    return ForeignGM(
        images=np.concatenate(images),
        module=_Decoder(model),
        example=(torch.zeros(1, cfg["latent_channels"], side, side),),
        losses=("mse", "kl"),
        loss_source="F.mse_loss on AutoencoderKL's reconstruction; "
        "DiagonalGaussianDistribution.kl() of its latent",
        final_losses=final,
        sampler="decoder of N(0, I) latents",
    )


def kl_config(rng: np.random.Generator) -> dict:
    return {**_ae_config(rng), "kl_weight": float(rng.choice([0.1, 1.0]))}


register(
    Family(
        "diffusers-kl",
        PACKAGE,
        "noise",
        kl_config,
        kl_train_and_sample,
        "AutoencoderKL decoding samples of its prior (a VAE)",
    )
)
