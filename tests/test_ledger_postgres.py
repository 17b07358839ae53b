"""The PostgreSQL ledger as replicas share it: one create per request, no id lost to an outage, no password shown.

Several servers in one test each have their own ledger object and connection pool on the test's
database, as replicas behind a load balancer would. The cluster is the session's (``postgres_server``);
the outage test stops and restarts it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psycopg
import pytest
from mcp import Client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.ledger import LedgerSchemaTooNew, LedgerUnavailable, request_fingerprint
from piapi_mcp.ledger_pg import FALLBACK_FILE_NAME, SCHEMA_VERSION, PostgresLedger, redact_url
from piapi_mcp.simulator import SimulatedTask
from tests.conftest import make_server
from tests.helpers import EDIT, text_of
from tests.postgres import PASSWORD, PostgresServer

pytestmark = pytest.mark.anyio

#: Edits that differ only in their prompt (each a different request).
OTHER_EDIT = {**EDIT, "prompt": "make it a watercolour"}


@pytest.fixture
async def database(postgres_server: PostgresServer) -> str:
    """A fresh database's URL (with the password that must never show)."""
    return postgres_server.new_database()


def replica(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    url: str,
    state_dir: Path,
    ledgers: list[PostgresLedger],
    **settings: Any,
) -> Any:
    """One server on its own pool over ``url``, as one replica of a deployment."""
    ledger = PostgresLedger(url, clock, state_dir=state_dir, acquire_timeout=1.0, connect_timeout=2.0)
    ledgers.append(ledger)
    return make_server(simulator, clock, http, ledger=ledger, **settings)


async def close_all(ledgers: list[PostgresLedger]) -> None:
    for ledger in ledgers:
        await ledger.aclose()


async def test_claims_of_one_request_from_eight_replicas_at_once_grant_exactly_one(
    database: str, state_dir: Path
) -> None:
    """Eight ledgers on eight pools claim the same request together: one claim, seven see it in flight."""
    ledgers = [PostgresLedger(database, state_dir=state_dir) for _ in range(8)]
    fingerprint = request_fingerprint("m", "t", {"prompt": "same"})
    outcomes: list[Any] = []
    try:
        for ledger in ledgers:
            await ledger.start()

        async def claim(ledger: PostgresLedger) -> None:
            outcomes.append(
                await ledger.claim(
                    fingerprint,
                    tool="kontext_edit",
                    model="m",
                    task_type="t",
                    task_input={},
                    within_seconds=120,
                )
            )

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for ledger in ledgers:
                    group.start_soon(claim, ledger)
    finally:
        await close_all(ledgers)

    assert len(outcomes) == 8
    assert sum(outcome.claim is not None for outcome in outcomes) == 1
    assert all(outcome.in_flight for outcome in outcomes if outcome.claim is None)


async def test_budgeted_claims_of_eight_different_requests_at_once_grant_only_what_the_budget_allows(
    database: str, state_dir: Path
) -> None:
    """US$0.05 a day, eight replicas each claiming a different US$0.02 create together: exactly two are granted."""
    ledgers = [PostgresLedger(database, state_dir=state_dir) for _ in range(8)]
    outcomes: list[Any] = []
    try:
        for ledger in ledgers:
            await ledger.start()

        async def claim(index: int, ledger: PostgresLedger) -> None:
            outcomes.append(
                await ledger.claim(
                    request_fingerprint("m", "t", {"prompt": str(index)}),
                    tool="kontext_edit",
                    model="m",
                    task_type="t",
                    task_input={},
                    within_seconds=120,
                    estimated_usd=0.02,
                    budget_usd=0.05,
                )
            )

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for index, ledger in enumerate(ledgers):
                    group.start_soon(claim, index, ledger)
        spent = await ledgers[0].spent_usd()
    finally:
        await close_all(ledgers)

    assert sum(outcome.claim is not None for outcome in outcomes) == 2
    assert sorted(outcome.over_budget_spent for outcome in outcomes if outcome.claim is None) == [0.04] * 6
    assert spent == 0.04


async def test_three_replicas_sent_the_same_edit_at_once_create_it_once_and_all_answer_its_id(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, database: str, state_dir: Path
) -> None:
    """The same retried call reaching three replicas together pays once; every caller gets that task."""
    ledgers: list[PostgresLedger] = []
    servers = [replica(simulator, clock, http, database, state_dir, ledgers) for _ in range(3)]
    results: dict[int, Any] = {}
    try:
        async with Client(servers[0]) as a, Client(servers[1]) as b, Client(servers[2]) as c:

            async def edit(index: int, client: Client) -> None:
                results[index] = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    for index, client in enumerate((a, b, c)):
                        group.start_soon(edit, index, client)
    finally:
        await close_all(ledgers)

    assert simulator.created_count == 1, "more than one replica paid for the edit"
    ids = {(results[n].structured_content or {}).get("task_id") for n in range(3)}
    assert ids == set(simulator.tasks), [text_of(result) for result in results.values()]


async def test_two_replicas_with_one_budget_never_both_slip_under_it(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, database: str, state_dir: Path
) -> None:
    """US$0.03 a day, two different US$0.02 edits on two replicas at once: one is sent, one refused."""
    ledgers: list[PostgresLedger] = []
    servers = [
        replica(simulator, clock, http, database, state_dir, ledgers, daily_budget_usd=0.03) for _ in range(2)
    ]
    results: list[Any] = []
    try:
        async with Client(servers[0]) as a, Client(servers[1]) as b:

            async def edit(client: Client, arguments: dict[str, Any]) -> None:
                results.append(await client.call_tool("kontext_edit", {**arguments, "wait_seconds": 0}))

            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    group.start_soon(edit, a, EDIT)
                    group.start_soon(edit, b, OTHER_EDIT)
    finally:
        await close_all(ledgers)

    refused = [result for result in results if result.is_error]
    assert simulator.created_count == 1
    assert len(refused) == 1 and "daily budget" in text_of(refused[0]), [text_of(r) for r in results]


async def test_a_database_outage_mid_create_loses_no_task_id_and_it_is_written_when_the_database_is_back(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    database: str,
    state_dir: Path,
    postgres_server: PostgresServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database stops while PiAPI makes the task: the caller gets the id (and why it is kept locally),
    and a call after the database is back finds it in the ledger, under its real id."""
    caplog.set_level(logging.DEBUG)

    async def stop_database(task: SimulatedTask) -> None:
        # PiAPI has made the task; its answer is sent once the database is down.
        await anyio.to_thread.run_sync(postgres_server.stop, "immediate")

    ledgers: list[PostgresLedger] = []
    server = replica(simulator, clock, http, database, state_dir, ledgers)
    fallback = state_dir / FALLBACK_FILE_NAME
    try:
        async with Client(server) as client:
            await client.call_tool("list_tasks", {})  # connected, schema made
            simulator.controls.create_gate = stop_database
            try:
                with anyio.fail_after(30):
                    made = await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
            finally:
                simulator.controls.create_gate = None
                await anyio.to_thread.run_sync(postgres_server.start)
            (task_id,) = simulator.tasks
            assert not made.is_error, text_of(made)
            assert (made.structured_content or {})["task_id"] == task_id
            assert "could not be reached" in text_of(made) and FALLBACK_FILE_NAME in text_of(made)
            assert task_id in fallback.read_text()

            # The pool reconnects with psycopg_pool's back-off: calls until then say the ledger is out.
            with anyio.fail_after(60):
                while (listing := await client.call_tool("list_tasks", {})).is_error:
                    assert "could not be read" in text_of(listing), text_of(listing)
            listed = listing.structured_content or {}
    finally:
        await close_all(ledgers)

    assert [entry["task_id"] for entry in listed["tasks"]] == [task_id]
    assert listed["tasks"][0]["input"]["prompt"] == EDIT["prompt"]
    assert fallback.read_text() == "", "the fallback file was not emptied once replayed"
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT task_id FROM tasks").fetchall()
    assert rows == [(task_id,)]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "could not be used" in logged and PASSWORD not in logged


async def test_a_database_set_up_by_a_newer_version_is_refused_in_one_sentence_untouched(
    database: str, state_dir: Path
) -> None:
    """schema_version above ours: start() refuses, saying what to do; nothing in the database changes."""
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
    ledger = PostgresLedger(database, state_dir=state_dir)
    with pytest.raises(LedgerSchemaTooNew) as refused:
        await ledger.start()
    await ledger.aclose()

    message = str(refused.value)
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this piapi-mcp's {SCHEMA_VERSION}" in message
    assert "upgrade piapi-mcp" in message and message.count(". ") == 0 and message.endswith(".")
    assert PASSWORD not in message and "postgres:***@" in message
    with psycopg.connect(database) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    assert tables == [("schema_version",)], "the refused database was changed"


async def test_the_database_password_is_in_no_error_and_no_log_line(
    state_dir: Path, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that does not answer: the sentence names it with the password hidden; no log holds it."""
    caplog.set_level(logging.DEBUG)
    nowhere = postgres_server.url("nothing").replace(f":{postgres_server.port}/", f":{_closed_port()}/")
    ledger = PostgresLedger(nowhere, state_dir=state_dir, connect_timeout=2.0)
    with pytest.raises(LedgerUnavailable) as failed:
        await ledger.start()
    await ledger.aclose()

    message = str(failed.value)
    assert redact_url(nowhere) in message and "postgres:***@127.0.0.1" in message
    assert PASSWORD not in message and PASSWORD not in repr(failed.value)
    everything = "\n".join(
        record.getMessage()
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )
    assert PASSWORD not in everything


def test_the_server_refuses_a_newer_database_at_start_with_the_password_hidden(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """``piapi-mcp`` with PIAPI_LEDGER_URL on a newer schema exits 2 with one line, the password hidden."""
    url = postgres_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (99)")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PIAPI_STATE_DIR": str(tmp_path / "state"),
        "PIAPI_API_KEY": "k",
        "PIAPI_LEDGER_URL": url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "piapi_mcp", "--log-level", "DEBUG"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "schema version 99, newer than this piapi-mcp's" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_a_task_created_on_one_replica_is_listed_on_another_which_names_the_database_not_its_password(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, database: str, state_dir: Path
) -> None:
    """Replica B's ``list_tasks`` shows what A created, and says where the ledger is, password hidden."""
    ledgers: list[PostgresLedger] = []
    servers = [replica(simulator, clock, http, database, state_dir, ledgers) for _ in range(2)]
    try:
        async with Client(servers[0]) as a, Client(servers[1]) as b:
            created = await a.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0})
            listed = await b.call_tool("list_tasks", {})
    finally:
        await close_all(ledgers)

    task_id = (created.structured_content or {})["task_id"]
    listing = listed.structured_content or {}
    assert [entry["task_id"] for entry in listing["tasks"]] == [task_id]
    assert listing["ledger"] == redact_url(database) and PASSWORD not in str(listing)
