"""Foreign family of `lightweight-gan` (lucidrains): the FastGAN-style
`LightweightGAN` (skip-layer excitation generator, self-supervised discriminator
with an extra 32x32 head), configured, fed and sampled by the package's `Trainer`.

The package asserts a CUDA device when imported and its `Trainer.train` moves every
tensor with `.cuda()`, so it cannot train on a CPU as shipped. Here the module is
imported with `torch.cuda.is_available` answering True for that one assertion,
`LightweightGAN` is built by its own constructor (its networks, weight init and
Adam/AdaBelief optimizers) with only its final `.cuda()` skipped, and a loop that
follows `Trainer.train` step by step runs on the CPU: the package's `Trainer` holds
the configuration, reads the crops from a folder of PNGs with its own dataset and
loader (`set_data_src`, images in [0, 1]), and draws the samples (`Trainer.generate_`).

Objective, as `Trainer.train` computes it: the discriminator's `hinge_loss` (or
`dual_contrastive_loss`) on its main logits and on its 32x32 head, plus its own
auxiliary reconstruction (`Discriminator.forward(calc_aux_loss=True)`, an MSE that
trains the discriminator only) and, every 4th step, a gradient penalty; the
generator's `gen_hinge_loss` (or `dual_contrastive_loss`) on both heads. The dual
contrastive loss is a softmax cross-entropy of each real logit against the fake
logits (and back): a logistic GAN loss, schema type "adv". The auxiliary
reconstruction and the penalty regularize the discriminator and are no schema type.
Images: `Trainer.generate_` clamps to [0, 1]; 8 bits as `torchvision.utils.save_image`
(the package's image writer) rounds them.

Slow on a CPU whatever the config: every discriminator call also runs its fixed 32x32
head (`Discriminator.to_shape_disc_out`: 64 channels and a `LinearAttention` of 8 x 64
dimensions with an unfolded 3x3 local attention over all 1024 positions), which no
constructor argument shrinks: 10-20 s a step at 64 px, batch 8, on one core.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.autograd import grad as torch_grad

from gmtrace.zoo.foreign.base import (
    Family,
    ForeignGM,
    ForeignJob,
    StaysOnCPU,
    output_to_log,
    register,
)

with mock.patch("torch.cuda.is_available", return_value=True):  # its import-time assert
    import lightweight_gan.lightweight_gan as lw

PACKAGE = "lightweight-gan"
_BLUR = lw.Blur  # Trainer.init_GAN swaps this module global for nn.Identity unless antialias

ATTN_CHOICES = ([], [8], [16], [8, 16])  # feature-map widths with LinearAttention
AUG_CHOICES = (["translation", "cutout"], ["translation", "color"], ["offset", "cutout"])


class _LightweightGANOnCPU(StaysOnCPU, lw.LightweightGAN):
    """The package's LightweightGAN, left on the CPU (its constructor ends with
    `self.cuda(rank)`)."""


@contextlib.contextmanager
def _antialias(on: bool) -> Iterator[None]:
    """What `Trainer.init_GAN` does to the module's `Blur` before building, undone after."""
    lw.Blur = _BLUR if on else nn.Identity
    try:
        yield
    finally:
        lw.Blur = _BLUR


def _write_crops(crops: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, crop in enumerate(crops):
        Image.fromarray(crop).save(folder / f"{i:05d}.png")
    return folder


def lightweight_config(rng: np.random.Generator) -> dict:
    dual = bool(rng.random() < 0.35)
    return {
        "latent_dim": int(rng.choice([64, 128, 256])),
        # generator widths 2**(coef - k) at 2**k px, capped by fmap_max
        "fmap_inverse_coef": int(rng.choice([9, 10])),
        "fmap_max": int(rng.choice([64, 128, 256])),
        "attn_res_layers": ATTN_CHOICES[int(rng.integers(len(ATTN_CHOICES)))],
        "disc_output_size": 1 if dual else int(rng.choice([1, 5])),
        "dual_contrast_loss": dual,
        "antialias": bool(rng.random() < 0.5),
        "optimizer": str(rng.choice(["adam", "adabelief"])),
        "lr": float(rng.choice([1e-4, 2e-4, 4e-4])),
        "ttur_mult": float(rng.choice([1.0, 2.0])),
        "aug_prob": float(rng.choice([0.0, 0.25, 0.5])),
        "aug_types": AUG_CHOICES[int(rng.integers(len(AUG_CHOICES)))],
    }


def _gradient_penalty(trainer: lw.Trainer, inputs: list, outputs: list) -> torch.Tensor:
    """`Trainer.train`'s penalty: squared gradient norms of both heads' logits with
    respect to the real and the fake discriminator inputs."""
    grads = []
    for x, outs in zip(inputs, outputs, strict=True):
        g = torch_grad(
            outputs=outs,
            inputs=x,
            grad_outputs=[torch.ones_like(t) for t in outs],
            create_graph=True,
            retain_graph=True,
            only_inputs=True,
        )[0]
        grads.append(g.reshape(len(g), -1))
    return trainer.gp_weight * (torch.cat(grads).norm(2, dim=1) ** 2).mean()


def _train_step(trainer: lw.Trainer, gan: lw.LightweightGAN, step: int) -> dict[str, float]:
    """One step of `Trainer.train` (no gradient accumulation, AMP or DDP)."""
    G, D_aug, batch, latent_dim = gan.G, gan.D_aug, trainer.batch_size, gan.latent_dim
    aug = {"prob": trainer.aug_prob, "types": trainer.aug_types}
    apply_gp = step % 4 == 0
    if trainer.dual_contrast_loss:
        d_loss_fn, g_loss_fn = lw.dual_contrastive_loss, lw.dual_contrastive_loss
    else:
        d_loss_fn, g_loss_fn = lw.hinge_loss, lw.gen_hinge_loss

    gan.D_opt.zero_grad()
    real = next(trainer.loader)
    with torch.no_grad():
        fake = G(torch.randn(batch, latent_dim))
    if apply_gp:
        real.requires_grad_()
    fake, (fake_out, fake_out_32, _) = D_aug(
        fake, detach=True, input_requires_grad=apply_gp, return_discr_input=True, **aug
    )
    real_out, real_out_32, aux = D_aug(real, calc_aux_loss=True, **aug)
    divergence = d_loss_fn(real_out, fake_out)
    disc_loss = divergence + d_loss_fn(real_out_32, fake_out_32) + aux
    if apply_gp:
        gp = _gradient_penalty(
            trainer, [real, fake], [[real_out, real_out_32], [fake_out, fake_out_32]]
        )
        if not torch.isnan(gp):
            disc_loss = disc_loss + gp
    disc_loss.backward()
    gan.D_opt.step()

    gan.G_opt.zero_grad()
    fake_out, fake_out_32, _ = D_aug(G(torch.randn(batch, latent_dim)), **aug)
    real_out = real_out_32 = None
    if trainer.dual_contrast_loss:
        real_out, real_out_32, _ = D_aug(next(trainer.loader), **aug)
    g_loss = g_loss_fn(fake_out, real_out)
    (g_loss + g_loss_fn(fake_out_32, real_out_32)).backward()
    gan.G_opt.step()
    return {"d": divergence.item(), "g": g_loss.item(), "aux_recon": aux.item()}


def lightweight_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    with output_to_log(job):  # its console output and warnings
        trainer = lw.Trainer(
            name=job.name,
            base_dir=str(job.workdir),
            num_workers=0,
            image_size=job.resolution,
            batch_size=job.batch,
            latent_dim=cfg["latent_dim"],
            fmap_max=cfg["fmap_max"],
            attn_res_layers=list(cfg["attn_res_layers"]),
            disc_output_size=cfg["disc_output_size"],
            dual_contrast_loss=cfg["dual_contrast_loss"],
            antialias=cfg["antialias"],
            optimizer=cfg["optimizer"],
            lr=cfg["lr"],
            ttur_mult=cfg["ttur_mult"],
            aug_prob=cfg["aug_prob"],
            aug_types=list(cfg["aug_types"]),
            use_aim=False,
        )
        trainer.set_data_src(str(_write_crops(job.crops, job.workdir / "data")))
        with _antialias(trainer.antialias):  # the rest as Trainer.init_GAN builds it
            trainer.GAN = _LightweightGANOnCPU(
                optimizer=trainer.optimizer,
                lr=trainer.lr,
                latent_dim=trainer.latent_dim,
                attn_res_layers=trainer.attn_res_layers,
                freq_chan_attn=trainer.freq_chan_attn,
                image_size=trainer.image_size,
                ttur_mult=trainer.ttur_mult,
                fmap_max=trainer.fmap_max,
                fmap_inverse_coef=cfg["fmap_inverse_coef"],
                disc_output_size=trainer.disc_output_size,
            )
        gan = trainer.GAN
        gan.train()
        losses: dict[str, float] = {}
        for step in range(job.steps):
            losses = _train_step(trainer, gan, step)
        gan.eval()
        latents = torch.randn(job.n_images, gan.latent_dim)
        images = trainer.generate_(gan.G, latents)  # evaluated in chunks, clamped to [0, 1]
    pixels = images.mul(255).add_(0.5).clamp_(0, 255).permute(0, 2, 3, 1).to(torch.uint8)
    loss_fn = "dual_contrastive_loss" if cfg["dual_contrast_loss"] else "hinge_loss, gen_hinge_loss"
    return ForeignGM(
        images=pixels.numpy(),
        module=gan.G,
        example=(torch.randn(1, gan.latent_dim, generator=torch.Generator().manual_seed(0)),),
        losses=("adv",) if cfg["dual_contrast_loss"] else ("hinge",),
        loss_source=f"lightweight_gan {loss_fn} on the Discriminator's main and 32x32 logits "
        "(as Trainer.train computes them)",
        final_losses=losses,
        sampler="Trainer.generate_ on N(0, I) latents (the generator, not its EMA copy)",
    )


register(
    Family(
        "lightweight-gan",
        PACKAGE,
        "noise",
        lightweight_config,
        lightweight_train_and_sample,
        "LightweightGAN (FastGAN-style generator), hinge or dual contrastive loss",
    )
)
