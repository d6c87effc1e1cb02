"""`gmtrace serve`: endpoints, limits and refusals as 4xx JSON, never a 5xx."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gmtrace.product.analyze import Analyzer
from gmtrace.product.config import Limits
from gmtrace.product.server import BodyLimit, create_app

sys.path.insert(0, str(Path(__file__).parent))
from bad_inputs import make_corpus  # noqa: E402

LIMITS = Limits(request_bytes=2_000_000, file_bytes=600_000, files=8, pixels=4_000_000)
AUTH = {"Authorization": "Bearer s3cret"}


@pytest.fixture(scope="module")
def analyzer(small_model_dir: Path) -> Analyzer:
    return Analyzer(small_model_dir)


@pytest.fixture(scope="module")
def client(analyzer) -> TestClient:
    return TestClient(BodyLimit(create_app(analyzer, "s3cret", LIMITS), LIMITS))


def _png(seed: int = 0, size=(40, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_health_model_and_token(client, analyzer):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["model_id"] == analyzer.model_id_
    r = client.get("/v1/model")
    assert r.status_code == 401 and "token" in r.json()["error"]
    r = client.get("/v1/model", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    m = client.get("/v1/model", headers=AUTH).json()
    assert m["weights_sha256"] == analyzer.weights_sha256_ and m["known_gms"] == analyzer.gm_names_
    assert m["trained_at"] and m["schema_version"] >= 1
    spec = client.get("/openapi.json").json()
    assert {"/v1/analyze", "/v1/group", "/v1/model", "/healthz"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
    page = client.get("/").text
    assert (
        'id="drop"' in page
        and "/v1/analyze?views=1" in page
        and "http" not in page.split("<script>")[0]
    )


def test_analyze_the_bad_input_corpus(client, tmp_path: Path):
    """Every readable file of the corpus in one upload: a row each, answers for the
    images, one-line errors naming the others (unreadable, FIFO and symlink loops
    cannot be uploaded: their bytes never leave the client)."""
    want = make_corpus(tmp_path)
    files = []
    for name, expect in want.items():
        p = tmp_path / name
        if p.is_file() and not p.is_symlink() and name != "unreadable.png":
            # a client sends a name it can encode: the non-UTF-8 one as its escapes
            shown = os.fsencode(name).decode("utf-8", "backslashreplace")
            files.append((shown, p.read_bytes(), expect))
    got = {}
    for i in range(0, len(files), LIMITS.files):  # the server takes 8 files per request
        chunk = files[i : i + LIMITS.files]
        r = client.post(
            "/v1/analyze",
            files=[
                ("files", (Path(n).name, data, "application/octet-stream")) for n, data, _ in chunk
            ],
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["results"]) == len(chunk)
        for (n, _, expect), row in zip(chunk, body["results"], strict=True):
            got[n] = (expect, row)
    assert len(got) >= 14
    for n, (expect, row) in got.items():
        assert row["ok"] == (expect == "ok"), (n, row["error"])
        if not row["ok"]:
            assert "\n" not in row["error"] and row["error"].startswith(Path(n).name)


def test_views_and_group(client):
    files = [("files", (f"g{i}.png", _png(i), "image/png")) for i in range(4)]
    r = client.post("/v1/analyze?views=1", files=files, headers=AUTH)
    assert r.status_code == 200
    row = r.json()["results"][0]
    assert row["views"]["fingerprint"].startswith("data:image/png;base64,")
    assert row["views"]["spectrum"].startswith("data:image/png;base64,")
    r = client.post("/v1/group?all_images=true", files=files, headers=AUTH)
    assert r.status_code == 200
    g = r.json()
    assert g["grouped"] == 4 and sum(x["size"] for x in g["groups"]) == 4
    r = client.post("/v1/group?all_images=true", json={"rows": g["results"]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["grouped"] == 4
    bad = dict(g["results"][0], embedding="x")
    r = client.post("/v1/group", json={"rows": [bad]}, headers=AUTH)
    assert r.status_code == 400 and "embedding" in r.json()["error"]


@pytest.mark.parametrize(
    "kind",
    ["no_files", "too_many", "file_too_big", "request_too_big", "not_multipart", "garbage", "json"],
)
def test_refusals_are_4xx_json(client, kind):
    post = lambda **kw: client.post("/v1/analyze", headers=AUTH | kw.pop("headers", {}), **kw)
    if kind == "no_files":
        r = post(data={"x": "1"})
    elif kind == "too_many":
        r = post(
            files=[("files", (f"{i}.png", _png(i), "image/png")) for i in range(LIMITS.files + 1)]
        )
    elif kind == "file_too_big":
        r = post(files=[("files", ("big.png", b"\0" * (LIMITS.file_bytes + 10), "image/png"))])
    elif kind == "request_too_big":
        r = post(
            content=b"\0" * (LIMITS.request_bytes + 10),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
    elif kind == "not_multipart":
        r = post(content=b"hello", headers={"content-type": "text/plain"})
    elif kind == "garbage":
        r = post(
            content=b"--x\r\nnonsense\r\n\r\n--",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
    else:
        r = client.post(
            "/v1/group", content=b"{not json", headers=AUTH | {"content-type": "application/json"}
        )
    assert 400 <= r.status_code < 500, (kind, r.status_code, r.text)
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    want = {"too_many": 400, "file_too_big": 413, "request_too_big": 413, "not_multipart": 415}
    if kind in want:
        assert r.status_code == want[kind], r.text


def test_slow_upload_is_cut_off():
    """A body that stops arriving gets 408, whatever the application would do."""
    limits = Limits(chunk_seconds=0.2, body_seconds=1.0)

    async def app(scope, receive, send):  # an application that reads the whole body
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent = []

    async def run():
        first = True

        async def receive():
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": b"abc", "more_body": True}
            await asyncio.sleep(5)  # the client stalls

        async def send(msg):
            sent.append(msg)

        scope = {"type": "http", "method": "POST", "headers": [(b"content-length", b"100")]}
        await BodyLimit(app, limits)(scope, receive, send)

    asyncio.run(run())
    assert sent[0]["status"] == 408 and "too slowly" in json.loads(sent[1]["body"])["error"]
