"""Task events across replicas through PostgreSQL ``LISTEN/NOTIFY``: a webhook taken by one replica
wakes the call waiting on another, through a dropped listen connection, and nothing else gets through.

Replicas are servers in this process, each with its own ledger pool and its own
:class:`PostgresTaskEvents` on the test's database, as replicas behind a load balancer would be.
The simulator delivers its webhooks into replica A's hosted app on the shared ManualClock.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.cli import build_parser, serve
from piapi_mcp.config import Config
from piapi_mcp.durations_pg import TABLE
from piapi_mcp.events import LocalTaskEvents, TaskEvents
from piapi_mcp.events_pg import APPLICATION_NAME, CHANNEL, PostgresTaskEvents
from piapi_mcp.hosting import WebhookReceiver, build_http_app
from piapi_mcp.ledger_pg import PostgresLedger
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.simulator import httpx_poster
from piapi_mcp.tasks import WebhookTarget
from piapi_mcp.timing import SystemClock
from tests.conftest import API_KEY, make_server
from tests.postgres import PASSWORD, PostgresServer
from tests.test_webhooks import EDIT, ENDPOINT, PUBLIC, SECRET, _result, _timed_edit

pytestmark = pytest.mark.anyio

TASK = "0f8fad5b-d9cb-469f-a165-70867728950e"
OTHER = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


@pytest.fixture
async def database(postgres_server: PostgresServer) -> str:
    """A fresh database's URL (with the password that must never show)."""
    return postgres_server.new_database()


async def until(events: PostgresTaskEvents, condition: Callable[[], bool]) -> None:
    """Wait (at most 10 s of real time, for the database's round trip) until ``condition`` holds."""
    with anyio.fail_after(10):
        while not condition():
            await events.changed()


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every log record's message and traceback."""
    return "\n".join(
        record.getMessage()
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
    )


@dataclass
class Cluster:
    """Two replicas on one database: A's hosted app takes the webhooks, calls are made on B."""

    b: Client
    events_a: TaskEvents
    events_b: TaskEvents
    receiver_a: WebhookReceiver


@asynccontextmanager
async def two_replicas(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    database: str,
    state_dir: Path,
    events: Literal["postgres", "local", "none"],
) -> AsyncIterator[Cluster]:
    """Replicas A and B with webhooks on (``events``: shared through PostgreSQL, or per process), or
    with webhooks off (``"none"``: polling alone)."""
    target = None if events == "none" else WebhookTarget(ENDPOINT, SECRET)
    async with AsyncExitStack() as stack:
        ledgers = [PostgresLedger(database, clock, state_dir=state_dir / name) for name in "ab"]
        for ledger in ledgers:
            stack.push_async_callback(ledger.aclose)
        replica_events: list[TaskEvents] = []
        for _ in "ab":
            if events == "postgres":
                shared = PostgresTaskEvents(database, clock)
                replica_events.append(await stack.enter_async_context(shared.running()))
            else:
                replica_events.append(LocalTaskEvents())
        servers = [
            make_server(simulator, clock, http, ledger=ledger, events=each, webhook=target)
            for ledger, each in zip(ledgers, replica_events, strict=True)
        ]
        receiver = WebhookReceiver(SECRET, ledgers[0], replica_events[0])
        app_a = build_http_app(servers[0], "streamable-http", webhooks=receiver)
        hooks = await stack.enter_async_context(
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app_a), base_url=PUBLIC)
        )
        post_to_a = httpx_poster(hooks)
        events_b = replica_events[1]

        async def deliver(endpoint: str, headers: dict[str, str], body: bytes) -> int:
            # The delivery happens at one moment on the clock (the simulator holds it): with events
            # shared, that moment lasts until B has heard A's NOTIFY, a real round trip through the database.
            heard = events_b.received if isinstance(events_b, PostgresTaskEvents) else 0
            answer = await post_to_a(endpoint, headers, body)
            if isinstance(events_b, PostgresTaskEvents):
                await until(events_b, lambda: events_b.received > heard)
            return answer

        await stack.enter_async_context(simulator.sending_webhooks(deliver))
        client_b = await stack.enter_async_context(Client(servers[1], raise_exceptions=True))
        yield Cluster(client_b, replica_events[0], events_b, receiver)


async def test_a_webhook_taken_by_replica_a_ends_the_call_waiting_on_replica_b_at_once(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    postgres_server: PostgresServer,
    state_dir: Path,
) -> None:
    """B learns the end when A takes the webhook, not at its next poll, and polls less than polling alone."""
    simulator.controls.duration = 29.5
    measured: dict[str, tuple[float, int]] = {}
    for kind in ("none", "local", "postgres"):
        # A database each: the same edit again on the same ledger would be answered by the duplicate guard.
        database = postgres_server.new_database()
        async with two_replicas(simulator, clock, http, database, state_dir / kind, kind) as cluster:
            task_id, lag, polls = await _timed_edit(cluster.b, clock, simulator)
            measured[kind] = (lag, polls)
            if kind != "none":
                assert cluster.receiver_a.taken == 1
                assert simulator.webhooks[-1].task_id == task_id and simulator.webhooks[-1].answer == 200
            if isinstance(cluster.events_b, PostgresTaskEvents):
                assert cluster.events_b.received == 1

    (alone_lag, alone_polls), (local_lag, local_polls), (shared_lag, shared_polls) = measured.values()
    assert shared_lag == pytest.approx(0.0, abs=1e-6), measured
    assert local_lag > 0.4 and alone_lag > 0.4, measured  # the webhook reached A; B found out by polling
    assert shared_polls < alone_polls and shared_polls <= local_polls, measured


async def test_the_replica_that_takes_the_webhook_wakes_its_own_waiter_at_once_and_only_once(
    database: str, clock: ManualClock
) -> None:
    """No round trip before the local wake, and its own NOTIFY coming back is not a second wake."""
    a, b = PostgresTaskEvents(database, clock), PostgresTaskEvents(database, clock)
    async with a.running(), b.running(), b.subscribe(TASK) as waiter:
        await b.notify(TASK)
        assert await waiter.wait(clock, 0), "the local waiter was not woken at once"
        await a.notify(OTHER)  # committed after B's: once B hears it, B has heard its own echo too
        await until(b, lambda: b.received == 1)
        await until(a, lambda: a.received == 1)
        assert not await waiter.wait(clock, 0), "the NOTIFY's echo woke the waiter a second time"
        assert b.ignored == 0


async def test_a_killed_listen_connection_is_reopened_its_waiters_poll_once_and_a_later_notify_still_wakes(
    database: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_terminate_backend on the LISTEN connections: they come back (back-off on the clock); ids
    announced meanwhile may be lost, so each waiter is woken once; then NOTIFY wakes again."""
    caplog.set_level(logging.DEBUG)
    a, b = PostgresTaskEvents(database, clock), PostgresTaskEvents(database, clock)
    async with a.running(), b.running(), b.subscribe(TASK) as waiter:
        await a.notify(TASK)
        await until(b, lambda: b.received == 1)
        assert await waiter.wait(clock, 0)

        with psycopg.connect(database, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = current_database()",
                (APPLICATION_NAME,),
            ).fetchall()
        assert killed == [(True,), (True,)]
        await until(b, lambda: b.listens == 2)
        await until(a, lambda: a.listens == 2)
        assert b.failures >= 1
        assert await waiter.wait(clock, 0), "the waiter was not woken after the reconnect"
        assert not await waiter.wait(clock, 0)

        await a.notify(TASK)
        await until(b, lambda: b.received == 2)
        assert await waiter.wait(clock, 0), "a NOTIFY after the reconnect did not wake the waiter"
    text = logged(caplog)
    assert "listen connection" in text and "listening again" in text
    assert PASSWORD not in text


async def test_a_channel_payload_that_is_not_a_task_id_is_ignored_and_not_logged(
    database: str, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone with database access can NOTIFY: only payloads in PiAPI's task-id form reach a waiter."""
    caplog.set_level(logging.DEBUG)
    hostile = ["../../etc/passwd", "", "x" * 200, f"{TASK}\n", "<script>", f"{TASK} {OTHER}"]
    b = PostgresTaskEvents(database, clock)
    async with b.running(), b.subscribe(TASK) as waiter:
        with psycopg.connect(database, autocommit=True) as other:
            for payload in hostile:
                other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
            other.execute("SELECT pg_notify(%s, %s)", (CHANNEL, OTHER))
        await until(b, lambda: b.received == 1)
        assert b.ignored == len(hostile)
        assert not await waiter.wait(clock, 0)
        await b.notify("../../etc/passwd")  # the route never gives one; refused all the same
        assert b.notified == 0
    text = logged(caplog)
    assert "../../etc/passwd" not in text and "<script>" not in text


async def test_the_database_password_is_in_no_log_line_when_events_cannot_reach_the_database(
    postgres_server: PostgresServer, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A listen attempt and a NOTIFY fail against a closed port: every warning names the URL, password hidden."""
    caplog.set_level(logging.DEBUG)
    nowhere = postgres_server.url("nothing").replace(f":{postgres_server.port}/", f":{_closed_port()}/")
    # The real clock: on a manual one the back-off between refused attempts would take no time at all.
    events = PostgresTaskEvents(nowhere, SystemClock(), connect_timeout=0, notify_timeout=0.2)
    async with events.running():
        await until(events, lambda: events.failures >= 1)
        async with events.subscribe(TASK) as waiter:
            await events.notify(TASK)
            assert await waiter.wait(clock, 0), "the local waiter depends on the database"
    text = logged(caplog)
    assert "not sent to the other replicas" in text and "postgres:***@127.0.0.1" in text
    assert PASSWORD not in text and PASSWORD not in repr(events)


async def test_a_hosted_server_with_a_ledger_url_listens_for_task_events_with_webhooks_and_shares_durations(
    simulator: PiAPISimulator, state_dir: Path, database: str
) -> None:
    """``piapi-mcp --transport streamable-http`` with PIAPI_LEDGER_URL and PIAPI_PUBLIC_URL keeps a
    LISTEN connection while it serves; without PIAPI_PUBLIC_URL (no webhooks) it keeps none. Either
    way its learned durations go to the database's table."""
    listening: dict[bool, int] = {}
    durations: dict[bool, str | None] = {}
    for public in (False, True):
        async with serve_app_on_loopback(simulator.app) as sim_url:
            env = {
                "PIAPI_API_KEY": API_KEY,
                "PIAPI_BASE_URL": sim_url,
                "PIAPI_STATE_DIR": str(state_dir),
                "PIAPI_OUTPUT_DIR": os.environ["PIAPI_OUTPUT_DIR"],
                "PIAPI_LEDGER_URL": database,
            }
            if public:
                env["PIAPI_PUBLIC_URL"] = "https://mcp.example.com"
                env["PIAPI_WEBHOOK_SECRET"] = SECRET
            port = _closed_port()
            config = Config.load(build_parser().parse_args(["--transport", "streamable-http"]), env)
            with anyio.fail_after(30):
                async with anyio.create_task_group() as group:
                    group.start_soon(serve, config, "streamable-http", "127.0.0.1", port)
                    async with httpx2.AsyncClient(trust_env=False) as mcp_http:
                        while True:
                            try:
                                await mcp_http.get(f"http://127.0.0.1:{port}/mcp")
                                break
                            except httpx2.HTTPError:
                                await anyio.sleep(0.02)
                        async with Client(
                            streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=mcp_http)
                        ) as client:
                            _result(await client.call_tool("kontext_edit", {**EDIT, "wait_seconds": 0}))
                    with psycopg.connect(database) as admin:
                        row = admin.execute(
                            "SELECT count(*) FROM pg_stat_activity"
                            " WHERE application_name = %s AND datname = current_database()",
                            (APPLICATION_NAME,),
                        ).fetchone()
                        shared = admin.execute("SELECT to_regclass(%s)::text", (TABLE,)).fetchone()
                    listening[public] = row[0] if row else -1
                    durations[public] = shared[0] if shared else None
                    group.cancel_scope.cancel()
    assert listening == {False: 0, True: 1}
    assert durations == {False: TABLE, True: TABLE}


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
