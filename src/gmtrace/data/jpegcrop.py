"""The crops a scan reads of a large JPEG, without decoding the whole photograph.

A scan keeps only the crops the network reads of an image (`data.crops.crop_grid`:
at most 9 crops of 64 px, under 2 % of a 2-MP photograph), yet decoding a JPEG
whole is most of a full-size scan's cost (docs/benchmarks.md, "Decoding full-size
photographs"). This module cuts each crop's rectangle, widened by a margin of two
MCUs on every side, out of the compressed file with libjpeg-turbo's lossless
transform (`tjTransform` with TJXOPT_CROP: the blocks' quantized DCT coefficients
are copied, not decoded to pixels), decodes those small JPEGs with Pillow's own
decoder and trims the margin. The pixels are those of the whole image decoded:
each block's inverse DCT reads its own coefficients only, and the chroma
upsampling at most the neighbouring samples, which the margin keeps
(tests/test_jpegcrop.py compares every subsampling and all eight orientations with
`decode_rgb`). What it saves is the inverse DCT, upsampling and colour conversion
of the rest of the photograph; the entropy decoding of the whole file stays (the
transform reads every block's coefficients).

It answers only where that equality is certain, and returns None otherwise (the
caller decodes the whole image, `images.decode_bytes`): a baseline JPEG in YCbCr or
grayscale whose crops cover under a quarter of it, within the size limits, with
libturbojpeg installed (Debian's libturbojpeg0, `make setup`). A progressive JPEG
answers only where its scans bring every coefficient of every component to full
precision (`_scans_complete`, what every common encoder writes): libjpeg smooths
the blocks of a progressive image whose scans leave bits out, which the baseline
crops cut from it would not be. Any warning of the
transform (a truncated or damaged file) also sends the file to the whole decode,
so a broken file gets the same one-line error either way."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import os
import re
from functools import cache

import numpy as np
from PIL import Image

from gmtrace.data.crops import Crops, crop_layout, crops_of
from gmtrace.data.images import MAX_PIXELS, MIN_SIDE, Decoded, decode_bytes

# turbojpeg.h (libjpeg-turbo 2.x and 3.x keep these in the API of version 2)
_TJXOPT_CROP, _TJXOPT_COPYNONE = 4, 64
_TJFLAG_STOPONWARNING, _TJFLAG_LIMITSCANS = 8192, 32768
_TJCS_YCBCR, _TJCS_GRAY = 1, 2
# MCU width and height of TJSAMP_444, 422, 420, GRAY, 440, 411, 441
_MCU = ((8, 8), (16, 8), (16, 16), (8, 8), (8, 16), (32, 8), (8, 32))
MARGIN_MCUS = 2  # the margin kept around each crop, in MCUs
MAX_SHARE = 0.25  # the largest share of the image the crops' rectangles may cover
# EXIF orientation -> Pillow's transpose of the stored image into the one seen
# (as `ImageOps.exif_transpose` applies it)
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ENV = "GMTRACE_JPEG_CROPS"  # "0": always decode whole (a benchmark's comparison)


class _Region(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _Transform(ctypes.Structure):
    _fields_ = [
        ("r", _Region),
        ("op", ctypes.c_int),
        ("options", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("customFilter", ctypes.c_void_p),
    ]


@cache
def _library() -> ctypes.CDLL | None:
    """libturbojpeg with the signatures used here, or None where it is missing."""
    name = ctypes.util.find_library("turbojpeg")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    u8p = ctypes.POINTER(ctypes.c_ubyte)
    lib.tjInitTransform.restype = ctypes.c_void_p
    lib.tjInitTransform.argtypes = []
    lib.tjDestroy.argtypes = [ctypes.c_void_p]
    lib.tjFree.argtypes = [u8p]
    lib.tjDecompressHeader3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong]
    lib.tjDecompressHeader3.argtypes += [ctypes.POINTER(ctypes.c_int)] * 4
    lib.tjTransform.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.POINTER(u8p),
        ctypes.POINTER(ctypes.c_ulong),
        ctypes.POINTER(_Transform),
        ctypes.c_int,
    ]
    return lib


def available() -> bool:
    """Whether crops of JPEGs are cut without decoding them whole here."""
    return _library() is not None and os.environ.get(ENV, "1") != "0"


def _stored_xy(orientation: int, x: int, y: int, w: int, h: int) -> tuple[int, int]:
    """The stored image's (column, row) of pixel (x, y) of the image as seen, for a
    stored image of w x h and its EXIF orientation."""
    return {
        1: (x, y),
        2: (w - 1 - x, y),
        3: (w - 1 - x, h - 1 - y),
        4: (x, h - 1 - y),
        5: (y, x),
        6: (y, h - 1 - x),
        7: (w - 1 - y, h - 1 - x),
        8: (w - 1 - y, x),
    }[orientation]


# the next marker after a scan's entropy-coded data (where 0xFF is followed by 0x00
# or a restart marker, RST0-7, or by more 0xFF fill bytes, it is not one)
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _scans_complete(data: bytes) -> bool:
    """Whether a progressive JPEG's scans (its SOS headers, read with the frame's
    components from its SOF2) leave every one of the 64 coefficients of every
    component at full precision (the last scan of each at Al = 0)."""
    bits: dict[int, list[int | None]] | None = None
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False
        m = data[pos + 1]
        if m == 0xFF:  # a fill byte
            pos += 1
            continue
        if m == 0xD9:  # end of image
            break
        if 0xD0 <= m <= 0xD7 or m == 0x01:  # markers without a length
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        seg = data[pos + 4 : end]
        if m == 0xC2 and len(seg) >= 6:
            bits = {seg[6 + 3 * i]: [None] * 64 for i in range(seg[5]) if 6 + 3 * i < len(seg)}
        elif m == 0xDA:
            ns = seg[0] if seg else 0
            if bits is None or len(seg) < 4 + 2 * ns:
                return False
            ss, se, al = seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns] & 15
            for c in (seg[1 + 2 * i] for i in range(ns)):
                if c not in bits or ss > se or se > 63:
                    return False
                bits[c][ss : se + 1] = [al] * (se - ss + 1)
            found = _NEXT_MARKER.search(data, end)
            if found is None:
                break
            pos = found.start()
            continue
        pos = end
    return bits is not None and all(b == 0 for v in bits.values() for b in v)


def _header(data: bytes) -> tuple[int, int, int] | None:
    """(stored width, height, EXIF orientation) of a JPEG in RGB or grayscale, from
    its header alone, baseline or progressive with complete scans; None for
    anything else."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            progressive = im.info.get("progressive") or im.info.get("progression")
            if progressive and not _scans_complete(data):
                return None
            orientation = int(im.getexif().get(0x0112, 1))
            return im.width, im.height, orientation if orientation in range(1, 9) else 1
    except Exception:
        return None


def decode_crops(
    data: bytes, name, size: int, max_crops: int, max_pixels: int = MAX_PIXELS
) -> tuple[Decoded, Crops | None]:
    """A file's bytes as a scan reads them: their hash and length (`Decoded`, its
    image left out), and the crops `crop_grid` cuts of the image, or None with the
    file's one-line error. A JPEG's crops are cut without decoding it whole where
    `jpeg_crops` answers; every other file is decoded whole (`decode_bytes`). The
    crops are the same either way."""
    crops = jpeg_crops(data, size, max_crops, max_pixels)
    if crops is not None:
        return Decoded.of_bytes(data), crops
    d = decode_bytes(data, name, max_pixels)
    if d.image is None:
        return d, None
    img, d.image = d.image, None  # the crops are all a scan keeps
    return d, crops_of(img, size, max_crops)


def jpeg_crops(
    data: bytes, size: int, max_crops: int, max_pixels: int = MAX_PIXELS
) -> Crops | None:
    """The crops `crop_grid` cuts of the image a JPEG file's bytes hold (orientation
    applied), decoding only their neighbourhoods; None where this module does not
    answer (module docstring): the caller then decodes the whole file."""
    lib = _library() if available() else None
    if lib is None or data[:2] != b"\xff\xd8":
        return None
    head = _header(data)
    if head is None:
        return None
    w, h, orientation = head
    seen_w, seen_h = (h, w) if orientation >= 5 else (w, h)
    if w * h > min(MAX_PIXELS, max_pixels) or min(w, h) < MIN_SIDE:
        return None  # the whole decode says why
    layout = crop_layout(seen_h, seen_w, size, max_crops)
    if layout is None:
        return None
    handle = lib.tjInitTransform()
    if not handle:
        return None
    try:
        return _cut(lib, handle, data, (w, h), orientation, layout, size)
    finally:
        lib.tjDestroy(handle)


def _cut(lib, handle, data: bytes, wh, orientation: int, layout, size: int) -> Crops | None:
    w, h = wh
    tw, th, sub, space = (ctypes.c_int() for _ in range(4))
    refs = [ctypes.byref(v) for v in (tw, th, sub, space)]
    if lib.tjDecompressHeader3(handle, data, len(data), *refs) != 0:
        return None
    if (tw.value, th.value) != (w, h) or space.value not in (_TJCS_YCBCR, _TJCS_GRAY):
        return None
    if not 0 <= sub.value < len(_MCU):
        return None
    mw, mh = (m * MARGIN_MCUS for m in _MCU[sub.value])
    step_w, step_h = _MCU[sub.value]
    ys, xs = layout
    rects = []  # (x0, y0, x1, y1) in the stored image, and the crop's offset in it
    for y in ys:
        for x in xs:
            a = _stored_xy(orientation, x, y, w, h)
            b = _stored_xy(orientation, x + size - 1, y + size - 1, w, h)
            cx, cy = min(a[0], b[0]), min(a[1], b[1])
            x0 = max(0, (cx - mw) // step_w * step_w)
            y0 = max(0, (cy - mh) // step_h * step_h)
            x1, y1 = min(w, cx + size + mw), min(h, cy + size + mh)
            rects.append((x0, y0, x1, y1, cx - x0, cy - y0))
    if sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects) > MAX_SHARE * w * h:
        return None  # most of the image: decoding it whole costs less
    n = len(rects)
    transforms = (_Transform * n)()
    for t, (x0, y0, x1, y1, _, _) in zip(transforms, rects, strict=True):
        t.r = _Region(x0, y0, x1 - x0, y1 - y0)
        t.options = _TJXOPT_CROP | _TJXOPT_COPYNONE
    bufs = (ctypes.POINTER(ctypes.c_ubyte) * n)()
    sizes = (ctypes.c_ulong * n)()
    flags = _TJFLAG_STOPONWARNING | _TJFLAG_LIMITSCANS
    try:
        if lib.tjTransform(handle, data, len(data), n, bufs, sizes, transforms, flags) != 0:
            return None
        pieces = [ctypes.string_at(bufs[i], sizes[i]) for i in range(n)]
    finally:
        for i in range(n):
            if bufs[i]:
                lib.tjFree(bufs[i])
    crops = []
    for piece, (_, _, _, _, ox, oy) in zip(pieces, rects, strict=True):
        with Image.open(io.BytesIO(piece)) as im:
            im = im.convert("RGB")  # as `images._to_rgb` reads RGB and L
        cut = im.crop((ox, oy, ox + size, oy + size))
        if orientation != 1:
            cut = cut.transpose(_TRANSPOSE[orientation])
        crops.append(np.asarray(cut))
    return Crops(np.stack(crops), False, (w, h) if orientation < 5 else (h, w))
