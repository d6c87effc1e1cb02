"""Foreign families of `normflows`: multiscale image flows built from the package's
own layers as in its documented image example (`examples/glow_colab.ipynb`): levels
of flow blocks each ending in `nf.flows.Squeeze`, joined by `nf.flows.Merge`, one
base distribution per level, in `nf.MultiscaleFlow`.

* normflows-glow: `nf.flows.GlowBlock`s (affine coupling, invertible 1x1
  convolution, ActNorm), as in the example.
* normflows-realnvp: RealNVP couplings, `nf.flows.AffineCouplingBlock` around the
  package's `nf.nets.ConvNet2d` with alternating checkerboard and channel masks,
  `nf.flows.ActNorm` and the package's `nf.transforms.Logit` preprocessing flow.

Training is the example's: crops in [0, 1] through `nf.utils.Scale(255/256)` and
`nf.utils.Jitter(1/256)` (dequantization), `MultiscaleFlow.forward_kld` (the mean
negative log-likelihood, gmtrace's "ce"), Adamax, steps with a non-finite loss
skipped. Images are `MultiscaleFlow.sample` at the temperature the config draws,
clamped to [0, 1] as the example does; the package has no 8-bit writer, so
`base.to_uint8` rounds them.

`MultiscaleFlow.forward` returns the negative log-likelihood, not images, so
describe() reads `_Generator`: a thin module without parameters of its own holding
the package's flow levels, merges and transform, whose forward calls the package's
`MultiscaleFlow.forward_and_log_det` (the generative direction `sample` runs) on
given per-level latents. The base distributions (the prior the latents come from)
are left out of it, as the diffusers decoder leaves out its prior.
"""

from __future__ import annotations

from collections.abc import Callable

import normflows as nf
import numpy as np
import torch
from torch import nn

from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, register, to_uint8

PACKAGE = "normflows"


class _Generator(nn.Module):
    """The flow's generative direction: per-level latents to an image, through the
    package's own `MultiscaleFlow.forward_and_log_det`."""

    def __init__(self, model: nf.MultiscaleFlow) -> None:
        super().__init__()
        self.flows = model.flows
        self.merges = model.merges
        self.transform = model.transform
        self._generate = model.forward_and_log_det  # a bound method: registers nothing

    def forward(self, *z: torch.Tensor) -> torch.Tensor:
        return self._generate(list(z))[0]


def _common_config(rng: np.random.Generator) -> dict:
    return {
        "levels": int(rng.integers(2, 4)),
        "blocks_per_level": int(rng.integers(2, 5)),
        "hidden_channels": int(rng.choice([24, 32, 48])),
        "leaky": float(rng.choice([0.0, 0.01, 0.2])),
        "net_actnorm": bool(rng.random() < 0.5),
        "base": str(rng.choice(["glow", "diag"])),
        "temperature": float(rng.choice([0.6, 0.7, 0.8, 1.0])),
        "lr": float(rng.choice([5e-4, 1e-3])),
    }


def glow_config(rng: np.random.Generator) -> dict:
    return {
        **_common_config(rng),
        "split_mode": str(rng.choice(["channel", "channel_inv", "checkerboard"])),
        "scale_map": str(rng.choice(["sigmoid", "exp"])),
        "use_lu": bool(rng.random() < 0.7),
    }


def realnvp_config(rng: np.random.Generator) -> dict:
    return {
        **_common_config(rng),
        "logit_alpha": float(rng.choice([0.01, 0.05])),
        "actnorm": bool(rng.random() < 0.7),
    }


def _glow_block(channels: int, cfg: dict, j: int) -> list[nf.flows.Flow]:
    return [
        nf.flows.GlowBlock(
            channels,
            cfg["hidden_channels"],
            scale_map=cfg["scale_map"],
            split_mode=cfg["split_mode"],
            leaky=cfg["leaky"],
            use_lu=cfg["use_lu"],
            net_actnorm=cfg["net_actnorm"],
        )
    ]


def _realnvp_block(channels: int, cfg: dict, j: int) -> list[nf.flows.Flow]:
    """One RealNVP coupling: checkerboard masks first, channel masks after, each
    alternating with its inverse so that every feature is transformed."""
    masks = ("checkerboard", "checkerboard_inv", "channel", "channel_inv")
    mode = masks[j % 4]
    if mode.startswith("checkerboard"):
        sizes = (channels, cfg["hidden_channels"], cfg["hidden_channels"], 2 * channels)
    else:
        cond = channels // 2 if mode == "channel_inv" else (channels + 1) // 2
        sizes = (cond, cfg["hidden_channels"], cfg["hidden_channels"], 2 * (channels - cond))
    net = nf.nets.ConvNet2d(sizes, (3, 1, 3), cfg["leaky"], True, actnorm=cfg["net_actnorm"])
    layers: list[nf.flows.Flow] = [
        nf.flows.AffineCouplingBlock(net, scale=True, scale_map="exp", split_mode=mode)
    ]
    if cfg["actnorm"]:
        layers.append(nf.flows.ActNorm((channels, 1, 1)))
    return layers


Block = Callable[[int, dict, int], list[nf.flows.Flow]]


def _multiscale(
    cfg: dict, resolution: int, block: Block, transform: nf.flows.Flow | None = None
) -> nf.MultiscaleFlow:
    """The example's multiscale layout: level i has blocks on 3 * 2^(L+1-i) channels
    and ends in a squeeze; each level after the first merges in a new latent."""
    n_levels, c = cfg["levels"], 3
    q0, merges, flows = [], [], []
    for i in range(n_levels):
        channels = c * 2 ** (n_levels + 1 - i)
        level: list[nf.flows.Flow] = []
        for j in range(cfg["blocks_per_level"]):
            level += block(channels, cfg, j)
        flows.append([*level, nf.flows.Squeeze()])
        if i > 0:
            merges.append(nf.flows.Merge())
            side = resolution // 2 ** (n_levels - i)
            shape = (c * 2 ** (n_levels - i), side, side)
        else:
            side = resolution // 2**n_levels
            shape = (c * 2 ** (n_levels + 1), side, side)
        if cfg["base"] == "glow":
            q0.append(nf.distributions.GlowBase(shape))
        else:
            q0.append(nf.distributions.DiagGaussian(shape))
    return nf.MultiscaleFlow(q0, flows, merges, transform=transform, class_cond=False)


def _train_and_sample(job: ForeignJob, model: nf.MultiscaleFlow, source: str) -> ForeignGM:
    cfg = job.config
    opt = torch.optim.Adamax(model.parameters(), lr=cfg["lr"], weight_decay=1e-5)
    scale, jitter = nf.utils.Scale(255.0 / 256.0), nf.utils.Jitter(1.0 / 256.0)
    batches = job.batches(np.random.default_rng(job.seed))
    model.train()
    loss = torch.tensor(float("nan"))
    skipped = 0
    for _ in range(job.steps):
        x = jitter(scale(torch.from_numpy(next(batches)) * 0.5 + 0.5))
        opt.zero_grad()
        loss = model.forward_kld(x)
        if torch.isfinite(loss):  # the example skips steps with a non-finite loss
            loss.backward()
            opt.step()
        else:
            skipped += 1
    model.eval()
    images = []
    with torch.no_grad():
        for start in range(0, job.n_images, 32):
            n = min(32, job.n_images - start)
            x, _ = model.sample(n, temperature=cfg["temperature"])
            images.append(to_uint8(torch.clamp(x, 0, 1), 0.0, 1.0))
    return ForeignGM(
        images=np.concatenate(images),
        module=_Generator(model),
        example=tuple(torch.zeros(1, *q.shape) for q in model.q0),
        losses=("ce",),
        loss_source=f"normflows MultiscaleFlow.forward_kld (negative log-likelihood: {source}, "
        "base distribution log_prob) of crops dequantized by nf.utils.Scale and nf.utils.Jitter",
        final_losses={"nll": loss.item(), "skipped_steps": float(skipped)},
        sampler=f"MultiscaleFlow.sample, temperature {cfg['temperature']}",
    )


def glow_train_and_sample(job: ForeignJob) -> ForeignGM:
    model = _multiscale(job.config, job.resolution, _glow_block)
    return _train_and_sample(job, model, "GlowBlock log-determinants")


def realnvp_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    logit = nf.transforms.Logit(alpha=cfg["logit_alpha"])
    model = _multiscale(cfg, job.resolution, _realnvp_block, transform=logit)
    return _train_and_sample(job, model, "AffineCouplingBlock and Logit log-determinants")


register(
    Family(
        "normflows-glow",
        PACKAGE,
        "noise",
        glow_config,
        glow_train_and_sample,
        "multiscale Glow (GlowBlock, Squeeze, Merge) trained by forward KL",
    )
)

register(
    Family(
        "normflows-realnvp",
        PACKAGE,
        "noise",
        realnvp_config,
        realnvp_train_and_sample,
        "multiscale RealNVP (checkerboard/channel AffineCouplingBlock, Logit) by forward KL",
    )
)
