"""Foreign families of `pythae`: its variational autoencoders (VAE, BetaVAE, IWAE,
CIWAE, DisentangledBetaVAE, INFOVAE_MMD, VAMP) and WAE_MMD decoding samples of their
prior, and its VQVAE reconstructing photographs.

Networks: the package's ResNet benchmark encoders and decoders for the resolution
(`pythae.models.nn.benchmarks.cifar` at 32 px, `.celeba` at 64 px: strided convs,
ResBlocks, transposed convs, a sigmoid) or, for the noise families, its default MLPs
(built by the model when given no networks). Its conv benchmark nets (1024 channels)
are left out: too slow for a CPU budget.

Training: pythae's own `TrainingPipeline` (its `BaseTrainer`, no eval set) on the
crops in [0, 1] held in memory. The trainer counts epochs: an epoch is a fixed list
of crop draws (pythae's `BaseDataset` read through it) whose batches divide
`job.steps`, so the optimizer steps exactly `job.steps` times. Checkpoints go to
`job.workdir` and are never read back; the model used is the one pythae keeps as
final (its best on train). Objectives, each the model's own `loss_function`:
reconstruction "mse" (0.5 * F.mse_loss summed over pixels) or "ce" (its "bce" option:
F.binary_cross_entropy on pixels, a Bernoulli likelihood), plus "kl" (KL of the
Gaussian posterior to the prior, or its importance-weighted and VampPrior forms);
INFOVAE_MMD adds "mmd"; WAE_MMD is F.mse_loss plus "mmd" of its latents to N(0, I);
VQVAE is F.mse_loss plus its Quantizer's commitment and codebook terms (F.mse_loss
between encoder features and codes: "l2").

Images: pythae's samplers (NormalSampler, GaussianMixtureSampler fitted on the
crops' codes, VAMPSampler for VAMP) writing PNGs with `BaseSampler.save_img`, the
package's own 8-bit conversion, read back; VQVAE's reconstructions through the same
`save_img`. VQVAE is a translator: its prior sampler (PixelCNNSampler) would need a
second model trained on its codes.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pythae.data.datasets import BaseDataset, DatasetOutput
from pythae.models import (
    CIWAE,
    INFOVAE_MMD,
    IWAE,
    VAE,
    VAMP,
    VQVAE,
    WAE_MMD,
    BetaVAE,
    BetaVAEConfig,
    CIWAEConfig,
    DisentangledBetaVAE,
    DisentangledBetaVAEConfig,
    INFOVAE_MMD_Config,
    IWAEConfig,
    VAEConfig,
    VAMPConfig,
    VQVAEConfig,
    WAE_MMD_Config,
)
from pythae.models.base import BaseAE
from pythae.models.nn.benchmarks import celeba, cifar
from pythae.pipelines import TrainingPipeline
from pythae.samplers import (
    BaseSampler,
    GaussianMixtureSampler,
    GaussianMixtureSamplerConfig,
    NormalSampler,
    VAMPSampler,
)
from pythae.trainers import BaseTrainerConfig
from torch import nn

from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, register

PACKAGE = "pythae"

# the package's ResNet benchmark networks by resolution:
# (VAE encoder, AE encoder, VQVAE encoder, AE decoder, VQVAE decoder)
BENCHMARKS = {
    32: (
        cifar.Encoder_ResNet_VAE_CIFAR,
        cifar.Encoder_ResNet_AE_CIFAR,
        cifar.Encoder_ResNet_VQVAE_CIFAR,
        cifar.Decoder_ResNet_AE_CIFAR,
        cifar.Decoder_ResNet_VQVAE_CIFAR,
    ),
    64: (
        celeba.Encoder_ResNet_VAE_CELEBA,
        celeba.Encoder_ResNet_AE_CELEBA,
        celeba.Encoder_ResNet_VQVAE_CELEBA,
        celeba.Decoder_ResNet_AE_CELEBA,
        celeba.Decoder_ResNet_VQVAE_CELEBA,
    ),
}

VAE_MODELS = {
    "VAE": (VAE, VAEConfig),
    "BetaVAE": (BetaVAE, BetaVAEConfig),
    "IWAE": (IWAE, IWAEConfig),
    "CIWAE": (CIWAE, CIWAEConfig),
    "DisentangledBetaVAE": (DisentangledBetaVAE, DisentangledBetaVAEConfig),
    "INFOVAE_MMD": (INFOVAE_MMD, INFOVAE_MMD_Config),
    "VAMP": (VAMP, VAMPConfig),
}


class _Draws(BaseDataset):
    """pythae's dataset of the crops, read through a list of draws: one epoch."""

    def __init__(self, data: torch.Tensor, draws: np.ndarray) -> None:
        super().__init__(data, torch.ones(len(data)))
        self.draws = draws

    def __len__(self) -> int:
        return len(self.draws)

    def __getitem__(self, index: int):
        return super().__getitem__(int(self.draws[index]))


class _Reconstruction(nn.Module):
    """A pythae model's `reconstruct` (encode, quantize, decode) as one module for
    describe(): a translator's images come from all of it."""

    def __init__(self, model: BaseAE) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.reconstruct(x)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pythae logs, prints and draws progress bars at every step: keep them out of
    the build's console."""
    loggers = [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.startswith("pythae")
    ]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _unit(crops: np.ndarray) -> torch.Tensor:
    """uint8 NHWC crops to floats NCHW in [0, 1], the range pythae's sigmoid decoders
    and its samplers expect."""
    return torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2))).float() / 255.0


def _steps_per_epoch(steps: int, n_crops: int, batch: int) -> int:
    """The divisor of `steps` nearest one pass over the crops."""
    one_pass = -(-n_crops // batch)
    divisors = [d for d in range(1, steps + 1) if steps % d == 0]
    return min(divisors, key=lambda d: (abs(d - one_pass), d))


def _nets(arch: str, resolution: int, encoder: int, decoder: int) -> dict:
    """The model's networks: the benchmark ResNets (by index into BENCHMARKS), or none
    for pythae's default MLPs."""
    if arch == "mlp":
        return {}
    if resolution not in BENCHMARKS:
        raise ValueError(f"pythae has ResNet benchmark networks for {sorted(BENCHMARKS)} px")
    nets = BENCHMARKS[resolution]
    return {"encoder": nets[encoder], "decoder": nets[decoder]}


def _build(model_cls: type, config, nets: dict) -> BaseAE:
    return model_cls(
        model_config=config,
        **{role: net(config) for role, net in nets.items()},
    )


def _train(model: BaseAE, job: ForeignJob) -> BaseAE:
    """pythae's TrainingPipeline for exactly `job.steps` optimizer steps; the model it
    keeps as final."""
    cfg = job.config
    per_epoch = _steps_per_epoch(job.steps, len(job.crops), job.batch)
    rng = np.random.default_rng(job.seed)
    draws = np.resize(rng.permutation(len(job.crops)), per_epoch * job.batch)
    training = BaseTrainerConfig(
        output_dir=str(job.workdir / "pythae"),
        per_device_train_batch_size=job.batch,
        num_epochs=job.steps // per_epoch,
        learning_rate=cfg["lr"],
        optimizer_cls=cfg["optimizer"],
        seed=job.seed,
        no_cuda=True,
    )
    pipeline = TrainingPipeline(model=model, training_config=training)
    with _quiet():
        pipeline(train_data=_Draws(_unit(job.crops), draws))
    return pipeline.trainer._best_model


def _final_losses(model: BaseAE, job: ForeignJob) -> dict[str, float]:
    """The scalar loss terms of the (CPU) model's forward on one batch of crops."""
    with torch.no_grad():
        out = model(DatasetOutput(data=_unit(job.crops[: job.batch])))
    return {k: float(v) for k, v in out.items() if k.endswith("loss") and v.numel() == 1}


def _read_pngs(folder: Path) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.open(p).convert("RGB"), np.uint8) for p in sorted(folder.glob("*.png"))]
    )


def _sampler_config(rng: np.random.Generator) -> dict:
    if rng.random() < 0.5:
        return {"sampler": "normal"}
    return {"sampler": "gmm", "gmm_components": int(rng.choice([5, 10]))}


def _sample(model: BaseAE, job: ForeignJob) -> tuple[np.ndarray, str]:
    """Images from pythae's sampler of the config, written by its save_img."""
    cfg = job.config
    folder = job.workdir / "samples"
    torch.manual_seed(job.seed)
    with _quiet(), torch.no_grad():
        # GaussianMixtureSampler.fit asserts data reaching 1.0 (a 255 pixel somewhere)
        if cfg["sampler"] == "gmm" and job.crops.max() == 255:
            n = cfg["gmm_components"]
            sampler = GaussianMixtureSampler(model, GaussianMixtureSamplerConfig(n_components=n))
            sampler.fit(_unit(job.crops))
            what = f"GaussianMixtureSampler ({n} components) fitted on the crops' codes"
        elif cfg["sampler"] == "vamp":
            sampler, what = VAMPSampler(model), "VAMPSampler (the learned VampPrior)"
        else:
            sampler, what = NormalSampler(model), "NormalSampler (N(0, I) latents)"
        sampler.sample(num_samples=job.n_images, batch_size=64, output_dir=str(folder))
    return _read_pngs(folder), what


def _noise_gm(model: BaseAE, job: ForeignJob, losses: tuple[str, ...], source: str) -> ForeignGM:
    model = _train(model, job)
    images, sampler = _sample(model, job)
    model.cpu().eval()  # the samplers move it to the GPU when there is one
    return ForeignGM(
        images=images,
        module=model.decoder,
        example=(torch.zeros(1, model.latent_dim),),
        losses=losses,
        loss_source=f"{source}; trained by pythae TrainingPipeline (BaseTrainer)",
        final_losses=_final_losses(model, job),
        sampler=sampler,
    )


def _recon(cfg: dict) -> tuple[str, str]:
    """The schema type and the words for the configured reconstruction term."""
    if cfg["reconstruction_loss"] == "bce":
        return "ce", "F.binary_cross_entropy on pixels"
    return "mse", "0.5 * F.mse_loss summed over pixels"


# ---------------------------------------------------------------------------
# VAEs


def vae_config(rng: np.random.Generator) -> dict:
    model = str(rng.choice(list(VAE_MODELS)))
    cfg = {
        "model": model,
        "architecture": str(rng.choice(["resnet", "mlp"])),
        "latent_dim": int(rng.choice([16, 32, 64, 128])),
        "reconstruction_loss": str(rng.choice(["mse", "bce"])),
        "lr": float(rng.choice([2e-4, 5e-4, 1e-3])),
        "optimizer": str(rng.choice(["Adam", "AdamW"])),
    }
    if model == "BetaVAE":
        cfg["beta"] = float(rng.choice([0.5, 2.0, 4.0]))
    if model in ("IWAE", "CIWAE"):  # each sample decodes the batch once more
        cfg["number_samples"] = int(rng.choice([2, 3]))
    if model == "CIWAE":
        cfg["beta"] = float(rng.choice([0.25, 0.5, 0.75]))
    if model == "DisentangledBetaVAE":
        cfg["beta"] = float(rng.choice([2.0, 5.0, 10.0]))
        cfg["C"] = float(rng.choice([10.0, 25.0, 50.0]))
        cfg["warmup_epoch"] = int(rng.choice([1, 2, 5]))
    if model == "INFOVAE_MMD":
        # its loss weighs the MMD by alpha + lbd - 1: lbd is set for a positive weight
        alpha = float(rng.choice([0.0, 0.5]))
        cfg.update(
            kernel_choice=str(rng.choice(["imq", "rbf"])),
            alpha=alpha,
            lbd=1.0 - alpha + float(rng.choice([1.0, 10.0, 100.0])),
        )
    if model == "VAMP":
        cfg.update(number_components=int(rng.choice([10, 20])), sampler="vamp")
    else:
        cfg.update(_sampler_config(rng))
    return cfg


# the config keys that are arguments of the model's pythae config
MODEL_KEYS = (
    "beta",
    "number_samples",
    "C",
    "warmup_epoch",
    "kernel_choice",
    "alpha",
    "lbd",
    "number_components",
)


def vae_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    model_cls, config_cls = VAE_MODELS[cfg["model"]]
    extra = {k: cfg[k] for k in MODEL_KEYS if k in cfg}
    config = config_cls(
        input_dim=(3, job.resolution, job.resolution),
        latent_dim=cfg["latent_dim"],
        reconstruction_loss=cfg["reconstruction_loss"],
        **extra,
    )
    model = _build(model_cls, config, _nets(cfg["architecture"], job.resolution, 0, 3))
    recon, words = _recon(cfg)
    losses = (recon, "kl", "mmd") if cfg["model"] == "INFOVAE_MMD" else (recon, "kl")
    source = f"pythae {model_cls.__name__}.loss_function: {words}, KL to the prior"
    if cfg["model"] == "INFOVAE_MMD":
        source += ", kernel MMD of the latents to N(0, I)"
    return _noise_gm(model, job, losses, source)


register(
    Family(
        "pythae-vae",
        PACKAGE,
        "noise",
        vae_config,
        vae_train_and_sample,
        "pythae VAEs (VAE, BetaVAE, IWAE, CIWAE, DisentangledBetaVAE, InfoVAE, VAMP) "
        "decoding samples of their prior",
    )
)


# ---------------------------------------------------------------------------
# WAE


def wae_config(rng: np.random.Generator) -> dict:
    return {
        "architecture": str(rng.choice(["resnet", "mlp"])),
        "latent_dim": int(rng.choice([16, 32, 64, 128])),
        "kernel_choice": str(rng.choice(["imq", "rbf"])),
        "reg_weight": float(rng.choice([3e-2, 1.0, 10.0, 100.0])),
        "kernel_bandwidth": float(rng.choice([1.0, 2.0])),
        "lr": float(rng.choice([2e-4, 5e-4, 1e-3])),
        "optimizer": str(rng.choice(["Adam", "AdamW"])),
        **_sampler_config(rng),
    }


def wae_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    config = WAE_MMD_Config(
        input_dim=(3, job.resolution, job.resolution),
        latent_dim=cfg["latent_dim"],
        kernel_choice=cfg["kernel_choice"],
        reg_weight=cfg["reg_weight"],
        kernel_bandwidth=cfg["kernel_bandwidth"],
    )
    model = _build(WAE_MMD, config, _nets(cfg["architecture"], job.resolution, 1, 3))
    return _noise_gm(
        model,
        job,
        ("mse", "mmd"),
        "pythae WAE_MMD.loss_function: F.mse_loss summed over pixels, "
        f"{cfg['kernel_choice']}-kernel MMD of the latents to N(0, I)",
    )


register(
    Family(
        "pythae-wae",
        PACKAGE,
        "noise",
        wae_config,
        wae_train_and_sample,
        "pythae WAE_MMD decoding samples of its prior",
    )
)


# ---------------------------------------------------------------------------
# VQVAE


def vqvae_config(rng: np.random.Generator) -> dict:
    return {
        "latent_dim": int(rng.choice([8, 16, 32])),
        "num_embeddings": int(rng.choice([64, 128, 256, 512])),
        "use_ema": bool(rng.random() < 0.5),
        "commitment_loss_factor": float(rng.choice([0.25, 0.5])),
        "lr": float(rng.choice([2e-4, 5e-4, 1e-3])),
        "optimizer": str(rng.choice(["Adam", "AdamW"])),
    }


def vqvae_train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    config = VQVAEConfig(
        input_dim=(3, job.resolution, job.resolution),
        latent_dim=cfg["latent_dim"],
        num_embeddings=cfg["num_embeddings"],
        use_ema=cfg["use_ema"],
        commitment_loss_factor=cfg["commitment_loss_factor"],
    )
    model = _train(_build(VQVAE, config, _nets("resnet", job.resolution, 2, 4)), job)
    writer = BaseSampler(model)  # its save_img: pythae's float-to-8-bit conversion
    folder = job.workdir / "reconstructions"
    inputs = _unit(job.inputs)
    with _quiet(), torch.no_grad():
        for start in range(0, len(inputs), 32):
            batch = model.reconstruct(inputs[start : start + 32].to(writer.device))
            for i, image in enumerate(batch):
                writer.save_img(image, str(folder), f"{start + i:08d}.png")
    quantizer = (
        "QuantizerEMA commitment term"
        if cfg["use_ema"]
        else "Quantizer commitment and codebook terms"
    )
    model.cpu().eval()
    return ForeignGM(
        images=_read_pngs(folder),
        module=_Reconstruction(model),
        example=(torch.zeros(1, 3, job.resolution, job.resolution),),
        losses=("mse", "l2"),
        loss_source=f"pythae VQVAE.loss_function: F.mse_loss summed over pixels; its "
        f"{quantizer} (F.mse_loss between encoder features and codes); "
        "trained by pythae TrainingPipeline (BaseTrainer)",
        final_losses=_final_losses(model, job),
        sampler="reconstruction of a real crop",
    )


register(
    Family(
        "pythae-vqvae",
        PACKAGE,
        "translate",
        vqvae_config,
        vqvae_train_and_sample,
        "pythae VQVAE (ResNet benchmark networks) reconstructing photographs",
    )
)
