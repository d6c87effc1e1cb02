"""What `describe` returns, for a torch module (zoo.introspect) and for a graph file
(zoo.graphs) alike. No torch here: describing a graph needs none."""

from __future__ import annotations

from dataclasses import dataclass, field

from gmtrace.core.schema import arch_row

# The classes of the block_activation field, in the order that breaks a tie, and the
# class of each activation, by its lower-case name (torch functions and modules,
# ncnn and ONNX operators): one table for `describe()` of modules and of graphs.
# An activation not named here is of class "other".
BLOCK_ACT_CLASSES = ("relu", "leaky_relu", "smooth", "other")
NORM_KINDS = ("batch", "instance", "layer_group")
ACT_CLASS: dict[str, str] = {
    "relu": "relu",
    "relu6": "relu",
    "threshold": "relu",
    "leaky_relu": "leaky_relu",
    "leakyrelu": "leaky_relu",
    "rrelu": "leaky_relu",
    "elu": "smooth",
    "gelu": "smooth",
    "silu": "smooth",
    "softplus": "smooth",
    "mish": "smooth",
    "celu": "smooth",
    "selu": "smooth",
    "tanh": "other",
    "sigmoid": "other",
    "prelu": "other",
    "hardtanh": "other",
    "hardswish": "other",
    "hardsigmoid": "other",
    "softsign": "other",
    "sin": "other",
    "tanhshrink": "other",
    "logsigmoid": "other",
    "hardshrink": "other",
    "softshrink": "other",
    "glu": "other",
}


@dataclass
class Architecture:
    """The 15 hyperparameters of one network, plus extra targets. A value the source
    cannot show is `schema.UNKNOWN`; `notes` says why."""

    values: dict[str, float | str]
    extra: dict[str, object] = field(default_factory=dict)
    traced: bool = False
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> float | str:
        return self.values[name]

    def row(self):
        """Raw row of 15 (discrete fields as class indices, unknown as NaN)."""
        return arch_row(self.values)

    def to_json(self) -> dict:
        return {
            "values": self.values,
            "extra": self.extra,
            "traced": self.traced,
            "notes": self.notes,
        }
