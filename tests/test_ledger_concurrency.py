"""The ledger under a burst: one writer off the event loop, group commit, and nothing told before it is on disk.

- 100 concurrent creates through one MCP session all reach PiAPI and are all recorded; the creates
  queued behind a busy writer go to disk in one transaction, and so do the "seen" updates.
- Ledger work stuck in the writer does not stop the session: other requests are answered meanwhile,
  and the SQLite work runs on a thread that is not the event loop's.
- A create's intent row is committed before the create is sent, and its task id before the caller
  hears of it (both visible from a second connection at those moments).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.ledger import FILE_NAME, TaskLedger
from piapi_mcp.simulator import SimulatedTask
from tests.conftest import make_server
from tests.helpers import EDIT, text_of

pytestmark = pytest.mark.anyio

BURST = 100
#: Real seconds a scenario may take before it is called stuck (never asserted as a speed).
STUCK = 60.0


@dataclass
class WriterGate:
    """The ledger's ``on_batch`` seam: records each batch (size, thread) and can hold the writer."""

    sizes: list[int] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)
    #: Set while the writer may run; cleared, the next batch waits in the writer thread.
    open: threading.Event = field(default_factory=threading.Event)
    #: Set once a batch is waiting on the closed gate.
    held: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.open.set()

    def __call__(self, size: int) -> None:
        self.sizes.append(size)
        self.threads.add(threading.get_ident())
        if not self.open.is_set():
            self.held.set()
            self.open.wait(STUCK)

    async def wait_held(self) -> None:
        """Until a batch is held in the writer (waited for on a worker thread, not the event loop)."""
        await anyio.to_thread.run_sync(self.held.wait, STUCK)
        assert self.held.is_set(), "no ledger batch reached the writer"


async def wait_all_waiting(ledger: TaskLedger, gate: WriterGate, count: int) -> None:
    """Until ``count`` operations wait on the held writer: in its held batch, or queued behind it."""
    while gate.sizes[0] + ledger.queued < count:
        await anyio.lowlevel.checkpoint()


@asynccontextmanager
async def burst_server(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path, gate: WriterGate
) -> AsyncIterator[tuple[Client, TaskLedger]]:
    """One MCP session on a server whose ledger is a file in ``state_dir``, watched by ``gate``."""
    ledger = TaskLedger(state_dir / FILE_NAME, clock=clock, on_batch=gate)
    try:
        async with Client(make_server(simulator, clock, http, ledger=ledger)) as client:
            yield client, ledger
    finally:
        gate.open.set()
        ledger.close()


def rows(state_dir: Path) -> dict[str, str]:
    """task_id -> status, read through a connection of its own (what another process would see)."""
    with sqlite3.connect(state_dir / FILE_NAME) as db:
        return dict(db.execute("SELECT task_id, status FROM tasks").fetchall())


def creates(simulator: PiAPISimulator) -> int:
    return simulator.requests.count(("POST", "/api/v1/task"))


def edit(n: int) -> dict[str, Any]:
    return {**EDIT, "prompt": f"{EDIT['prompt']}, variant {n}", "wait_seconds": 0}


def task_id(result: CallToolResult) -> str:
    assert not result.is_error, text_of(result)
    return str((result.structured_content or {})["task_id"])


async def test_a_hundred_concurrent_creates_in_one_session_all_reach_piapi_and_are_recorded_in_few_commits(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """With the writer held, all 100 claims wait on it (nothing is sent); then two transactions commit them."""
    gate = WriterGate()
    gate.open.clear()
    results: dict[int, CallToolResult] = {}
    async with burst_server(simulator, clock, http, state_dir, gate) as (client, ledger):

        async def call(n: int) -> None:
            results[n] = await client.call_tool("kontext_edit", edit(n))

        with anyio.fail_after(STUCK):
            async with anyio.create_task_group() as group:
                for n in range(BURST):
                    group.start_soon(call, n)
                await gate.wait_held()
                await wait_all_waiting(ledger, gate, BURST)
                assert creates(simulator) == 0, "a create was sent before its claim was committed"
                gate.open.set()

    ids = {task_id(results[n]) for n in range(BURST)}
    assert len(ids) == BURST and ids == set(simulator.tasks)
    assert creates(simulator) == BURST
    recorded = rows(state_dir)
    assert set(recorded) == ids, "some creates are missing from the ledger, or left as intents"
    # The held batch and the next one hold every claim (queued first, taken first).
    assert sum(gate.sizes[:2]) >= BURST, gate.sizes
    # Claim (its input already as sent: a URL needs no upload, Kontext's size is filled in), resolve
    # and the seen update of each call: far fewer transactions than operations.
    assert sum(gate.sizes) == 3 * BURST and len(gate.sizes) < BURST, gate.sizes


async def test_the_seen_updates_of_concurrent_calls_share_one_transaction(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """100 get_task calls at once, the writer held: their 100 updates are written in at most two commits."""
    gate = WriterGate()
    async with burst_server(simulator, clock, http, state_dir, gate) as (client, ledger):
        ids = [task_id(await client.call_tool("kontext_edit", edit(n))) for n in range(BURST)]
        clock.advance(3600)  # every task has finished
        gate.sizes.clear()
        gate.open.clear()
        with anyio.fail_after(STUCK):
            async with anyio.create_task_group() as group:
                for tid in ids:
                    group.start_soon(client.call_tool, "get_task", {"task_id": tid})
                await gate.wait_held()
                await wait_all_waiting(ledger, gate, BURST)
                gate.open.set()

    assert sum(gate.sizes) == BURST and len(gate.sizes) <= 2, gate.sizes
    assert set(rows(state_dir).values()) == {"completed"}


async def test_ledger_work_stuck_in_the_writer_does_not_stop_the_session(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """While a claim is held in the writer thread, tools/list and a resource read are answered."""
    gate = WriterGate()
    gate.open.clear()
    loop_thread = threading.get_ident()
    async with burst_server(simulator, clock, http, state_dir, gate) as (client, _):
        results: list[CallToolResult] = []

        async def call() -> None:
            results.append(await client.call_tool("kontext_edit", edit(0)))

        with anyio.fail_after(STUCK):
            async with anyio.create_task_group() as group:
                group.start_soon(call)
                await gate.wait_held()
                listed = await client.list_tools()
                models = await client.read_resource("piapi://models")
                assert creates(simulator) == 0 and not results, "the create went on without its claim"
                gate.open.set()

    assert any(tool.name == "kontext_edit" for tool in listed.tools) and models.contents
    assert task_id(results[0]) in simulator.tasks
    assert gate.threads and loop_thread not in gate.threads, "ledger work ran on the event loop's thread"


async def test_a_create_is_on_disk_before_it_is_sent_and_its_id_before_the_caller_hears_it(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """A second connection sees the intent when the POST arrives, and the task at the first progress."""
    at_create: list[dict[str, str]] = []
    at_progress: list[tuple[str, dict[str, str]]] = []

    async def look_at_create(task: SimulatedTask) -> None:
        at_create.append(rows(state_dir))

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if not at_progress:
            found = re.search(r"PiAPI task (\S+) is", message or "")
            assert found, message
            at_progress.append((found.group(1), rows(state_dir)))

    simulator.controls.create_gate = look_at_create
    async with burst_server(simulator, clock, http, state_dir, WriterGate()) as (client, _):
        result = await client.call_tool("kontext_edit", edit(0), progress_callback=on_progress)

    (seen_at_create,) = at_create
    assert list(seen_at_create.values()) == ["creating"]
    (tid, seen_at_progress), *_ = at_progress
    assert tid == task_id(result)
    assert seen_at_progress == {tid: "pending"}
