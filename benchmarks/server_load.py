"""`gmtrace serve` under load, against 127.0.0.1 only.

    .venv/bin/python benchmarks/server_load.py [--clients 200] [--requests 20]
                                               [--model MODEL_DIR] [--write]

Starts `gmtrace serve` on a free local port, then `--clients` concurrent clients
send `--requests` requests each, a mix of good and bad inputs: one to three good
PNG images, a file that is not an image, a truncated PNG, an empty upload, too
many files, a file over the size limit, the wrong content type, and a slow upload
(a body trickling in slower than the server's limit). Reports per kind the status
codes and the p50 / p99 latency, the server's peak resident memory (VmHWM), and
fails if any response is a 5xx or a connection breaks. With --write the table
goes to docs/benchmarks.md between markers.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo_build  # noqa: E402  (machine())
from gmtrace.product.server import serve_in_child  # noqa: E402

MAX_FILES, MAX_MB = 8, 2


def _png(seed: int, size: int = 96) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


KINDS = ("good", "not_image", "truncated", "no_files", "too_many", "too_big", "wrong_type", "slow")


async def one(client, kind: str, i: int) -> tuple[str, int, float]:
    good = _png(i % 17)
    url = "/v1/analyze"
    t0 = time.perf_counter()
    if kind == "good":
        files = [("files", (f"{i}_{k}.png", _png(i + k), "image/png")) for k in range(1 + i % 3)]
        r = await client.post(url, files=files)
    elif kind == "not_image":
        r = await client.post(
            url, files=[("files", ("page.jpg", b"<html>404</html>", "image/jpeg"))]
        )
    elif kind == "truncated":
        r = await client.post(
            url, files=[("files", ("t.png", good[: len(good) // 2], "image/png"))]
        )
    elif kind == "no_files":
        r = await client.post(url, data={"x": "1"})
    elif kind == "too_many":
        files = [("files", (f"{k}.png", good, "image/png")) for k in range(MAX_FILES + 1)]
        r = await client.post(url, files=files)
    elif kind == "too_big":
        big = b"\0" * (MAX_MB * 1024 * 1024 + 1)
        r = await client.post(url, files=[("files", ("big.png", big, "image/png"))])
    elif kind == "wrong_type":
        r = await client.post(url, content=b"hello", headers={"content-type": "text/plain"})
    else:  # slow: a valid start of an upload, then nothing: the server must cut it off
        return kind, await slow_upload(client.base_url), time.perf_counter() - t0
    return kind, r.status_code, time.perf_counter() - t0


async def slow_upload(base) -> int:
    """Send the headers and the first part of a multipart body, then stall; the
    status code the server answers with (it should not wait for the rest)."""
    reader, writer = await asyncio.open_connection(base.host, base.port)
    head = (
        "POST /v1/analyze HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 100000\r\n\r\n"
        '--x\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
    )
    writer.write(head.encode() + b"\x89PNG")
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), 60)
        return int(line.split()[1]) if line.startswith(b"HTTP/") else -1
    except (TimeoutError, ValueError, IndexError):
        return -1
    finally:
        writer.close()


async def client_loop(base: str, c: int, n: int, out: list) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for j in range(n):
            kind = KINDS[(c * 7 + j) % len(KINDS)] if (c + j) % 3 else "good"
            try:
                out.append(await one(client, kind, c * 1000 + j))
            except Exception as e:  # a broken connection counts as a failure
                out.append((kind, -1, float("nan")))
                print(f"client {c}: {kind}: {type(e).__name__}: {e}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--model", default=None)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    args = ["--max-files", str(MAX_FILES), "--max-file-mb", str(MAX_MB), "--chunk-seconds", "1"]
    if a.model:
        args += ["--model", a.model]
    with serve_in_child(args, stderr=subprocess.DEVNULL) as (base, server):
        results: list = []
        t0 = time.perf_counter()

        async def run():
            await asyncio.gather(
                *(client_loop(base, c, a.requests, results) for c in range(a.clients))
            )

        asyncio.run(run())
        wall = time.perf_counter() - t0
        peak = _peak_rss_mb(server.pid)
    by_kind = defaultdict(list)
    for kind, status, sec in results:
        by_kind[kind].append((status, sec))
    lines = [
        "| request | n | status codes | p50 (s) | p99 (s) |",
        "|---|---|---|---|---|",
    ]
    bad = 0
    for kind in KINDS:
        v = by_kind.get(kind, [])
        if not v:
            continue
        codes = defaultdict(int)
        for s, _ in v:
            codes[s] += 1
            bad += s < 0 or s >= 500
        lat = np.array([sec for _, sec in v if np.isfinite(sec)])
        p50, p99 = np.quantile(lat, [0.5, 0.99]) if len(lat) else (np.nan, np.nan)
        cs = ", ".join(f"{k}: {n}" for k, n in sorted(codes.items()))
        lines.append(f"| {kind} | {len(v)} | {cs} | {p50:.2f} | {p99:.2f} |")
    summary = (
        f"{len(results)} requests from {a.clients} concurrent clients in {wall:.0f} s "
        f"({len(results) / wall:.0f} requests/s); server peak memory {peak:.0f} MB; "
        f"5xx or broken: {bad}"
    )
    text = "\n".join(lines) + "\n\n" + summary
    print(text)
    if a.write:
        block = f"## Server under load\n\n{zoo_build.command()}, {zoo_build.machine()}:\n\n{text}"
        zoo_build.write_section("server-load", block)
    if bad:
        raise SystemExit(f"{bad} responses were 5xx or broken")


if __name__ == "__main__":
    main()
