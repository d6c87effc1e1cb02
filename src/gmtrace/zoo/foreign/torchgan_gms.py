"""Foreign families of `torchgan`: its DCGANGenerator and its AutoEncodingGenerator
(the BEGAN generator: a linear projection, then repeated 3x3 conv and transposed-conv
units with ELU) trained by the package's own `Trainer` with one of its loss pairs.

The losses are torchgan's classes, each running its own `train_ops` inside the
Trainer: `MinimaxGeneratorLoss`/`MinimaxDiscriminatorLoss` (BCE on logits, "adv"),
optionally with `DraganGradientPenalty`; `LeastSquaresGeneratorLoss`/
`LeastSquaresDiscriminatorLoss` ("ls"); `WassersteinGeneratorLoss`/
`WassersteinDiscriminatorLoss` with `WassersteinGradientPenalty` or weight clipping
("wgan"); `FeatureMatchingGeneratorLoss` (F.mse_loss between the discriminator's
features of real and generated images, "l2") against `MinimaxDiscriminatorLoss`
("adv"); and the EBGAN pair `EnergyBasedGeneratorLoss`/`EnergyBasedDiscriminatorLoss`
(the margin loss D(x) + max(0, m - D(G(z))) on the energy of an
`AutoEncodingDiscriminator`, "hinge"). Left out: the BEGAN pair
(`BoundaryEquilibrium*Loss`), whose objective maps to no schema loss type, and
`EnergyBasedPullingAwayTerm`, which normalizes the embeddings over the batch axis and so
outweighs the energy hundreds of times (its generators stay gray noise).

The Trainer runs one epoch over an in-memory DataLoader of `job.steps` batches, so
each batch is one step of every loss. Both networks start from the DCGAN paper's
N(0, 0.02) initialization rather than torchgan's Kaiming one, with which 60-300 steps
leave the generator at its initial white noise; the learning rates are high for the
same reason. Two things are switched off, not replaced: its console printing (sent to
a buffer) and its end-of-epoch `ImageVisualize`, which calls
`torchvision.utils.make_grid(range=...)`, an argument torchvision has since removed.
Its checkpoints go to `job.workdir` and are never read back. Images: the generator's
own `sampler` noise; floats in [-1, 1] to 8 bits as the package's image writer does
(make_grid normalize over (-1, 1), then save_image's rounding).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from torchgan import losses as tl
from torchgan.logging.visualize import ImageVisualize
from torchgan.models import (
    AutoEncodingDiscriminator,
    AutoEncodingGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
)
from torchgan.trainer import Trainer

from gmtrace.data.images import to_float
from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, register, to_uint8

PACKAGE = "torchgan"

# loss pair -> (schema loss types, the package classes that compute them)
LOSS_PAIRS: dict[str, tuple[tuple[str, ...], str]] = {
    "minimax": (("adv",), "MinimaxGeneratorLoss, MinimaxDiscriminatorLoss"),
    "dragan": (
        ("adv",),
        "MinimaxGeneratorLoss, MinimaxDiscriminatorLoss, DraganGradientPenalty",
    ),
    "least_squares": (("ls",), "LeastSquaresGeneratorLoss, LeastSquaresDiscriminatorLoss"),
    "wasserstein_gp": (
        ("wgan",),
        "WassersteinGeneratorLoss, WassersteinDiscriminatorLoss, WassersteinGradientPenalty",
    ),
    "wasserstein_clip": (
        ("wgan",),
        "WassersteinGeneratorLoss, WassersteinDiscriminatorLoss(clip)",
    ),
    "feature_matching": (
        ("adv", "l2"),
        "FeatureMatchingGeneratorLoss (F.mse_loss of discriminator features), "
        "MinimaxDiscriminatorLoss",
    ),
    "energy_based": (
        ("hinge",),
        "EnergyBasedGeneratorLoss, EnergyBasedDiscriminatorLoss (margin loss on the "
        "AutoEncodingDiscriminator's reconstruction energy)",
    ),
}

ACTIVATIONS = {
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "relu": lambda: nn.ReLU(),
    "elu": lambda: nn.ELU(),
}


def _loss_config(rng: np.random.Generator) -> dict:
    pair = str(rng.choice(list(LOSS_PAIRS)))
    cfg: dict = {"loss": pair}
    if pair in ("minimax", "dragan", "feature_matching"):
        cfg["label_smoothing"] = float(rng.choice([0.0, 0.1, 0.2]))
    if pair in ("minimax", "dragan", "least_squares", "feature_matching"):
        cfg["d_linear_output"] = bool(rng.random() < 0.5)
    if pair in ("minimax", "dragan"):
        cfg["nonsaturating"] = bool(rng.random() < 0.75)
    if pair == "least_squares":  # LSGAN's two codings: (a, b, c) = (0, 1, 1) or (-1, 1, 0)
        cfg["targets"] = [[0.0, 1.0, 1.0], [-1.0, 1.0, 0.0]][int(rng.integers(2))]
    if pair == "energy_based":
        cfg["margin"] = float(rng.choice([0.5, 1.0, 2.0]))
    return cfg


def _losses(cfg: dict) -> list:
    pair = cfg["loss"]
    if pair in ("minimax", "dragan"):
        out = [
            tl.MinimaxGeneratorLoss(nonsaturating=cfg["nonsaturating"]),
            tl.MinimaxDiscriminatorLoss(label_smoothing=cfg["label_smoothing"]),
        ]
        return out + [tl.DraganGradientPenalty()] if pair == "dragan" else out
    if pair == "least_squares":
        a, b, c = cfg["targets"]
        return [tl.LeastSquaresGeneratorLoss(c=c), tl.LeastSquaresDiscriminatorLoss(a=a, b=b)]
    if pair == "wasserstein_gp":
        return [
            tl.WassersteinGeneratorLoss(),
            tl.WassersteinDiscriminatorLoss(),
            tl.WassersteinGradientPenalty(),
        ]
    if pair == "wasserstein_clip":
        return [tl.WassersteinGeneratorLoss(), tl.WassersteinDiscriminatorLoss(clip=(-0.01, 0.01))]
    if pair == "feature_matching":
        return [
            tl.FeatureMatchingGeneratorLoss(),
            tl.MinimaxDiscriminatorLoss(label_smoothing=cfg["label_smoothing"]),
        ]
    return [tl.EnergyBasedGeneratorLoss(), tl.EnergyBasedDiscriminatorLoss(margin=cfg["margin"])]


def _discriminator(cfg: dict, resolution: int) -> dict:
    """The Trainer's model entry of the discriminator the loss pair needs."""
    args = {
        "in_size": resolution,
        "step_channels": cfg["d_step_channels"],
        "batchnorm": cfg["d_batchnorm"],
        "nonlinearity": ACTIVATIONS[cfg["d_activation"]](),
    }
    if cfg["loss"] == "energy_based":
        name = AutoEncodingDiscriminator
        args["encoding_dims"] = cfg["encoding_dims"]
    else:
        # a critic ends linear; the other pairs draw that or the package's default
        name = DCGANDiscriminator
        args["last_nonlinearity"] = nn.Identity() if cfg.get("d_linear_output", True) else None
    return {"name": name, "args": args, "optimizer": _adam(cfg)}


def _dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialization, N(0, 0.02) weights (batch norm scales
    N(1, 0.02)) and zero biases, in place of torchgan's Kaiming init, whose generators
    are still their initial white noise after a few hundred steps."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _adam(cfg: dict) -> dict:
    return {"name": torch.optim.Adam, "args": {"lr": cfg["lr"], "betas": (0.5, 0.999)}}


def _common_config(rng: np.random.Generator) -> dict:
    losses = _loss_config(rng)
    # the autoencoding discriminator of the energy pair is the costlier: narrower
    widths = [4, 8] if losses["loss"] == "energy_based" else [8, 16, 32]
    return {
        "encoding_dims": int(rng.choice([64, 100, 128])),
        "batchnorm": bool(rng.random() < 0.75),
        "d_step_channels": int(rng.choice(widths)),
        "d_batchnorm": bool(rng.random() < 0.5),
        "d_activation": str(rng.choice(["leaky_relu", "elu"])),
        "lr": float(rng.choice([5e-4, 1e-3])),
        **losses,
    }


def _train_and_sample(job: ForeignJob, generator: dict, what: str) -> ForeignGM:
    """Train `generator` (a Trainer model entry) against the loss pair's discriminator
    with torchgan's Trainer; sample with the generator's own sampler."""
    cfg = job.config
    models = {"generator": generator, "discriminator": _discriminator(cfg, job.resolution)}
    losses = _losses(cfg)
    data = torch.from_numpy(np.ascontiguousarray(to_float(job.crops)))
    draws = RandomSampler(
        data,
        replacement=True,
        num_samples=job.steps * job.batch,
        generator=torch.Generator().manual_seed(job.seed),
    )
    loader = DataLoader(data, batch_size=job.batch, sampler=draws)
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = Trainer(
            models,
            losses,
            device=torch.device("cpu"),
            epochs=1,
            sample_size=job.batch,
            checkpoints=str(job.workdir / "checkpoints" / "gan"),
            retain_checkpoints=1,
            recon=str(job.workdir / "images"),
        )
        ends = trainer.logger.logger_end_epoch
        ends[:] = [v for v in ends if not isinstance(v, ImageVisualize)]
        _dcgan_init(trainer.generator)
        _dcgan_init(trainer.discriminator)
        trainer(loader)
    gen = trainer.generator
    gen.eval()
    torch.manual_seed(job.seed)
    with torch.no_grad():
        images = gen(*gen.sampler(job.n_images, torch.device("cpu")))
    logs = trainer.logger.get_loss_viz().logs
    kinds, source = LOSS_PAIRS[cfg["loss"]]
    return ForeignGM(
        images=to_uint8(images, -1.0, 1.0),
        module=gen,
        example=(torch.zeros(1, cfg["encoding_dims"]),),
        losses=kinds,
        loss_source=f"torchgan.losses {source}, run by torchgan.trainer.Trainer",
        final_losses={name: float(v[-1]) for name, v in logs.items() if v},
        sampler=f"{what}.sampler: N(0, I) noise of {cfg['encoding_dims']} dims",
    )


# ---------------------------------------------------------------------------
# the two generator families: DCGAN's and BEGAN's autoencoding generator


def _register_generator(
    family: str, cls: type, channels: list[int], activations: list[str], doc: str
) -> None:
    """A family of torchgan generators of class `cls`, each drawing its width from
    `channels` and its block activation from `activations`."""

    def configs(rng: np.random.Generator) -> dict:
        return {
            "step_channels": int(rng.choice(channels)),
            "activation": str(rng.choice(activations)),
            **_common_config(rng),
        }

    def train_and_sample(job: ForeignJob) -> ForeignGM:
        cfg = job.config
        generator = {
            "name": cls,
            "args": {
                "encoding_dims": cfg["encoding_dims"],
                "out_size": job.resolution,
                "step_channels": cfg["step_channels"],
                "batchnorm": cfg["batchnorm"],
                "nonlinearity": ACTIVATIONS[cfg["activation"]](),
            },
            "optimizer": _adam(cfg),
        }
        return _train_and_sample(job, generator, cls.__name__)

    register(Family(family, PACKAGE, "noise", configs, train_and_sample, doc))


_register_generator(
    "torchgan-dcgan",
    DCGANGenerator,
    [8, 16, 32],
    ["leaky_relu", "relu", "elu"],
    "DCGANGenerator with one of torchgan's loss pairs, trained by its Trainer",
)
_register_generator(
    "torchgan-autoencoding",
    AutoEncodingGenerator,
    [8, 12, 16],
    ["elu", "leaky_relu", "relu"],
    "AutoEncodingGenerator (BEGAN's) with one of torchgan's loss pairs, trained by its Trainer",
)
