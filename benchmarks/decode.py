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
  applied in place and an RGB image read as it is;
* what a scan keeps of each file, its crops (`data.jpegcrop.decode_crops`, 64-px
  crops, at most 9): the file decoded whole and cut (libturbojpeg switched off,
  $GMTRACE_JPEG_CROPS=0), against a JPEG's crops cut out of the file with a
  margin and decoded alone (the same crops: checked here, file by file).

With --scan, the same photographs scanned whole by the shipped model (`Analyzer.scan`,
torch, every output of a row on), the JPEGs' crops cut out of the file against
decoded whole, the two settings interleaved (images/s, the median of `--repeats`
runs of each after a warm-up of each), and the rows compared (the same to 1e-6).

Prints the table; with --write puts it in docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import io
import os
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


def scan_both(folder: Path, tmp: Path, repeats: int) -> list[tuple[str, float]]:
    """The shipped model's scan of `folder`, JPEG crops cut (GMTRACE_JPEG_CROPS=1)
    and decoded whole (0), interleaved; the rows of the two must agree."""
    from gmtrace.data import jpegcrop
    from gmtrace.product.analyze import Analyzer
    from gmtrace.product.scan import results_differ

    an = Analyzer()
    rates: dict[str, list[float]] = {"0": [], "1": []}
    for i in range(repeats + 1):
        for cut in ("0", "1"):
            os.environ[jpegcrop.ENV] = cut
            r = throughput.scan_rate(an, folder, tmp / f"rows{cut}.jsonl")
            if i:  # the first of each is the warm-up
                rates[cut].append(r)
    if d := results_differ(tmp / "rows0.jsonl", tmp / "rows1.jsonl", atol=1e-6):
        raise SystemExit(f"the scans' rows differ: {d}")
    return [
        ("the JPEGs decoded whole (before)", float(np.median(rates["0"]))),
        ("the JPEGs' crops cut out of the file (the scan's default)", float(np.median(rates["1"]))),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scan", action="store_true", help="also scan them, both ways")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    from gmtrace.data import jpegcrop
    from gmtrace.data.images import decode_rgb

    def crops(d: bytes, cut: str):
        os.environ[jpegcrop.ENV] = cut
        return jpegcrop.decode_crops(d, "photo", 64, 9)[1].grid

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        files = throughput.catalog_photos(folder, a.photos)
        datas = [f.read_bytes() for f in files]
        sizes = [Image.open(f).size for f in files]
        kinds = sorted({f.suffix for f in files})
        scans = scan_both(folder, Path(tmp), a.repeats) if a.scan else []
    for d in datas:  # the same pixels, file by file
        if not np.array_equal(decode_rgb(d, "photo"), pillow_idiom(d)):
            raise SystemExit("decode_rgb's pixels differ from Pillow's idiom")
        if not np.array_equal(crops(d, "1"), crops(d, "0")):
            raise SystemExit("the crops cut from a JPEG differ from the whole decode's")
    if jpegcrop._library() is None:
        raise SystemExit("libturbojpeg is missing (make setup): nothing to compare")
    os.environ[jpegcrop.ENV] = "1"
    n_cut = sum(jpegcrop.jpeg_crops(d, 64, 9) is not None for d in datas)
    ways = [
        ("the decoder alone (`Image.open`, `load`)", decoder_alone),
        ("Pillow's idiom: orientation into a copy, `convert`, `asarray`", pillow_idiom),
        ("`decode_rgb`, the same pixels", lambda d: decode_rgb(d, "photo")),
        ("a scan's crops of each file, decoded whole", lambda d: crops(d, "0")),
        (
            f"a scan's crops of each file, those of {n_cut} JPEGs cut out of the file "
            "(the scan's since 2026-12-06), the same crops",
            lambda d: crops(d, "1"),
        ),
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
    if scans:
        table += ["", "| scanning them (shipped model, torch, 2 threads) | images/s |", "|---|---|"]
        table += [f"| {name} | {r:.1f} |" for name, r in scans]
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
