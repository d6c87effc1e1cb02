"""Decoding (`data.images.decode_rgb`): the pixels Pillow's own path gives (EXIF
orientation applied, then converted to RGB), read without its copies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from gmtrace.data.images import decode_rgb


def _file(mode: str, orientation: int, fmt: str) -> bytes:
    rng = np.random.default_rng(orientation)
    rgb = Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8))
    im = rgb if mode == "RGB" else rgb.convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, fmt, exif=exif.tobytes(), **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _pillow(data: bytes) -> np.ndarray:
    """The reference: Pillow's transpose into a copy, then `convert("RGB")`."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(
    "mode,fmt", [("RGB", "JPEG"), ("L", "JPEG"), ("CMYK", "JPEG"), ("P", "PNG"), ("RGB", "PNG")]
)
def test_decoding_gives_pillows_pixels_in_every_orientation(mode, fmt, orientation):
    data = _file(mode, orientation, fmt)
    got, want = decode_rgb(data, "x"), _pillow(data)
    assert got.dtype == np.uint8 and got.shape[2] == 3
    # turned upright: orientations 5-8 swap the sides of the 56 x 40 stored image
    assert got.shape[:2] == ((56, 40) if orientation >= 5 else (40, 56))
    assert np.array_equal(got, want)
