"""The product's settings (no torch, no FastAPI: the command line reads its defaults
here): how the analyzer reads and answers an image, and what the server accepts of
one request."""

from __future__ import annotations

from dataclasses import dataclass

TOP_K = 3  # known GMs listed per image
MAX_CROPS = 9  # crops of the model's input size read per image, spread over it
THRESHOLD = 0.5  # p(generated) from which an image is called generated
# crops per forward pass of a scan: on the 2 cores measured (docs/benchmarks.md,
# "Inference engines") the shipped model's forward pass runs at about 470 crops/s in
# batches of 24 to 48 and 400 in batches of 64; more cores may want more (`--batch`)
INFER_BATCH = 32


@dataclass(frozen=True)
class Limits:
    request_bytes: int = 64 * 1024 * 1024
    file_bytes: int = 20 * 1024 * 1024
    files: int = 64
    pixels: int = 40_000_000
    body_seconds: float = 30.0  # to receive a whole request body, from its first piece
    chunk_seconds: float = 10.0  # between two pieces of it
    concurrent: int = 4  # uploads read and analyzed at once; the others wait unread
