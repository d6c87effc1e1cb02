"""Device choice, seeding and progress display: one place each."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present (or asked for), else the CPU."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for the caller."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def set_threads(n: int | None) -> None:
    """Limit torch's intra-op threads (workers share the machine's cores)."""
    if n and n > 0:
        torch.set_num_threads(n)
        os.environ.setdefault("OMP_NUM_THREADS", str(n))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def ray_start(ray, workers: int, address: str | None) -> bool:
    """Connect `ray` (the imported module) to the cluster at `address`, or start a
    cluster of `workers` CPUs of its own when there is none: "local" even where a
    cluster started with `ray start` runs on this machine (a bare `ray.init` would
    join that one, then refuse the CPU count). True when this call connected (the
    caller then shuts it down), False when Ray was already initialized."""
    if ray.is_initialized():
        return False
    kwargs = {"address": address} if address else {"address": "local", "num_cpus": workers}
    ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", **kwargs)
    return True


def progress(console: Console | None = None, transient: bool = False) -> Progress:
    """The progress display every long command uses."""
    return Progress(
        TextColumn("[bold]{task.description}", justify="left"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=transient,
    )
