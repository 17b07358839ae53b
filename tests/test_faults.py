"""Fault injection: every tool answers within its budget, no created task goes missing, none is made twice.

PiAPI misbehaves in the simulator (scripted HTTP faults, status and envelope drift) and on the
connection (``FaultyTransport``: refused, reset after PiAPI acted, answers slower than the
time-out). Each case drives the public MCP tools on a ManualClock and checks the same invariants:
the call returns a result or one clear tool error, the clock moved at most the budget plus the
retry bounds, every task the simulator created reached the caller and the ledger (or, when PiAPI's
answer was lost, the caller was told the task may exist), and no task was created twice. The API
key is searched for in every result, log record and ledger byte.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from piapi_mcp import Fault, ManualClock, PiAPISimulator, SimulatorControls
from piapi_mcp.client import DEFAULT_HTTP_TIMEOUT, RetryPolicy
from piapi_mcp.ledger import TaskLedger
from piapi_mcp.simulator import ConnectionFault, FaultyTransport
from tests.conftest import SIM_BASE_URL, make_server

pytestmark = pytest.mark.anyio

#: Long and distinctive, so finding it anywhere cannot be a coincidence.
KEY = "pk-live-FAULTSUITE-7c1e9a5b3d2f4e6a8c0b1d3f5e7a9c2b4d6f8e0a1c3e5f7b"
EDIT = {"prompt": "make the sky purple", "image": "https://example.com/photo.png"}
RETRY = RetryPolicy()
#: How far past its budget one call may run: the retries of its last request, plus that request's time-out.
RETRY_BOUND = RETRY.max_total + DEFAULT_HTTP_TIMEOUT
#: Real seconds any one call may take; everything runs on the ManualClock, so this is generous.
REAL_TIMEOUT = 10.0
MAY_HAVE_CREATED = "may have created the task"


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, TextContent))


@dataclass
class Rig:
    """One MCP server over the simulator, behind a FaultyTransport, with a ledger on disk."""

    simulator: PiAPISimulator
    clock: ManualClock
    transport: FaultyTransport
    client: Client
    state_dir: Path
    results: list[CallToolResult] = field(default_factory=list)
    progress: list[str] = field(default_factory=list)

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            self.progress.append(message or "")

        with anyio.fail_after(REAL_TIMEOUT):
            result = await self.client.call_tool(tool, arguments, progress_callback=on_progress)
        self.results.append(result)
        return result

    async def listed_ids(self) -> list[str]:
        listing = await self.call("list_tasks", {"limit": 200})
        assert not listing.is_error, text_of(listing)
        return [entry["task_id"] for entry in (listing.structured_content or {})["tasks"]]

    def creates_sent(self) -> int:
        return self.simulator.requests.count(("POST", "/api/v1/task"))

    def assert_key_nowhere(self, caplog: pytest.LogCaptureFixture) -> None:
        """The API key is in no tool result, progress message, log record or ledger byte."""
        for result in self.results:
            assert KEY not in result.model_dump_json()
        assert all(KEY not in message for message in self.progress)
        assert KEY not in caplog.text
        files = [path for path in self.state_dir.rglob("*") if path.is_file()]
        assert any(path.name.startswith("tasks.sqlite3") for path in files), "the ledger was not written"
        for path in files:
            assert KEY.encode() not in path.read_bytes(), path


@pytest.fixture
async def rig(state_dir: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Rig]:
    caplog.set_level(logging.DEBUG)
    clock = ManualClock()
    simulator = PiAPISimulator(clock, SimulatorControls(api_keys=frozenset({KEY})))
    transport = FaultyTransport(httpx2.ASGITransport(simulator.app), clock=clock)
    async with httpx2.AsyncClient(transport=transport, base_url=SIM_BASE_URL) as http:
        server = make_server(
            simulator, clock, http, api_key=KEY, ledger=TaskLedger(state_dir / "tasks.sqlite3", clock=clock)
        )
        async with Client(server, raise_exceptions=True) as client:
            yield Rig(simulator, clock, transport, client, state_dir)


def assert_clear_error(result: CallToolResult) -> str:
    """A tool error a person can act on: one paragraph, no traceback, not the SDK's bare crash notice."""
    assert result.is_error
    message = text_of(result)
    # The SDK prefixes a tool's own error with "Error executing tool <name>: "; a crash is the bare prefix.
    said = re.sub(r"^Error executing tool \w+: ", "", message)
    assert said.strip() and not said.startswith("Error executing tool"), f"the tool crashed: {message!r}"
    assert "\n" not in said, message
    assert "Traceback" not in said and 'File "' not in said, message
    assert said.rstrip()[-1] in ".)", message
    return said


# --- the matrix -----------------------------------------------------------------------------------

Outcome = Literal["completed", "running", "error"]


@dataclass(frozen=True)
class Case:
    """One way PiAPI or the network misbehaves during a kontext_edit, and what the caller must see."""

    id: str
    outcome: Outcome
    #: How many tasks the simulator must end up with.
    creates: int
    faults: tuple[Fault, ...] = ()
    connection: tuple[ConnectionFault, ...] = ()
    controls: tuple[tuple[str, Any], ...] = ()
    wait_seconds: float = 45.0
    phrases: tuple[str, ...] = ()
    #: PiAPI created the task but its answer never arrived: its id cannot reach anyone.
    answer_lost: bool = False
    #: The status a still-running result must report.
    status: str | None = None


def c_fault(route: Literal["create", "get"], status: int = 500, **kw: Any) -> Fault:
    return Fault(route=route, status=status, **kw)


def c_conn(
    route: Literal["create", "get"], kind: Literal["refused", "reset", "timeout"], times: int = 1
) -> ConnectionFault:
    return ConnectionFault(route=route, kind=kind, times=times)


FOREVER = 10_000
NOT_CREATED = ("No task was created",)

CASES = [
    # 429 on create: PiAPI did not take the task, so retrying is safe and pays once.
    Case("create-429-retry-after", "completed", 1, (c_fault("create", 429, retry_after="3", times=2),)),
    Case("create-429-bare", "completed", 1, (c_fault("create", 429),)),
    Case(
        "create-429-always",
        "error",
        0,
        (c_fault("create", 429, times=FOREVER),),
        phrases=("HTTP 429", *NOT_CREATED),
    ),
    Case(
        "create-429-retry-after-too-long",
        "error",
        0,
        (c_fault("create", 429, retry_after="120"),),
        phrases=("after 120 s", *NOT_CREATED),
    ),
    # PiAPI's own 5xx envelope: it refused, nothing was created, and creates are not retried.
    Case(
        "create-500-burst", "error", 0, (c_fault("create", 500, times=3),), phrases=("HTTP 500", *NOT_CREATED)
    ),
    Case("create-503", "error", 0, (c_fault("create", 503),), phrases=("HTTP 503", *NOT_CREATED)),
    # Answers that are not PiAPI's: the task may exist, so the call says so instead of retrying.
    Case(
        "create-502-gateway-page",
        "error",
        0,
        (c_fault("create", 502, body="html"),),
        phrases=(MAY_HAVE_CREATED,),
    ),
    Case(
        "create-200-not-json", "error", 0, (c_fault("create", 200, body="html"),), phrases=(MAY_HAVE_CREATED,)
    ),
    Case(
        "create-200-truncated",
        "error",
        0,
        (c_fault("create", 200, body="truncated"),),
        phrases=(MAY_HAVE_CREATED,),
    ),
    Case(
        "create-dropped-mid-answer",
        "error",
        0,
        (c_fault("create", 200, body="reset"),),
        phrases=(MAY_HAVE_CREATED,),
    ),
    # Connection faults on create.
    Case(
        "create-reset-after-piapi-acted",
        "error",
        1,
        connection=(c_conn("create", "reset"),),
        phrases=(MAY_HAVE_CREATED, "list_tasks"),
        answer_lost=True,
    ),
    Case(
        "create-slower-than-timeout",
        "error",
        1,
        connection=(c_conn("create", "timeout"),),
        phrases=(MAY_HAVE_CREATED, f"within {DEFAULT_HTTP_TIMEOUT:g} s"),
        answer_lost=True,
    ),
    Case("create-refused-twice", "completed", 1, connection=(c_conn("create", "refused", times=2),)),
    Case(
        "create-refused-always",
        "error",
        0,
        connection=(c_conn("create", "refused", times=FOREVER),),
        phrases=("Could not connect", *NOT_CREATED),
    ),
    # Passing trouble while waiting: retried until the task completes.
    Case("get-429-retry-after", "completed", 1, (c_fault("get", 429, retry_after="5", times=3),)),
    Case("get-429-bare-burst", "completed", 1, (c_fault("get", 429, times=5),)),
    Case("get-500-burst", "completed", 1, (c_fault("get", 500, times=6),)),
    Case("get-502-burst", "completed", 1, (c_fault("get", 502, body="html", times=6),)),
    Case("get-503-burst", "completed", 1, (c_fault("get", 503, times=6),)),
    Case("get-200-not-json", "completed", 1, (c_fault("get", 200, body="html", times=3),)),
    Case("get-200-truncated", "completed", 1, (c_fault("get", 200, body="truncated", times=3),)),
    Case("get-200-empty", "completed", 1, (c_fault("get", 200, body="empty", times=3),)),
    Case("get-dropped-mid-answer", "completed", 1, (c_fault("get", 200, body="reset", times=3),)),
    Case("get-reset", "completed", 1, connection=(c_conn("get", "reset", times=3),)),
    Case("get-refused", "completed", 1, connection=(c_conn("get", "refused", times=3),)),
    Case(
        "get-slower-than-timeout",
        "completed",
        1,
        connection=(c_conn("get", "timeout", times=1),),
        wait_seconds=90,
    ),
    # Trouble that outlasts the budget: the task id still comes back, as a result, not an error.
    Case(
        "get-500-always",
        "running",
        1,
        (c_fault("get", 500, times=FOREVER),),
        wait_seconds=20,
        phrases=("last check on it failed", "HTTP 500"),
    ),
    Case(
        "get-reset-always",
        "running",
        1,
        connection=(c_conn("get", "reset", times=FOREVER),),
        wait_seconds=20,
        phrases=("last check on it failed", "connection to PiAPI broke"),
    ),
    Case(
        "get-slower-than-timeout-always",
        "running",
        1,
        connection=(c_conn("get", "timeout", times=FOREVER),),
        wait_seconds=20,
        phrases=("last check on it failed",),
    ),
    # Envelope and status drift.
    Case("code-0", "completed", 1, controls=(("envelope_code", 0),)),
    Case("code-200", "completed", 1, controls=(("envelope_code", 200),)),
    Case("status-upper-case", "completed", 1, controls=(("status_style", "upper"),)),
    Case("status-title-case", "completed", 1, controls=(("status_style", "title"),)),
    Case(
        "status-unknown-for-3-gets",
        "completed",
        1,
        controls=(("status_override", "queued_for_gpu"), ("status_override_gets", 3)),
    ),
    Case(
        "status-unknown-always",
        "running",
        1,
        controls=(("status_override", "queued_for_gpu"),),
        wait_seconds=20,
        status="queued_for_gpu",
    ),
    Case("output-image-urls", "completed", 1, controls=(("output_key", "image_urls"),)),
    Case("output-temporary-image-urls", "completed", 1, controls=(("output_key", "temporary_image_urls"),)),
]


def arm(rig: Rig, case: Case) -> None:
    """Install ``case``'s faults and knobs (fresh copies: faults count down as they are served)."""
    rig.simulator.controls.faults.extend(replace(fault) for fault in case.faults)
    rig.transport.faults.extend(replace(fault) for fault in case.connection)
    for name, value in case.controls:
        setattr(rig.simulator.controls, name, value)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_kontext_edit_under_a_fault_answers_in_budget_and_keeps_every_task(
    rig: Rig, case: Case, caplog: pytest.LogCaptureFixture
) -> None:
    """The call ends in a result or a clear error in budget; every created task reaches caller and ledger, once."""
    arm(rig, case)
    start = rig.clock.monotonic()

    result = await rig.call("kontext_edit", {**EDIT, "wait_seconds": case.wait_seconds})

    elapsed = rig.clock.monotonic() - start
    assert elapsed <= case.wait_seconds + RETRY_BOUND
    message = text_of(result)
    data = result.structured_content or {}
    if case.outcome == "error":
        assert_clear_error(result)
    elif case.outcome == "completed":
        assert not result.is_error, message
        assert (data["status"], data["done"]) == ("completed", True), message
        assert len(data["outputs"]) == 1 and data["outputs"][0]["url"].startswith(f"{SIM_BASE_URL}/temp/")
    else:
        assert not result.is_error, message
        assert data["done"] is False and data["task_id"] in data["next"], message
        assert elapsed >= case.wait_seconds - 1, "gave up long before the budget"
        if case.status is not None:
            assert data["status"] == case.status
    for phrase in case.phrases:
        assert phrase in message

    created = list(rig.simulator.tasks)
    assert len(created) == case.creates, "a task was created twice (or not at all)"
    assert rig.creates_sent() <= 1 + sum(
        f.times for f in case.faults if f.route == "create" and f.status == 429
    )
    # Ledger entries for PiAPI tasks (the ledger may also note attempts whose outcome is unknown).
    listed = [task_id for task_id in await rig.listed_ids() if task_id in rig.simulator.tasks]
    if case.answer_lost:
        # PiAPI's answer never told anyone the id; the caller was warned instead, nothing else was made,
        # and list_tasks found the task in PiAPI's task history.
        assert MAY_HAVE_CREATED in message and listed == created
    else:
        if created:
            assert data.get("task_id") == created[0] and len(created) == 1
        else:
            assert not data, "a result for a task that does not exist"
        assert listed == created, "a created task is missing from the ledger"
        assert all(task_id in rig.progress[0] for task_id in created), "the first progress lacked the id"
    rig.assert_key_nowhere(caplog)


async def test_a_429_with_retry_after_on_create_is_waited_out_on_the_clock(rig: Rig) -> None:
    """The create is sent again only after PiAPI's Retry-After, each time."""
    rig.simulator.controls.faults.append(Fault(route="create", status=429, retry_after="3", times=2))
    rig.simulator.controls.queue_seconds = 0
    rig.simulator.controls.duration = 0

    result = await rig.call("kontext_edit", EDIT)

    assert not result.is_error, text_of(result)
    assert rig.creates_sent() == 3 and rig.simulator.created_count == 1
    assert 6 <= rig.clock.monotonic() <= 6 + 2


async def test_each_retry_is_logged_at_info_with_the_status_and_the_wait_never_the_key(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """Retries show in the log (INFO), one line each: method, path, error and status, attempt, wait."""
    rig.simulator.controls.faults.append(Fault(route="create", status=429, retry_after="3", times=2))
    rig.simulator.controls.queue_seconds = 0
    rig.simulator.controls.duration = 0

    result = await rig.call("kontext_edit", EDIT)

    assert not result.is_error, text_of(result)
    retries = [r for r in caplog.records if r.levelno == logging.INFO and "retry" in r.getMessage()]
    assert [r.getMessage() for r in retries] == [
        "PiAPI POST /api/v1/task failed (RateLimitError 429); retry 1 of 3 in 3 s",
        "PiAPI POST /api/v1/task failed (RateLimitError 429); retry 2 of 3 in 3 s",
    ]
    assert all(KEY not in r.getMessage() for r in caplog.records)


async def test_a_create_slower_than_the_timeout_costs_one_timeout_and_is_not_resent(rig: Rig) -> None:
    """A create whose answer is late is reported after one time-out, and PiAPI sees it once."""
    rig.transport.faults.append(ConnectionFault(route="create", kind="timeout"))

    result = await rig.call("kontext_edit", EDIT)

    assert MAY_HAVE_CREATED in assert_clear_error(result)
    assert rig.clock.monotonic() == DEFAULT_HTTP_TIMEOUT
    assert rig.creates_sent() == 1 and rig.transport.served == [("create", "timeout")]


# --- get_task and cancel_task under faults ----------------------------------------------------------


@dataclass(frozen=True)
class LookupCase:
    id: str
    ok: bool
    faults: tuple[Fault, ...] = ()
    connection: tuple[ConnectionFault, ...] = ()
    controls: tuple[tuple[str, Any], ...] = ()
    phrases: tuple[str, ...] = ()
    status: str = "completed"


LOOKUP_CASES = [
    LookupCase("429-retry-after", True, (c_fault("get", 429, retry_after="4", times=2),)),
    LookupCase("429-bare", True, (c_fault("get", 429, times=2),)),
    LookupCase("500-burst", True, (c_fault("get", 500, times=2),)),
    LookupCase("502-page", True, (c_fault("get", 502, body="html"),)),
    LookupCase("not-json", True, (c_fault("get", 200, body="truncated"),)),
    LookupCase("reset", True, connection=(c_conn("get", "reset", times=2),)),
    LookupCase("refused", True, connection=(c_conn("get", "refused", times=2),)),
    LookupCase(
        "unknown-status", True, controls=(("status_override", "queued_for_gpu"),), status="queued_for_gpu"
    ),
    LookupCase("code-0", True, controls=(("envelope_code", 0),)),
    LookupCase("500-always", False, (c_fault("get", 500, times=FOREVER),), phrases=("HTTP 500",)),
    LookupCase("429-always", False, (c_fault("get", 429, times=FOREVER),), phrases=("HTTP 429",)),
    LookupCase(
        "reset-always", False, connection=(c_conn("get", "reset", times=FOREVER),), phrases=("broke",)
    ),
    LookupCase(
        "slower-than-timeout-always",
        False,
        connection=(c_conn("get", "timeout", times=FOREVER),),
        phrases=(f"within {DEFAULT_HTTP_TIMEOUT:g} s",),
    ),
]


@pytest.mark.parametrize("case", LOOKUP_CASES, ids=[case.id for case in LOOKUP_CASES])
async def test_get_task_under_a_fault_answers_within_the_retry_bounds(
    rig: Rig, case: LookupCase, caplog: pytest.LogCaptureFixture
) -> None:
    """get_task retries passing trouble and otherwise gives one clear error; it never creates anything."""
    created = await rig.call("kontext_edit", {**EDIT, "wait_seconds": 0})
    task_id = (created.structured_content or {})["task_id"]
    rig.clock.advance(60)
    rig.simulator.controls.faults.extend(replace(fault) for fault in case.faults)
    rig.transport.faults.extend(replace(fault) for fault in case.connection)
    for name, value in case.controls:
        setattr(rig.simulator.controls, name, value)
    start = rig.clock.monotonic()

    result = await rig.call("get_task", {"task_id": task_id, "wait_seconds": 0})

    assert rig.clock.monotonic() - start <= RETRY_BOUND
    if case.ok:
        assert not result.is_error, text_of(result)
        assert (result.structured_content or {})["status"] == case.status
        assert task_id in text_of(result)
    else:
        message = assert_clear_error(result)
        for phrase in case.phrases:
            assert phrase in message
    assert rig.simulator.created_count == 1 and rig.creates_sent() == 1
    assert await rig.listed_ids() == [task_id]
    rig.assert_key_nowhere(caplog)


async def test_cancel_task_retries_a_refused_connection_and_cancels_once(rig: Rig) -> None:
    """A cancel that never reached PiAPI is sent again, and the task ends cancelled."""
    created = await rig.call("kontext_edit", {**EDIT, "wait_seconds": 0})
    task_id = (created.structured_content or {})["task_id"]
    rig.transport.faults.append(ConnectionFault(route="cancel", kind="refused", times=2))

    result = await rig.call("cancel_task", {"task_id": task_id})

    assert not result.is_error, text_of(result)
    assert (result.structured_content or {})["status"] == "cancelled"
    assert rig.simulator.requests.count(("DELETE", f"/api/v1/task/{task_id}")) == 1


async def test_cancel_task_whose_answer_was_lost_reports_the_task_cancelled(rig: Rig) -> None:
    """PiAPI cancelled the task but the answer was lost: the retried cancel must not call that a failure."""
    created = await rig.call("kontext_edit", {**EDIT, "wait_seconds": 0})
    task_id = (created.structured_content or {})["task_id"]
    rig.transport.faults.append(ConnectionFault(route="cancel", kind="reset"))

    result = await rig.call("cancel_task", {"task_id": task_id})

    assert rig.simulator.tasks[task_id].cancelled_at is not None
    assert not result.is_error, text_of(result)
    assert (result.structured_content or {})["status"] == "cancelled"


# --- duplicates -------------------------------------------------------------------------------------


async def test_a_retried_identical_kontext_edit_within_the_window_creates_no_second_piapi_task(
    rig: Rig,
) -> None:
    """The same edit asked again while its task runs gets that task back, marked reused, and pays once."""
    rig.simulator.controls.duration = 90
    first = await rig.call("kontext_edit", {**EDIT, "wait_seconds": 5})
    task_id = (first.structured_content or {})["task_id"]

    again = await rig.call("kontext_edit", {**EDIT, "wait_seconds": 5})

    data = again.structured_content or {}
    assert not again.is_error, text_of(again)
    assert data["task_id"] == task_id and data["reused"] is True
    assert "force_new" in text_of(again)
    assert rig.simulator.created_count == 1 and rig.creates_sent() == 1
    assert await rig.listed_ids() == [task_id]


async def test_an_identical_kontext_edit_after_the_host_cut_off_the_call_reuses_its_task(rig: Rig) -> None:
    """A host that gave up mid-wait and asks again gets the running task, not a second one."""
    rig.simulator.controls.duration = 90
    with anyio.CancelScope() as scope:

        async def cut_off(progress: float, total: float | None, message: str | None) -> None:
            scope.cancel()

        with anyio.fail_after(REAL_TIMEOUT):
            await rig.client.call_tool("kontext_edit", EDIT, progress_callback=cut_off)
    assert scope.cancelled_caught
    (task_id,) = rig.simulator.tasks

    again = await rig.call("kontext_edit", {**EDIT, "wait_seconds": 120})

    data = again.structured_content or {}
    assert (data["task_id"], data["reused"], data["status"]) == (task_id, True, "completed")
    assert rig.simulator.created_count == 1
    assert await rig.listed_ids() == [task_id]


async def test_identical_kontext_edits_sent_at_once_create_one_piapi_task(rig: Rig) -> None:
    """Three identical calls in flight together share one task."""
    results: list[CallToolResult] = []

    async def edit() -> None:
        results.append(await rig.call("kontext_edit", EDIT))

    async with anyio.create_task_group() as group:
        for _ in range(3):
            group.start_soon(edit)

    (task_id,) = rig.simulator.tasks
    assert [(r.structured_content or {})["task_id"] for r in results] == [task_id] * 3
    assert sorted((r.structured_content or {})["reused"] for r in results) == [False, True, True]
    assert await rig.listed_ids() == [task_id]


async def test_force_new_creates_a_second_piapi_task_for_the_same_edit(rig: Rig) -> None:
    """force_new=true is the explicit way to pay for the same edit twice; both tasks are recorded."""
    first = await rig.call("kontext_edit", EDIT)
    second = await rig.call("kontext_edit", {**EDIT, "force_new": True})

    ids = [(r.structured_content or {})["task_id"] for r in (first, second)]
    assert ids[0] != ids[1] and sorted(ids) == sorted(rig.simulator.tasks)
    assert (second.structured_content or {})["reused"] is False
    assert sorted(await rig.listed_ids()) == sorted(ids)


async def test_an_identical_edit_after_a_refused_create_creates_exactly_one_task(rig: Rig) -> None:
    """When PiAPI refused the first create, asking again is safe: one task in all."""
    rig.simulator.controls.faults.append(Fault(route="create", status=503))
    refused = await rig.call("kontext_edit", EDIT)
    assert "No task was created" in assert_clear_error(refused)

    again = await rig.call("kontext_edit", EDIT)

    data = again.structured_content or {}
    assert not again.is_error and data["reused"] is False
    assert list(rig.simulator.tasks) == [data["task_id"]]
    assert await rig.listed_ids() == [data["task_id"]]


async def test_an_identical_edit_after_a_lost_create_answer_is_not_created_again_without_force_new(
    rig: Rig,
) -> None:
    """After "PiAPI may have created the task", the same edit again must not silently pay a second time."""
    rig.simulator.controls.history_enabled = False  # else the retry finds the task there and reuses it
    rig.transport.faults.append(ConnectionFault(route="create", kind="reset"))
    lost = await rig.call("kontext_edit", EDIT)
    assert MAY_HAVE_CREATED in assert_clear_error(lost)

    again = await rig.call("kontext_edit", EDIT)

    assert rig.simulator.created_count == 1, "the retry created a second PiAPI task"
    assert "force_new" in assert_clear_error(again)


# --- random faults (the load benchmark's knob), through the same transport ---------------------------


async def test_random_faults_at_a_seeded_rate_never_lose_a_reported_task_nor_duplicate_one(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """With 30 % of answers faulty, each created task reaches its caller or its caller was warned."""
    controls = rig.simulator.controls
    controls.fault_rate, controls.fault_seed = 0.3, 1234
    rig.simulator.random.seed(1234)
    controls.queue_seconds, controls.duration = 0, 5
    outcomes: dict[str, CallToolResult] = {}
    for index in range(20):
        prompt = f"edit number {index}"
        outcomes[prompt] = await rig.call("kontext_edit", {**EDIT, "prompt": prompt, "wait_seconds": 60})

    assert sum(rig.simulator.random_faults.values()) > 0
    prompts = [task.input["prompt"] for task in rig.simulator.tasks.values()]
    assert len(prompts) == len(set(prompts)), "an edit was created twice"
    controls.fault_rate = 0
    listed = set(await rig.listed_ids())
    for task in rig.simulator.tasks.values():
        result = outcomes[task.input["prompt"]]
        if task.answer_lost:
            assert MAY_HAVE_CREATED in assert_clear_error(result)
        else:
            assert task.task_id in result.model_dump_json() and task.task_id in listed
    for result in outcomes.values():
        if result.is_error:
            assert_clear_error(result)
    rig.assert_key_nowhere(caplog)
