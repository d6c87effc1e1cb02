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
# and the precision of its answers (`core.precision`; both ignored by the rest)
METHODS: dict[str, tuple[type[Method], Callable[[TrainConfig, str], Method]]] = {
    "gmtrace": (NetMethod, lambda train, p: NetMethod("gmtrace", ModelConfig(), train, p)),
    "red": (NetMethod, lambda train, p: NetMethod("red", red_config(), train, p)),
    "spectral": (SpectralMethod, lambda train, p: SpectralMethod()),
    "realphoto": (RealPhotoMethod, lambda train, p: RealPhotoMethod(train.cross_scale)),
    "fused": (FusedMethod, FusedMethod),
}


def _known(name: str) -> str:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return name


def create_method(name: str, train: TrainConfig, precision: str = "fp32") -> Method:
    """The method `name` (one of `METHODS`), its network trained with `train`, its
    answers on test images in `precision`."""
    return METHODS[_known(name)][1](train, precision)


def parses(name: str) -> bool:
    """Whether the method `name` answers a parse (without making one)."""
    return METHODS[_known(name)][0].parses
