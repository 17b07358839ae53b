"""Over Streamable HTTP, a ``data:`` image up to PiAPI's 10 MB upload limit is accepted; a larger
request gets HTTP 413 with one JSON-RPC error sentence, not a connection reset.

The app is served by :func:`piapi_mcp.hosting.serve_http` on loopback, as ``piapi-mcp --http`` does.
"""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.hosting import MAX_REQUEST_BYTES, build_http_app, serve_http
from piapi_mcp.media import MAX_UPLOAD_BYTES
from tests.conftest import make_server

pytestmark = pytest.mark.anyio

#: Real seconds for one scenario (15 MB through loopback and JSON parsing, on a shared machine).
SCENARIO_TIMEOUT = 120.0
MODERN = "2026-07-28"


def big_png(size: int) -> bytes:
    """A valid PNG of exactly ``size`` bytes: a small picture plus a private chunk of random bytes."""
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (10, 120, 200)).save(out, format="PNG")
    small = out.getvalue()
    iend = small[-12:]
    filler = size - len(small) - 12
    payload = random.Random(7).randbytes(filler)
    chunk = struct.pack(">I", filler) + b"prVt" + payload + struct.pack(">I", zlib.crc32(b"prVt" + payload))
    picture = small[:-12] + chunk + iend
    assert len(picture) == size
    return picture


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


@asynccontextmanager
async def serving(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> AsyncIterator[str]:
    """The Streamable HTTP app ``piapi-mcp --http`` hosts, over the simulator; yields its /mcp URL."""
    app = build_http_app(make_server(simulator, clock, http, wait_seconds=0), "streamable-http")
    ports: list[int] = []
    listening = anyio.Event()

    def started(port: int) -> None:
        ports.append(port)
        listening.set()

    async with anyio.create_task_group() as group:
        group.start_soon(partial(serve_http, app, "127.0.0.1", 0, on_started=started))
        await listening.wait()
        try:
            yield f"http://127.0.0.1:{ports[0]}/mcp"
        finally:
            group.cancel_scope.cancel()


def tools_call(arguments: dict[str, Any]) -> bytes:
    """A raw JSON-RPC tools/call of kontext_edit, as a modern client sends it."""
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {
                "name": "kontext_edit",
                "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": MODERN,
                    "io.modelcontextprotocol/clientInfo": {"name": "raw-test", "version": "0"},
                    "io.modelcontextprotocol/clientCapabilities": {},
                },
            },
        }
    ).encode()


HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": MODERN,
    "Mcp-Method": "tools/call",
}


async def test_a_10_mb_data_uri_image_is_accepted_over_streamable_http(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A PNG of exactly PiAPI's 10 MB upload limit, as a data: URI, is uploaded and the edit created."""
    picture = big_png(MAX_UPLOAD_BYTES)
    with anyio.fail_after(SCENARIO_TIMEOUT):
        async with (
            serving(simulator, clock, http) as url,
            httpx2.AsyncClient(trust_env=False, timeout=SCENARIO_TIMEOUT) as mcp_http,
            Client(streamable_http_client(url, http_client=mcp_http)) as client,
        ):
            result = await client.call_tool(
                "kontext_edit", {"prompt": "make it blue", "image": data_uri(picture)}
            )

    assert not result.is_error, result.content
    (uploaded,) = simulator.uploads.values()
    assert uploaded == picture
    (task,) = simulator.tasks.values()
    assert (task.input["width"], task.input["height"]) == (1024, 768)


async def test_a_request_over_the_limit_gets_413_and_a_sentence_naming_the_limit(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A body larger than the cap, declared by its length, is answered 413 with a JSON-RPC error."""
    body = tools_call({"prompt": "make it blue", "image": "data:image/png;base64," + "A" * MAX_REQUEST_BYTES})
    with anyio.fail_after(SCENARIO_TIMEOUT):
        async with (
            serving(simulator, clock, http) as url,
            httpx2.AsyncClient(trust_env=False, timeout=SCENARIO_TIMEOUT) as raw,
        ):
            answer = await raw.post(url, content=body, headers=HEADERS)

    assert answer.status_code == 413
    error = answer.json()["error"]
    assert "14.8 MB limit" in error["message"]
    assert "URL" in error["message"] and "local file" in error["message"]
    assert simulator.uploads == {} and simulator.tasks == {}


async def test_a_streamed_body_over_the_limit_gets_the_same_413_sentence(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Without a Content-Length (chunked), the body is cut at the cap and answered with the same sentence."""
    body = tools_call({"prompt": "make it blue", "image": "data:image/png;base64," + "A" * MAX_REQUEST_BYTES})

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start : start + (1 << 20)]

    with anyio.fail_after(SCENARIO_TIMEOUT):
        async with (
            serving(simulator, clock, http) as url,
            httpx2.AsyncClient(trust_env=False, timeout=SCENARIO_TIMEOUT) as raw,
        ):
            answer = await raw.post(url, content=chunks(), headers=HEADERS)

    assert answer.status_code == 413
    assert "MB limit" in answer.json()["error"]["message"]
    assert simulator.uploads == {} and simulator.tasks == {}
