"""Slow partial HTTP requests: connections that never finish their headers cannot lock clients out.

The MCP app is served by :func:`piapi_mcp.hosting.serve_http`, exactly as ``piapi-mcp --transport
streamable-http`` serves it, on a loopback port. Attackers are raw loopback sockets that send the
start of a request and never finish it. The header timeout is real time (the event loop's timer),
so the tests use a short one and wait for the event (the server closing the socket) under a
generous hang guard; nothing asserts on how long anything took.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

import anyio
import anyio.lowlevel
import httpx2
import pytest
from anyio.abc import SocketStream
from anyio.streams.text import TextReceiveStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp, Receive, Scope, Send

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.config import ConfigError
from piapi_mcp.hosting import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    HEADER_TIMEOUT_ENV,
    MAX_CONNECTIONS_ENV,
    HttpLimits,
    build_http_app,
    connection_cap,
    serve_http,
)
from tests.conftest import make_server
from tests.helpers import TOOLS

pytestmark = pytest.mark.anyio

TOKEN = "test-token-flood-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/in.png"}
#: The start of a request whose headers never end (no blank line), like a slowloris connection.
PARTIAL_HEADERS = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
#: Hang guard: every wait for the server's reaction ends well before this.
HANG_GUARD = 20.0
#: ``piapi-mcp`` started with this few descriptors, so a flood larger than that would exhaust them.
CHILD_FILE_LIMIT = 256
_WITH_FILE_LIMIT = (
    "import resource, runpy, sys; "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv.pop(1)), resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
    "sys.argv[0] = 'piapi-mcp'; runpy.run_module('piapi_mcp', run_name='__main__')"
)


def _allow_descriptors(needed: int) -> None:
    """Raise this process's soft open-file limit to the hard one if ``needed`` descriptors might not fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@asynccontextmanager
async def _serving(app: ASGIApp, limits: HttpLimits) -> AsyncIterator[int]:
    """``app`` served by ``serve_http`` on 127.0.0.1 (any free port) with ``limits``; yields the port."""
    ports: list[int] = []
    listening = anyio.Event()

    def started(port: int) -> None:
        ports.append(port)
        listening.set()

    async with anyio.create_task_group() as group:
        group.start_soon(partial(serve_http, app, "127.0.0.1", 0, limits, on_started=started))
        await listening.wait()
        try:
            yield ports[0]
        finally:
            group.cancel_scope.cancel()


@asynccontextmanager
async def _mcp_app(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, limits: HttpLimits
) -> AsyncIterator[int]:
    """The token-guarded Streamable HTTP app ``piapi-mcp`` hosts, over the simulator, served with ``limits``."""
    app = build_http_app(make_server(simulator, clock, http), "streamable-http", token=TOKEN)
    async with _serving(app, limits) as port:
        yield port


async def _open_partial_request(port: int) -> SocketStream:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    await stream.send(PARTIAL_HEADERS)
    return stream


async def _until_closed_by_server(stream: SocketStream) -> bytes:
    """Everything the server sends before it closes ``stream`` (EOF or reset)."""
    received = b""
    while True:
        try:
            received += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
            return received


async def _lifespan(receive: Receive, send: Send) -> None:
    """The ASGI lifespan of a test app with nothing to start or stop."""
    await receive()  # startup
    await send({"type": "lifespan.startup.complete"})
    await receive()  # shutdown
    await send({"type": "lifespan.shutdown.complete"})


async def _use_mcp_with_token(port: int) -> None:
    """An authenticated MCP client lists the tools and completes one edit."""
    async with (
        httpx2.AsyncClient(trust_env=False, headers={"Authorization": f"Bearer {TOKEN}"}) as mcp_http,
        Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=mcp_http)) as client,
    ):
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOLS
        done = await client.call_tool("kontext_edit", EDIT)
        assert not done.is_error, done.content
        assert done.structured_content is not None
        assert (done.structured_content["status"], done.structured_content["done"]) == ("completed", True)


async def test_a_flood_of_unfinished_requests_past_the_cap_sheds_the_oldest_and_the_client_gets_answers(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """300 header-less connections against a cap of 32: the oldest are shed as newer ones arrive, and while
    the newest 32 hold the cap, a client with the token still lists tools and completes an edit."""
    attackers, cap = 300, 32
    _allow_descriptors(2 * attackers + 256)
    # A header timeout far beyond the test: only shedding closes anything here.
    limits = HttpLimits(header_timeout=120, max_connections=cap)
    closed: list[int] = []
    all_shed = anyio.Event()

    async def attacker(index: int, stream: SocketStream) -> None:
        answer = await _until_closed_by_server(stream)
        assert answer == b""  # dropped without an answer: nothing was parsed, nothing ran
        closed.append(index)
        if len(closed) == attackers - cap:
            all_shed.set()

    with anyio.fail_after(HANG_GUARD):
        async with _mcp_app(simulator, clock, http, limits) as port, AsyncExitStack() as stack:
            streams = [await _open_partial_request(port) for _ in range(attackers)]
            for stream in streams:
                stack.push_async_callback(stream.aclose)
            async with anyio.create_task_group() as group:
                for index, stream in enumerate(streams):
                    group.start_soon(attacker, index, stream)
                await all_shed.wait()
                # Oldest first: the survivors are the 32 newest, and they fill the cap.
                assert sorted(closed) == list(range(attackers - cap))
                await _use_mcp_with_token(port)
                # The client's connections took their places by shedding more of the oldest attackers.
                assert len(closed) > attackers - cap
                assert sorted(closed) == list(range(len(closed)))
                group.cancel_scope.cancel()
    assert simulator.created_count == 1


async def test_connections_that_never_finish_their_headers_are_closed_after_the_header_timeout(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Under the cap, unfinished requests (one of them trickling a byte at a time) are closed by the server
    once the header timeout passes, while a client with the token is answered in the meantime."""
    attackers = 40
    _allow_descriptors(2 * attackers + 256)
    limits = HttpLimits(header_timeout=0.3, max_connections=attackers + 16)
    answers: list[bytes] = []

    async def attacker(stream: SocketStream) -> None:
        answers.append(await _until_closed_by_server(stream))

    async def trickler(stream: SocketStream) -> None:
        # A byte at a time keeps the connection busy reading but never completes the headers; each byte
        # would restart a per-read timer, so only a deadline counted from the opening ends it.
        for _ in range(int(HANG_GUARD / 0.02)):
            try:
                await stream.send(b"x")
            except (anyio.BrokenResourceError, ConnectionError):
                answers.append(b"")
                return
            with anyio.move_on_after(0.02):
                answers.append(await _until_closed_by_server(stream))
                return
        raise AssertionError("the trickling connection was never closed")

    with anyio.fail_after(HANG_GUARD):
        async with _mcp_app(simulator, clock, http, limits) as port, AsyncExitStack() as stack:
            streams = [await _open_partial_request(port) for _ in range(attackers)]
            for stream in streams:
                stack.push_async_callback(stream.aclose)
            async with anyio.create_task_group() as group:
                for stream in streams[1:]:
                    group.start_soon(attacker, stream)
                group.start_soon(trickler, streams[0])
                await _use_mcp_with_token(port)
    # Every attacker was closed by the server (not by the hang guard), without an answer.
    assert answers == [b""] * attackers
    assert simulator.created_count == 1


async def test_piapi_mcp_keeps_answering_its_client_through_more_unfinished_requests_than_it_has_descriptors() -> (
    None
):
    """``piapi-mcp --sandbox --transport streamable-http``, limited to 256 open files, flooded by 300
    connections that never finish their headers: it sheds them, and a client with the token still lists
    the tools and completes an edit (before, accept() failed with EMFILE and nobody got in)."""
    attackers = 300
    _allow_descriptors(attackers + 256)
    env = {
        name: os.environ[name]
        for name in ("PATH", "HOME", "SYSTEMROOT", "PIAPI_STATE_DIR", "PIAPI_OUTPUT_DIR")
        if name in os.environ
    } | {"PIAPI_MCP_AUTH_TOKEN": TOKEN, "PIAPI_SANDBOX_DURATION": "0", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-c", _WITH_FILE_LIMIT, str(CHILD_FILE_LIMIT), "--sandbox"]
    command += ["--transport", "streamable-http", "--port", "0"]
    closed = 0
    log: list[str] = []
    with anyio.fail_after(HANG_GUARD):
        async with await anyio.open_process(command, env=env, stdin=subprocess.DEVNULL) as process:
            assert process.stderr is not None
            lines = TextReceiveStream(process.stderr)
            port = None
            async for chunk in lines:
                log.append(chunk)
                if found := re.search(
                    r"serving MCP over streamable-http at http://127\.0\.0\.1:(\d+)/mcp", "".join(log)
                ):
                    port = int(found.group(1))
                    break
            assert port, "".join(log)

            async def drain_log() -> None:
                async for chunk in lines:
                    log.append(chunk)

            async def attacker(stream: SocketStream) -> None:
                nonlocal closed
                await _until_closed_by_server(stream)
                closed += 1

            try:
                async with AsyncExitStack() as stack, anyio.create_task_group() as group:
                    group.start_soon(drain_log)
                    for _ in range(attackers):
                        stream = await _open_partial_request(port)
                        stack.push_async_callback(stream.aclose)
                        group.start_soon(attacker, stream)
                    await _use_mcp_with_token(port)
                    group.cancel_scope.cancel()
            finally:
                process.terminate()
    # Half the 256 descriptors go to HTTP connections: at least the excess over 128 was shed.
    assert closed >= attackers - CHILD_FILE_LIMIT // 2, "".join(log)
    assert "HTTP connection cap of 128 reached" in "".join(log)


async def test_a_client_that_stops_reading_a_streamed_answer_is_dropped_and_frees_its_place() -> None:
    """A client that asks for a long streamed answer and never reads it: once the unread answer piles up
    for the header timeout, the server aborts the connection, so it cannot hold its place under the cap
    (the same holds for requests pipelined without reading the 401s, which need no token)."""
    chunk = b"x" * 65536

    async def streaming_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/small":
            await send({"type": "http.response.body", "body": b"ok"})
            return
        # Far more than any socket buffer: the answer is in progress (not evictable) until the connection
        # is gone; after that uvicorn ignores the sends, so the checkpoint lets the loop run out politely.
        for _ in range(4096):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await anyio.lowlevel.checkpoint()
        await send({"type": "http.response.body", "body": b""})

    with anyio.fail_after(HANG_GUARD):
        async with _serving(streaming_app, HttpLimits(header_timeout=0.3, max_connections=1)) as port:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                sock.setblocking(False)
                # Never reads; the server's abort turns the next send into a reset.
                while True:
                    await anyio.wait_writable(sock)
                    try:
                        sock.send(b"x")
                    except BlockingIOError:
                        continue
                    except OSError:
                        break
            async with httpx2.AsyncClient(trust_env=False) as client:
                assert (await client.get(f"http://127.0.0.1:{port}/small")).status_code == 200


async def test_when_every_connection_is_answering_a_newcomer_gets_503_and_the_others_finish() -> None:
    """At the cap with no connection waiting for headers, nothing can be shed: the new connection is
    answered 503 and closed, and the requests in progress are not disturbed."""
    cap = 2
    entered = 0
    all_entered = anyio.Event()
    release = anyio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal entered
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        entered += 1
        if entered == cap:
            all_entered.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    statuses: list[int] = []

    async def request(port: int) -> None:
        async with httpx2.AsyncClient(trust_env=False) as client:
            statuses.append((await client.get(f"http://127.0.0.1:{port}/")).status_code)

    with anyio.fail_after(HANG_GUARD):
        async with (
            _serving(slow_app, HttpLimits(header_timeout=120, max_connections=cap)) as port,
            anyio.create_task_group() as group,
        ):
            for _ in range(cap):
                group.start_soon(request, port)
            await all_entered.wait()
            async with await _open_partial_request(port) as stream:
                refused = await _until_closed_by_server(stream)
            release.set()
    assert refused.startswith(b"HTTP/1.1 503 "), refused
    assert b"too many open connections" in refused
    assert statuses == [200] * cap


async def test_the_limits_come_from_the_environment_with_defaults_when_unset() -> None:
    """PIAPI_MCP_HEADER_TIMEOUT and PIAPI_MCP_MAX_CONNECTIONS set the limits; unset or blank, the defaults."""
    assert HttpLimits.from_env({}) == HttpLimits(DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS)
    assert HttpLimits.from_env({HEADER_TIMEOUT_ENV: " ", MAX_CONNECTIONS_ENV: ""}) == HttpLimits()
    assert HttpLimits.from_env({HEADER_TIMEOUT_ENV: "2.5", MAX_CONNECTIONS_ENV: "100"}) == HttpLimits(
        2.5, 100
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        (HEADER_TIMEOUT_ENV, "soon"),
        (HEADER_TIMEOUT_ENV, "0"),
        (HEADER_TIMEOUT_ENV, "100000"),
        (MAX_CONNECTIONS_ENV, "many"),
        (MAX_CONNECTIONS_ENV, "0"),
        (MAX_CONNECTIONS_ENV, "12.5"),
    ],
)
async def test_a_limit_that_is_not_a_usable_number_is_refused_with_a_sentence_naming_it(
    name: str, raw: str
) -> None:
    """A value that is not a number, not whole (connections), or out of range stops with the variable's name."""
    with pytest.raises(ConfigError, match=name):
        HttpLimits.from_env({name: raw})


async def test_the_connection_cap_never_takes_more_than_half_the_open_file_limit() -> None:
    """With 200 descriptors allowed, at most 100 go to HTTP connections; the rest stay for PiAPI and files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (200, hard))
    try:
        assert connection_cap(512) == 100
        assert connection_cap(40) == 40
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
