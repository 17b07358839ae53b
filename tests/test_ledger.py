"""The task ledger as the model sees it: list_tasks, piapi://tasks, and the duplicate guard."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import anyio.lowlevel
import httpx2
import pytest
from mcp import Client
from mcp.types import TextResourceContents
from starlette.types import Receive, Scope, Send

from piapi_mcp import ManualClock, PiAPISimulator
from tests.conftest import SIM_BASE_URL, make_server
from tests.postgres import LedgerFactory
from tests.test_kontext_edit import EDIT, text_of

#: Every test here runs on each ledger backend (SQLite, PostgreSQL).
pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("ledger_backend")]


async def test_a_retried_identical_edit_within_the_window_reuses_the_first_task(
    mcp_client: Client, simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """A model retrying the same edit gets the task it already paid for, and is told so."""
    first = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    clock.advance(60)

    second = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 45})

    assert simulator.created_count == 1
    first_id = (first.structured_content or {})["task_id"]
    data = second.structured_content or {}
    assert data["task_id"] == first_id and data["reused"] is True
    assert data["status"] == "completed"
    assert "reuses that task" in text_of(second) and "force_new" in text_of(second)


async def test_force_new_creates_a_second_task_for_the_same_edit(
    mcp_client: Client, simulator: PiAPISimulator
) -> None:
    """force_new=true is the explicit way to pay for the same edit again."""
    await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    second = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0, "force_new": True})

    assert simulator.created_count == 2
    assert (second.structured_content or {})["reused"] is False


async def test_the_same_edit_after_the_window_creates_a_new_task(
    mcp_client: Client, simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """After PIAPI_DEDUP_SECONDS (120 s by default) the same request is a new edit."""
    await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    clock.advance(121)

    await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    assert simulator.created_count == 2


async def test_a_different_edit_is_never_merged(mcp_client: Client, simulator: PiAPISimulator) -> None:
    """Only the very same model, task type and input count as a duplicate."""
    await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
    await mcp_client.call_tool("kontext_edit", {**EDIT, "seed": 5, "wait_seconds": 0})

    assert simulator.created_count == 2


async def test_a_failed_task_is_not_reused(
    mcp_client: Client, simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """Retrying an edit that failed creates a fresh task instead of returning the failure."""
    simulator.controls.fail_tasks = True
    assert (await mcp_client.call_tool("kontext_edit", EDIT)).is_error
    simulator.controls.fail_tasks = False

    again = await mcp_client.call_tool("kontext_edit", EDIT)

    assert simulator.created_count == 2 and not again.is_error


async def test_identical_calls_in_flight_together_create_one_task(
    simulator: PiAPISimulator, clock: ManualClock
) -> None:
    """Two identical calls racing each other still pay once, even while the first create is in flight."""

    async def slow_piapi(scope: Scope, receive: Receive, send: Send) -> None:
        # Let the other call run while this create is on the wire.
        for _ in range(20):
            await anyio.lowlevel.checkpoint()
        await simulator.app(scope, receive, send)

    results: list[str] = []
    transport = httpx2.ASGITransport(slow_piapi)
    async with (
        httpx2.AsyncClient(transport=transport, base_url=SIM_BASE_URL) as http,
        Client(make_server(simulator, clock, http)) as client,
    ):

        async def call() -> None:
            result = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
            results.append((result.structured_content or {})["task_id"])

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            group.start_soon(call)

    assert simulator.created_count == 1 and len(set(results)) == 1 and len(results) == 2


async def test_list_tasks_shows_recent_tasks_newest_first_with_status_filter_and_limit(
    mcp_client: Client, clock: ManualClock
) -> None:
    """list_tasks reads the ledger: newest first, filtered by last known status, limited."""
    ids = []
    for n in range(3):
        result = await mcp_client.call_tool("kontext_edit", {**EDIT, "seed": n, "wait_seconds": 0})
        ids.append((result.structured_content or {})["task_id"])
        clock.advance(1)
    clock.advance(60)
    await mcp_client.call_tool("get_task", {"task_id": ids[0]})

    listed = (await mcp_client.call_tool("list_tasks", {})).structured_content or {}
    completed = (await mcp_client.call_tool("list_tasks", {"status": "completed"})).structured_content or {}
    limited = (await mcp_client.call_tool("list_tasks", {"limit": 1})).structured_content or {}

    assert [t["task_id"] for t in listed["tasks"]] == ids[::-1]
    assert [t["task_id"] for t in completed["tasks"]] == [ids[0]]
    assert completed["tasks"][0]["outputs"] and completed["tasks"][0]["done"] is True
    assert [t["task_id"] for t in limited["tasks"]] == [ids[2]]
    assert listed["tasks"][0]["input"]["prompt"] == EDIT["prompt"]


async def test_tasks_resource_lists_the_ledger_as_json(mcp_client: Client) -> None:
    """piapi://tasks gives hosts the same recent-task list."""
    created = await mcp_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    (content,) = (await mcp_client.read_resource("piapi://tasks")).contents

    assert isinstance(content, TextResourceContents)
    listed = json.loads(content.text)
    assert [t["task_id"] for t in listed["tasks"]] == [(created.structured_content or {})["task_id"]]


async def test_the_ledger_on_disk_survives_a_new_server(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    tmp_path: Path,
    ledger_backend: LedgerFactory,
) -> None:
    """A second server over the same ledger (file or database) knows the first one's tasks and dedups against them."""
    path = tmp_path / "tasks.sqlite3"
    ledger = ledger_backend.make(clock, path)
    async with Client(make_server(simulator, clock, http, ledger=ledger)) as first:
        made = await first.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    ledger = ledger_backend.make(clock, path)
    async with Client(make_server(simulator, clock, http, ledger=ledger)) as second:
        listed = (await second.call_tool("list_tasks", {})).structured_content or {}
        again = await second.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    task_id = (made.structured_content or {})["task_id"]
    assert [t["task_id"] for t in listed["tasks"]] == [task_id]
    assert (again.structured_content or {})["task_id"] == task_id
    assert simulator.created_count == 1
