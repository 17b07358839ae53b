"""PIAPI_DAILY_BUDGET_USD: a create that would take the last 24 h's spending over it is refused before it is sent.

Spending is read from the ledger (what PiAPI charged where it said, else the spec's price), so it
holds across restarts and across servers sharing a state folder. Kontext's documented price is
US$0.02, and the simulator charges that (200,000 units).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.catalog import CATALOG
from piapi_mcp.config import ConfigError, daily_budget
from piapi_mcp.ledger import FILE_NAME, TaskLedger
from tests.conftest import current_backend, make_server
from tests.helpers import EDIT, text_of

pytestmark = pytest.mark.anyio
#: Runs the test on each ledger backend (SQLite, PostgreSQL); the others are about SQLite files.
BOTH_BACKENDS = pytest.mark.usefixtures("ledger_backend")

OTHER_EDIT = {**EDIT, "prompt": "make the sea green"}
THIRD_EDIT = {**EDIT, "prompt": "add a red kite"}


def budget_server(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    state_dir: Path,
    budget: float | None,
) -> Any:
    """A server on the test's state folder's ledger file (as a real one keeps it), with ``budget``."""
    backend = current_backend()
    path = state_dir / FILE_NAME
    ledger = backend.make(clock, path) if backend is not None else TaskLedger.open(path, clock)
    return make_server(simulator, clock, http, ledger=ledger, daily_budget_usd=budget)


def creates(simulator: PiAPISimulator) -> int:
    """How many creates reached the simulator (refused ones included)."""
    return simulator.requests.count(("POST", "/api/v1/task"))


@BOTH_BACKENDS
async def test_a_create_under_the_budget_runs_and_reports_its_cost(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """US$0.02 of a US$0.05 budget: sent, completed, its cost in the result."""
    async with Client(budget_server(simulator, clock, http, state_dir, 0.05)) as client:
        result = await client.call_tool("kontext_edit", EDIT)

    data = result.structured_content or {}
    assert data["status"] == "completed", text_of(result)
    assert (data["estimated_usd"], data["cost_usd"]) == (0.02, 0.02)
    assert "Cost: US$0.02 charged by PiAPI (listed price US$0.02)." in text_of(result)


@BOTH_BACKENDS
async def test_a_create_over_the_budget_is_refused_in_one_sentence_with_nothing_sent(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """After US$0.02 spent, another US$0.02 edit would make US$0.04 > US$0.03: refused before any request."""
    async with Client(budget_server(simulator, clock, http, state_dir, 0.03)) as client:
        first = await client.call_tool("kontext_edit", EDIT)
        sent_before = len(simulator.requests)
        second = await client.call_tool("kontext_edit", OTHER_EDIT)

    assert (first.structured_content or {})["status"] == "completed", text_of(first)
    message = text_of(second)
    assert second.is_error and "daily budget" in message and "nothing was sent" in message, message
    assert "US$0.02 of its US$0.03" in message and "PIAPI_DAILY_BUDGET_USD" in message, message
    assert message.count(". ") == 0 and message.endswith(".")
    assert len(simulator.requests) == sent_before and simulator.created_count == 1


@BOTH_BACKENDS
async def test_the_spend_of_a_previous_server_on_the_same_state_folder_counts(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """A server without a budget spends US$0.02; a later one (new ledger object, same file) with US$0.03 refuses."""
    async with Client(budget_server(simulator, clock, http, state_dir, None)) as client:
        first = await client.call_tool("kontext_edit", EDIT)
    assert (first.structured_content or {})["status"] == "completed", text_of(first)

    async with Client(budget_server(simulator, clock, http, state_dir, 0.03)) as client:
        refused = await client.call_tool("kontext_edit", OTHER_EDIT)
        account = await client.call_tool("get_account", {})

    assert refused.is_error and "daily budget" in text_of(refused), text_of(refused)
    assert creates(simulator) == 1
    assert (account.structured_content or {})["spent_24h_usd"] == pytest.approx(0.02)


@BOTH_BACKENDS
async def test_force_new_does_not_bypass_the_budget_but_reusing_the_same_request_costs_nothing(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """At the budget, the same edit again reuses its task (nothing paid); with force_new it is refused."""
    async with Client(budget_server(simulator, clock, http, state_dir, 0.02)) as client:
        first = await client.call_tool("kontext_edit", EDIT)
        again = await client.call_tool("kontext_edit", EDIT)
        forced = await client.call_tool("kontext_edit", {**EDIT, "force_new": True})

    assert (first.structured_content or {})["status"] == "completed", text_of(first)
    assert (again.structured_content or {})["reused"] is True, text_of(again)
    assert forced.is_error and "daily budget" in text_of(forced), text_of(forced)
    assert creates(simulator) == 1


@BOTH_BACKENDS
async def test_spending_older_than_24_hours_no_longer_counts(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """The window slides: a day after the first edit, the budget has room again."""
    async with Client(budget_server(simulator, clock, http, state_dir, 0.03)) as client:
        await client.call_tool("kontext_edit", EDIT)
        refused = await client.call_tool("kontext_edit", OTHER_EDIT)
        clock.advance(24 * 3600 + 1)
        later = await client.call_tool("kontext_edit", OTHER_EDIT)

    assert refused.is_error, text_of(refused)
    assert (later.structured_content or {})["status"] == "completed", text_of(later)
    assert creates(simulator) == 2


@BOTH_BACKENDS
async def test_a_create_in_flight_in_another_server_counts_at_its_estimate(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """While one server's edit is being created (no charge known yet), another's is held to the rest of the budget."""
    import anyio

    gate = anyio.Event()
    inside = anyio.Event()

    async def hold(_: object) -> None:
        inside.set()
        await gate.wait()

    simulator.controls.create_gate = hold
    results: dict[str, Any] = {}
    async with (
        Client(budget_server(simulator, clock, http, state_dir, 0.03)) as first_client,
        Client(budget_server(simulator, clock, http, state_dir, 0.03)) as second_client,
    ):

        async def first() -> None:
            results["first"] = await first_client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

        async with anyio.create_task_group() as group:
            group.start_soon(first)
            await inside.wait()
            results["second"] = await second_client.call_tool("kontext_edit", OTHER_EDIT)
            gate.set()

    assert results["second"].is_error and "daily budget" in text_of(results["second"])
    assert not results["first"].is_error, text_of(results["first"])
    assert simulator.created_count == 1


async def test_an_older_ledger_gets_the_estimate_column_and_its_charged_tasks_count(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """A ledger written before estimates existed opens as is; what PiAPI charged for its tasks counts."""
    state_dir.mkdir(parents=True)
    with sqlite3.connect(state_dir / FILE_NAME) as db:
        db.executescript(
            "CREATE TABLE tasks (task_id TEXT PRIMARY KEY, tool TEXT NOT NULL, model TEXT, task_type TEXT,"
            " input_json TEXT NOT NULL, input_hash TEXT NOT NULL, created_at REAL NOT NULL,"
            " updated_at REAL NOT NULL, status TEXT NOT NULL, images_json TEXT NOT NULL DEFAULT '[]',"
            " paths_json TEXT NOT NULL DEFAULT '[]', usage_json TEXT, error_json TEXT, note TEXT,"
            " claim_owner TEXT);"
        )
        now = clock.now().timestamp() - 3600
        db.execute(
            "INSERT INTO tasks (task_id, tool, model, task_type, input_json, input_hash, created_at, updated_at,"
            " status, usage_json) VALUES ('old-1', 'kontext_edit', 'Qubico/flux1-dev-advanced', 'kontext', '{}',"
            " 'h', ?, ?, 'completed', ?)",
            (now, now, json.dumps({"type": "llm", "consume": 200_000, "frozen": 0})),
        )

    async with Client(budget_server(simulator, clock, http, state_dir, 0.03)) as client:
        refused = await client.call_tool("kontext_edit", EDIT)
        listed = await client.call_tool("list_tasks", {})

    assert refused.is_error and "US$0.02 of its US$0.03" in text_of(refused), text_of(refused)
    assert creates(simulator) == 0
    assert [task["task_id"] for task in (listed.structured_content or {})["tasks"]] == ["old-1"]


@BOTH_BACKENDS
async def test_a_pair_without_a_known_price_runs_with_a_note_until_the_budget_is_spent(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, state_dir: Path
) -> None:
    """An unpriced pair counts US$0 in advance (said in the result); once spending reaches the budget, it is refused."""
    unpriced = next((s for s in CATALOG.all() if s.price_usd is None and s.status == "active"), None)
    if unpriced is None:
        pytest.skip("every active catalog entry has a price")
    call = {"model": unpriced.model, "task_type": unpriced.task_type, "input": dict(unpriced.example)}
    async with Client(budget_server(simulator, clock, http, state_dir, 0.02)) as client:
        ran = await client.call_tool("run_task", {**call, "wait_seconds": 0})
        await client.call_tool("kontext_edit", EDIT)  # spends the whole US$0.02
        refused = await client.call_tool("run_task", {**call, "force_new": True})
        unknown = await client.call_tool("run_task", {"model": "acme/new", "task_type": "t", "input": {}})

    assert not ran.is_error and "knows no price" in text_of(ran), text_of(ran)
    assert (ran.structured_content or {})["estimated_usd"] is None
    for result in (refused, unknown):
        assert result.is_error and "daily budget" in text_of(result), text_of(result)
    assert creates(simulator) == 2


def test_the_daily_budget_setting_takes_us_dollars_and_refuses_anything_else() -> None:
    """Unset means no limit; "$5" and "2.50" are amounts; words, negatives and NaN are refused in one sentence."""
    assert (daily_budget(None), daily_budget(" "), daily_budget("$5"), daily_budget("2.50")) == (
        None,
        None,
        5.0,
        2.5,
    )
    for raw in ("five", "-1", "nan", "inf"):
        with pytest.raises(ConfigError, match="PIAPI_DAILY_BUDGET_USD"):
            daily_budget(raw)
