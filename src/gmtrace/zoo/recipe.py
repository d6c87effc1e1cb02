"""Training recipes: each GM of the zoo draws its own.

A GM's images should carry the traces of its architecture and losses, not of one
recipe shared by the whole zoo (every GM once trained 80 steps of batch 12 with
Adam(0.5, 0.999) at 2e-4 and was written to 8 bits the same way). A `Recipe` is
what published GM code varies around those: how long and with what batch, the
optimizer and its learning rate, the weight initialization, the normalization
layers' epsilon and momentum, the latent distribution, how images are sampled
(normalization in eval or train mode, a truncated latent) and how the output
becomes 8 bits. It is drawn per GM with the family's `Balancer` (every option
comes up), recorded in the GM's config and in `models.csv`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from gmtrace.data.dataset import RECIPE_COLUMNS

__all__ = ["RECIPE_COLUMNS", "Recipe", "sample_recipe"]

OPTIMIZERS = ("adam", "rmsprop", "sgd")
ADAM_BETAS = ((0.5, 0.999), (0.0, 0.99), (0.9, 0.999))
# learning rate ranges (log-uniform) per optimizer
LR_RANGE = {"adam": (5e-5, 1e-3), "rmsprop": (5e-5, 5e-4), "sgd": (5e-4, 5e-3)}
INITS = ("default", "normal02", "xavier", "kaiming", "orthogonal")
NORM_EPS = (1e-5, 1e-3, 1e-8)
NORM_MOMENTUM = (0.1, 0.01, 0.3)
LATENTS = ("normal", "uniform", "truncnormal")
TRUNCATIONS = (1.0, 1.0, 0.7, 0.5)
SAMPLE_MODES = ("eval", "eval", "train")
# float [-1, 1] -> uint8: round to nearest, truncate, or stretch each image to its range
TO_8BIT = ("round", "floor", "stretch")
BATCHES = (4, 8, 12, 16)


@dataclass(frozen=True)
class Recipe:
    steps: int = 80
    batch: int = 12
    optimizer: str = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    init: str = "default"
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    latent: str = "normal"
    truncation: float = 1.0
    sample_mode: str = "eval"
    to_8bit: str = "round"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> Recipe:
        """A config's recipe; configs written before recipes existed get the old one."""
        if not d:
            return cls()
        d = dict(d)
        d["betas"] = tuple(d.get("betas", (0.5, 0.999)))
        return cls(**d)

    def row(self) -> dict:
        """The recipe's models.csv cells."""
        d = self.to_dict()
        d["betas"] = f"{self.betas[0]:g}/{self.betas[1]:g}" if self.optimizer == "adam" else ""
        d["lr"] = f"{self.lr:.3g}"
        return d


def sample_recipe(b, steps: tuple[int, int], batches: tuple[int, ...] = BATCHES) -> Recipe:
    """One GM's recipe: steps log-uniform in `steps`, every other choice balanced by
    the `Balancer` b (shared with the family's architecture choices)."""
    lo, hi = steps
    n_steps = int(round(math.exp(b.uniform(math.log(lo), math.log(hi))))) if hi > lo else lo
    opt = str(b.pick("r_opt", OPTIMIZERS))
    lr_lo, lr_hi = LR_RANGE[opt]
    return Recipe(
        steps=n_steps,
        batch=int(b.pick("r_batch", batches)),
        optimizer=opt,
        lr=float(math.exp(b.uniform(math.log(lr_lo), math.log(lr_hi)))),
        betas=tuple(b.pick("r_betas", ADAM_BETAS)) if opt == "adam" else (0.5, 0.999),
        init=str(b.pick("r_init", INITS)),
        norm_eps=float(b.pick("r_eps", NORM_EPS)),
        norm_momentum=float(b.pick("r_momentum", NORM_MOMENTUM)),
        latent=str(b.pick("r_latent", LATENTS)),
        truncation=float(b.pick("r_trunc", TRUNCATIONS)),
        sample_mode=str(b.pick("r_mode", SAMPLE_MODES)),
        to_8bit=str(b.pick("r_8bit", TO_8BIT)),
    )


def make_optimizer(params, r: Recipe) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if r.optimizer == "adam":
        return torch.optim.Adam(params, lr=r.lr, betas=r.betas)
    if r.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=r.lr)
    if r.optimizer == "sgd":
        return torch.optim.SGD(params, lr=r.lr, momentum=0.9)
    raise ValueError(f"unknown optimizer {r.optimizer!r}")


def initialize(module: nn.Module, r: Recipe) -> None:
    """Weight initialization of every conv and linear layer, and the epsilon and
    momentum of every normalization layer, as the recipe says ("default" keeps
    torch's own initialization)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps, m.momentum = r.norm_eps, r.norm_momentum
        elif isinstance(m, nn.InstanceNorm2d | nn.GroupNorm | nn.LayerNorm):
            m.eps = r.norm_eps
        if r.init == "default" or not isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            continue
        w = m.weight
        if r.init == "normal02":
            nn.init.normal_(w, 0.0, 0.02)
        elif r.init == "xavier":
            nn.init.xavier_uniform_(w)
        elif r.init == "kaiming":
            nn.init.kaiming_normal_(w, a=0.2, nonlinearity="leaky_relu")
        elif r.init == "orthogonal":
            nn.init.orthogonal_(w)
        else:
            raise ValueError(f"unknown init {r.init!r}")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def latent(n: int, dim: int, r: Recipe, device, sampling: bool = False) -> torch.Tensor:
    """n latent codes of the recipe's distribution (unit variance for all three);
    when sampling images, scaled by the truncation factor."""
    if r.latent == "normal":
        z = torch.randn(n, dim, device=device)
    elif r.latent == "uniform":
        z = (torch.rand(n, dim, device=device) * 2 - 1) * math.sqrt(3.0)
    elif r.latent == "truncnormal":
        z = torch.nn.init.trunc_normal_(torch.empty(n, dim, device=device), a=-2.0, b=2.0)
        z = z / 0.8796  # the standard deviation of a normal truncated at +-2
    else:
        raise ValueError(f"unknown latent {r.latent!r}")
    return z * r.truncation if sampling else z


def to_8bit(x: np.ndarray, mode: str) -> np.ndarray:
    """Float images in [-1, 1] ([N, 3, H, W]) to uint8 [N, H, W, 3]."""
    x = np.asarray(x, dtype=np.float32)
    if mode == "round":
        y = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255)
    elif mode == "floor":
        y = np.clip((x + 1.0) / 2.0 * 255.0, 0, 255)
    elif mode == "stretch":
        lo = x.min(axis=(1, 2, 3), keepdims=True)
        hi = x.max(axis=(1, 2, 3), keepdims=True)
        y = (x - lo) / np.maximum(hi - lo, 1e-6) * 255.0 + 0.5
    else:
        raise ValueError(f"unknown 8-bit conversion {mode!r}")
    return np.moveaxis(y.astype(np.uint8), 1, -1)


def diversity(images: np.ndarray, real: np.ndarray) -> float:
    """How varied a GM's images are against real crops: the mean over pixels of the
    standard deviation across images, as a share of the same for the real crops
    (uint8 [N, H, W, 3] each). Near 0: mode collapse (every image alike)."""
    f = images.astype(np.float32).std(axis=0).mean()
    r = real.astype(np.float32).std(axis=0).mean()
    return float(f / max(r, 1e-6))


COLLAPSE_BELOW = 0.2  # diversity under which a GM counts as mode-collapsed
# the recipe every GM of the first zoo trained with, known to train every family:
# a diverged GM is retrained once with it (zoo/builder.py)
STABLE = {"optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999), "init": "default"}
