"""Task events shared by every replica on one PostgreSQL database: ``NOTIFY`` / ``LISTEN``.

A PiAPI webhook lands on whichever replica the load balancer picks, and the call waiting on that
task may be on another. :class:`PostgresTaskEvents` announces a task id on the :data:`CHANNEL`
channel (``pg_notify`` with the id as a bound parameter) and keeps one dedicated connection that
``LISTEN``\\ s on it, handing each id it hears to a :class:`~piapi_mcp.events.LocalTaskEvents` that
wakes this process's waiters. The replica that took the webhook wakes its own waiters at once,
without waiting for the database's round trip (and ignores its own echo).

An event only makes a waiter poll PiAPI sooner, so losing one costs latency, never a result: a
payload that is not a task id is ignored, a failed ``NOTIFY`` is logged and skipped, and a dropped
listen connection is reopened with a growing back-off; once it listens again every local waiter is
woken once, since ids announced meanwhile were missed. No log line holds the URL's password.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import anyio
import psycopg
from psycopg import sql

from piapi_mcp.events import LocalTaskEvents, TaskSubscription
from piapi_mcp.ledger_pg import (
    CONNECT_TIMEOUT_SECONDS,
    hide_password_in_library_logs,
    new_pool,
    redact_url,
)
from piapi_mcp.models import valid_task_id
from piapi_mcp.timing import Clock, SystemClock

logger = logging.getLogger("piapi_mcp")

#: The channel task ids are announced on.
CHANNEL: Final = "piapi_task"
#: How the listen connection shows in ``pg_stat_activity`` (operators, and the tests, find it by it).
APPLICATION_NAME: Final = "piapi-mcp task events"
#: Seconds to wait for a connection to send a ``NOTIFY`` on (opening one: the ledger's time-out).
NOTIFY_TIMEOUT_SECONDS: Final = 2.0
#: Back-off between attempts to reopen the listen connection: first, then doubled up to the last.
FIRST_RETRY_SECONDS: Final = 0.1
MAX_RETRY_SECONDS: Final = 10.0
#: Own announcements remembered so their echo is skipped; past this many (echoes lost), forgotten.
_MAX_ECHOES: Final = 1024


class PostgresTaskEvents:
    """:class:`~piapi_mcp.events.TaskEvents` across replicas, through PostgreSQL ``LISTEN/NOTIFY``.

    Use it inside :meth:`running` (which opens the listen connection and a small pool for
    ``NOTIFY``); outside it, :meth:`notify` reaches this process's waiters only.
    """

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        *,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        notify_timeout: float = NOTIFY_TIMEOUT_SECONDS,
    ) -> None:
        self._url = url
        self._clock: Clock = clock or SystemClock()
        self.shown_url = redact_url(url)
        self._password = hide_password_in_library_logs(url)
        self._connect_timeout = connect_timeout
        self._local = LocalTaskEvents()
        self._pool = new_pool(
            url, max_size=2, acquire_timeout=notify_timeout, connect_timeout=connect_timeout
        )
        self._running = False
        #: Task ids subscribed to now, with how many subscriptions each (woken after a reconnect).
        self._subscribed: Counter[str] = Counter()
        #: (backend pid, task id) of announcements sent and not yet heard back.
        self._echoes: Counter[tuple[int, str]] = Counter()
        self._changed = anyio.Event()
        #: Events announced here; ids heard from the channel and dispatched; payloads ignored.
        self.notified = 0
        self.received = 0
        self.ignored = 0
        #: How many times the listen connection was opened and listening; how many attempts failed.
        self.listens = 0
        self.failures = 0

    def __repr__(self) -> str:
        return f"PostgresTaskEvents({self.shown_url!r})"

    def _redact(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _said(self, err: BaseException) -> str:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        return f"{type(err).__name__}: {self._redact(first)}" if first else type(err).__name__

    async def changed(self) -> None:
        """Return at the next change of the counters (an id received or ignored, a listen opened or lost)."""
        await self._changed.wait()

    def _bump(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    # --- the TaskEvents interface ---------------------------------------------------------------

    async def notify(self, task_id: str) -> None:
        """Wake this process's waiters on ``task_id`` at once, and announce it to the other replicas.

        An id not in PiAPI's form is not announced. A ``NOTIFY`` that fails (the database out) is
        logged and skipped: the other replicas' waiters still poll.
        """
        if not valid_task_id(task_id):
            return
        self.notified += 1
        await self._local.notify(task_id)
        if not self._running:
            return
        echo: tuple[int, str] | None = None
        try:
            async with self._pool.connection() as conn:
                echo = (conn.info.backend_pid, task_id)
                self._remember(echo)
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, task_id))
        except (psycopg.Error, OSError) as err:
            if echo is not None:
                self._forget_echo(echo)
            logger.warning(
                "task event for PiAPI task %s not sent to the other replicas through %s (%s); "
                "their waiters keep polling",
                task_id,
                self.shown_url,
                self._said(err),
            )

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[TaskSubscription]:
        """See :meth:`piapi_mcp.events.TaskEvents.subscribe`."""
        return self._subscription(task_id)

    @asynccontextmanager
    async def _subscription(self, task_id: str) -> AsyncIterator[TaskSubscription]:
        self._subscribed[task_id] += 1
        try:
            async with self._local.subscribe(task_id) as subscription:
                yield subscription
        finally:
            self._subscribed[task_id] -= 1
            if self._subscribed[task_id] <= 0:
                del self._subscribed[task_id]

    # --- echoes of our own announcements ------------------------------------------------------------

    def _remember(self, echo: tuple[int, str]) -> None:
        if sum(self._echoes.values()) >= _MAX_ECHOES:
            self._echoes.clear()
        self._echoes[echo] += 1

    def _forget_echo(self, echo: tuple[int, str]) -> bool:
        if self._echoes[echo] <= 0:
            self._echoes.pop(echo, None)
            return False
        self._echoes[echo] -= 1
        if not self._echoes[echo]:
            del self._echoes[echo]
        return True

    # --- running -------------------------------------------------------------------------------------

    @asynccontextmanager
    async def running(self) -> AsyncIterator[PostgresTaskEvents]:
        """Listen (and be able to announce) for the duration of the block.

        Waits up to the connect time-out for the first ``LISTEN``; if the database does not answer
        by then, the block runs anyway (polling alone) while the listener keeps trying.
        """
        async with anyio.create_task_group() as group:
            await self._pool.open(wait=False)
            self._running = True
            group.start_soon(self._listen_forever)
            try:
                with anyio.move_on_after(self._connect_timeout):
                    while not self.listens:
                        await self.changed()
                if not self.listens:
                    logger.warning(
                        "task events: not listening on %s yet (still trying); replicas wake their "
                        "waiters by polling until then",
                        self.shown_url,
                    )
                yield self
            finally:
                self._running = False
                group.cancel_scope.cancel()
                with anyio.CancelScope(shield=True), anyio.move_on_after(self._connect_timeout):
                    await self._pool.close()

    async def _listen_forever(self) -> None:
        delay = FIRST_RETRY_SECONDS
        streak = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=max(2, round(self._connect_timeout)),
                    application_name=APPLICATION_NAME,
                    # A peer gone without a word (a cut network) is noticed within about a minute.
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                )
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
                    await self._listening()
                    delay, streak = FIRST_RETRY_SECONDS, 0
                    async for note in conn.notifies():
                        await self._dispatch(note)
            except (psycopg.Error, OSError) as err:
                self.failures += 1
                streak += 1
                self._bump()
                # The first failure of a streak is a warning; the retries that follow, details.
                logger.log(
                    logging.WARNING if streak == 1 else logging.DEBUG,
                    "task events: the listen connection to %s failed (%s); retrying in %g s",
                    self.shown_url,
                    self._said(err),
                    delay,
                )
            await self._clock.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    async def _listening(self) -> None:
        self.listens += 1
        missed = self.listens > 1 or self.failures > 0
        # Echoes sent while the connection was down never come back.
        self._echoes.clear()
        if missed:
            # Ids announced while this replica was not listening are lost: its waiters poll once now.
            for task_id in list(self._subscribed):
                await self._local.notify(task_id)
            logger.info("task events: listening again on %s", self.shown_url)
        else:
            logger.info("task events: listening on %s (channel %s)", self.shown_url, CHANNEL)
        self._bump()

    async def _dispatch(self, note: psycopg.Notify) -> None:
        payload = note.payload
        if note.channel != CHANNEL or not valid_task_id(payload):
            self.ignored += 1
            # Only its length: a payload anyone with database access can send is not echoed into the log.
            logger.debug("task events: ignored a %d-character payload that is not a task id", len(payload))
        elif not self._forget_echo((note.pid, payload)):
            self.received += 1
            await self._local.notify(payload)
        self._bump()
