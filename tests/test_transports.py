"""The server over real transports: the console script on stdio, Streamable HTTP and SSE on loopback.

The PiAPI simulator runs on a ManualClock that the test moves, so no test waits for PiAPI time.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ResourceLink, TextContent

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.loopback import serve_app_on_loopback
from tests.conftest import API_KEY, hosted
from tests.helpers import TOOLS

pytestmark = pytest.mark.anyio

EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}


@dataclass
class ProgressLog:
    """Records one call's progress messages and signals when one mentions ``completed``."""

    messages: list[str] = field(default_factory=list)
    completed: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.messages.append(message or "")
        if "completed" in (message or ""):
            self.completed.set()


def _text(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


def _links(result: CallToolResult) -> list[str]:
    return [block.uri for block in result.content if isinstance(block, ResourceLink)]


def _structured(result: CallToolResult) -> dict[str, Any]:
    data: dict[str, Any] | None = result.structured_content
    assert data is not None, _text(result)
    return data


def _console_script() -> tuple[str, list[str]]:
    script = Path(sys.executable).with_name("piapi-mcp")
    if script.exists():
        return str(script), ["--log-level", "WARNING"]
    return sys.executable, ["-m", "piapi_mcp", "--log-level", "WARNING"]


async def test_stdio_server_reports_task_id_first_and_completes_after_simulated_time_passes(
    simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """The console script on stdio finishes a short edit in one call and hands a long one to get_task."""
    async with serve_app_on_loopback(simulator.app) as sim_url:
        command, args = _console_script()
        env = {
            "PIAPI_API_KEY": API_KEY,
            "PIAPI_BASE_URL": sim_url,
            "PATH": os.environ.get("PATH", ""),
            "PIAPI_STATE_DIR": os.environ["PIAPI_STATE_DIR"],
            "PIAPI_OUTPUT_DIR": os.environ["PIAPI_OUTPUT_DIR"],
        }
        with anyio.fail_after(30):
            async with Client(StdioServerParameters(command=command, args=args, env=env)) as client:
                assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS

                # A 10 s task: once the id is announced, PiAPI time jumps past its end.
                first: list[str] = []

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    if not first:
                        first.append(message or "")
                        clock.advance(12)

                done = await client.call_tool(
                    "kontext_edit", {**EDIT, "wait_seconds": 45}, progress_callback=on_progress
                )
                result = _structured(done)
                task_id = result["task_id"]
                assert not done.is_error, _text(done)
                assert (result["status"], result["done"]) == ("completed", True)
                image_url = f"{sim_url}/temp/{task_id}.png"
                assert [image["url"] for image in result["outputs"]] == [image_url]
                saved = Path(_structured(done)["outputs"][0]["path"])
                assert _links(done) == [image_url, saved.as_uri(), f"piapi://tasks/{task_id}"]
                assert saved.parent == Path(os.environ["PIAPI_OUTPUT_DIR"])
                assert task_id in first[0]

                # A 90 s task with a 1 s budget comes back unfinished, with the way to resume.
                simulator.controls.duration = 90
                running = await client.call_tool(
                    "kontext_edit", {**EDIT, "prompt": "make it night", "wait_seconds": 1}
                )
                pending = _structured(running)
                long_id = pending["task_id"]
                assert not running.is_error, _text(running)
                assert pending["done"] is False and pending["status"] != "completed"
                assert "get_task" in pending["next"] and long_id in pending["next"]

                clock.advance(100)
                resumed = _structured(await client.call_tool("get_task", {"task_id": long_id}))
                assert resumed["task_id"] == long_id
                assert (resumed["status"], resumed["done"]) == ("completed", True)

                # A bad argument is a tool error, and the server goes on serving.
                bad = await client.call_tool("kontext_edit", {**EDIT, "steps": 99})
                assert bad.is_error and "steps" in _text(bad)
                again = _structured(await client.call_tool("get_task", {"task_id": task_id}))
                assert again["status"] == "completed"
    assert simulator.created_count == 2


async def _edit_with_progress(client: Client) -> None:
    assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
    progress = ProgressLog()
    done = await client.call_tool("kontext_edit", EDIT, progress_callback=progress)
    result = _structured(done)
    assert not done.is_error, _text(done)
    assert (result["status"], result["done"]) == ("completed", True)
    assert _links(done)[-1] == f"piapi://tasks/{result['task_id']}"
    # Notifications may trail the result over a real transport.
    with anyio.fail_after(5):
        await progress.completed.wait()
    assert result["task_id"] in progress.messages[0]


async def test_streamable_http_server_lists_tools_and_completes_an_edit_with_progress(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Over Streamable HTTP a client sees the three tools and gets progress and the edited image."""
    with anyio.fail_after(20):
        async with (
            hosted(simulator, clock, http, "streamable-http") as url,
            httpx2.AsyncClient(trust_env=False) as mcp_http,
            Client(streamable_http_client(f"{url}/mcp", http_client=mcp_http)) as client,
        ):
            await _edit_with_progress(client)


async def test_sse_server_lists_tools_and_completes_an_edit_with_progress(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Over the legacy SSE transport a client sees the three tools and gets progress and the edited image."""
    with anyio.fail_after(20):
        async with (
            hosted(simulator, clock, http, "sse") as url,
            Client(sse_client(f"{url}/sse")) as client,
        ):
            await _edit_with_progress(client)
