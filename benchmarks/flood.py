"""Slow partial requests: does ``piapi-mcp`` over HTTP still answer its client while flooded?

    python benchmarks/flood.py                      # 1,100 connections, server limited to 1,024 files
    python benchmarks/flood.py --connections 3000 --file-limit 4096 --samples 50

Starts ``piapi-mcp --sandbox --transport streamable-http`` on 127.0.0.1 with a bearer token, its
open-file limit set to ``--file-limit`` (1,024 is the usual default, where the flood was found),
and its own HTTP limits (``PIAPI_MCP_HEADER_TIMEOUT``, ``PIAPI_MCP_MAX_CONNECTIONS``) left at their
defaults unless given. Then:

1. ``--samples`` authenticated ``tools/list`` calls, each from a new session on a new connection,
   with no attack (the reference latency);
2. opens ``--connections`` sockets that each send the start of a request and never finish it,
   and holds them;
3. while they are held, the same ``tools/list`` samples (each bounded by ``--sample-timeout``);
4. waits until the server has closed every attacker socket (bounded by ``--hold``).

Reports how many attacker sockets the server shed (closed before the header timeout: the cap at
work) and timed out (closed at the header timeout), the server's open descriptors at the peak of
the attack, and the latency of each phase. Exits 1 if a ``tools/list`` during the attack failed.
Everything stays on 127.0.0.1; the server is stopped on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

import anyio
import httpx2
from _processes import HOST, Children, free_port, wait_for_port
from anyio.abc import SocketStream
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

TOKEN: Final = "flood-benchmark-token-6d1f0c9a7b5e3d1f2a4c6e8b0d2f4a6c"
PARTIAL_HEADERS: Final = (
    b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Slow: "
)
CONNECT_TIMEOUT: Final = 2.0
#: Runs ``piapi-mcp`` in this interpreter after setting its soft open-file limit to argv[1].
WITH_FILE_LIMIT: Final = (
    "import resource, runpy, sys; "
    "limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
    "sys.argv[0] = 'piapi-mcp'; runpy.run_module('piapi_mcp', run_name='__main__')"
)


@dataclass
class Phase:
    """Latencies (ms) of the ``tools/list`` samples of one phase, and how many failed."""

    session_ms: list[float] = field(default_factory=list)
    tools_list_ms: list[float] = field(default_factory=list)
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        def stats(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            ordered = sorted(values)
            return {
                "p50": round(statistics.median(ordered), 1),
                "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
                "max": round(ordered[-1], 1),
            }

        return {
            "ok": len(self.tools_list_ms),
            "failed": self.failed,
            "new_session_ms": stats(self.session_ms),
            "tools_list_ms": stats(self.tools_list_ms),
            "errors": sorted(set(self.errors))[:5],
        }


@dataclass
class Attack:
    """What happened to the attacker sockets."""

    opened: int = 0
    connect_failed: int = 0
    shed: int = 0
    timed_out: int = 0
    still_open: int = 0
    server_fds_peak: int | None = None
    close_after_s: list[float] = field(default_factory=list)


async def sample(port: int, timeout: float, phase: Phase) -> None:
    """One new authenticated session (a new connection) and one ``tools/list`` on it."""
    started = time.perf_counter()
    with anyio.move_on_after(timeout) as scope:
        try:
            async with (
                httpx2.AsyncClient(trust_env=False, headers={"Authorization": f"Bearer {TOKEN}"}) as http,
                Client(streamable_http_client(f"http://{HOST}:{port}/mcp", http_client=http)) as client,
            ):
                opened = time.perf_counter()
                tools = await client.list_tools()
                listed = time.perf_counter()
                if not tools.tools:
                    raise RuntimeError("tools/list answered no tools")
                phase.session_ms.append((opened - started) * 1000)
                phase.tools_list_ms.append((listed - opened) * 1000)
                return
        except Exception as err:  # every failure counts, whatever its kind
            phase.failed += 1
            phase.errors.append(f"{type(err).__name__}: {err}"[:200])
            return
    if scope.cancelled_caught:
        phase.failed += 1
        phase.errors.append(f"no answer within {timeout:g} s")


def count_fds(pid: int) -> int | None:
    with suppress(OSError):
        return len(os.listdir(f"/proc/{pid}/fd"))
    return None


async def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    children = Children(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIAPI_")} | {
        "HOME": str(work / "home"),
        "PIAPI_STATE_DIR": str(work / "state"),
        "PIAPI_OUTPUT_DIR": str(work / "outputs"),
        "PIAPI_MCP_AUTH_TOKEN": TOKEN,
    }
    if args.header_timeout is not None:
        env["PIAPI_MCP_HEADER_TIMEOUT"] = str(args.header_timeout)
    if args.max_connections is not None:
        env["PIAPI_MCP_MAX_CONNECTIONS"] = str(args.max_connections)
    header_timeout = args.header_timeout if args.header_timeout is not None else 10.0
    port = free_port()
    before, during, after = Phase(), Phase(), Phase()
    attack = Attack()
    try:
        server = children.start(
            "server",
            [
                *(sys.executable, "-c", WITH_FILE_LIMIT, str(args.file_limit), "--sandbox"),
                *("--transport", "streamable-http", "--host", HOST, "--port", str(port)),
            ],
            env,
        )
        await wait_for_port(port, server)
        for _ in range(args.samples):
            await sample(port, args.sample_timeout, before)

        all_closed = anyio.Event()
        opened_at: dict[int, float] = {}

        async def hold(index: int, stream: SocketStream) -> None:
            while True:
                try:
                    await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionError):
                    break
            after_s = time.perf_counter() - opened_at[index]
            attack.close_after_s.append(after_s)
            # Closed well before the header timeout: shed by the cap; else the timeout's doing.
            if after_s < 0.8 * header_timeout:
                attack.shed += 1
            else:
                attack.timed_out += 1
            if attack.shed + attack.timed_out == attack.opened:
                all_closed.set()

        async with AsyncExitStack() as stack, anyio.create_task_group() as group:
            for index in range(args.connections):
                try:
                    with anyio.fail_after(CONNECT_TIMEOUT):
                        stream = await anyio.connect_tcp(HOST, port)
                        await stream.send(PARTIAL_HEADERS)
                except (OSError, TimeoutError):
                    attack.connect_failed += 1
                    continue
                stack.push_async_callback(stream.aclose)
                opened_at[index] = time.perf_counter()
                attack.opened += 1
                group.start_soon(hold, index, stream)
            attack.server_fds_peak = count_fds(server.pid)
            for _ in range(args.samples):
                await sample(port, args.sample_timeout, during)
            peak = count_fds(server.pid)
            if peak is not None and (attack.server_fds_peak or 0) < peak:
                attack.server_fds_peak = peak
            with anyio.move_on_after(args.hold):
                await all_closed.wait()
            attack.still_open = attack.opened - attack.shed - attack.timed_out
            group.cancel_scope.cancel()
        for _ in range(args.samples):
            await sample(port, args.sample_timeout, after)
    finally:
        children.stop_all()
    closes = sorted(attack.close_after_s)
    return {
        "settings": {
            "connections": args.connections,
            "server_file_limit": args.file_limit,
            "header_timeout_s": header_timeout,
            "max_connections": args.max_connections,
        },
        "attack": {
            **{k: v for k, v in asdict(attack).items() if k != "close_after_s"},
            "last_close_after_s": round(closes[-1], 2) if closes else None,
        },
        "before": before.summary(),
        "during": during.summary(),
        "after": after.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=1100, help="unfinished requests to hold open")
    parser.add_argument("--file-limit", type=int, default=1024, help="the server's soft open-file limit")
    parser.add_argument("--samples", type=int, default=20, help="tools/list calls in each phase")
    parser.add_argument("--sample-timeout", type=float, default=5.0, help="seconds one sample may take")
    parser.add_argument(
        "--hold", type=float, default=30.0, help="seconds to wait for the server to close all"
    )
    parser.add_argument("--header-timeout", type=float, default=None, help="PIAPI_MCP_HEADER_TIMEOUT")
    parser.add_argument("--max-connections", type=int, default=None, help="PIAPI_MCP_MAX_CONNECTIONS")
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < args.connections + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="piapi-flood-") as work:
        report = anyio.run(run, args, Path(work))
    print(json.dumps(report, indent=2))
    during = report["during"]
    assert isinstance(during, dict)
    sys.exit(1 if during["failed"] or not during["ok"] else 0)


if __name__ == "__main__":
    main()
