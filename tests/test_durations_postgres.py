"""Learned task durations shared through PostgreSQL: what one replica learns, the others poll by.

Each estimator stands for one replica's, on the test's database (``postgres_server``'s cluster).
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import psycopg
import pytest

from piapi_mcp import Task
from piapi_mcp.durations_pg import TABLE, SharedDurationEstimator
from piapi_mcp.waiting import ESTIMATE_WINDOW
from tests.postgres import PASSWORD, PostgresServer

pytestmark = pytest.mark.anyio

MODEL, TASK_TYPE = "Qubico/flux1-dev-advanced", "kontext"


@pytest.fixture
async def database(postgres_server: PostgresServer) -> str:
    """A fresh database's URL (with the password that must never show)."""
    return postgres_server.new_database()


def completed(run: float, queue: float = 1.0) -> Task:
    """A completed kontext task that waited ``queue`` seconds and ran ``run``, by PiAPI's timestamps."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return Task(
        task_id="t",
        model=MODEL,
        task_type=TASK_TYPE,
        status="completed",
        created_at=start,
        started_at=start + timedelta(seconds=queue),
        ended_at=start + timedelta(seconds=queue + run),
    )


def replica(url: str, tmp_path: Path, name: str) -> SharedDurationEstimator:
    """One replica's estimator: no priors (only what was learned counts), its own file."""
    return SharedDurationEstimator(url, priors={}, path=tmp_path / name / "durations.json")


async def test_a_duration_learned_on_one_replica_is_known_to_a_new_one_at_start_and_to_others_on_their_next_learn(
    database: str, tmp_path: Path
) -> None:
    """A learns 7 s; C, started afterwards, expects 7 s; B, already running, learns 9 s and then expects 8 s."""
    a, b = replica(database, tmp_path, "a"), replica(database, tmp_path, "b")
    with anyio.fail_after(30):
        async with a.running(), b.running():
            a.record(completed(7))
            await a.flush()
            assert b.estimate(MODEL, TASK_TYPE) is None  # read at start and on each learn, not between
            async with replica(database, tmp_path, "c").running() as c:
                assert c.estimate(MODEL, TASK_TYPE) == 1 + 7
            b.record(completed(9, queue=3))
            await b.flush()
            expected = b.expect(MODEL, TASK_TYPE)
            assert expected is not None and expected.learned
            assert (expected.run, expected.queue) == (8, 2)


async def test_the_shared_table_keeps_only_the_newest_samples_of_an_entry(
    database: str, tmp_path: Path
) -> None:
    """Ten tasks learned: the table holds the last ESTIMATE_WINDOW, and a new replica's median is theirs."""
    with anyio.fail_after(30):
        async with replica(database, tmp_path, "a").running() as a:
            for seconds in range(1, 11):
                a.record(completed(seconds, queue=0))
            await a.flush()
        async with replica(database, tmp_path, "b").running() as b:
            assert b.estimate(MODEL, TASK_TYPE) == 7  # the median of 4..10
    with psycopg.connect(database) as conn:
        rows = conn.execute(f"SELECT run_seconds FROM {TABLE} ORDER BY seq").fetchall()
    assert [row[0] for row in rows] == [float(s) for s in range(11 - ESTIMATE_WINDOW, 11)]


async def test_odd_rows_in_the_shared_table_are_not_taken(database: str, tmp_path: Path) -> None:
    """The table is shared: a negative or absurd run time written by anyone is not learned from."""
    async with replica(database, tmp_path, "a").running() as a:
        a.record(completed(5, queue=0))
        await a.flush()
    with psycopg.connect(database, autocommit=True) as conn:
        for seconds in (-3.0, 1e12, float("nan")):
            conn.execute(
                f"INSERT INTO {TABLE} (model, task_type, run_seconds) VALUES (%s, %s, %s)",
                (MODEL, TASK_TYPE, seconds),
            )
    async with replica(database, tmp_path, "b").running() as b:
        assert b.estimate(MODEL, TASK_TYPE) == 5


async def test_durations_are_learned_locally_while_the_database_is_out_and_its_password_is_not_logged(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that does not answer: one warning naming it (password hidden), and learning goes on."""
    caplog.set_level(logging.DEBUG)
    nowhere = postgres_server.url("nothing").replace(f":{postgres_server.port}/", f":{_closed_port()}/")
    estimator = SharedDurationEstimator(nowhere, priors={}, path=None, connect_timeout=0.2)
    with anyio.fail_after(30):
        async with estimator.running():
            estimator.record(completed(4, queue=0))
            estimator.record(completed(6, queue=0))
            await estimator.flush()
            assert estimator.estimate(MODEL, TASK_TYPE) == 5
    warnings = [r.getMessage() for r in caplog.records if "not shared through" in r.getMessage()]
    assert len(warnings) == 1 and "postgres:***@127.0.0.1" in warnings[0]
    assert PASSWORD not in "\n".join(record.getMessage() for record in caplog.records)
    assert PASSWORD not in repr(estimator)


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
