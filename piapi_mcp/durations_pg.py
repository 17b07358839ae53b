"""Learned task durations shared by every replica on one PostgreSQL database.

With ``PIAPI_LEDGER_URL`` set, :class:`SharedDurationEstimator` keeps what a
:class:`~piapi_mcp.waiting.DurationEstimator` learns (run seconds per duration factor, and queue
seconds, per catalog entry) in the :data:`TABLE` table too: each replica reads the last
:data:`~piapi_mcp.waiting.ESTIMATE_WINDOW` samples of every entry at start, and again each time it
learns one (written through, then read back), so a replica's first poll of a kind of task follows
what the others saw. The database is a helper only: while it cannot be reached the estimator goes on
with what it knows locally (and its per-replica file), logging one warning with the password hidden.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Final

import anyio
import psycopg
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from piapi_mcp.ledger_pg import (
    _LOCK_SCHEMA,
    CONNECT_TIMEOUT_SECONDS,
    STATEMENT_TIMEOUT_SECONDS,
    Conn,
    hide_password_in_library_logs,
    new_pool,
    redact_url,
)
from piapi_mcp.waiting import ESTIMATE_WINDOW, DurationEstimator, Key, _seconds_list

logger = logging.getLogger("piapi_mcp")

#: The table of samples (one row per completed task, the newest few per entry kept).
TABLE: Final = "task_durations"
#: Samples waiting to be written at most; past it, new ones are kept locally only.
_QUEUE_SIZE: Final = 256

#: One sample: the entry, its run seconds (per duration factor) and its queue seconds.
Sample = tuple[Key, float, float | None]

_CREATE: Final = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    seq           BIGSERIAL PRIMARY KEY,
    model         TEXT NOT NULL,
    task_type     TEXT NOT NULL,
    run_seconds   DOUBLE PRECISION NOT NULL,
    queue_seconds DOUBLE PRECISION
)"""
_INDEX: Final = f"CREATE INDEX IF NOT EXISTS {TABLE}_by_entry ON {TABLE} (model, task_type, seq)"
#: The newest samples of every entry (the ``%s`` is the window).
_LATEST: Final = f"""SELECT model, task_type, run_seconds, queue_seconds FROM (
    SELECT *, row_number() OVER (PARTITION BY model, task_type ORDER BY seq DESC) AS newest
    FROM {TABLE}) AS samples
WHERE newest <= %s ORDER BY seq"""


class SharedDurationEstimator(DurationEstimator):
    """A :class:`~piapi_mcp.waiting.DurationEstimator` whose samples are shared through PostgreSQL.

    Use it inside :meth:`running`; outside it (or with the database out) it learns locally only.
    """

    def __init__(
        self,
        url: str,
        *,
        window: int = ESTIMATE_WINDOW,
        priors: dict[Key, float] | None = None,
        path: Path | None = None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(window=window, priors=priors, path=path)
        self.shown_url = redact_url(url)
        self._password = hide_password_in_library_logs(url)
        self._connect_timeout = connect_timeout
        self._pool = new_pool(
            url,
            max_size=1,
            acquire_timeout=connect_timeout,
            connect_timeout=connect_timeout,
            statement_timeout=STATEMENT_TIMEOUT_SECONDS,
        )
        #: Where :meth:`_learn` queues samples for the writer, while :meth:`running`.
        self._send: MemoryObjectSendStream[Sample] | None = None
        self._ready = False
        self._failing = False
        #: Samples queued for the database, and those written (or given up on) so far.
        self.queued = 0
        self.settled = 0
        self._progress = anyio.Event()

    def __repr__(self) -> str:
        return f"SharedDurationEstimator({self.shown_url!r})"

    def _learn(self, key: Key, run: float, queue: float | None) -> None:
        """Keep the sample locally at once, and queue it for the database."""
        super()._learn(key, run, queue)
        if self._send is None:
            return
        try:
            self._send.send_nowait((key, run, queue))
        except anyio.WouldBlock:
            return  # the database is far behind: this sample stays local
        self.queued += 1

    async def flush(self) -> None:
        """Return once every sample queued so far is written (or failed)."""
        target = self.queued
        while self.settled < target:
            await self._progress.wait()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[SharedDurationEstimator]:
        """Read the shared samples, then write each new one through, for the duration of the block."""
        send, receive = anyio.create_memory_object_stream[Sample](_QUEUE_SIZE)
        async with send, receive, anyio.create_task_group() as group:
            await self._pool.open(wait=False)
            with anyio.move_on_after(self._connect_timeout):
                await self._attempt(self._setup)
            self._send = send
            group.start_soon(self._writer, receive)
            try:
                yield self
            finally:
                self._send = None
                group.cancel_scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._connect_timeout):
                    await self._pool.close()

    async def _attempt(self, work: Callable[[Conn], Awaitable[None]]) -> None:
        """Run ``work(conn)`` on the pool's connection; database trouble is logged once per outage."""
        try:
            async with self._pool.connection() as conn:
                await work(conn)
        except (psycopg.Error, OSError) as err:
            if not self._failing:
                said = str(err).strip().splitlines()[0] if str(err).strip() else ""
                if self._password:
                    said = said.replace(self._password, "***")
                logger.warning(
                    "learned task durations are not shared through %s for now (%s: %s); this replica "
                    "goes on with its own",
                    self.shown_url,
                    type(err).__name__,
                    said,
                )
            self._failing = True
        else:
            if self._failing:
                logger.info("learned task durations are shared through %s again", self.shown_url)
            self._failing = False

    async def _setup(self, conn: Conn) -> None:
        async with conn.transaction():
            # Replicas starting together take turns, as the ledger's schema does.
            await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_SCHEMA,))
            await conn.execute(_CREATE)
            await conn.execute(_INDEX)
        self._ready = True
        await self._read(conn)

    async def _read(self, conn: Conn) -> None:
        cursor = await conn.execute(_LATEST, (self._window,))
        runs: dict[Key, list[float]] = {}
        queues: dict[Key, list[float]] = {}
        for model, task_type, run, queue in await cursor.fetchall():
            key: Key = (model or None, task_type or None)
            runs.setdefault(key, []).append(run)
            if queue is not None:
                queues.setdefault(key, []).append(queue)
        for key, seconds in runs.items():
            # The table is shared: only values a sample can hold are taken.
            kept = [s for s in _seconds_list(seconds) if s > 0]
            if kept:
                self._runs[key] = deque(kept[-self._window :], maxlen=self._window)
        for key, seconds in queues.items():
            kept = _seconds_list(seconds)
            if kept:
                self._queues[key] = deque(kept[-self._window :], maxlen=self._window)

    async def _writer(self, samples: MemoryObjectReceiveStream[Sample]) -> None:
        async for key, run, queue in samples:
            await self._attempt(partial(self._write, key, run, queue))
            self.settled += 1
            self._progress.set()
            self._progress = anyio.Event()

    async def _write(self, key: Key, run: float, queue: float | None, conn: Conn) -> None:
        if not self._ready:  # the database was out at start
            await self._setup(conn)
        model, task_type = key[0] or "", key[1] or ""
        async with conn.transaction():
            await conn.execute(
                f"INSERT INTO {TABLE} (model, task_type, run_seconds, queue_seconds) VALUES (%s, %s, %s, %s)",
                (model, task_type, run, queue),
            )
            # Only the newest few of an entry are ever read: older ones go.
            await conn.execute(
                f"DELETE FROM {TABLE} WHERE model = %s AND task_type = %s AND seq <= ("
                f"SELECT seq FROM {TABLE} WHERE model = %s AND task_type = %s"
                " ORDER BY seq DESC OFFSET %s LIMIT 1)",
                (model, task_type, model, task_type, self._window),
            )
        await self._read(conn)
