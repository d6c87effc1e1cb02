"""Every method the evaluation can compare, by name (`create_method`)."""

from __future__ import annotations

from collections.abc import Callable

from gmtrace.methods.base import Method
from gmtrace.methods.fused import FusedMethod
from gmtrace.methods.network import NetMethod
from gmtrace.methods.realphoto import RealPhotoMethod
from gmtrace.methods.spectral import SpectralMethod
from gmtrace.nets.config import ModelConfig, red_config
from gmtrace.train.config import TrainConfig

# name -> the method's class, and the method given the training settings of a network
# (ignored by the rest)
METHODS: dict[str, tuple[type[Method], Callable[[TrainConfig], Method]]] = {
    "gmtrace": (NetMethod, lambda train: NetMethod("gmtrace", ModelConfig(), train)),
    "red": (NetMethod, lambda train: NetMethod("red", red_config(), train)),
    "spectral": (SpectralMethod, lambda train: SpectralMethod()),
    "realphoto": (RealPhotoMethod, lambda train: RealPhotoMethod()),
    "fused": (FusedMethod, FusedMethod),
}


def _known(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return name


def create_method(name: str, train: TrainConfig) -> Method:
    """The method `name` (one of `METHODS`), its network trained with `train`."""
    return METHODS[_known(name)][1](train)


def parses(name: str) -> bool:
    """Whether the method `name` answers a parse (without making one)."""
    return METHODS[_known(name)][0].parses
