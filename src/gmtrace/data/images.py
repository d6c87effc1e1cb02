"""Image decoding and encoding: the one place gmtrace turns files into arrays.

Every reader validates at this edge and raises `ImageError` with a one-line
message naming the file; callers that process batches catch it, record the
failure and carry on.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MIN_SIDE = 8
MAX_FILE_BYTES = 256 * 1024 * 1024  # what a scan or an analysis reads of one file
MAX_PIXELS = 80_000_000


class ImageError(ValueError):
    """A file that cannot be used as an image; the message names the file."""


@functools.cache
def readable_suffixes() -> frozenset[str]:
    """The file extensions Pillow can open (not those it can only write)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def is_image_name(name: str) -> bool:
    """Whether a file of this name is searched for in folders: an extension Pillow
    opens, and not a hidden file."""
    return os.path.splitext(name)[1].lower() in readable_suffixes() and not name.startswith(".")


def find_images(paths: Iterable[str | Path]) -> tuple[list[str], dict[str, str]]:
    """(image files, sorted and unique; {path: error} for what cannot be searched):
    the one way gmtrace finds images (analyze, scan, zoo and photo folders).

    Folders are walked recursively without following symlinked folders (so a
    symlink loop cannot trap the walk); a folder named like an image is a folder.
    A file named on the command line is kept whatever its extension; a named path
    that does not exist, or a folder that cannot be listed, gets an error."""
    files: set[str] = set()
    problems: dict[str, str] = {}
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):

            def record(e: OSError, top: str = p) -> None:
                name = display_path(e.filename or top)
                problems[name] = f"{name}: cannot list folder ({e.strerror or e})"

            for root, dirs, names in os.walk(p, onerror=record, followlinks=False):
                dirs.sort()
                files.update(os.path.join(root, n) for n in names if is_image_name(n))
        elif os.path.lexists(p):
            files.add(p)
        else:
            problems[display_path(p)] = f"{display_path(p)}: no such file or folder"
    return sorted(files, key=display_path), problems


def list_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in sorted order (`find_images`)."""
    return sorted(Path(f) for f in find_images([folder])[0])


def images_by_domain(folder: Path) -> list[tuple[Path, Path, str]]:
    """(file, path relative to `folder`, domain) for each image under `folder`: the
    first-level subfolder names the domain; files directly inside get "user"."""
    out = []
    for f in list_images(folder):
        rel = f.relative_to(folder)
        out.append((f, rel, rel.parts[0] if len(rel.parts) > 1 else "user"))
    return out


def load_rgb(path: str | Path, min_side: int = MIN_SIDE) -> np.ndarray:
    """Decode an image file to an RGB uint8 array [H, W, 3].

    EXIF orientation is applied; grayscale, palette, RGBA (composited on white)
    and 16-bit images are converted; an animated image or a multipage TIFF gives
    its first frame. Raises `ImageError` naming the file.
    """
    return decode_rgb(path, path, min_side)


def display_path(path: str | Path) -> str:
    """A path as printable text on one line: bytes of a file name that are not UTF-8
    (kept by Python as lone surrogates) are shown as \\xNN escapes, and line breaks
    in a name as \\n and \\r (a row, an error message and a CSV line stay one line)."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return text.replace("\n", "\\n").replace("\r", "\\r")


def read_bytes(path: str | Path, limit: int | None = None) -> bytes:
    """A file's bytes (at most `limit`), with `ImageError` naming it when it cannot
    be read (missing, a folder, a symlink loop, no permission, too large)."""
    name, path = display_path(path), Path(path)
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"{name}: is a folder, not an image")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise ImageError(f"{name}: not a regular file")
        size = st.st_size
        if limit is not None and size > limit:
            raise ImageError(f"{name}: {size} bytes, more than the {limit} allowed")
        return path.read_bytes()
    except ImageError:
        raise
    except OSError as e:
        raise _os_error(name, e, "cannot read") from None


def _os_error(name: str, e: OSError, what: str) -> ImageError:
    """The one-line error for an OSError met reading or decoding the file `name`."""
    if isinstance(e, FileNotFoundError):
        return ImageError(f"{name}: no such file")
    if isinstance(e, IsADirectoryError):
        return ImageError(f"{name}: is a folder, not an image")
    if isinstance(e, PermissionError):
        return ImageError(f"{name}: permission denied")
    return ImageError(f"{name}: {what} ({e.strerror or e})")


def decode_rgb(
    source: str | Path | bytes, name: str | Path, min_side: int = MIN_SIDE
) -> np.ndarray:
    """`load_rgb` of a path or of a file's bytes already read; messages name `name`."""
    path = display_path(name)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: {im.width}x{im.height} is too large "
                    f"(more than {MAX_PIXELS // 1_000_000} MP)"
                )
            im.load()
            # in place: a copy of a whole photograph costs a tenth of its decoding
            ImageOps.exif_transpose(im, in_place=True)
            arr = _to_rgb(im)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(
            f"{path}: too large to decode safely (more than {MAX_PIXELS // 1_000_000} MP)"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (format not recognized)") from None
    except OSError as e:
        raise _os_error(path, e, "cannot decode image") from None
    except (SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: cannot decode image ({e})") from None
    if min(arr.shape[:2]) < min_side:
        raise ImageError(
            f"{path}: {arr.shape[1]}x{arr.shape[0]} is too small "
            f"(need at least {min_side} px a side)"
        )
    return arr


@dataclass
class Decoded:
    """A file's bytes decoded: their sha256 and length, and the RGB image or the
    one-line error naming the file."""

    sha256: str
    nbytes: int
    image: np.ndarray | None = None
    error: str | None = None

    @classmethod
    def of_bytes(cls, data: bytes) -> Decoded:
        """A file's identity (its bytes' sha256 and length), nothing decoded yet."""
        return cls(hashlib.sha256(data).hexdigest(), len(data))


def decode_bytes(data: bytes, name: str | Path, max_pixels: int = MAX_PIXELS) -> Decoded:
    """The one decode-hash-error path of files read whole (a scan's, an upload's):
    `decode_rgb` of `data`, refused beyond `max_pixels`, with the bytes' sha256. A
    decoder's own failure (not an `ImageError`) is this file's error too, so a
    batch carries on."""
    out = Decoded.of_bytes(data)
    path = display_path(name)
    try:
        img = decode_rgb(data, name)
        if img.shape[0] * img.shape[1] > max_pixels:
            raise ImageError(f"{path}: more than {max_pixels // 1_000_000} MP")
        out.image = img
    except ImageError as e:
        out.error = str(e)
    except Exception as e:
        out.error = f"{path}: cannot decode image ({type(e).__name__}: {e})".replace("\n", " ")
    return out


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if a.max() > 255 else 255.0
        a = np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = ((a - lo) / (hi - lo + 1e-12) * 255.0 + 0.5).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    # an RGB image is read as it is (`convert` would copy it first)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def array_to_rgb(a: np.ndarray) -> np.ndarray:
    """An array from a package (gray, RGB, RGBA; uint8, uint16 or float) as RGB uint8."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        peak = 1.0 if a.max() <= 1.0 else (255.0 if a.max() <= 255 else 65535.0)
        a = np.clip(a / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 4:
        alpha = a[..., 3:4].astype(np.float64) / 255.0
        a = (a[..., :3] * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
    return a[..., :3]


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float images in [-1, 1] ([N,3,H,W] or [3,H,W]) to uint8 HWC."""
    x = np.clip((np.asarray(x, dtype=np.float32) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.moveaxis(x, -3, -1)


def to_float(a: np.ndarray) -> np.ndarray:
    """uint8 HWC (or NHWC) to float CHW (or NCHW) in [-1, 1]."""
    x = np.asarray(a, dtype=np.float32) / 127.5 - 1.0
    return np.moveaxis(x, -1, -3)


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def save_png(rgb: np.ndarray, path: str | Path) -> None:
    Image.fromarray(rgb).save(path, format="PNG")
