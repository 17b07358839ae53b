"""A burst of creates over one stdio session: requests that arrive together are read together.

The SDK's stdio transport reads one line per worker-thread round trip; ``piapi_mcp.stdio`` reads a
chunk per round trip and hands every complete line in it over at once, while keeping the SDK's
protection of the protocol stream (fd 0 on the null device, fd 1 on stderr while serving).

The simulator on loopback answers with Nagle's algorithm off, as a real server does (each answer's
body would otherwise wait ~40 ms for the client's delayed ACK, and a burst's connections with it).

An edit whose image is a URL is resolved before its claim (no read, no upload): its intent row holds
the input as it will be sent, so the create goes out after one ledger commit, not two.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.ledger import FILE_NAME, TaskLedger
from piapi_mcp.loopback import loopback_socket, serve_app_on_loopback
from piapi_mcp.simulator import SimulatedTask
from piapi_mcp.stdio import LineReader, LineWriter
from tests.conftest import make_server
from tests.helpers import EDIT, png_bytes, stdio_server, text_of

pytestmark = pytest.mark.anyio


def _pipe_with(data: bytes) -> int:
    """The read end of a pipe holding ``data``, its write end closed (so the reader meets EOF after it)."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return read_fd


async def _lines(reader: LineReader) -> list[str]:
    return [line async for line in reader]


async def test_a_hundred_requests_waiting_in_the_pipe_are_read_in_one_worker_hop_not_one_each() -> None:
    requests = [json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call"}) + "\n" for n in range(100)]
    read_fd = _pipe_with("".join(requests).encode())
    try:
        reader = LineReader(read_fd)
        assert await _lines(reader) == requests
        # One read for the whole burst, one more to see the end of the input.
        assert reader.reads == 2
    finally:
        os.close(read_fd)


async def test_a_line_and_a_character_split_across_reads_arrive_whole() -> None:
    text = '{"prompt": "ciel violet — élevé 空"}\n{"b": 2}\n'
    read_fd = _pipe_with(text.encode())
    try:
        reader = LineReader(read_fd, chunk=3)  # splits lines and multi-byte characters alike
        assert await _lines(reader) == ['{"prompt": "ciel violet — élevé 空"}\n', '{"b": 2}\n']
    finally:
        os.close(read_fd)


async def test_a_last_line_without_a_newline_and_invalid_bytes_are_still_delivered() -> None:
    read_fd = _pipe_with(b'{"a": 1}\n{"b": "\xff"}')
    try:
        assert await _lines(LineReader(read_fd)) == ['{"a": 1}\n', '{"b": "\ufffd"}']
    finally:
        os.close(read_fd)


async def test_a_non_blocking_stdin_is_waited_on_rather_than_failing() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)  # as a host may hand it over
    lines: list[str] = []
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:

                async def read_all() -> None:
                    lines.extend(await _lines(LineReader(read_fd)))

                group.start_soon(read_all)
                await anyio.wait_all_tasks_blocked()  # the reader waits on an empty pipe
                os.write(write_fd, b'{"a": 1}\n')
                os.close(write_fd)
                write_fd = -1
        assert lines == ['{"a": 1}\n']
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


async def test_each_message_is_written_whole_in_one_worker_hop() -> None:
    read_fd, write_fd = os.pipe()
    try:
        writer = LineWriter(write_fd)
        messages = [json.dumps({"id": n, "text": "é" * n}) + "\n" for n in range(50)]
        for message in messages:
            await writer.write(message)
            await writer.flush()
        os.close(write_fd)
        write_fd = -1
        received = b""
        while chunk := os.read(read_fd, 1 << 16):
            received += chunk
        assert received.decode() == "".join(messages)
        assert writer.writes == len(messages)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_stray_output_while_serving_goes_to_stderr_and_never_onto_the_protocol_stream() -> None:
    script = (
        "import os, sys\n"
        "from piapi_mcp.stdio import claimed_std_fds\n"
        "with claimed_std_fds() as fds:\n"
        "    assert fds is not None\n"
        "    print('stray print', flush=True)\n"
        "    os.write(1, b'stray write\\n')\n"
        "    assert os.read(0, 10) == b''  # stdin is the null device meanwhile\n"
        "    os.write(fds[1], b'protocol ' + os.read(fds[0], 100))\n"
        "print('after')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=b"request\n", capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"protocol request\nafter\n"
    assert b"stray print\nstray write\n" in done.stderr


async def test_a_burst_of_concurrent_edits_over_one_stdio_session_each_gets_its_own_task(
    simulator: PiAPISimulator, tmp_path: Path
) -> None:
    calls = 40
    async with serve_app_on_loopback(simulator.app) as sim_url:
        params = stdio_server(sim_url, tmp_path / "outputs")
        with anyio.fail_after(60):
            async with Client(params) as client:
                answers: dict[int, tuple[str, str]] = {}

                async def edit(n: int) -> None:
                    first: list[str] = []

                    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                        first.append(message or "")

                    result = await client.call_tool(
                        "kontext_edit",
                        {**EDIT, "prompt": f"burst edit {n}", "wait_seconds": 0},
                        progress_callback=on_progress,
                    )
                    assert not result.is_error, text_of(result)
                    data = result.structured_content
                    assert data is not None
                    answers[n] = (str(data["task_id"]), first[0] if first else "")

                async with anyio.create_task_group() as group:
                    for n in range(calls):
                        group.start_soon(edit, n)
    task_ids = {task_id for task_id, _ in answers.values()}
    assert len(answers) == calls and len(task_ids) == calls
    assert task_ids == set(simulator.tasks)
    # Each call's first progress message names its own task.
    assert all(task_id in first for task_id, first in answers.values())


async def _ledger_operations_per_edit(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path, image: str
) -> tuple[int, dict[str, object], dict[str, object]]:
    """One kontext_edit of ``image``: the ledger operations it made, the input PiAPI received, and the
    input the intent row held (read through a second connection) when the create reached PiAPI."""
    sizes: list[int] = []
    held: list[dict[str, object]] = []

    async def look_at_the_ledger(task: SimulatedTask) -> None:
        with sqlite3.connect(state_dir / FILE_NAME) as db:
            (stored,) = db.execute("SELECT input_json FROM tasks WHERE status = 'creating'").fetchone()
        held.append(json.loads(stored))

    simulator.controls.create_gate = look_at_the_ledger
    ledger = TaskLedger(state_dir / FILE_NAME, clock=clock, on_batch=sizes.append)
    try:
        server = make_server(simulator, clock, http, ledger=ledger, allowed_dirs=[state_dir.parent])
        async with Client(server) as client:
            result = await client.call_tool("kontext_edit", {**EDIT, "image": image, "wait_seconds": 0})
            assert not result.is_error, text_of(result)
    finally:
        ledger.close()
    (task,) = simulator.tasks.values()
    return sum(sizes), dict(task.input), held[0]


async def test_an_edit_of_an_image_url_goes_out_after_one_ledger_write_holding_the_input_as_sent(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    operations, sent, intent = await _ledger_operations_per_edit(
        simulator, clock, http, state_dir, "  https://example.com/photo.png "
    )
    # The intent row, committed before the create was sent, already holds Kontext's filled-in size.
    assert intent == sent and {"width", "height"} <= set(sent)
    assert sent["image"] == "https://example.com/photo.png"
    # Claim, resolve and the "seen" update: no second write of the input before the create.
    assert operations == 3


async def test_an_edit_of_a_local_file_still_records_the_uploaded_url_before_the_create(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path, tmp_path: Path
) -> None:
    picture = tmp_path / "photo.png"
    picture.write_bytes(png_bytes())
    operations, sent, intent = await _ledger_operations_per_edit(
        simulator, clock, http, state_dir, str(picture)
    )
    assert intent == sent and str(sent["image"]).startswith("http")
    assert operations == 4  # the input as sent (the upload's URL) is written before the create


async def test_connections_to_the_loopback_simulator_send_without_nagle_delay() -> None:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Accepting(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    listening = loopback_socket()
    server = await asyncio.get_running_loop().create_server(Accepting, sock=listening)
    try:
        port = listening.getsockname()[1]
        with anyio.fail_after(30):
            async with await anyio.connect_tcp("127.0.0.1", port):
                assert await accepted != 0  # TCP_NODELAY set on the accepted connection
    finally:
        server.close()
        await server.wait_closed()
