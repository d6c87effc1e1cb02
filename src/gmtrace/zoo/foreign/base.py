"""What a foreign-code adapter is given and returns, and the registry of families.

An adapter is one function per family, `train_and_sample(job) -> ForeignGM`: it
builds the package's model from `job.config`, trains it with the package's own loss
(and its own trainer, where the package has one) for `job.steps` steps of
`job.batch` real crops, and samples `job.n_images` images in the same process
(gmtrace never loads a package's pickled checkpoint). It returns the images as the
package produced them, turned to 8 bits the package's way when it has one, the
module `describe()` reads and the loss types of the objective it trained, each with
the package function or class that computes it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ForeignJob:
    """One GM to train and sample."""

    name: str
    family: str
    config: dict
    seed: int
    resolution: int
    steps: int
    batch: int
    n_images: int
    crops: np.ndarray  # uint8 [N, res, res, 3]: the real crops it trains on
    workdir: Path  # an empty folder of its own (trainers that read or write files)
    inputs: np.ndarray | None = None  # uint8 [n_images, res, res, 3]: translators' inputs
    threads: int = 1

    def batches(self, rng: np.random.Generator):
        """Endless random batches of crops, floats [B, 3, H, W] in [-1, 1]."""
        from gmtrace.data.images import to_float

        while True:
            idx = rng.integers(0, len(self.crops), size=self.batch)
            yield np.ascontiguousarray(to_float(self.crops[idx]))


@dataclass
class ForeignGM:
    """What an adapter returns."""

    images: np.ndarray  # uint8 [n, res, res, 3]
    module: object  # the torch module describe() reads (generator, decoder, denoiser)
    example: tuple  # positional example input of one forward pass of `module`
    losses: tuple[str, ...]  # schema loss types of the objective it trained
    loss_source: str  # the package's functions or classes that compute them
    final_losses: dict[str, float] = field(default_factory=dict)
    sampler: str = ""  # how the images were drawn (scheduler, steps, temperature...)
    # the steps it trained where its package's trainer cannot stop at `job.steps`
    # (whole epochs); None: `job.steps`
    steps: int | None = None
    # figures measured on its images, kept in its config (PSNR against the photographs)
    checks: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    name: str
    package: str  # pip name: the codebase is this package and its installed version
    kind: str  # "noise" (images from noise) or "translate" (from a real crop)
    configs: Callable[[np.random.Generator], dict]  # a random config of this family
    train_and_sample: Callable[[ForeignJob], ForeignGM]
    doc: str = ""
    # its steps are the preset's draw times this: a super-resolution network spends
    # its first hundred steps learning to copy its input (worse than bicubic
    # enlargement until then), a generator from noise has no such start
    steps_factor: int = 1


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"foreign family {family.name!r} registered twice")
    FAMILIES[family.name] = family
    return family


def codebase(package: str) -> str:
    """A package and its installed version, e.g. "diffusers 0.42.1"."""
    return f"{package} {importlib.metadata.version(package)}"


def installed(package: str) -> bool:
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def to_uint8(x, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Float images (torch or numpy, NCHW or NHWC with 3 channels last) in
    [low, high] to uint8 NHWC, rounded: for packages that hand back floats and write
    no 8-bit images of their own."""
    a = x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, np.float32)
    if a.ndim == 4 and a.shape[1] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(0, 2, 3, 1)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    a = (np.nan_to_num(a, nan=0.0) - low) / (high - low)
    return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)


@contextlib.contextmanager
def output_to_log(job: ForeignJob) -> Iterator[Path]:
    """A package's console output and warnings (stdout and stderr) go to the GM's
    train.log in its work folder, not to the build's terminal."""
    path = job.workdir / "train.log"
    with open(path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield path


class StaysOnCPU:
    """Put first among the bases of a package's module whose constructor ends with
    `self.cuda(rank)`: that call leaves the module where it is (on the CPU), the only
    thing of the package's code skipped."""

    def cuda(self, device=None):
        return self


def train_steps(
    job: ForeignJob, model, opt, losses: Callable, weights: dict[str, float] | None = None
) -> dict[str, float]:
    """`job.steps` steps of `opt` on the sum of the loss terms `losses(x)` returns (a
    dict of scalar tensors, each times its weight in `weights`, 1 by default) for each
    batch of the job's real crops (seeded by the job); the model is left in eval mode.
    Returns the last step's terms, unweighted (none when the job has no steps)."""
    import torch

    batches = job.batches(np.random.default_rng(job.seed))
    model.train()
    last: dict = {}
    for _ in range(job.steps):
        last = losses(torch.from_numpy(next(batches)))
        opt.zero_grad()
        sum((weights or {}).get(k, 1.0) * v for k, v in last.items()).backward()
        opt.step()
    model.eval()
    return {k: float(v.item()) for k, v in last.items()}
