"""`gmtrace serve`: the analyzer as an HTTP service for a team (FastAPI + uvicorn).

Endpoints (JSON unless said otherwise):

* `GET /healthz`: liveness and the model id (no token needed);
* `GET /v1/model`: the model: id, weights hash, version, training zoo and date,
  known GMs, and its card (measured figures, limits) where the folder has one;
* `POST /v1/analyze`: multipart upload of one or many images (field `files`);
  one row per file, the schema of `gmtrace scan` (`path` is the uploaded name);
  `?views=1` adds each image's fingerprint and spectrum as PNG data URLs;
* `POST /v1/group`: the same upload, analyzed and grouped by source GM
  (`gmtrace.product.groups`); or a JSON body `{"rows": [...]}` of scan rows;
* `GET /`: a web page to drop images on and read the answers;
* `GET /docs`: the OpenAPI documentation (FastAPI's page; its scripts come from a
  CDN, so it needs a browser with internet access; `/openapi.json` does not).

Limits (`Limits`): bytes per request and per file, files per request, pixels
per image, and time to receive a request body (slow uploads are cut off with
408). Every refusal is a 4xx JSON `{"error": ...}` naming what was wrong; a file
that cannot be decoded is a row with `ok: false` and its error, like in a scan,
and the other files are answered. With `--token T`, `/v1/*` wants the header
`Authorization: Bearer T` (401 otherwise).

At most `Limits.concurrent` uploads are read and analyzed at once (the others
wait with their bodies unread), and one analysis runs at a time (a lock around
the network), so memory stays bounded whatever the number of clients; latency
grows instead.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import threading
from contextlib import contextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gmtrace.data.images import decode_bytes
from gmtrace.product.config import Limits
from gmtrace.product.report import image_views_data
from gmtrace.product.rows import SCHEMA_VERSION, VERDICTS, ImageResult, model_fields


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class BodyLimit:
    """ASGI middleware: refuse bodies larger than `limit` bytes (413, by the
    Content-Length header or by counting a chunked body) and bodies that arrive
    too slowly (408), before any parsing."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        try:
            if length is not None and int(length) > self.limits.request_bytes:
                raise _Refused(413, self._too_large())
        except ValueError:
            return await _send_error(send, 400, "Content-Length is not a number")
        except _Refused as e:
            return await _send_error(send, e.status, e.message)
        loop = asyncio.get_running_loop()
        deadline = None  # set when the application starts reading the body
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen, deadline
            if deadline is None:
                deadline = loop.time() + self.limits.body_seconds
            left = deadline - loop.time()
            try:
                msg = await asyncio.wait_for(
                    receive(), min(self.limits.chunk_seconds, max(left, 0))
                )
            except TimeoutError:
                raise _Refused(408, "the request body arrived too slowly") from None
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limits.request_bytes:
                    raise _Refused(413, self._too_large())
            return msg

        async def tracked_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _Refused as e:
            if not started:
                await _send_error(send, e.status, e.message)

    def _too_large(self) -> str:
        return f"request larger than {self.limits.request_bytes // (1024 * 1024)} MB"


async def _send_error(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _on_refused(request, exc: _Refused):  # raised while the body is received, or by a check
    return _error(exc.status, exc.message)


async def _on_http_error(request, exc: StarletteHTTPException):
    return _error(exc.status_code, str(exc.detail))


async def _on_invalid(request, exc: RequestValidationError):
    return _error(422, "invalid request: " + "; ".join(e.get("msg", "") for e in exc.errors()))


async def _on_unexpected(request, exc):  # never meant to be reached; the load test checks
    return _error(500, f"internal error ({type(exc).__name__})")


# every error as JSON `{"error": ...}`, FastAPI's own ones included
_ERROR_HANDLERS = {
    _Refused: _on_refused,
    StarletteHTTPException: _on_http_error,
    RequestValidationError: _on_invalid,
    Exception: _on_unexpected,
}


class AnalysisService:
    """The work behind `/v1/*`: the token check, reading uploads within `limits`,
    analyzing and grouping. A refusal raises `_Refused` (answered as 4xx JSON).
    `busy` lets `limits.concurrent` uploads be read and analyzed at once, which
    bounds the upload bytes held in memory; `lock` runs the network on one batch
    at a time."""

    def __init__(
        self,
        analyzer,
        token: str | None = None,
        limits: Limits = Limits(),
        index=None,
        index_case: str | None = None,
    ):
        self.analyzer, self.token, self.limits = analyzer, token, limits
        self.lock = threading.Lock()
        self.busy = asyncio.Semaphore(limits.concurrent)
        # a fingerprint index (`gmtrace.index.index.FingerprintIndex`) answers "seen
        # before"; with `index_case`, what is analyzed is added to it under that case
        self.index, self.index_case = index, index_case
        self.index_lock = threading.Lock()
        # the model's same-source map, read once (as the analyzer's own files are)
        self.same_source = None
        if index is not None and analyzer.model_dir_:
            from gmtrace.index.index import SameSource

            self.same_source = SameSource.of_model(analyzer.model_dir_)

    def authorize(self, request: Request) -> None:
        """Refuse (401) a request without `Authorization: Bearer <token>`, if there is a token."""
        if self.token is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {self.token}".encode()):
            raise _Refused(401, "missing or wrong token (Authorization: Bearer T)")

    async def analyze(self, request: Request, views: bool) -> dict:
        """The answer to `/v1/analyze`: one row per uploaded file."""
        rows = await self.analyze_upload(request, views)
        model_id = self.analyzer.model_id_
        out = {"schema_version": SCHEMA_VERSION, "model_id": model_id, "results": rows}
        if self.index is not None:
            out["index"] = await asyncio.to_thread(self.trace, rows)
        return out

    def trace(self, rows: list[dict], k: int = 3) -> dict:
        """Each analyzed row's `seen_before` (its exact re-posts and `k` nearest
        indexed images), asked before the rows are added (with `index_case`), so an
        image never finds itself. Blocking; one request at a time on the index."""
        usable = [r for r in rows if r.get("ok") and r.get("embedding")]
        info = {"indexed": 0, "added": 0, "case": self.index_case, "error": None}
        with self.index_lock:
            try:
                if usable:
                    ans = self.index.query(usable, k=k, same_source=self.same_source)
                    info["indexed"] = ans["indexed"]
                    for r, im in zip(usable, ans["images"], strict=True):
                        r["seen_before"] = {"reposted": im["reposted"], "nearest": im["nearest"]}
                if self.index_case and usable:
                    info["added"] = self.index.add(self.index_case, usable).added
            except ValueError as e:  # another model's index, an unwritable one
                info["error"] = str(e)
        return info

    async def group(self, request: Request, all_images: bool) -> dict:
        """The answer to `/v1/group`: the rows of a JSON body or of an upload, grouped
        by source GM (only the generated images unless `all_images`)."""
        from gmtrace.product.groups import group_rows, own_grouping

        if request.headers.get("content-type", "").startswith("application/json"):
            rows = await _posted_rows(request)
        else:
            rows = await self.analyze_upload(request, False)
        a = self.analyzer
        size, weight = own_grouping(rows, a.model_id_, a.fusion_)
        groups = await asyncio.to_thread(group_rows, rows, not all_images, size, weight)
        return groups | {"results": rows}

    async def analyze_upload(self, request: Request, views: bool) -> list[dict]:
        """The rows of a multipart upload's files. A request that is not multipart is
        refused before it queues behind the other uploads."""
        if not _multipart(request):
            raise _Refused(415, "send the images as multipart/form-data (field 'files')")
        async with self.busy:
            files = await self.read_uploads(request)
            return await asyncio.to_thread(self.analyze_files, files, views)

    async def read_uploads(self, request: Request) -> list[tuple[str, bytes]]:
        """[(name, bytes)] of a multipart request's files, within the file limits."""
        limits = self.limits
        try:
            form = await request.form(max_files=limits.files, max_fields=limits.files + 16)
        except _Refused:
            raise
        except Exception as e:  # a malformed multipart body
            raise _Refused(400, f"cannot read the upload ({str(e) or type(e).__name__})") from None
        uploads = [v for _, v in form.multi_items() if hasattr(v, "filename")]
        if not uploads:
            raise _Refused(400, "no files in the upload (field 'files')")
        out = []
        for u in uploads:
            data = await u.read(limits.file_bytes + 1)
            name = (u.filename or "upload")[:300]
            if len(data) > limits.file_bytes:
                raise _Refused(413, f"{name}: larger than {limits.file_bytes // (1024 * 1024)} MB")
            out.append((name, data))
        return out

    def analyze_files(self, files: list[tuple[str, bytes]], views: bool) -> list[dict]:
        """One scan row per file, with the image's views when `views`; a file that
        does not decode is a row with `ok: false` and its error. Blocking."""
        analyzer = self.analyzer
        model_f = model_fields(analyzer)
        decoded = [decode_bytes(data, name, self.limits.pixels) for name, data in files]
        good = [i for i, d in enumerate(decoded) if d.image is not None]
        with self.lock:
            found = analyzer.analyze_arrays(
                [decoded[i].image for i in good], [files[i][0] for i in good]
            )
            shown = {i: image_views_data(decoded[i].image, analyzer) for i in good} if views else {}
        results = dict(zip(good, found, strict=True))
        rows = []
        for i, ((name, _), d) in enumerate(zip(files, decoded, strict=True)):
            r = results.get(i) or ImageResult(name, False, d.error)
            r.sha256, r.bytes = d.sha256, d.nbytes
            rows.append(r.to_row(model_f) | ({"views": shown[i]} if i in shown else {}))
        return rows


def create_app(
    analyzer,
    token: str | None = None,
    limits: Limits = Limits(),
    index=None,
    index_case: str | None = None,
):
    """The FastAPI application around an `Analyzer`: routes onto an `AnalysisService`.
    Each `/v1/*` route starts with `service.authorize`; a FastAPI dependency would run
    before the query is validated and answer 401 where a bad query gets 422. With a
    fingerprint `index`, /v1/analyze answers "seen before" (and with `index_case`
    adds what it analyzed)."""
    service = AnalysisService(analyzer, token, limits, index, index_case)
    app = FastAPI(
        title="gmtrace",
        version=str(analyzer.meta_.get("gmtrace", "?")),
        description="Is an image generated, by which GM, and what were that GM's "
        "architecture and training losses?",
        exception_handlers=_ERROR_HANDLERS,
    )

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "model_id": analyzer.model_id_}

    @app.get("/v1/model")
    def model(request: Request):
        service.authorize(request)
        return model_info(analyzer)

    @app.post(
        "/v1/analyze",
        openapi_extra={"requestBody": _multipart_doc()},
        summary="analyze uploaded images: one row per file",
    )
    async def analyze_endpoint(request: Request, views: bool = False):
        service.authorize(request)
        return await service.analyze(request, views)

    @app.post(
        "/v1/group",
        openapi_extra={"requestBody": _multipart_doc()},
        summary="analyze and group uploaded images (or scan rows) by source GM",
    )
    async def group_endpoint(request: Request, all_images: bool = False):
        service.authorize(request)
        return await service.group(request, all_images)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        from gmtrace.product.web import PAGE

        return PAGE.replace("__TOKEN_NEEDED__", "true" if token else "false")

    return app


def _multipart(request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def _posted_rows(request: Request) -> list[dict]:
    """The scan rows of a JSON body `{"rows": [...]}`, checked for `group_rows`."""
    try:
        body = await request.json()
        rows = body["rows"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError
        for r in rows:
            _check_row(r)
    except (ValueError, KeyError, TypeError) as e:
        msg = str(e) if isinstance(e, ValueError) and str(e).startswith("row") else ""
        raise _Refused(400, msg or 'send {"rows": [scan rows]} or a multipart upload') from None
    return rows


def _check_row(r: dict) -> None:
    """A scan row as `group_rows` needs it, or ValueError naming what is wrong."""
    if r.get("ok"):
        emb = r.get("embedding")
        if not isinstance(emb, list) or not emb or not all(isinstance(v, int | float) for v in emb):
            raise ValueError(f"row {r.get('path')!r}: 'embedding' must be a list of numbers")
        for k in ("hyperparameters", "loss_probabilities"):
            if not isinstance(r.get(k), dict):
                raise ValueError(f"row {r.get('path')!r}: '{k}' missing")
        if not isinstance(r.get("top_gms"), list) or r.get("verdict") not in VERDICTS:
            raise ValueError(f"row {r.get('path')!r}: 'top_gms' or 'verdict' missing")
        if not isinstance(r.get("p_generated"), int | float):
            raise ValueError(f"row {r.get('path')!r}: 'p_generated' missing")


def _multipart_doc() -> dict:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            }
        },
    }


def model_info(analyzer) -> dict:
    from pathlib import Path

    m = analyzer.meta_
    card = Path(analyzer.model_dir_) / "card.json"
    return {
        "model_id": analyzer.model_id_,
        "weights_sha256": analyzer.weights_sha256_,
        "gmtrace": m.get("gmtrace"),
        "zoo": m.get("zoo"),
        "trained_on": m.get("origin") or m.get("zoo"),  # every zoo, joined by "+"
        "trained_at": m.get("trained_at"),
        "steps": m.get("steps_done"),
        "image_size": analyzer.image_size_,
        "known_gms": analyzer.gm_names_,
        "schema_version": SCHEMA_VERSION,
        "card": json.loads(card.read_text()) if card.is_file() else None,
    }


def serve(
    analyzer,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    limits: Limits = Limits(),
    index=None,
    index_case: str | None = None,
) -> None:
    import uvicorn

    app = BodyLimit(create_app(analyzer, token, limits, index, index_case), limits)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        timeout_keep_alive=5,
        limit_concurrency=1000,
        h11_max_incomplete_event_size=64 * 1024,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the system's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_child(args: list[str], start_seconds: float = 60, stderr=None):
    """`gmtrace serve ARGS` in a child process on a free port of 127.0.0.1, for the
    block's duration: yields (base URL, process) once `/healthz` answers; stopped
    at the end. Raises RuntimeError when it does not answer in `start_seconds`."""
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    cmd = [sys.executable, "-m", "gmtrace.cli", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_seconds
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:  # not listening yet (urllib's URLError is an OSError)
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gmtrace serve did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
