"""Serving an ASGI app on a loopback port inside the running event loop (the sandbox, tests)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio


@asynccontextmanager
async def serve_app_on_loopback(app: Any, port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn on 127.0.0.1 inside this event loop; yields its base URL.

    The socket is bound and listening before this yields, so the URL answers at once.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
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
