"""Stateless Streamable HTTP (``--stateless``): no sessions, progress still streamed, any replica resumes a task.

Two app instances over one SQLite ledger file stand in for two replicas behind a load balancer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.cli import main
from piapi_mcp.hosting import build_http_app
from piapi_mcp.ledger import TaskLedger
from piapi_mcp.loopback import serve_app_on_loopback
from tests.conftest import make_server

pytestmark = pytest.mark.anyio

EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}
SESSION_HEADER = "mcp-session-id"


def _result(done: CallToolResult) -> dict[str, Any]:
    data: dict[str, Any] | None = done.structured_content
    text = "\n".join(block.text for block in done.content if isinstance(block, TextContent))
    assert data is not None, text
    return data


@asynccontextmanager
async def replica(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, ledger: Path, *, stateless: bool
) -> AsyncIterator[str]:
    """One hosted server (its own process state) over the shared ledger file; yields its /mcp URL."""
    store = TaskLedger.open(ledger, clock=clock)
    server = make_server(simulator, clock, http, ledger=store)
    app = build_http_app(server, "streamable-http", stateless=stateless)
    try:
        async with server.session_manager.run(), serve_app_on_loopback(app) as url:
            yield f"{url}/mcp"
    finally:
        store.close()


@asynccontextmanager
async def connected(url: str, mode: str, headers_seen: list[httpx2.Headers]) -> AsyncIterator[Client]:
    """An MCP client over Streamable HTTP that records every answer's headers."""

    async def record(response: httpx2.Response) -> None:
        headers_seen.append(response.headers)

    async with AsyncExitStack() as stack:
        mcp_http = await stack.enter_async_context(
            httpx2.AsyncClient(trust_env=False, event_hooks={"response": [record]})
        )
        client = await stack.enter_async_context(
            Client(streamable_http_client(url, http_client=mcp_http), mode=mode)
        )
        yield client


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_stateless_server_streams_progress_with_the_task_id_then_the_result_without_a_session(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path, mode: str
) -> None:
    """Over stateless Streamable HTTP the edit's first progress names its task, the result follows,
    and no answer carries an ``Mcp-Session-Id``, in both protocol eras."""
    messages: list[str] = []

    async def progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    headers: list[httpx2.Headers] = []
    with anyio.fail_after(30):
        async with (
            replica(simulator, clock, http, state_dir / "tasks.sqlite3", stateless=True) as url,
            connected(url, mode, headers) as client,
        ):
            done = await client.call_tool("kontext_edit", EDIT, progress_callback=progress)
    result = _result(done)
    assert (result["status"], result["done"]) == ("completed", True)
    assert messages and result["task_id"] in messages[0]
    assert headers and all(SESSION_HEADER not in answer for answer in headers)


async def test_a_stateful_server_still_hands_out_a_session(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """Without --stateless the legacy era keeps its sessions (the header the stateless test looks for)."""
    headers: list[httpx2.Headers] = []
    with anyio.fail_after(30):
        async with (
            replica(simulator, clock, http, state_dir / "tasks.sqlite3", stateless=False) as url,
            connected(url, "legacy", headers) as client,
        ):
            await client.list_tools()
    assert any(SESSION_HEADER in answer for answer in headers)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_task_created_on_one_replica_is_resumed_and_listed_on_another(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path, mode: str
) -> None:
    """Create on A with wait_seconds 0; B (another instance, same ledger) finishes it with get_task and lists it."""
    simulator.controls.duration = 60
    ledger = state_dir / "tasks.sqlite3"
    with anyio.fail_after(30):
        async with (
            replica(simulator, clock, http, ledger, stateless=True) as url_a,
            replica(simulator, clock, http, ledger, stateless=True) as url_b,
        ):
            async with connected(url_a, mode, []) as on_a:
                started = _result(await on_a.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0}))
            task_id = started["task_id"]
            assert started["done"] is False
            async with connected(url_b, mode, []) as on_b:
                listed = _result(await on_b.call_tool("list_tasks", {}))
                resumed = _result(await on_b.call_tool("get_task", {"task_id": task_id, "wait_seconds": 120}))
                listed_after = _result(await on_b.call_tool("list_tasks", {"status": "completed"}))
    assert task_id in json.dumps(listed)
    assert (resumed["task_id"], resumed["status"], resumed["done"]) == (task_id, "completed", True)
    assert resumed["outputs"] and resumed["outputs"][0]["url"].endswith(f"/temp/{task_id}.png")
    assert task_id in json.dumps(listed_after)
    assert simulator.created_count == 1


def test_stateless_serving_is_refused_for_sse_with_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    """SSE keeps a session per client: ``--stateless`` with it stops at start-up, saying why."""
    with pytest.raises(SystemExit) as stopped:
        main(["--transport", "sse", "--stateless", "--port", "0"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "--stateless" in error and "SSE keeps a session per client" in error
