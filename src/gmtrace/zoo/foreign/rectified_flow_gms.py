"""Foreign family of `rectified-flow-pytorch` (lucidrains): its `RectifiedFlow`
around its own `Unet`, trained by its own `Trainer` and sampled by its own ODE
sampler.

Training: `Trainer` (Adam, gradient-norm clipping, optionally an EMA copy it
samples from) runs offline for `job.steps` steps on the crops, given as an
in-memory tensor dataset in [0, 1] (RectifiedFlow maps them to [-1, 1] itself); it
writes no checkpoint or sample grid during training (their intervals are past the
last step), and its per-step log lines go to a file in the job's workdir. The loss
is `RectifiedFlow.forward`'s: noise and data interpolated at a random time (the
optional `cosmap` schedule), and its `MSELoss` (`F.mse_loss`) or `PseudoHuberLoss`
(the square root of the batch's `F.mse_loss` plus c^2, minus c: a rescaled squared
error) between the prediction and the target of its `predict` objective (the
velocity data - noise, the noise, or the velocity derived from a predicted clean
image); with `use_consistency` it adds its consistency-flow-matching `F.mse_loss`
terms. All are squared pixel errors: "mse". The `pseudo_huber_with_lpips` loss is
never drawn (it downloads VGG weights), nor the mean-variance Unet (a Gaussian
likelihood of the velocity, which no schema type names).

Images: `Trainer.sample`, 16 at a time (the EMA copy's or the model's
`RectifiedFlow.sample`: torchdiffeq `odeint` from N(0, I) over the drawn number of
time points with the drawn fixed-step method, clamped to [0, 1]; each batch is also
written to the workdir with torchvision's `save_image`, the Trainer's own writer),
turned to 8 bits with `base.to_uint8`, which rounds as `save_image` does.
describe() reads the trained Unet; an EMA copy that samples has its architecture,
but frozen parameters, which describe() does not count.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch
from rectified_flow_pytorch import RectifiedFlow, Trainer, Unet
from rectified_flow_pytorch.rectified_flow import identity
from torchvision.utils import save_image

from gmtrace.data.images import to_float
from gmtrace.zoo.foreign.base import Family, ForeignGM, ForeignJob, register, to_uint8

PACKAGE = "rectified-flow-pytorch"
GRID = 16  # Trainer.sample draws a square grid of this many images per call


def _last_logged(log: Path) -> dict[str, float]:
    """The loss breakdown the Trainer printed for its last step, e.g.
    "[300] total: 0.412 | main: 0.412 | data_match: 0.000 | velocity_match: 0.000"."""
    lines = [line for line in log.read_text().splitlines() if line.startswith("[")]
    if not lines:
        return {}
    fields = (part.split(":") for part in lines[-1].split("]", 1)[1].split("|"))
    return {k.strip(): float(v) for k, v in fields}


# each fixed-step odeint method with the numbers of time points that give it 8 or 12
# Unet evaluations: the package's Unet is slow on a CPU (about 60 ms an image at 64 px)
ODE_POINTS = {"euler": (9, 13), "midpoint": (5, 7), "rk4": (3, 4)}


def config(rng: np.random.Generator) -> dict:
    # predicting the clean image gives the mean image early in training: rarer
    predict = str(rng.choice(["flow", "noise", "clean"], p=[0.55, 0.3, 0.15]))
    method = str(rng.choice(list(ODE_POINTS)))
    mults = [(1, 2, 4), (1, 2, 2), (1, 1, 2), (1, 2, 4, 4)][int(rng.integers(0, 4))]
    consistency = bool(rng.random() < 0.2)
    return {
        "dim": int(rng.choice([8, 12])),
        "dim_mults": list(mults),
        "attn": str(rng.choice(["inner_full", "linear"])),
        "attn_heads": int(rng.choice([2, 4])),
        "attn_dim_head": int(rng.choice([16, 32])),
        "time_embedding": str(rng.choice(["sinusoidal", "learned", "random_fourier"])),
        "predict": predict,
        "loss_fn": str(rng.choice(["mse", "pseudo_huber"])) if predict == "flow" else "mse",
        "noise_schedule": str(rng.choice(["identity", "cosmap"])),
        "immiscible": bool(rng.random() < 0.25),
        "use_consistency": consistency,
        # the Trainer keeps no EMA copy of a consistency-trained flow
        "use_ema": not consistency and bool(rng.random() < 0.6),
        "ema_beta": float(rng.choice([0.99, 0.999])),
        "ema_update_after_step": int(rng.choice([10, 50])),
        "ode_method": method,
        "ode_points": int(rng.choice(ODE_POINTS[method])),
        "clip_during_sampling": bool(rng.random() < 0.5),
        "lr": float(rng.choice([1e-4, 3e-4, 5e-4])),
    }


def train_and_sample(job: ForeignJob) -> ForeignGM:
    cfg = job.config
    levels = len(cfg["dim_mults"])
    unet = Unet(
        dim=cfg["dim"],
        dim_mults=tuple(cfg["dim_mults"]),
        full_attn=(False,) * (levels - 1) + (cfg["attn"] == "inner_full",),
        attn_heads=cfg["attn_heads"],
        attn_dim_head=cfg["attn_dim_head"],
        learned_sinusoidal_cond=cfg["time_embedding"] == "learned",
        random_fourier_features=cfg["time_embedding"] == "random_fourier",
    )
    flow = RectifiedFlow(
        unet,
        predict=cfg["predict"],
        loss_fn=cfg["loss_fn"],
        noise_schedule="cosmap" if cfg["noise_schedule"] == "cosmap" else identity,
        immiscible=cfg["immiscible"],
        use_consistency=cfg["use_consistency"],
        odeint_kwargs={"method": cfg["ode_method"]},
        clip_during_sampling=cfg["clip_during_sampling"],
    )
    crops = torch.from_numpy(np.ascontiguousarray(to_float(job.crops))) * 0.5 + 0.5
    never = job.steps + 1
    trainer = Trainer(
        flow,
        dataset=crops,
        num_train_steps=job.steps,
        learning_rate=cfg["lr"],
        batch_size=job.batch,
        checkpoints_folder=str(job.workdir / "checkpoints"),
        results_folder=str(job.workdir / "results"),
        save_results_every=never,
        checkpoint_every=never,
        num_samples=GRID,
        sample_kwargs={"steps": cfg["ode_points"]},
        save_sample_fn=save_image,
        accelerate_kwargs={"cpu": True},
        use_ema=cfg["use_ema"],
        ema_kwargs={
            "beta": cfg["ema_beta"],
            "update_after_step": cfg["ema_update_after_step"],
            "update_every": 1,
        },
    )
    with open(job.workdir / "train.log", "w") as log, contextlib.redirect_stdout(log):
        trainer()
        images = [
            to_uint8(trainer.sample(str(job.workdir / "results" / f"sample.{i}.png")), 0.0, 1.0)
            for i in range(math.ceil(job.n_images / GRID))
        ]
    final = _last_logged(job.workdir / "train.log")
    example = (torch.zeros(1, 3, job.resolution, job.resolution), torch.tensor([0.5]))
    target = {"flow": "velocity", "noise": "noise", "clean": "velocity from the predicted clean"}
    loss_class = "MSELoss" if cfg["loss_fn"] == "mse" else "PseudoHuberLoss"
    consistency = (
        "; its consistency F.mse_loss terms (use_consistency)" if cfg["use_consistency"] else ""
    )
    return ForeignGM(
        images=np.concatenate(images)[: job.n_images],
        module=unet,
        example=example,
        losses=("mse",),
        loss_source=f"rectified_flow_pytorch RectifiedFlow.forward: {loss_class} on the "
        f"{target[cfg['predict']]} target{consistency}; trained by its Trainer",
        final_losses=final,
        sampler=f"Trainer.sample (odeint {cfg['ode_method']}, {cfg['ode_points']} time points"
        f"{', EMA' if trainer.ema_model is not None else ''})",
    )


register(
    Family(
        "rectified-flow",
        PACKAGE,
        "noise",
        config,
        train_and_sample,
        "RectifiedFlow with its Unet, trained by its Trainer, sampled by its ODE sampler",
    )
)
