"""One create's ledger round trip (claim, then resolve with PiAPI's id), on SQLite and on PostgreSQL.

    .venv/bin/python -m benchmarks.ledger_roundtrip [--count 300] [--url postgresql://…]

Without ``--url`` a throw-away PostgreSQL cluster is started from the installed binaries (as the
tests do: fsync off, so the figure is the round trip, not the disk). SQLite runs on a file with
``synchronous=FULL`` in a temporary folder. Prints median and 95th percentile per backend, in ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from piapi_mcp.ledger import FILE_NAME, Ledger, TaskLedger, request_fingerprint
from piapi_mcp.models import Task


async def _round_trips(ledger: Ledger, count: int) -> list[float]:
    """Seconds each of ``count`` claim + resolve pairs took (distinct requests, one after another)."""
    await ledger.start()
    took: list[float] = []
    for n in range(count):
        fingerprint = request_fingerprint("m", "t", {"prompt": f"bench {n} {time.time_ns()}"})
        started = time.perf_counter()
        outcome = await ledger.claim(
            fingerprint, tool="bench", model="m", task_type="t", task_input={"n": n}, within_seconds=600
        )
        assert outcome.claim is not None
        task = Task.model_validate({"task_id": f"bench-{n}-{time.time_ns()}", "status": "pending"})
        await ledger.resolve_claim(outcome.claim, task)
        took.append(time.perf_counter() - started)
    await ledger.aclose()
    return took


def _report(name: str, took: list[float]) -> None:
    ordered = sorted(took)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    median = statistics.median(took) * 1000
    print(f"{name:<10} n={len(took)}  median {median:.2f} ms  p95 {p95 * 1000:.2f} ms")


async def main(count: int, url: str | None) -> None:
    """Run both backends and print their figures."""
    from piapi_mcp.ledger_pg import PostgresLedger

    with tempfile.TemporaryDirectory() as folder:
        _report("sqlite", await _round_trips(TaskLedger(Path(folder) / FILE_NAME), count))
        server = None
        if url is None:
            from tests.postgres import PostgresServer, find_bin_dir

            bin_dir = find_bin_dir()
            if bin_dir is None:
                print("postgresql: not installed (pass --url)")
                return
            server = PostgresServer(bin_dir)
            server.init()
            server.start()
            url = server.new_database()
        try:
            _report("postgresql", await _round_trips(PostgresLedger(url, state_dir=Path(folder)), count))
        finally:
            if server is not None:
                server.remove()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--url", default=None, help="a PostgreSQL database (gets rows)")
    args = parser.parse_args()
    anyio.run(main, args.count, args.url)
