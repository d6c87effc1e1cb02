"""Reading ncnn graphs (`model.param`): the layers of a network whose weights ship in
ncnn format, as the text file lists them. No ncnn is needed to read it; the reader is
what `describe` of a pretrained generator stands on.

The format (ncnn's `Net::load_param`): a magic number (7767517), then the counts of
layers and blobs, then one line per layer:

    TYPE NAME N_IN N_OUT IN_BLOB... OUT_BLOB... KEY=VALUE...

A key is a non-negative integer; a key of -23300 - k holds an array for key k, written
`-233xx=N,V1,...,VN`. Values are integers or floats. Every blob a layer reads must
have been written by an earlier layer (the file is in execution order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MAGIC = 7767517
ARRAY_KEY = -23300  # a key at or below this holds an array for key ARRAY_KEY - key


class GraphError(ValueError):
    """A graph file that cannot be read; the message names the file and the layer."""


Value = int | float | list[int | float]


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, Value] = field(default_factory=dict)

    def get(self, key: int, default: Value = 0) -> Value:
        return self.params.get(key, default)


@dataclass
class Graph:
    layers: list[Layer]
    path: str = ""

    def producer(self) -> dict[str, Layer]:
        """The layer that writes each blob."""
        return {b: layer for layer in self.layers for b in layer.outputs}


def _number(text: str) -> int | float:
    if any(c in text for c in ".eE") and not text.lstrip("-").isdigit():
        return float(text)
    return int(text)


def _param(item: str) -> tuple[int, Value]:
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"{item!r} is not KEY=VALUE")
    k = int(key)
    if k > ARRAY_KEY:
        return k, _number(value)
    n, *values = value.split(",")
    if int(n) != len(values):
        raise ValueError(f"{item!r}: array of {n} holds {len(values)} values")
    return ARRAY_KEY - k, [_number(v) for v in values]


def _layer(line: str) -> Layer:
    parts = line.split()
    if len(parts) < 4:
        raise ValueError("a layer needs TYPE NAME N_IN N_OUT")
    kind, name, n_in, n_out = parts[0], parts[1], int(parts[2]), int(parts[3])
    blobs = parts[4 : 4 + n_in + n_out]
    if len(blobs) != n_in + n_out:
        raise ValueError(f"{name}: {n_in} inputs and {n_out} outputs, {len(blobs)} blob names")
    params = dict(_param(p) for p in parts[4 + n_in + n_out :])
    return Layer(kind, name, blobs[:n_in], blobs[n_in:], params)


def read_param(path: str | Path) -> Graph:
    """The graph of an ncnn `.param` text file; `GraphError` naming the file and the
    line (and layer) where reading stopped."""
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise GraphError(f"{p}: cannot read an ncnn graph ({e})") from None
    if not lines or lines[0].strip() != str(MAGIC):
        raise GraphError(f"{p}: not an ncnn .param file (no magic number {MAGIC})")
    try:
        n_layers, _ = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise GraphError(f"{p}: line 2 must hold the layer and blob counts") from None
    layers: list[Layer] = []
    written: set[str] = set()
    for i, line in enumerate(lines[2:], start=3):
        try:
            layer = _layer(line)
        except ValueError as e:
            raise GraphError(f"{p}: line {i}: {e}") from None
        missing = [b for b in layer.inputs if b not in written]
        if missing:
            raise GraphError(
                f"{p}: line {i}: layer {layer.name} reads {missing[0]}, which no earlier "
                "layer writes"
            )
        written.update(layer.outputs)
        layers.append(layer)
    if len(layers) != n_layers:
        raise GraphError(f"{p}: says {n_layers} layers, holds {len(layers)}")
    return Graph(layers, str(p))
