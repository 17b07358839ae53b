"""The ledger keeps every create, even one cut off mid-flight, and one process per edit pays for it.

- A create is recorded (an intent row) before it is sent: a server killed with SIGKILL while the
  create is in flight leaves a "may have been created" entry that list_tasks shows, that makes an
  identical request ask for force_new, and that PiAPI's task history turns back into the real task.
- A create answered 200 without a task id is the same state (PiAPI may have made and charged it).
- Two servers sharing one ledger file and racing the same edit create it once.
- A task PiAPI no longer knows (404) is ``unknown``, never ``pending`` forever, and never reused.
- A bad ledger file or state folder never stops a server from starting.
"""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError

from piapi_mcp import ManualClock, PiAPISimulator, SimulatorControls
from piapi_mcp.ledger import TaskLedger, request_fingerprint
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.server import UNKNOWN_TASK_PREFIX
from piapi_mcp.simulator import SimulatedTask
from tests.conftest import API_KEY, SIM_BASE_URL, make_server
from tests.postgres import LedgerFactory
from tests.test_kontext_edit import EDIT, text_of
from tests.test_restart import spawn_stdio_server

pytestmark = pytest.mark.anyio

#: Real seconds a scenario with server subprocesses may take (their start-ups dominate it).
SCENARIO_TIMEOUT = 45.0
MAY_HAVE = "may have created"


class CreateHold:
    """A simulator create gate: the first create is made, then its answer waits until released."""

    def __init__(self) -> None:
        self.arrived = anyio.Event()
        self.release = anyio.Event()
        self.held = 0

    async def __call__(self, task: SimulatedTask) -> None:
        self.held += 1
        if self.held == 1:
            self.arrived.set()
            await self.release.wait()


def server_env(tmp_path: Path, state_dir: Path, sim_url: str) -> dict[str, str]:
    return {
        "PIAPI_API_KEY": API_KEY,
        "PIAPI_BASE_URL": sim_url,
        "PIAPI_STATE_DIR": str(state_dir),
        "PIAPI_OUTPUT_DIR": str(tmp_path / "outputs"),
        "HOME": str(tmp_path / "home"),
        "PATH": os.environ.get("PATH", ""),
    }


# --- #7: a create killed in flight ------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_a_create_killed_in_flight_is_listed_refused_without_force_new_and_found_in_history(
    tmp_path: Path, state_dir: Path, ledger_backend: LedgerFactory
) -> None:
    """kill -9 while the POST is unanswered; the restarted server knows the create may exist, then finds it."""
    # The servers run on the real clock: PiAPI's history must hold the task near that time.
    clock = ManualClock(start=datetime.now(UTC))
    hold = CreateHold()
    simulator = PiAPISimulator(
        clock, SimulatorControls(api_keys=frozenset({API_KEY}), create_gate=hold, history_enabled=False)
    )
    async with serve_app_on_loopback(simulator.app) as sim_url:
        env = server_env(tmp_path, state_dir, sim_url)
        if ledger_backend.url is not None:
            env["PIAPI_LEDGER_URL"] = ledger_backend.url
        with anyio.fail_after(SCENARIO_TIMEOUT):
            with (tmp_path / "server-1.log").open("wb") as errlog:
                async with spawn_stdio_server(env, errlog) as first, Client(first.transport) as client:
                    failed: list[BaseException] = []

                    async def edit() -> None:
                        try:
                            await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
                        except MCPError as err:
                            failed.append(err)

                    async with anyio.create_task_group() as group:
                        group.start_soon(edit)
                        await hold.arrived.wait()  # PiAPI has made the task; its answer is held
                        os.kill(first.process.pid, signal.SIGKILL)
                        assert await first.process.wait() == -signal.SIGKILL
                    hold.release.set()
                    assert failed, "the call in flight did not fail with its server"
            (task_id,) = simulator.tasks

            with (tmp_path / "server-2.log").open("wb") as errlog:
                async with spawn_stdio_server(env, errlog) as second, Client(second.transport) as client:
                    # 1. Without PiAPI's history: listed as may-have-been-created; the same edit is refused.
                    listing = await client.call_tool("list_tasks", {})
                    (entry,) = (listing.structured_content or {})["tasks"]
                    assert entry["task_id"].startswith(UNKNOWN_TASK_PREFIX) and entry["status"] == "unknown"
                    assert MAY_HAVE in entry["note"] and MAY_HAVE in text_of(listing)
                    assert entry["input"]["prompt"] == EDIT["prompt"]

                    again = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
                    assert again.is_error and "force_new" in text_of(again), text_of(again)
                    assert "\n" not in text_of(again)
                    assert simulator.created_count == 1

                    # 2. With PiAPI's history: the task is found by its time and input, and reused.
                    simulator.controls.history_enabled = True
                    listing = await client.call_tool("list_tasks", {})
                    (entry,) = (listing.structured_content or {})["tasks"]
                    assert entry["task_id"] == task_id and entry["status"] == "pending"

                    reused = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
                    data = reused.structured_content or {}
                    assert not reused.is_error, text_of(reused)
                    assert (data["task_id"], data["reused"]) == (task_id, True)

    assert simulator.created_count == 1
    assert simulator.requests.count(("POST", "/api/v1/task")) == 1


async def test_a_create_answered_without_a_task_id_may_exist_and_is_not_paid_again(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    state_dir: Path,
    ledger_backend: LedgerFactory,
) -> None:
    """A 200 with no task id is "may have been created": listed, refused without force_new, then recovered."""
    answers = 0

    def drop_first_id(data: dict[str, Any]) -> dict[str, Any]:
        nonlocal answers
        answers += 1
        return {**data, "task_id": ""} if answers == 1 else data

    simulator.controls.tamper = drop_first_id
    simulator.controls.history_enabled = False
    ledger = ledger_backend.make(clock, state_dir / "tasks.sqlite3")
    async with Client(make_server(simulator, clock, http, ledger=ledger)) as client:
        first = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
        assert first.is_error and MAY_HAVE in text_of(first), text_of(first)
        assert "No task was created" not in text_of(first)

        listed = (await client.call_tool("list_tasks", {})).structured_content or {}
        assert [(t["status"], t["task_id"][:8]) for t in listed["tasks"]] == [
            ("unknown", UNKNOWN_TASK_PREFIX)
        ]
        again = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
        assert again.is_error and "force_new" in text_of(again)
        assert simulator.created_count == 1

        simulator.controls.history_enabled = True
        found = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    (task_id,) = simulator.tasks
    assert not found.is_error, text_of(found)
    assert (found.structured_content or {})["task_id"] == task_id
    assert simulator.created_count == 1


async def test_the_task_history_is_read_from_any_of_its_documented_shapes(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """PiAPIClient.task_history reads data.list, data.tasks or a bare list, skipping what is not a task."""
    from piapi_mcp import PiAPIClient

    client = PiAPIClient(http, api_key=API_KEY, base_url=SIM_BASE_URL, clock=clock)
    made = await client.create_task("Qubico/flux1-dev-advanced", "kontext", {"prompt": "p", "image": "u"})
    moment = clock.now().timestamp()

    listed = await client.task_history(start_time=moment - 5, end_time=moment + 5, model="flux")
    assert [task.task_id for task in listed] == [made.task_id]
    assert listed[0].input is not None and listed[0].input["prompt"] == "p"
    assert await client.task_history(start_time=moment + 60, end_time=moment + 120) == []

    for shape in ("tasks", "bare"):
        routes: dict[str, Any] = {}

        def answer(
            request: httpx2.Request, shape: str = shape, routes: dict[str, Any] = routes
        ) -> httpx2.Response:
            routes["query"] = dict(request.url.params)
            items = [{"task_id": made.task_id, "status": "pending"}, "junk", {"no": "id"}]
            data: Any = {"tasks": items} if shape == "tasks" else items
            return httpx2.Response(200, json={"code": 200, "data": data, "message": "success"})

        async with httpx2.AsyncClient(transport=httpx2.MockTransport(answer)) as other:
            odd = PiAPIClient(other, api_key=API_KEY, base_url=SIM_BASE_URL, clock=clock)
            found = await odd.task_history(start_time=10, end_time=20, page_size=500)
        assert [task.task_id for task in found] == [made.task_id]
        assert routes["query"]["page_size"] == "100" and routes["query"]["start_time"] == "10"


# --- #8: two processes, one ledger, the same edit at the same instant --------------------------------


async def test_two_servers_sharing_a_ledger_racing_the_same_edit_create_it_once(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    state_dir: Path,
    ledger_backend: LedgerFactory,
) -> None:
    """The second server meets the first one's claim, waits for its task id, and follows that task."""
    hold = CreateHold()
    simulator.controls.create_gate = hold
    path = state_dir / "tasks.sqlite3"
    servers = [make_server(simulator, clock, http, ledger=ledger_backend.make(clock, path)) for _ in range(2)]
    results: dict[int, Any] = {}
    async with Client(servers[0]) as first, Client(servers[1]) as second:

        async def edit(index: int, client: Client) -> None:
            results[index] = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(edit, 0, first)
                await hold.arrived.wait()
                start = clock.monotonic()
                group.start_soon(edit, 1, second)
                # The second server polls the claim on the clock (or, unclaimed, sends its own create).
                while clock.monotonic() < start + 1 and simulator.created_count < 2:
                    await anyio.lowlevel.checkpoint()
                hold.release.set()

    ids = [(results[n].structured_content or {}).get("task_id") for n in (0, 1)]
    assert simulator.created_count == 1, "both servers created the edit"
    assert not results[1].is_error, text_of(results[1])
    assert ids[0] == ids[1] == next(iter(simulator.tasks))
    assert (results[1].structured_content or {})["reused"] is True


def test_claims_of_one_edit_from_many_threads_at_once_grant_exactly_one(state_dir: Path) -> None:
    """Eight ledgers over one file, claiming together: one claim, seven see it in flight."""
    path = state_dir / "tasks.sqlite3"
    TaskLedger(path)
    barrier = threading.Barrier(8)
    outcomes: list[Any] = []
    lock = threading.Lock()
    fingerprint = request_fingerprint("m", "t", {"prompt": "same"})

    def race() -> None:
        ledger = TaskLedger(path)
        barrier.wait()
        # Each thread is its own event loop, as each server process would be.
        outcome = anyio.run(
            partial(
                ledger.claim,
                fingerprint,
                tool="kontext_edit",
                model="m",
                task_type="t",
                task_input={},
                within_seconds=120,
            )
        )
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(outcomes) == 8
    assert sum(outcome.claim is not None for outcome in outcomes) == 1
    assert all(outcome.in_flight for outcome in outcomes if outcome.claim is None)


# --- a task PiAPI no longer knows ---------------------------------------------------------------------


@pytest.mark.usefixtures("ledger_backend")
async def test_a_task_piapi_no_longer_knows_is_unknown_and_not_reused(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """A 404 for a ledger task marks it unknown (not pending forever); the same edit creates a new task."""
    async with Client(make_server(simulator, clock, http)) as client:
        made = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
        task_id = (made.structured_content or {})["task_id"]
        del simulator.tasks[task_id]  # as a simulator restarted, or a task PiAPI pruned

        gone = await client.call_tool("get_task", {"task_id": task_id})
        listed = (await client.call_tool("list_tasks", {})).structured_content or {}
        again = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    assert gone.is_error and "no such task" in text_of(gone) and "unknown" in text_of(gone)
    assert [(t["task_id"], t["status"]) for t in listed["tasks"]] == [(task_id, "unknown")]
    assert "404" in listed["tasks"][0]["note"]
    assert not again.is_error, text_of(again)
    assert (again.structured_content or {})["reused"] is False
    assert (again.structured_content or {})["task_id"] in simulator.tasks


# --- #10: a bad ledger or state folder ---------------------------------------------------------------


def _garbage(state: Path) -> None:
    state.mkdir(parents=True)
    (state / "tasks.sqlite3").write_bytes(b"this is not a database\x00" * 300)
    (state / "durations.json").write_text("[" * 100_000)


def _truncated(state: Path) -> None:
    ledger = TaskLedger(state / "tasks.sqlite3")
    with sqlite3.connect(state / "tasks.sqlite3") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    del ledger
    for n in range(200):
        with sqlite3.connect(state / "tasks.sqlite3") as db:
            db.execute(
                "INSERT INTO tasks (task_id, tool, input_json, input_hash, created_at, updated_at, status)"
                " VALUES (?, 'kontext_edit', ?, 'h', 0, 0, 'completed')",
                (f"t{n}", '{"prompt": "' + "x" * 500 + '"}'),
            )
    with sqlite3.connect(state / "tasks.sqlite3") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = (state / "tasks.sqlite3").read_bytes()
    (state / "tasks.sqlite3").write_bytes(data[: len(data) // 3])
    (state / "durations.json").mkdir()


def _file_for_folder(state: Path) -> None:
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text("a file where the state folder should be")


BAD_STATES = {"garbage-file": _garbage, "truncated-file": _truncated, "file-for-folder": _file_for_folder}


@pytest.mark.parametrize("case", [*BAD_STATES, "full-disk"])
async def test_a_server_over_a_bad_ledger_or_state_folder_starts_serves_and_says_so(
    tmp_path: Path, state_dir: Path, case: str
) -> None:
    """Garbage, truncated, a file for a folder, a full disk: the stdio server starts, edits, and lists why."""
    simulator = PiAPISimulator(ManualClock(), SimulatorControls(api_keys=frozenset({API_KEY}), duration=0))
    command = [sys.executable, "-m", "piapi_mcp", "--log-level", "INFO"]
    if case == "full-disk":
        # Files may not grow past 2 KB, as on a full disk (SQLite needs more; Python ignores SIGXFSZ).
        # The log is a file too: only warnings, to stay under the limit.
        limit = (
            f"import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (2048, {resource.RLIM_INFINITY}))"
        )
        command = [sys.executable, "-c", f"{limit}; from piapi_mcp.cli import main; main()"]
        command += ["--log-level", "WARNING"]
    else:
        BAD_STATES[case](state_dir)
    log = tmp_path / "server.log"
    async with serve_app_on_loopback(simulator.app) as sim_url:
        env = server_env(tmp_path, state_dir, sim_url) | {"PIAPI_SAVE_OUTPUTS": "0"}
        params = StdioServerParameters(command=command[0], args=command[1:], env=env)
        with anyio.fail_after(SCENARIO_TIMEOUT), log.open("w") as errlog:
            async with Client(stdio_client(params, errlog=errlog)) as client:
                made = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
                listing = await client.call_tool("list_tasks", {})

    assert not made.is_error, text_of(made)
    data = listing.structured_content or {}
    assert [t["task_id"] for t in data["tasks"]] == [(made.structured_content or {})["task_id"]]
    notice = data["ledger_notice"]
    assert notice and notice in text_of(listing)
    said = log.read_text()
    if case in ("garbage-file", "truncated-file"):
        assert "moved aside" in notice and data["ledger"] == str(state_dir / "tasks.sqlite3")
        (moved,) = state_dir.glob("tasks.sqlite3.corrupt-*")
        assert moved.stat().st_size > 0
    else:
        assert "in memory" in notice and data["ledger"] is None
    assert said.count(notice) == 1, said
    assert "Traceback" not in said, said


async def test_a_lost_create_is_found_in_piapis_history_beyond_its_first_page(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    state_dir: Path,
) -> None:
    """A busy account: 150 later tasks fill the first page of the window; the lost create is still found."""
    answers = 0

    def drop_first_id(data: dict[str, Any]) -> dict[str, Any]:
        nonlocal answers
        answers += 1
        return {**data, "task_id": ""} if answers == 1 else data

    simulator.controls.tamper = drop_first_id
    simulator.controls.history_enabled = False
    simulator.controls.duration = 0
    async with Client(make_server(simulator, clock, http)) as client:
        first = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
        assert first.is_error and MAY_HAVE in text_of(first), text_of(first)
        (lost,) = simulator.tasks
        for n in range(150):
            await clock.sleep(0.5)
            made = await client.call_tool(
                "run_task",
                {
                    "model": "Qubico/flux1-schnell",
                    "task_type": "txt2img",
                    "input": {"prompt": f"busy {n}"},
                    "wait_seconds": 0,
                },
            )
            assert not made.is_error, text_of(made)

        simulator.controls.history_enabled = True
        found = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

    assert not found.is_error, text_of(found)
    assert (found.structured_content or {})["task_id"] == lost
    assert simulator.created_count == 151
