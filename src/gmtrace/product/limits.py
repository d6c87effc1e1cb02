"""What the server accepts of one request (no FastAPI: the command line reads its
defaults here)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    request_bytes: int = 64 * 1024 * 1024
    file_bytes: int = 20 * 1024 * 1024
    files: int = 64
    pixels: int = 40_000_000
    body_seconds: float = 30.0  # to receive a whole request body, from its first piece
    chunk_seconds: float = 10.0  # between two pieces of it
    concurrent: int = 4  # uploads read and analyzed at once; the others wait unread
