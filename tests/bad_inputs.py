"""A corpus of awkward and broken image files, and what gmtrace must do with each.

    .venv/bin/python tests/bad_inputs.py DIR      # writes the corpus into DIR

`make_corpus(dir)` returns {file name: "ok" | "error"}: "ok" files must be
analyzed (an answer), "error" files must get a one-line error naming them while
the rest carry on. Names are relative to DIR (bytes for the non-UTF-8 one are
written through os.fsencode). Used by the tests of analyze, scan and the server.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

NON_UTF8 = os.fsdecode(b"caf\xe9_latin1.png")  # a name that is not UTF-8


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (no pixel data follows)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def make_corpus(d: str | Path, seed: int = 0) -> dict[str, str]:
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray((rng.random((72, 96, 3)) * 255).astype(np.uint8))
    png, jpg = _bytes(rgb, "PNG"), _bytes(rgb, "JPEG", quality=90)
    want: dict[str, str] = {}

    def put(name: str, data: bytes, expect: str) -> None:
        (d / name).write_bytes(data)
        want[name] = expect

    put("good.png", png, "ok")
    put("zero_bytes.png", b"", "error")
    put("truncated.png", png[: len(png) // 2], "error")
    put("truncated.jpg", jpg[: len(jpg) // 3], "error")
    put("page.jpg", b"<!doctype html><html><body>404 not found</body></html>\n", "error")
    put("jpeg_named.png", jpg, "ok")  # a wrong extension: read by its content
    put("bomb.png", _png_header(40_000, 40_000), "error")  # 1.6 G pixels claimed
    put("line_50000x1.png", _bytes(Image.new("RGB", (50_000, 1), (9, 9, 9)), "PNG"), "error")
    put("one_pixel.png", _bytes(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "error")
    deep = (rng.random((40, 48)) * 65535).astype(np.uint16)
    put("deep16.png", _bytes(Image.fromarray(deep), "PNG"), "ok")
    put("cmyk.jpg", _bytes(rgb.convert("CMYK"), "JPEG", quality=90), "ok")
    pal = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    put("palette_transparent.png", _bytes(pal, "PNG", transparency=0), "ok")
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    put(
        "animated.gif",
        _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
        "ok",
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    put("exif_rotated.jpg", _bytes(rgb, "JPEG", quality=90, exif=exif.tobytes()), "ok")
    put("multipage.tif", _bytes(frames[0], "TIFF", save_all=True, append_images=frames[1:]), "ok")
    put("image.webp", _bytes(rgb, "WEBP", quality=90), "ok")
    loop = d / "loop.png"
    if not loop.is_symlink():
        os.symlink("loop_b.png", loop)
        os.symlink("loop.png", d / "loop_b.png")
    want["loop.png"] = want["loop_b.png"] = "error"
    if not (d / "dangling.png").is_symlink():
        os.symlink("nowhere.png", d / "dangling.png")
    want["dangling.png"] = "error"
    fifo = d / "fifo.png"
    if not fifo.exists():
        os.mkfifo(fifo)
    want["fifo.png"] = "error"  # not a regular file: reading it would block
    locked = d / "unreadable.png"
    locked.write_bytes(png)
    locked.chmod(0)
    # root reads it anyway (and CI runs as root): an answer then, else an error
    want["unreadable.png"] = "ok" if os.access(locked, os.R_OK) else "error"
    folder = d / "folder.png"  # a folder named like an image: walked, not read
    folder.mkdir(exist_ok=True)
    (folder / "inside.png").write_bytes(png)
    want["folder.png/inside.png"] = "ok"
    (d / NON_UTF8).write_bytes(png)
    want[NON_UTF8] = "ok"
    return want


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bad_inputs.py DIR")
    for name, expect in make_corpus(sys.argv[1]).items():
        print(f"{expect:6s} {os.fsencode(name).decode('utf-8', 'backslashreplace')}")
