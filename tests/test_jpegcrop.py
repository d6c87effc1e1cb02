"""A large JPEG's crops cut without decoding all of it (`data.jpegcrop`): the same
pixels as the whole image decoded and cut (`decode_rgb`, `crop_grid`) in every
subsampling, every EXIF orientation, grayscale and progressive; and every file it
cannot answer for exactly (a progressive image whose scans leave bits out, a
damaged file, a small image, another format) decoded whole, with the same crops or
the same one-line error."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gmtrace.data import jpegcrop
from gmtrace.data.crops import crop_grid
from gmtrace.data.images import decode_bytes, decode_rgb
from gmtrace.data.jpegcrop import decode_crops, jpeg_crops

needs_lib = pytest.mark.skipif(
    jpegcrop._library() is None,
    reason="libturbojpeg missing (make setup installs Debian's libturbojpeg0)",
)


def _picture(h: int = 720, w: int = 960) -> np.ndarray:
    """Smooth shapes, edges and noise: what a photograph's blocks hold."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w] / 40.0
    base = np.stack([np.sin(x) * 60, np.cos(y * 1.3) * 50, np.sin(x + y) * 40], -1) + 120
    base[h // 3 : h // 2, w // 4 : w // 2] += 50  # a sharp-edged patch
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _jpeg(rgb: np.ndarray, orientation: int = 1, mode: str = "RGB", **kw) -> bytes:
    im = Image.fromarray(rgb).convert(mode)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), **({"quality": 90} | kw))
    return buf.getvalue()


def _whole(data: bytes, size: int = 64, max_crops: int = 9) -> np.ndarray:
    return crop_grid(decode_rgb(data, "x.jpg"), size, max_crops)[0]


@needs_lib
@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
def test_crops_are_the_whole_decodes_in_every_orientation(subsampling, orientation):
    data = _jpeg(_picture(), orientation, subsampling=subsampling)
    got = jpeg_crops(data, 64, 9)
    assert got is not None, "a baseline 960 x 720 JPEG is cut without decoding it whole"
    assert np.array_equal(got.grid, _whole(data))
    assert got.grid.shape == (9, 64, 64, 3) and not got.padded
    # (width, height) as seen: orientations 5-8 swap the stored image's sides
    assert got.size == ((720, 960) if orientation >= 5 else (960, 720))


@needs_lib
def test_grayscale_progressive_and_odd_sizes_are_cut_exactly():
    pic = _picture(701, 1003)  # neither side a multiple of an MCU
    cases = {
        "gray": _jpeg(pic, mode="L"),
        "progressive": _jpeg(pic, progressive=True),
        "progressive, turned": _jpeg(pic, 6, progressive=True, subsampling=1),
        "restart markers": _jpeg(pic, restart_marker_rows=1),
        "optimized tables, quality 100": _jpeg(pic, optimize=True, quality=100),
    }
    for what, data in cases.items():
        got = jpeg_crops(data, 64, 9)
        assert got is not None, what
        assert np.array_equal(got.grid, _whole(data)), what
    # another crop size and count: the layout is the one crop_grid draws
    data = cases["gray"]
    assert np.array_equal(jpeg_crops(data, 32, 4).grid, _whole(data, 32, 4))


def _scans_dropped(data: bytes, keep: int) -> bytes:
    """A progressive JPEG with only its first `keep` scans, ended properly: a valid
    image whose coefficients are not all at full precision."""
    starts, pos = [], data.find(b"\xff\xda")
    while pos >= 0:
        starts.append(pos)
        pos = data.find(b"\xff\xda", pos + 2)
    return data[: starts[keep]] + b"\xff\xd9"


@needs_lib
def test_a_progressive_image_missing_refinements_is_decoded_whole():
    full = _jpeg(_picture(), progressive=True)
    partial = _scans_dropped(full, 4)
    whole = _whole(partial)  # libjpeg decodes it (and smooths its blocks)
    assert not jpegcrop._scans_complete(partial) and jpegcrop._scans_complete(full)
    assert jpeg_crops(partial, 64, 9) is None
    d, crops = decode_crops(partial, "p.jpg", 64, 9)
    assert d.error is None and np.array_equal(crops.grid, whole)


@needs_lib
def test_what_it_does_not_answer_is_decoded_whole_with_the_same_result():
    big = _jpeg(_picture())
    small = _jpeg(_picture(200, 260))  # its crops would cover most of it
    png, cmyk = io.BytesIO(), io.BytesIO()
    Image.fromarray(_picture()).save(png, "PNG")
    Image.fromarray(_picture()).convert("CMYK").save(cmyk, "JPEG")
    cases = (("small.jpg", small), ("p.png", png.getvalue()), ("cmyk.jpg", cmyk.getvalue()))
    for name, data in cases:
        assert jpeg_crops(data, 64, 9) is None, name
        d, crops = decode_crops(data, name, 64, 9)
        assert d.image is None and d.error is None, name  # the image itself is not kept
        assert np.array_equal(crops.grid, _whole(data)), name
    # a damaged file: the whole decode's one-line error, naming the file
    cut = big[: len(big) // 2]
    assert jpeg_crops(cut, 64, 9) is None
    d, crops = decode_crops(cut, "cut.jpg", 64, 9)
    assert crops is None and d.error == decode_bytes(cut, "cut.jpg").error
    assert d.error.startswith("cut.jpg: ")
    # past the pixel limit the caller sets: the same refusal as a whole decode
    d, crops = decode_crops(big, "big.jpg", 64, 9, max_pixels=500_000)
    assert crops is None and d.error == decode_bytes(big, "big.jpg", 500_000).error


def test_the_hash_and_length_are_the_files_either_way(monkeypatch):
    data = _jpeg(_picture())
    cut = decode_crops(data, "a.jpg", 64, 9)
    monkeypatch.setenv(jpegcrop.ENV, "0")
    assert not jpegcrop.available() and jpeg_crops(data, 64, 9) is None
    whole = decode_crops(data, "a.jpg", 64, 9)
    ref = decode_bytes(data, "a.jpg")
    for d, c in (cut, whole):
        assert (d.sha256, d.nbytes) == (ref.sha256, ref.nbytes)
        assert np.array_equal(c.grid, whole[1].grid) and c.size == (960, 720)
