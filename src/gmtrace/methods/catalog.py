"""Every method the evaluation can compare, by name (`create_method`)."""

from __future__ import annotations

from collections.abc import Callable

from gmtrace.methods.base import Method
from gmtrace.methods.network import NetMethod
from gmtrace.methods.realphoto import RealPhotoMethod
from gmtrace.methods.spectral import SpectralMethod
from gmtrace.nets.config import ModelConfig, red_config
from gmtrace.train.config import TrainConfig

# name -> the method, given the training settings of a network (ignored by the rest)
METHODS: dict[str, Callable[[TrainConfig], Method]] = {
    "gmtrace": lambda train: NetMethod("gmtrace", ModelConfig(), train),
    "red": lambda train: NetMethod("red", red_config(), train),
    "spectral": lambda train: SpectralMethod(),
    "realphoto": lambda train: RealPhotoMethod(),
}


def create_method(name: str, train: TrainConfig) -> Method:
    """The method `name` (one of `METHODS`), its network trained with `train`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return METHODS[name](train)
