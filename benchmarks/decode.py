"""Decoding full-size photographs: `data.images.decode_rgb` against Pillow's usual
idiom and against the decoder alone.

    .venv/bin/python benchmarks/decode.py [--photos 60] [--repeats 3] [--write]

On `--photos` of the project's own photographs at full size (the catalog's files
installed here, as `benchmarks/throughput.py` takes them), from their bytes in
memory, on one thread, images/s (the median of `--repeats` runs after a warm-up):

* the decoder alone: `Image.open` and `load` (libjpeg-turbo, zlib);
* Pillow's usual idiom, what `decode_rgb` did before 2026-12-06: the orientation
  applied into a copy (`ImageOps.exif_transpose`), `convert("RGB")`, `np.asarray`
  with a dtype;
* `decode_rgb`: the same pixels (checked here, file by file) with the orientation
  applied in place and an RGB image read as it is.

Prints the table; with --write puts it in docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput  # noqa: E402  (catalog_photos, median_rate)
import zoo_build  # noqa: E402  (command, machine, write_section)


def decoder_alone(data: bytes):
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def pillow_idiom(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"), dtype=np.uint8)


def rate(decode, datas: list[bytes]) -> float:
    t0 = time.perf_counter()
    for d in datas:
        decode(d)
    return len(datas) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    from gmtrace.data.images import decode_rgb

    with tempfile.TemporaryDirectory() as tmp:
        files = throughput.catalog_photos(Path(tmp), a.photos)
        datas = [f.read_bytes() for f in files]
        sizes = [Image.open(f).size for f in files]
        kinds = sorted({f.suffix for f in files})
    for d in datas:  # the same pixels, file by file
        if not np.array_equal(decode_rgb(d, "photo"), pillow_idiom(d)):
            raise SystemExit("decode_rgb's pixels differ from Pillow's idiom")
    ways = [
        ("the decoder alone (`Image.open`, `load`)", decoder_alone),
        ("Pillow's idiom: orientation into a copy, `convert`, `asarray`", pillow_idiom),
        ("`decode_rgb` (the scan's), the same pixels", lambda d: decode_rgb(d, "photo")),
    ]
    rows = []
    for name, f in ways:
        r = throughput.median_rate(lambda f=f: rate(f, datas), a.repeats)
        rows.append((name, r))
        print(f"{name}: {r:.1f} images/s", flush=True)
    mp = np.median([w * h / 1e6 for w, h in sizes])
    table = [
        f"| decoding {len(datas)} photographs ({', '.join(kinds)}, median {mp:.1f} MP), "
        "one thread | images/s |",
        "|---|---|",
        *(f"| {name} | {r:.1f} |" for name, r in rows),
    ]
    text = "\n".join(table)
    print(text)
    if a.write:
        zoo_build.write_section(
            "decode",
            f"## Decoding full-size photographs (issue 23)\n\n{zoo_build.command()}, "
            f"each figure the median of {a.repeats} runs after a warm-up, "
            f"{zoo_build.machine()}:\n\n{text}",
        )
        print(f"written to {zoo_build.DOC}")


if __name__ == "__main__":
    main()
