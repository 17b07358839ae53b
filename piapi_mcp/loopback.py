"""Serving an ASGI app on a loopback port inside the running event loop (the sandbox, tests)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio


def loopback_socket(port: int = 0) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` (0: any free port), for uvicorn to serve on.

    Made with ``IPPROTO_TCP``, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY)
    only on sockets whose protocol says TCP, and accepted connections take this socket's. With Nagle
    on, an answer's body (written after its headers) waits for the client's delayed ACK: about 40 ms
    added to every request.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    return sock


@asynccontextmanager
async def serve_app_on_loopback(app: Any, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 inside this event loop; yields its base URL.

    The socket is bound and listening before this yields, so the URL answers at once.
    """
    import uvicorn

    sock = loopback_socket(port)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            try:
                yield f"http://127.0.0.1:{bound_port}"
            finally:
                server.should_exit = True
    finally:
        sock.close()
