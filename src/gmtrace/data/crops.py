"""How the network reads an image of any size: up to `max_crops` non-overlapping
crops of its input size spread over the image (never resized: resizing smears the
pixel-scale traces the model looks for); a smaller image is reflect-padded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from gmtrace.data.augment import crop


def crop_positions(length: int, size: int, most: int) -> list[int]:
    """Where `crop_grid` cuts along one axis: up to `most` non-overlapping crops
    spread evenly from edge to edge (one crop: the centre)."""
    n = min(length // size, most)
    if n <= 1:
        return [(length - size) // 2]
    return [int(v) for v in np.linspace(0, length - size, n).astype(int)]


def crop_layout(h: int, w: int, size: int, max_crops: int) -> tuple[list[int], list[int]] | None:
    """The rows and columns where `crop_grid` cuts an h x w image (a grid of k x k at
    most, k = isqrt(max_crops)); None when the image is smaller than `size`."""
    if h < size or w < size:
        return None
    k = max(1, int(math.isqrt(max_crops)))
    return crop_positions(h, size, k), crop_positions(w, size, k)


def crop_grid(img: np.ndarray, size: int, max_crops: int) -> tuple[np.ndarray, bool]:
    """Up to `max_crops` non-overlapping size x size crops spread evenly over the
    image ([n, size, size, 3], `crop_layout`); an image smaller than `size` is
    reflect-padded (and the second value is True)."""
    layout = crop_layout(img.shape[0], img.shape[1], size, max_crops)
    if layout is None:
        return crop(img, size)[None], True
    ys, xs = layout
    return np.stack([img[y : y + size, x : x + size] for y in ys for x in xs]), False


def crops_of(img: np.ndarray, size: int, max_crops: int) -> Crops:
    """`crop_grid` of an image with its size: what a scan keeps of it."""
    grid, padded = crop_grid(img, size, max_crops)
    return Crops(grid, padded, (int(img.shape[1]), int(img.shape[0])))


def crop_count(width: int, height: int, size: int, max_crops: int) -> int:
    """How many crops `crop_grid` cuts from an image of that size."""
    layout = crop_layout(height, width, size, max_crops)
    return 1 if layout is None else len(layout[0]) * len(layout[1])


@dataclass
class Crops:
    """An image as the network reads it: its crops [n, size, size, 3], whether it
    was padded, and its (width, height)."""

    grid: np.ndarray
    padded: bool
    size: tuple[int, int]
