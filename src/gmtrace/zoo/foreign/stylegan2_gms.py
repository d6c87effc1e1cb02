"""Foreign family of `stylegan2-pytorch` (lucidrains): its `StyleGAN2` (style
mapping network, modulated-convolution generator with noise inputs and skip RGB
outputs, residual discriminator), configured and fed by the package's `Trainer`.

The package asserts a CUDA device when imported and its `Trainer.train` and
`Trainer.generate_truncated` move tensors with `.cuda()`, so it cannot train or
sample on a CPU as shipped. Here the module is imported with
`torch.cuda.is_available` answering True for that one assertion, `StyleGAN2` is
built by its own constructor (networks, weight init, Adam optimizers) with only its
final `.cuda()` skipped, and a loop that follows `Trainer.train` step by step runs
on the CPU: the package's `Trainer` holds the configuration and reads the crops
from a folder of PNGs with its own dataset and loader (`set_data_src`, images in
[0, 1]); latents are drawn as its `noise_list`/`mixed_list`/`image_noise` draw them
(style mixing with probability `mixed_prob`). Its path length penalty starts after
5000 steps and its contrastive regularizer is off by default: neither runs here.

Objective, as `Trainer.train` computes it: `hinge_loss` for the discriminator and
`gen_hinge_loss` for the generator, optionally relativistic (`rel_disc_loss`) or
with top-k generator training; the discriminator also gets a gradient penalty every
4th step (`gradient_penalty`) and, with `fq_layers`, the commitment loss of its
`VectorQuantize` layers: discriminator regularizers, no schema type. Its
`dual_contrast_loss` option is left off: `Trainer.train` passes the generator's
logits to `dual_contrastive_loss` in the discriminator's order, so the generator
descends the discriminator's own loss and nothing is adversarial.
Images: sampled like `Trainer.generate_truncated` (styles truncated towards the
mean of 2000 mapped latents, `evaluate_in_chunks`, clamped to [0, 1]), 8 bits as
`torchvision.utils.save_image` (the package's image writer) rounds them.
"""

from __future__ import annotations

import math
from pathlib import Path
from random import random
from unittest import mock

import numpy as np
import torch
from PIL import Image
from torch import nn

from gmtrace.zoo.foreign.base import (
    Family,
    ForeignGM,
    ForeignJob,
    StaysOnCPU,
    output_to_log,
    register,
)

with mock.patch("torch.cuda.is_available", return_value=True):  # its import-time assert
    import stylegan2_pytorch.stylegan2_pytorch as sg

PACKAGE = "stylegan2-pytorch"

ATTN_CHOICES = ([], [2], [3], [2, 3])  # G: blocks counted from the output; D: from the input
FQ_CHOICES = ([], [], [3], [2, 3])  # discriminator layers followed by VectorQuantize
AUG_CHOICES = (["translation", "cutout"], ["translation", "color"], ["offset", "cutout"])


class _StyleGAN2OnCPU(StaysOnCPU, sg.StyleGAN2):
    """The package's StyleGAN2, left on the CPU (its constructor ends with
    `self.cuda(rank)`)."""


class _MappedGenerator(nn.Module):
    """StyleVectorizer and Generator as one module for describe(): a latent and the
    per-pixel noise in, an image out (every layer gets the same style)."""

    def __init__(self, S: sg.StyleVectorizer, G: sg.Generator) -> None:
        super().__init__()
        self.S, self.G = S, G

    def forward(self, z: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.G(sg.styles_def_to_tensor([(self.S(z), self.G.num_layers)]), noise)


def _write_crops(crops: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(folder / f"{i:05d}.png")
    return folder


def stylegan2_config(rng: np.random.Generator) -> dict:
    latent_dim = int(rng.choice([256, 512]))
    return {
        "network_capacity": int(rng.choice([2, 3, 4])),
        "latent_dim": latent_dim,
        "style_depth": int(rng.choice([2, 4, 8])),
        "attn_layers": ATTN_CHOICES[int(rng.integers(len(ATTN_CHOICES)))],
        "fq_layers": FQ_CHOICES[int(rng.integers(len(FQ_CHOICES)))],
        "fq_dict_size": int(rng.choice([64, 256])),
        "no_const": bool(rng.random() < 0.3),
        "rel_disc_loss": bool(rng.random() < 0.3),
        "top_k_training": bool(rng.random() < 0.3),
        "mixed_prob": float(rng.choice([0.0, 0.5, 0.9])),
        "trunc_psi": float(rng.choice([0.6, 0.75, 1.0])),
        "lr": float(rng.choice([1e-4, 2e-4])),
        # each mapping layer scales styles by about lr_mlp * sqrt(latent_dim): under the
        # package's defaults (0.1 at 512) they start alike and short runs stay collapsed
        "lr_mlp": 0.2 if latent_dim == 256 else float(rng.choice([0.1, 0.2])),
        "ttur_mult": float(rng.choice([1.0, 2.0])),
        "aug_prob": float(rng.choice([0.0, 0.25])),
        "aug_types": AUG_CHOICES[int(rng.integers(len(AUG_CHOICES)))],
    }


def _styles(n: int, num_layers: int, latent_dim: int, mixed: bool) -> list:
    """`noise_list` / `mixed_list` without their `.cuda()`: latents and the number
    of generator layers each one styles."""
    if not mixed:
        return [(torch.randn(n, latent_dim), num_layers)]
    tt = int(torch.rand(()).numpy() * num_layers)
    return [(torch.randn(n, latent_dim), tt), (torch.randn(n, latent_dim), num_layers - tt)]


def _image_noise(n: int, size: int) -> torch.Tensor:
    """`image_noise` without its `.cuda()`."""
    return torch.FloatTensor(n, size, size, 1).uniform_(0.0, 1.0)


def _train_step(trainer: sg.Trainer, gan: sg.StyleGAN2, step: int) -> dict[str, float]:
    """One step of `Trainer.train` (no gradient accumulation, fp16, DDP, contrastive
    or path length regularization)."""
    S, G, D_aug = gan.S, gan.G, gan.D_aug
    batch, size, latent_dim, num_layers = (
        trainer.batch_size,
        G.image_size,
        G.latent_dim,
        G.num_layers,
    )
    aug = {"prob": trainer.aug_prob, "types": trainer.aug_types}
    apply_gp = step % 4 == 0
    mixed = random() < trainer.mixed_prob

    gan.D_opt.zero_grad()
    with torch.no_grad():
        w_styles = sg.styles_def_to_tensor(
            sg.latent_to_w(S, _styles(batch, num_layers, latent_dim, mixed))
        )
        fake = G(w_styles, _image_noise(batch, size))
    fake, (fake_out, fake_q) = D_aug(
        fake, return_aug_images=True, input_requires_grad=apply_gp, detach=True, **aug
    )
    real = next(trainer.loader)
    if apply_gp:
        real.requires_grad_()
    real_out, real_q = D_aug(real, **aug)
    real_loss_in, fake_loss_in = real_out, fake_out
    if trainer.rel_disc_loss:
        real_loss_in = real_out - fake_out.mean()
        fake_loss_in = fake_out - real_out.mean()
    divergence = sg.hinge_loss(fake_loss_in, real_loss_in)
    disc_loss = divergence
    if trainer.has_fq:
        disc_loss = disc_loss + (fake_q + real_q).mean()
    if apply_gp:
        disc_loss = disc_loss + (
            sg.gradient_penalty(real, real_out) + sg.gradient_penalty(fake, fake_out)
        )
    disc_loss.backward()
    gan.D_opt.step()

    gan.G_opt.zero_grad()
    w_styles = sg.styles_def_to_tensor(
        sg.latent_to_w(S, _styles(batch, num_layers, latent_dim, mixed))
    )
    fake_out, _ = D_aug(G(w_styles, _image_noise(batch, size)), **aug)
    if trainer.top_k_training:
        epochs = step * batch / len(trainer.dataset)
        k_frac = max(trainer.generator_top_k_gamma**epochs, trainer.generator_top_k_frac)
        k = math.ceil(batch * k_frac)
        if k != batch:
            fake_out, _ = fake_out.topk(k=k, largest=False)
    g_loss = sg.gen_hinge_loss(fake_out, None)
    g_loss.backward()
    gan.G_opt.step()
    return {"d": divergence.item(), "g": g_loss.item()}


@torch.no_grad()
def _sample(trainer: sg.Trainer, gan: sg.StyleGAN2, n: int) -> torch.Tensor:
    """`Trainer.generate_truncated(S, G, ...)` without its `.cuda()`: styles pulled
    towards the mean style by `trunc_psi`, images clamped to [0, 1]."""
    S, G = gan.S, gan.G
    z = torch.randn(2000, G.latent_dim)
    av = sg.evaluate_in_chunks(trainer.batch_size, S, z).mean(dim=0, keepdim=True)
    w = trainer.trunc_psi * (S(torch.randn(n, G.latent_dim)) - av) + av
    w_styles = sg.styles_def_to_tensor([(w, G.num_layers)])
    noise = _image_noise(n, G.image_size)
    return sg.evaluate_in_chunks(trainer.batch_size, G, w_styles, noise).clamp_(0.0, 1.0)


def stylegan2_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    with output_to_log(job):  # its console output and warnings
        trainer = sg.Trainer(
            name=job.name,
            base_dir=str(job.workdir),
            num_workers=0,
            image_size=job.resolution,
            batch_size=job.batch,
            network_capacity=cfg["network_capacity"],
            attn_layers=list(cfg["attn_layers"]),
            fq_layers=list(cfg["fq_layers"]),
            fq_dict_size=cfg["fq_dict_size"],
            no_const=cfg["no_const"],
            rel_disc_loss=cfg["rel_disc_loss"],
            top_k_training=cfg["top_k_training"],
            mixed_prob=cfg["mixed_prob"],
            trunc_psi=cfg["trunc_psi"],
            lr=cfg["lr"],
            lr_mlp=cfg["lr_mlp"],
            ttur_mult=cfg["ttur_mult"],
            aug_prob=cfg["aug_prob"],
            aug_types=list(cfg["aug_types"]),
        )
        trainer.set_data_src(str(_write_crops(job.crops, job.workdir / "data")))
        trainer.GAN = _StyleGAN2OnCPU(  # as Trainer.init_GAN builds it
            lr=trainer.lr,
            lr_mlp=trainer.lr_mlp,
            ttur_mult=trainer.ttur_mult,
            image_size=trainer.image_size,
            network_capacity=trainer.network_capacity,
            fmap_max=trainer.fmap_max,
            transparent=trainer.transparent,
            fq_layers=trainer.fq_layers,
            fq_dict_size=trainer.fq_dict_size,
            attn_layers=trainer.attn_layers,
            no_const=trainer.no_const,
            latent_dim=cfg["latent_dim"],
            style_depth=cfg["style_depth"],
        )
        gan = trainer.GAN
        gan.train()
        losses: dict[str, float] = {}
        for step in range(job.steps):
            losses = _train_step(trainer, gan, step)
        gan.eval()
        images = _sample(trainer, gan, job.n_images)
    pixels = images.mul(255).add_(0.5).clamp_(0, 255).permute(0, 2, 3, 1).to(torch.uint8)
    res, latent_dim = job.resolution, cfg["latent_dim"]
    example_rng = torch.Generator().manual_seed(0)
    example = (
        torch.randn(1, latent_dim, generator=example_rng),
        torch.rand(1, res, res, 1, generator=example_rng),
    )
    return ForeignGM(
        images=pixels.numpy(),
        module=_MappedGenerator(gan.S, gan.G),
        example=example,
        losses=("hinge",),
        loss_source="stylegan2_pytorch hinge_loss, gen_hinge_loss (as Trainer.train computes them)",
        final_losses=losses,
        sampler=f"truncated styles, trunc_psi {cfg['trunc_psi']} (the generator, not its EMA)",
    )


register(
    Family(
        "stylegan2-pytorch",
        PACKAGE,
        "noise",
        stylegan2_config,
        stylegan2_train_and_sample,
        "StyleGAN2 (lucidrains), hinge loss",
    )
)
