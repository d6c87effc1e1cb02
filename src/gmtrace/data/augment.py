"""Augmentations for robustness, and the format-neutral transform for evaluation.

Images are uint8 RGB arrays [H, W, 3]. Every random choice comes from the
`np.random.Generator` the caller passes, so a seeded run is repeatable.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Re-encode as JPEG at `quality` (1-100) and decode again."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    """Scale both sides by `factor` (bicubic), at least 1 pixel a side."""
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of standard deviation `sigma` pixels."""
    if sigma <= 0:
        return img
    return np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))


def crop(img: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A size x size crop: random with `rng`, centred without; images smaller than
    `size` are reflect-padded first."""
    h, w = img.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        img = np.pad(
            img,
            ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
            mode="reflect" if min(h, w) > 1 else "edge",
        )
        h, w = img.shape[:2]
    if rng is None:
        y, x = (h - size) // 2, (w - size) // 2
    else:
        y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return img[y : y + size, x : x + size]


@dataclass(frozen=True)
class Augmenter:
    """Training-time robustness: with probability `p_resize` rescale by a factor in
    `scale`, with `p_blur` blur with sigma in `sigma`, with `p_jpeg` re-encode at a
    quality in `quality`, then take a random `size` crop (flip with `p_flip`).

    The defaults follow B-Free (Guillaro et al., CVPR 2025) and "Fake or JPEG?"
    (Grommelt et al., 2024): crop, never resize (resampling erases the up-sampling
    traces a detector should read), and JPEG at quality 30-100 for about half the
    images of both classes alike, so neither class is "the compressed one"."""

    size: int = 64
    p_resize: float = 0.0
    scale: tuple[float, float] = (0.5, 1.5)
    p_blur: float = 0.1
    sigma: tuple[float, float] = (0.2, 1.5)
    p_jpeg: float = 0.5
    quality: tuple[int, int] = (30, 100)
    p_flip: float = 0.5

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < self.p_resize:
            img = resize(img, float(rng.uniform(*self.scale)))
        if rng.random() < self.p_blur:
            img = blur(img, float(rng.uniform(*self.sigma)))
        if rng.random() < self.p_jpeg:
            img = jpeg(img, int(rng.integers(self.quality[0], self.quality[1] + 1)))
        img = crop(img, self.size, rng)
        if rng.random() < self.p_flip:
            img = img[:, ::-1]
        return np.ascontiguousarray(img)


def format_neutral(img: np.ndarray, size: int = 64, quality: int = 90) -> np.ndarray:
    """The same pipeline for every test image, real or generated: resize so the short
    side is `size` (bicubic), centre crop to size x size, JPEG at `quality`. A
    detector that learned "PNG vs JPEG" or "64 px vs other sizes" gains nothing."""
    h, w = img.shape[:2]
    img = resize(img, size / min(h, w))
    return jpeg(crop(img, size), quality)


def _jpeg_at(q: int):
    def f(img: np.ndarray) -> np.ndarray:
        return jpeg(img, q)

    return f


def _half(img: np.ndarray) -> np.ndarray:
    return resize(img, 0.5)


# Degradations of the evaluation's robustness rows, beside the format-neutral one,
# applied alike to every test image (real and generated): name -> (label, transform
# of a uint8 [H, W, 3] image).
CONDITIONS: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "jpeg95": ("JPEG q95", _jpeg_at(95)),
    "jpeg75": ("JPEG q75", _jpeg_at(75)),
    "jpeg50": ("JPEG q50", _jpeg_at(50)),
    "resize50": ("resized to 50 % (bicubic)", _half),
}


# how the photographs a model of real photographs is fitted on are varied first
# (`varied`; chosen on inner validation codebases, `methods.fused.choose_variation`):
# as given; half of them re-encoded as JPEG at a quality in 30-100 (the supervised
# network's own re-encoding, `Augmenter`); that network's whole variation (its
# JPEG, a blur of one in ten, a mirror image of half)
VARIATIONS = ("as given", "JPEG", "as the network's training")


def varied(images: np.ndarray, variation: str, seed: int) -> np.ndarray:
    """uint8 photographs [N, S, S, 3] (square crops of one size) varied by `variation`
    (one of `VARIATIONS`), each drawn with a generator of `seed`; as given: the same
    array."""
    if variation not in VARIATIONS:
        raise ValueError(f"a variation is one of {VARIATIONS}, not {variation!r}")
    if variation == "as given" or len(images) == 0:
        return images
    size = images.shape[1]
    if images.shape[2] != size:
        raise ValueError(f"varied photographs are square crops, got {images.shape[1:3]}")
    # JPEG alone: the network's re-encoding without its blur and mirror
    aug = (
        Augmenter(size=size, p_blur=0.0, p_flip=0.0)
        if variation == "JPEG"
        else Augmenter(size=size)
    )
    rng = np.random.default_rng(seed)
    return np.stack([aug(a, rng) for a in images])
