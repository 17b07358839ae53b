"""Serve MCP over stdio, reading every request that has arrived in one worker-thread hop.

The SDK's ``stdio_server()`` reads stdin with ``anyio.wrap_file``: one worker-thread round trip
per line, each waiting for a free turn of a busy event loop, and one more for each write and each
flush. A host that sends 100 ``tools/call`` at once then sees the 100th read about 0.2 s after the
first, before any of our own work (issue 11's create burst). Here stdin is read a chunk at a time
(every complete line in it is handed over without another hop) and each message is written with a
single hop. The SDK's protection stays: while serving, fd 0 reads the null device and fd 1 goes to
stderr, so a stray ``print`` or a child process cannot corrupt the protocol stream.
"""

from __future__ import annotations

import codecs
import os
import select
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

#: The most one read takes from stdin; a longer line is assembled over several reads.
READ_CHUNK: Final = 1 << 16


class LineReader:
    """The lines of a pipe, as ``async for`` gives them: one blocking read per chunk, in a worker thread.

    Decoded as UTF-8 with bad bytes replaced, each line keeps its ``"\\n"`` (as a text file's do).
    """

    def __init__(self, fd: int, chunk: int = READ_CHUNK) -> None:
        self._fd = fd
        self._chunk = chunk
        #: Worker-thread reads made so far (one per chunk, not one per line).
        self.reads = 0

    def _read(self) -> bytes:
        while True:
            try:
                return os.read(self._fd, self._chunk)
            except BlockingIOError:  # a host may hand over a non-blocking pipe: wait for data
                select.select([self._fd], [], [])

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            data = await anyio.to_thread.run_sync(self._read)
            self.reads += 1
            pending += decoder.decode(data, final=not data)
            *lines, pending = pending.split("\n")
            for line in lines:
                yield line + "\n"
            if not data:
                break
        if pending:
            yield pending


class LineWriter:
    """Writes each message to a pipe in one worker-thread hop; ``flush`` has nothing left to do."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        #: Worker-thread writes made so far (one per message).
        self.writes = 0

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:  # a non-blocking pipe that is full: wait until the host reads
                select.select([], [self._fd], [])

    async def write(self, text: str) -> None:
        """Write ``text`` (UTF-8) to the pipe, all of it."""
        await anyio.to_thread.run_sync(self._write_all, text.encode("utf-8"))
        self.writes += 1

    async def flush(self) -> None:
        """Nothing is buffered here: :meth:`write` returns once the bytes are in the pipe."""


def _backed_by(stream: Any, fd: int) -> bool:
    try:
        return bool(stream.buffer.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False


@contextmanager
def claimed_std_fds() -> Iterator[tuple[int, int] | None]:
    """Private copies of fds 0 and 1 for the protocol, with fd 0 on the null device and fd 1 on stderr.

    Yields ``None`` (nothing changed) where that cannot be done: Windows, or standard streams that
    are not the process's fds 0 and 1. The copies are left open on exit, as the SDK leaves its own:
    a worker thread may still be blocked reading one.
    """
    if sys.platform == "win32" or not (_backed_by(sys.stdin, 0) and _backed_by(sys.stdout, 1)):
        yield None
        return
    import fcntl

    with suppress(OSError, ValueError):
        sys.stdout.flush()
    try:
        stdin_fd = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
        stdout_fd = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 3)
        null = os.open(os.devnull, os.O_RDONLY)
    except OSError:
        yield None
        return
    try:
        os.dup2(null, 0)
        os.dup2(2, 1)
    except OSError:
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)
        yield None
        return
    finally:
        os.close(null)
    try:
        yield stdin_fd, stdout_fd
    finally:
        os.dup2(stdin_fd, 0)
        os.dup2(stdout_fd, 1)


async def serve_stdio(server: MCPServer) -> None:
    """Run ``server`` over stdin/stdout until the host closes stdin (the SDK's own stdio where needed)."""
    from mcp.server.stdio import stdio_server

    # The SDK's run_stdio_async does exactly this with its own streams; MCPServer has no public
    # method that takes streams, so its low-level server is used as run_stdio_async uses it.
    lowlevel = getattr(server, "_lowlevel_server", None)
    with claimed_std_fds() as fds:
        if fds is None or lowlevel is None:
            await server.run_stdio_async()
            return
        reader, writer = LineReader(fds[0]), LineWriter(fds[1])
        async with stdio_server(
            stdin=cast("anyio.AsyncFile[str]", reader), stdout=cast("anyio.AsyncFile[str]", writer)
        ) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
