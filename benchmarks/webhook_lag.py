"""Detection lag of a task's end, in simulated time: webhooks against polling alone.

    python benchmarks/webhook_lag.py                 # 20 tasks of 30.0-31.9 s each way
    python benchmarks/webhook_lag.py --tasks 50 --delay 0.15

Everything runs in this process on a ManualClock (no real waiting, no network): the simulator, the
MCP server over it (in memory), and the server's hosted app receiving the simulator's webhooks
through an in-process ASGI transport. Each task is a ``kontext_edit`` of 1 s queue plus a run of
29.0, 29.1, ... s (so the end falls at every phase of the poll schedule). The lag is the simulated
time from the task's end to the call's return. Modes:

- ``polling, first of its kind``: polling alone, nothing learned (a 2 s grid);
- ``polling, learned``: polling alone, after one task of the same length taught the estimator;
- ``webhooks`` (and ``webhooks, learned``): PiAPI's webhook delivered ``--delay`` s after the end,
  polling as the fallback;
- ``webhooks dropped``: the same with every webhook lost (the fallback's own lag).
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
import httpx2
from mcp import Client

from piapi_mcp import (
    ManualClock,
    PiAPIClient,
    PiAPISimulator,
    ServerSettings,
    SimulatorControls,
    create_server,
)
from piapi_mcp.events import LocalTaskEvents
from piapi_mcp.hosting import WEBHOOK_PATH, WebhookReceiver, build_http_app
from piapi_mcp.ledger import TaskLedger
from piapi_mcp.simulator import httpx_poster
from piapi_mcp.tasks import WebhookTarget

KEY = "bench-key-0123456789abcdef"
SECRET = "bench-webhook-secret-0123456789"
EDIT = {"image": "https://example.com/in.png", "wait_seconds": 120}


async def one_task(run: float, mode: str, delay: float, state: Path) -> tuple[float, int]:
    """(lag, polls) of one task of ``run`` seconds (plus 1 s queue) in ``mode``."""
    clock = ManualClock()
    controls = SimulatorControls(api_keys=frozenset({KEY}), duration=run, webhook_delay=delay)
    controls.drop_webhooks = mode == "webhooks dropped"
    simulator = PiAPISimulator(clock, controls)
    webhooks = mode.startswith("webhooks")
    ledger = TaskLedger.open(state / f"{mode}-{run}.sqlite3", clock=clock)
    events = LocalTaskEvents()
    async with (
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(simulator.app), base_url="http://piapi.test"
        ) as http,
    ):
        client = PiAPIClient(http, api_key=KEY, base_url="http://piapi.test", clock=clock, jitter=lambda: 0.5)
        settings = ServerSettings(
            clock=clock,
            ledger=ledger,
            events=events,
            webhook=WebhookTarget(f"http://mcp.test{WEBHOOK_PATH}", SECRET) if webhooks else None,
            preview=False,
        )
        server = create_server(client, settings)
        app = build_http_app(server, "streamable-http", webhooks=WebhookReceiver(SECRET, ledger, events))
        async with (
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app), base_url="http://mcp.test") as hooks,
            simulator.sending_webhooks(httpx_poster(hooks)),
            Client(server) as mcp,
        ):
            if mode.endswith("learned"):
                await mcp.call_tool("kontext_edit", {**EDIT, "prompt": "teach the estimator"})
            created = clock.monotonic()
            done = await mcp.call_tool("kontext_edit", {**EDIT, "prompt": f"a {run} s task"})
            data = done.structured_content or {}
            task = simulator.tasks[data["task_id"]]
            lag = clock.monotonic() - (created + task.queue_seconds + task.duration)
            polls = simulator.requests.count(("GET", f"/api/v1/task/{task.task_id}"))
    ledger.close()
    return lag, polls


async def main(tasks: int, delay: float) -> None:
    """Run every mode over ``tasks`` task lengths and print one line per mode."""
    modes = (
        "polling, first of its kind",
        "polling, learned",
        "webhooks",
        "webhooks, learned",
        "webhooks dropped",
    )
    print(
        f"{tasks} tasks of 30.0-{30 + (tasks - 1) * 0.1:.1f} s; webhook delivered {delay:g} s after the end"
    )
    with TemporaryDirectory() as folder:
        for mode in modes:
            results = [await one_task(29 + 0.1 * i, mode, delay, Path(folder)) for i in range(tasks)]
            lags = sorted(lag for lag, _ in results)
            polls = [count for _, count in results]
            print(
                f"{mode:<28} lag median {statistics.median(lags):5.2f} s, max {lags[-1]:5.2f} s; "
                f"polls per task {statistics.mean(polls):4.1f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds from a task's end to its webhook")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    anyio.run(main, options.tasks, options.delay)
