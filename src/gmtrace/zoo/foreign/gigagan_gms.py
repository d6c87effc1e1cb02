"""Foreign family of `gigagan-pytorch` (lucidrains): the unconditional GigaGAN, a
StyleGAN-like generator with sample-adaptive kernel selection
(`AdaptiveConv2DMod` with several kernels), self-attention and multi-scale RGB
outputs, against its multi-scale-input, multi-scale-output discriminator, trained by
the package's own trainer (`GigaGAN.forward(steps=...)`, on the CPU through its
`accelerate` Accelerator) and sampled by `GigaGAN.generate` (its EMA generator).

The package's `ImageDataset` wants more than 100 images (the tiny preset has 16),
so the crops go to `GigaGAN.set_dataloader` as a tensor in [0, 1], the range that
dataset's `ToTensor` gives. Its trainer writes sample grids and checkpoints under
the job's folder; nothing is read back.

Objective, as `train_discriminator_step` / `train_generator_step` compute it:
`discriminator_hinge_loss` and `generator_hinge_loss` on the main logits and,
weighted, on the multi-scale predictors' logits; the discriminator also gets a
`gradient_penalty` every 4th step and the reconstruction MSE of its
`SimpleDecoder` (self-supervision of the discriminator only): regularizers, no
schema type. Images: clamped to [0, 1] as `save_sample` does, 8 bits as
`torchvision.utils.save_image` (its image writer) rounds them.
"""

from __future__ import annotations

import numpy as np
import torch
from gigagan_pytorch import AdaptiveConv2DMod, GigaGAN
from gigagan_pytorch.gigagan_pytorch import num_to_groups
from torch.utils.data import DataLoader

from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, output_to_log, register

PACKAGE = "gigagan-pytorch"

ATTN_CHOICES = ((), (8,), (16,))  # feature-map sizes with a self-attention block
D_ATTN_CHOICES = ((), (8,))  # the discriminator attends over every scale at once: kept small


def gigagan_config(rng: np.random.Generator) -> dict:
    return {
        "style_dim": int(rng.choice([32, 64, 128])),
        "style_depth": int(rng.choice([2, 4])),
        "dim_latent": int(rng.choice([32, 64])),
        "dim_capacity": int(rng.choice([2, 4])),
        "dim_max": int(rng.choice([64, 128])),
        "self_attn_resolutions": ATTN_CHOICES[int(rng.integers(len(ATTN_CHOICES)))],
        "self_attn_dot_product": bool(rng.random() < 0.5),
        "attn_heads": int(rng.choice([1, 2, 4])),
        "attn_dim_head": int(rng.choice([16, 32])),
        "ff_mult": int(rng.choice([2, 4])),
        "num_conv_kernels": int(rng.choice([1, 2, 4])),
        "num_skip_layers_excite": int(rng.choice([0, 1, 2])),
        "pixel_shuffle_upsample": bool(rng.random() < 0.5),
        "d_dim_capacity": int(rng.choice([2, 4])),
        "d_attn_resolutions": D_ATTN_CHOICES[int(rng.integers(len(D_ATTN_CHOICES)))],
        "multiscale_divergence_loss_weight": float(rng.choice([0.0, 0.1, 0.5])),
        "discr_aux_recon_loss_weight": float(rng.choice([0.0, 1.0])),
        "flip_prob": float(rng.choice([0.0, 0.5])),
        "lr": float(rng.choice([1e-4, 2e-4])),
    }


def _gan(job: ForeignJob) -> GigaGAN:
    cfg = job.config
    attn = {"dim_head": cfg["attn_dim_head"], "heads": cfg["attn_heads"]}
    generator = {
        "image_size": job.resolution,
        "dim_capacity": cfg["dim_capacity"],
        "dim_max": cfg["dim_max"],
        "style_network": {"dim": cfg["style_dim"], "depth": cfg["style_depth"]},
        "dim_latent": cfg["dim_latent"],
        "self_attn_resolutions": tuple(cfg["self_attn_resolutions"]),
        "self_attn_dim_head": attn["dim_head"],
        "self_attn_heads": attn["heads"],
        "self_attn_dot_product": cfg["self_attn_dot_product"],
        "self_attn_ff_mult": cfg["ff_mult"],
        "num_conv_kernels": cfg["num_conv_kernels"],
        "num_skip_layers_excite": cfg["num_skip_layers_excite"],
        "pixel_shuffle_upsample": cfg["pixel_shuffle_upsample"],
        "unconditional": True,
    }
    discriminator = {
        "image_size": job.resolution,
        "dim_capacity": cfg["d_dim_capacity"],
        "dim_max": cfg["dim_max"],
        "attn_resolutions": tuple(cfg["d_attn_resolutions"]),
        "attn_dim_head": attn["dim_head"],
        "attn_heads": attn["heads"],
        "ff_mult": cfg["ff_mult"],
        "num_skip_layers_excite": cfg["num_skip_layers_excite"],
        "unconditional": True,
    }
    flip = cfg["flip_prob"]
    return GigaGAN(
        generator=generator,
        discriminator=discriminator,
        diff_augment={"prob": flip, "horizontal_flip": True} if flip > 0 else None,
        learning_rate=cfg["lr"],
        multiscale_divergence_loss_weight=cfg["multiscale_divergence_loss_weight"],
        discr_aux_recon_loss_weight=cfg["discr_aux_recon_loss_weight"],
        num_samples=9,
        model_folder=str(job.workdir / "models"),
        results_folder=str(job.workdir / "results"),
        accelerate_kwargs={"cpu": True},
    )


def gigagan_train_and_sample(job: ForeignJob) -> ForeignGM:
    crops = torch.from_numpy(job.crops).permute(0, 3, 1, 2).float() / 255.0
    with output_to_log(job):  # its tqdm bar and loss lines
        gan = _gan(job)
        gan.set_dataloader(DataLoader(crops, batch_size=job.batch, shuffle=True, drop_last=True))
        gan(steps=job.steps)
        images = []
        for n in num_to_groups(job.n_images, job.batch):
            G_kwargs, _ = gan.generate_kwargs(None, n)  # N(0, I) noise for its style network
            images.append(gan.generate(**G_kwargs).clamp(0.0, 1.0))
    pixels = torch.cat(images).mul(255).add_(0.5).clamp_(0, 255).permute(0, 2, 3, 1)
    G = gan.unwrapped_G  # the EMA copy's architecture, with trainable parameters
    for m in G.modules():  # its kernel bank is [kernels, out, in, k, k]: say which is out
        if isinstance(m, AdaptiveConv2DMod):
            m.out_channels = m.dim_out
    example_noise = torch.randn(1, G.style_network_dim, generator=torch.Generator().manual_seed(0))
    return ForeignGM(
        images=pixels.to(torch.uint8).numpy(),
        module=G,
        example=(None, example_noise),
        losses=("hinge",),
        loss_source="gigagan_pytorch discriminator_hinge_loss, generator_hinge_loss on the "
        "main and multi-scale logits (GigaGAN.train_discriminator_step, train_generator_step)",
        sampler="GigaGAN.generate (EMA generator) on N(0, I) style noise",
    )


register(
    Family(
        "gigagan",
        PACKAGE,
        "noise",
        gigagan_config,
        gigagan_train_and_sample,
        "unconditional GigaGAN (adaptive-kernel generator, multi-scale discriminator), hinge",
    )
)
