"""A stdio server killed with SIGKILL in the middle of a wait loses nothing, and never leaks the API key.

The server is a real subprocess (``python -m piapi_mcp``) spoken to over its stdin/stdout; the
PiAPI simulator runs in this process on loopback, on a ManualClock the test moves. The first
server is killed as soon as it announces the task; a second one on the same state dir finds the
task in its ledger and completes it. Then the servers' logs, every tool result and every file of
the state dir (the SQLite ledger, its WAL, the rest) are searched for the key.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp.types import CallToolResult, TextContent, jsonrpc_message_adapter

from piapi_mcp import ManualClock, PiAPISimulator, SimulatorControls
from piapi_mcp.loopback import serve_app_on_loopback

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX"),
]

#: Long and distinctive, so finding it anywhere cannot be a coincidence.
KEY = "pk-live-RESTARTSUITE-3b5d7f9a1c2e4a6c8e0f2b4d6a8c0e1f3a5b7d9c2e4f6a8b"
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/photo.png"}
#: Real seconds for the whole scenario: two server start-ups dominate it.
SCENARIO_TIMEOUT = 45.0


@dataclass
class Spawned:
    """A server subprocess and what a ``Client`` needs to speak MCP with it."""

    process: anyio.abc.Process
    transport: Any


@asynccontextmanager
async def spawn_stdio_server(env: dict[str, str], errlog: IO[bytes]) -> AsyncIterator[Spawned]:
    """Run ``python -m piapi_mcp`` on stdio, framing JSON-RPC one message a line (as the SDK's client does).

    Unlike the SDK's ``stdio_client`` this hands back the process, so the test can kill it; and a
    dead server simply ends the streams, which fails the call in flight.
    """
    process = await anyio.open_process(
        [sys.executable, "-m", "piapi_mcp", "--log-level", "DEBUG"],
        env=env,
        stderr=errlog,
        start_new_session=True,
    )
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_stdout() -> None:
        assert process.stdout is not None
        buffer = b""
        async with read_writer:
            try:
                async for chunk in process.stdout:
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for line in lines:
                        if line.strip():
                            message = jsonrpc_message_adapter.validate_json(line, by_name=False)
                            await read_writer.send(SessionMessage(message))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass

    async def write_stdin() -> None:
        assert process.stdin is not None
        async with write_reader:
            try:
                async for session_message in write_reader:
                    text = session_message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await process.stdin.send((text + "\n").encode())
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                await read_writer.aclose()

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(read_stdout)
            group.start_soon(write_stdin)
            try:
                yield Spawned(process, nullcontext((read_stream, write_stream)))
            finally:
                group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                assert process.stdin is not None
                await process.stdin.aclose()  # a stdio server exits when its input ends
                with anyio.move_on_after(5):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.aclose()


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@dataclass
class Transcript:
    """Everything the servers said to the client, to search for the key."""

    results: list[CallToolResult] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)

    async def call(self, client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        result = await client.call_tool(tool, arguments, progress_callback=self.on_progress)
        self.results.append(result)
        return result

    async def on_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.progress.append(message or "")


async def test_a_stdio_server_killed_mid_wait_loses_no_task_and_a_restarted_one_completes_it(
    tmp_path: Path, state_dir: Path
) -> None:
    """kill -9 mid-wait, restart on the same state dir: list_tasks shows the task and get_task completes it."""
    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(api_keys=frozenset({KEY}), duration=90))
    logs = [tmp_path / "server-1.log", tmp_path / "server-2.log"]
    transcript = Transcript()

    async with serve_app_on_loopback(simulator.app) as sim_url:
        env = {
            "PIAPI_API_KEY": KEY,
            "PIAPI_BASE_URL": sim_url,
            "PIAPI_STATE_DIR": str(state_dir),
            "PIAPI_OUTPUT_DIR": str(state_dir / "outputs"),
            "HOME": str(tmp_path / "home"),
            "PATH": os.environ.get("PATH", ""),
        }
        with anyio.fail_after(SCENARIO_TIMEOUT):
            # 1. A 90 s task with a 45 s budget; the server dies as soon as it has announced the task.
            with logs[0].open("wb") as errlog:
                async with spawn_stdio_server(env, errlog) as first:
                    killed: list[str] = []

                    async def kill_on_first_progress(
                        progress: float, total: float | None, message: str | None
                    ) -> None:
                        await transcript.on_progress(progress, total, message)
                        if not killed:
                            killed.append(message or "")
                            os.kill(first.process.pid, signal.SIGKILL)

                    async with Client(first.transport) as client:
                        with pytest.raises(MCPError):
                            await client.call_tool(
                                "kontext_edit",
                                {**EDIT, "wait_seconds": 45},
                                progress_callback=kill_on_first_progress,
                            )
                    assert await first.process.wait() == -signal.SIGKILL

            (task_id,) = simulator.tasks
            assert task_id in killed[0], "the first progress message did not carry the task id"
            assert simulator.status_of(simulator.tasks[task_id]) != "completed"

            # 2. A new server on the same state dir knows the task; once PiAPI has finished it, get_task says so.
            with logs[1].open("wb") as errlog:
                async with spawn_stdio_server(env, errlog) as second, Client(second.transport) as client:
                    listing = await transcript.call(client, "list_tasks", {})
                    entries = (listing.structured_content or {})["tasks"]
                    assert [(e["task_id"], e["done"]) for e in entries] == [(task_id, False)]
                    assert task_id in text_of(listing)

                    clock.advance(100)
                    done = await transcript.call(client, "get_task", {"task_id": task_id, "wait_seconds": 45})
                    data = done.structured_content or {}
                    assert not done.is_error, text_of(done)
                    assert (data["task_id"], data["status"], data["done"]) == (task_id, "completed", True)
                    assert data["outputs"] and data["outputs"][0]["url"].startswith(f"{sim_url}/temp/")

                    completed = await transcript.call(client, "list_tasks", {"status": "completed"})
                    assert [e["task_id"] for e in (completed.structured_content or {})["tasks"]] == [task_id]

    assert simulator.created_count == 1
    assert simulator.requests.count(("POST", "/api/v1/task")) == 1

    # 3. The key is nowhere: logs, results, progress, ledger and every other state file.
    log_bytes = [path.read_bytes() for path in logs]
    assert task_id.encode() in log_bytes[0], "the first server's log was not captured"
    for data_bytes in log_bytes:
        assert KEY.encode() not in data_bytes
    for result in transcript.results:
        assert KEY not in result.model_dump_json()
    assert transcript.progress and all(KEY not in message for message in transcript.progress)
    state_files = [path for path in state_dir.rglob("*") if path.is_file()]
    assert any(path.name == "tasks.sqlite3" for path in state_files)
    for path in state_files:
        content = path.read_bytes()
        assert KEY.encode() not in content, path
    ledger = b"".join(path.read_bytes() for path in state_files if path.name.startswith("tasks.sqlite3"))
    assert task_id.encode() in ledger, "the ledger does not hold the task (so the search proves nothing)"
