"""The task ledger on PostgreSQL (``PIAPI_LEDGER_URL=postgresql://…``): one ledger for many replicas.

Same rows and the same guarantees as the SQLite ledger (:class:`piapi_mcp.ledger.TaskLedger`), over
a pool of connections (:class:`psycopg_pool.AsyncConnectionPool`) with time-outs to connect, to get
a connection and per statement. A claim runs in one transaction holding a transaction-scoped advisory
lock on its request's fingerprint (and, with a daily budget, one on the budget): of several replicas
racing the same edit exactly one writes the intent row and sends the create, and two creates can
never both slip under the budget.

The schema is created on :meth:`PostgresLedger.start`, with its version in ``schema_version``; a
database set up by a newer piapi-mcp is refused, untouched.

A task id PiAPI returned is never lost to a database outage: when ``resolve_claim`` or
``record_created`` cannot reach the database, the row goes to an append-only file in the state folder
(:data:`FALLBACK_FILE_NAME`, fsynced), the caller is told so, and the file is replayed into the
database as soon as it answers again. The URL's password never appears in a log line or an error.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import psycopg
from psycopg_pool import AsyncConnectionPool

from piapi_mcp.ledger import (
    _COLUMNS,
    _LIVE_CLAIMS,
    _LIVE_LOCK,
    _USD_EPSILON,
    CREATING,
    NOTE_GONE,
    NOTE_MAY_EXIST,
    SPEND_WINDOW_SECONDS,
    UNKNOWN,
    UNKNOWN_TASK_PREFIX,
    Claim,
    ClaimOutcome,
    LedgerEntry,
    LedgerSchemaTooNew,
    LedgerUnavailable,
    _claim_alive,
    _entry,
    _forget,
    _owner,
    _row_cost,
    _state_columns,
)
from piapi_mcp.models import Task
from piapi_mcp.timing import Clock, SystemClock

logger = logging.getLogger("piapi_mcp")

#: The schema this code writes; a database whose ``schema_version`` is higher is refused.
SCHEMA_VERSION: Final = 1
#: Task ids kept on this machine while the database was out, replayed when it is back.
FALLBACK_FILE_NAME: Final = "ledger-fallback.jsonl"
#: Seconds to open a connection, to wait for a free one from the pool, and for one statement.
CONNECT_TIMEOUT_SECONDS: Final = 5.0
ACQUIRE_TIMEOUT_SECONDS: Final = 10.0
STATEMENT_TIMEOUT_SECONDS: Final = 10.0
#: Most connections one server keeps to the database.
POOL_MAX_SIZE: Final = 10
#: First keys of the advisory locks (the second is the fingerprint's hash, or 0).
_LOCK_SCHEMA: Final = 0x50_69_41_00
_LOCK_REQUEST: Final = 0x50_69_41_01
_LOCK_BUDGET: Final = 0x50_69_41_02

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS tasks (
        seq           BIGSERIAL,
        task_id       TEXT PRIMARY KEY,
        tool          TEXT NOT NULL,
        model         TEXT,
        task_type     TEXT,
        input_json    TEXT NOT NULL,
        input_hash    TEXT NOT NULL,
        created_at    DOUBLE PRECISION NOT NULL,
        updated_at    DOUBLE PRECISION NOT NULL,
        status        TEXT NOT NULL,
        images_json   TEXT NOT NULL DEFAULT '[]',
        paths_json    TEXT NOT NULL DEFAULT '[]',
        usage_json    TEXT,
        error_json    TEXT,
        note          TEXT,
        claim_owner   TEXT,
        estimated_usd DOUBLE PRECISION
    )""",
    "CREATE INDEX IF NOT EXISTS tasks_by_request ON tasks (input_hash, created_at)",
    "CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (created_at)",
    "CREATE INDEX IF NOT EXISTS tasks_creating ON tasks (status) WHERE status = 'creating'",
)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[tuple[Any, ...]]


def new_pool(
    url: str,
    *,
    max_size: int,
    acquire_timeout: float,
    connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
    statement_timeout: float | None = None,
) -> AsyncConnectionPool[Conn]:
    """An unopened pool of autocommit connections to ``url`` (the ledger's, the events', the durations').

    ``acquire_timeout`` bounds the wait for a free connection, ``statement_timeout`` (if given) every
    statement. Each connection is checked at checkout, so one broken by a database restart is found
    then, not in the middle of an operation.
    """
    options: dict[str, Any] = {"connect_timeout": max(2, round(connect_timeout)), "autocommit": True}
    if statement_timeout is not None:
        options["options"] = f"-c statement_timeout={round(statement_timeout * 1000)}"
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        timeout=acquire_timeout,
        open=False,
        check=AsyncConnectionPool.check_connection,
        kwargs=options,
    )


def redact_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: the one form of the URL that may be shown."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(an unreadable database URL)"
    if not password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.split(":", 1)[0]
    return parts._replace(netloc=f"{name}:***@{host}").geturl()


#: Passwords whose redactor is installed on the database libraries' loggers (one each, however many ledgers).
_REDACTED: set[str] = set()


class _Redactor(logging.Filter):
    """Takes the password out of every log record of the database libraries (their own warnings)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, "***"), None
        return True


def hide_password_in_library_logs(url: str) -> str | None:
    """Install (once per password) a filter that hides ``url``'s password in psycopg's own log records.

    Returns the password (``None`` when the URL has none), for callers that redact their own messages.
    """
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    if password and password not in _REDACTED:
        _REDACTED.add(password)
        redactor = _Redactor(password)
        for name in ("psycopg", "psycopg.pool"):
            logging.getLogger(name).addFilter(redactor)
    return password


class PostgresLedger:
    """The ledger in a PostgreSQL database shared by every replica; see the module's docstring.

    Nothing connects until :meth:`start` (or the first operation); ``state_dir`` holds the fallback
    file, ``None`` keeps no fallback (a failed write then raises, as SQLite's does).
    """

    def __init__(
        self,
        url: str,
        clock: Clock | None = None,
        *,
        state_dir: Path | None,
        connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
        acquire_timeout: float = ACQUIRE_TIMEOUT_SECONDS,
        statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
        max_size: int = POOL_MAX_SIZE,
    ) -> None:
        self._clock: Clock = clock or SystemClock()
        self.shown_url = redact_url(url)
        self._password = hide_password_in_library_logs(url)
        #: Never set: a database ledger is the usual one (kept for the :class:`Ledger` interface).
        self.notice: str | None = None
        self.fallback_path = state_dir / FALLBACK_FILE_NAME if state_dir is not None else None
        self._connect_timeout = connect_timeout
        self._pool = new_pool(
            url,
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self._started = False
        self._starting = anyio.Lock()
        #: Held while the fallback file is appended to or replayed.
        self._fallback_lock = anyio.Lock()
        self._fallback_pending = self.fallback_path is not None and _has_lines(self.fallback_path)

    @property
    def location(self) -> str | None:
        """The database's URL, its password hidden."""
        return self.shown_url

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _redact(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

    def _unavailable(self, err: Exception) -> LedgerUnavailable:
        said = self._redact(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__)
        return LedgerUnavailable(
            f"The task ledger's database {self.shown_url} could not be used ({type(err).__name__}: {said})."
        )

    # --- connections ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the schema (or check its version), and replay any fallback file.

        Raises:
            LedgerUnavailable: the database cannot be reached in time.
            LedgerSchemaTooNew: a newer piapi-mcp set the database up.
        """
        async with self._starting:
            if self._started:
                return
            try:
                await self._pool.open(wait=True, timeout=self._connect_timeout)
                async with self._pool.connection() as conn:
                    async with conn.transaction():
                        await self._create_schema(conn)
                    if self._fallback_pending:
                        await self._replay(conn)
            except LedgerSchemaTooNew:
                await self._pool.close()
                raise
            except (psycopg.Error, OSError) as err:
                await self._pool.close()
                self._pool = self._reopenable()
                raise self._unavailable(err) from None
            self._started = True

    def _reopenable(self) -> AsyncConnectionPool[Conn]:
        """A fresh, unopened pool like the one that failed (a closed pool cannot be opened again)."""
        old = self._pool
        return AsyncConnectionPool(
            old.conninfo,
            min_size=old.min_size,
            max_size=old.max_size,
            timeout=old.timeout,
            open=False,
            check=AsyncConnectionPool.check_connection,
            kwargs=old.kwargs,
        )

    async def _create_schema(self, conn: Conn) -> None:
        # Replicas starting together take turns: CREATE ... IF NOT EXISTS is not safe concurrently.
        await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_SCHEMA,))
        await conn.execute(_SCHEMA[0])
        row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
        version = row[0] if row else None
        if version is not None and version > SCHEMA_VERSION:
            raise LedgerSchemaTooNew(
                f"The task ledger's database {self.shown_url} has schema version {version}, newer than "
                f"this piapi-mcp's {SCHEMA_VERSION}; upgrade piapi-mcp, or set PIAPI_LEDGER_URL to "
                "another database."
            )
        for statement in _SCHEMA[1:]:
            await conn.execute(statement)
        if version is None:
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    async def aclose(self) -> None:
        """Close the pool's connections; the ledger is not used afterwards."""
        await self._pool.close()

    async def _tx(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction; database trouble becomes :class:`LedgerUnavailable`."""
        if not self._started:
            await self.start()
        try:
            async with self._pool.connection() as conn:
                if self._fallback_pending:
                    await self._replay(conn)
                async with conn.transaction():
                    return await work(conn)
        except (psycopg.Error, OSError) as err:
            raise self._unavailable(err) from None

    # --- creates -------------------------------------------------------------------------------

    async def claim(
        self,
        fingerprint: str,
        *,
        tool: str,
        model: str,
        task_type: str,
        task_input: dict[str, Any],
        within_seconds: float,
        estimated_usd: float | None = None,
        budget_usd: float | None = None,
    ) -> ClaimOutcome:
        """Claim the right to create this request, atomically across every replica on the database.

        As :meth:`piapi_mcp.ledger.TaskLedger.claim`; the transaction holds an advisory lock on the
        fingerprint (and on the budget when there is one) until it commits.
        """
        now = self._now()
        stored_input = json.dumps(task_input, sort_keys=True)
        claim = Claim(f"{UNKNOWN_TASK_PREFIX}{uuid.uuid4()}", uuid.uuid4().hex)
        # Live before its row can be seen: a replica in this process must not take it for a dead one.
        with _LIVE_LOCK:
            _LIVE_CLAIMS.add(claim.token)

        async def work(conn: Conn) -> ClaimOutcome:
            if budget_usd is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_BUDGET,))
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_REQUEST, fingerprint))
            if within_seconds > 0:
                await self._settle(conn, fingerprint)
                cursor = await conn.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE input_hash = %s AND created_at >= %s"
                    " AND status NOT IN ('failed', 'cancelled')"
                    " AND NOT (status = 'unknown' AND task_id NOT LIKE 'unknown-%%')"
                    " ORDER BY created_at DESC, seq DESC LIMIT 1",
                    (fingerprint, now - within_seconds),
                )
                row = await cursor.fetchone()
                if row is not None:
                    entry = _entry(row)
                    return ClaimOutcome(None, entry, in_flight=entry.status == CREATING)
            if budget_usd is not None:
                spent = await self._spent(conn, now)
                if spent + (estimated_usd or 0.0) > budget_usd + _USD_EPSILON or spent >= budget_usd:
                    return ClaimOutcome(None, None, over_budget_spent=spent)
            await conn.execute(
                "INSERT INTO tasks (task_id, tool, model, task_type, input_json, input_hash, created_at,"
                " updated_at, status, claim_owner, estimated_usd)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    claim.placeholder,
                    tool,
                    model,
                    task_type,
                    stored_input,
                    fingerprint,
                    now,
                    now,
                    CREATING,
                    _owner(claim.token, now),
                    estimated_usd,
                ),
            )
            return ClaimOutcome(claim, None)

        outcome: ClaimOutcome | None = None
        try:
            outcome = await self._tx(work)
        finally:
            if outcome is None or outcome.claim is None:
                _forget(claim)
        return outcome

    async def set_claim_input(self, claim: Claim, task_input: dict[str, Any]) -> None:
        """Store the input as it will be sent, before sending it."""
        params = (json.dumps(task_input, sort_keys=True), self._now(), claim.placeholder)
        await self._tx(
            lambda conn: conn.execute(
                "UPDATE tasks SET input_json = %s, updated_at = %s WHERE task_id = %s", params
            )
        )

    async def resolve_claim(self, claim: Claim, task: Task) -> str | None:
        """PiAPI answered with ``task``: the intent row becomes the task's row.

        Returns a sentence for the caller when the database could not be reached and the row went to
        the fallback file instead (written to the database later).
        """
        row = _FallbackRow.of(task, placeholder=claim.placeholder, at=self._now())
        try:
            await self._tx(lambda conn: row.apply(conn))
        except LedgerUnavailable as err:
            return await self._keep(row, err)
        finally:
            _forget(claim)
        return None

    async def release_claim(self, claim: Claim) -> None:
        """PiAPI refused the create (nothing was made): forget the intent."""
        try:
            await self._tx(
                lambda conn: conn.execute("DELETE FROM tasks WHERE task_id = %s", (claim.placeholder,))
            )
        finally:
            _forget(claim)

    async def mark_unknown(self, claim: Claim, note: str = NOTE_MAY_EXIST) -> None:
        """The create may have reached PiAPI but its answer did not come back: keep it as ``unknown``."""
        params = (UNKNOWN, note, self._now(), claim.placeholder)
        try:
            await self._tx(
                lambda conn: conn.execute(
                    "UPDATE tasks SET status = %s, note = %s, claim_owner = NULL, updated_at = %s"
                    " WHERE task_id = %s",
                    params,
                )
            )
        finally:
            _forget(claim)

    async def recover(self, placeholder: str, task: Task) -> bool:
        """An ``unknown`` intent was found on PiAPI as ``task``: give the row its real id and state."""
        params = (task.task_id, *_state_columns(task), self._now(), placeholder, UNKNOWN)

        async def work(conn: Conn) -> bool:
            # Lock the intent, so two replicas recovering it take turns.
            await conn.execute("SELECT 1 FROM tasks WHERE task_id = %s FOR UPDATE", (placeholder,))
            if await _exists(conn, task.task_id):
                return False
            cursor = await conn.execute(
                "UPDATE tasks SET task_id = %s, status = %s, images_json = %s, usage_json = %s,"
                " error_json = %s, note = NULL, claim_owner = NULL, updated_at = %s"
                " WHERE task_id = %s AND status = %s",
                params,
            )
            return cursor.rowcount > 0

        return await self._tx(work)

    async def mark_gone(self, task_id: str) -> bool:
        """PiAPI answered 404 for a task of the ledger: it shows as ``unknown`` and is never reused."""
        params = (UNKNOWN, NOTE_GONE, self._now(), task_id)

        async def work(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE tasks SET status = %s, note = %s, updated_at = %s WHERE task_id = %s"
                " AND status NOT IN ('completed', 'failed', 'cancelled')",
                params,
            )
            return cursor.rowcount

        return await self._tx(work) > 0

    async def record_created(
        self,
        task: Task,
        *,
        tool: str,
        task_input: dict[str, Any],
        fingerprint: str,
        estimated_usd: float | None = None,
    ) -> str | None:
        """Record a task PiAPI has just accepted; the same id again does nothing.

        Returns a sentence for the caller when it went to the fallback file (see :meth:`resolve_claim`).
        """
        row = _FallbackRow.of(
            task,
            at=self._now(),
            tool=tool,
            input_json=json.dumps(task_input, sort_keys=True),
            fingerprint=fingerprint,
            estimated_usd=estimated_usd,
        )
        try:
            await self._tx(lambda conn: row.apply(conn))
        except LedgerUnavailable as err:
            return await self._keep(row, err)
        return None

    async def record_seen(self, task: Task, local_paths: list[str] | None = None) -> bool:
        """Store the latest state of a task the ledger knows; returns whether it knew it."""
        params = (
            *_state_columns(task),
            json.dumps(local_paths) if local_paths is not None else None,
            self._now(),
            task.task_id,
        )

        async def work(conn: Conn) -> int:
            cursor = await conn.execute(
                "UPDATE tasks SET status = %s, images_json = %s, usage_json = %s, error_json = %s,"
                " paths_json = COALESCE(%s, paths_json), note = NULL, updated_at = %s WHERE task_id = %s",
                params,
            )
            return cursor.rowcount

        return await self._tx(work) > 0

    # --- the fallback file -----------------------------------------------------------------------

    async def _keep(self, row: _FallbackRow, err: LedgerUnavailable) -> str:
        """Append ``row`` to the fallback file (fsynced); the caller's sentence. Re-raises without a file."""
        path = self.fallback_path
        if path is None:
            raise err
        line = json.dumps(row.__dict__, sort_keys=True) + "\n"
        async with self._fallback_lock:
            await anyio.to_thread.run_sync(_append_synced, path, line)
            self._fallback_pending = True
        logger.warning("%s Task %s kept in %s until it is back.", err, row.task_id, path)
        return (
            f"The task ledger's database could not be reached, so task {row.task_id} was recorded in "
            f"{path.name} on this server and will be written to the database when it is back; the task "
            "itself is unaffected."
        )

    async def _replay(self, conn: Conn) -> None:
        """Write the fallback file's rows to the database on ``conn``, then empty the file.

        Runs before any other work on a connection while the file holds rows, so nothing reads the
        ledger without them once the database answers again.
        """
        path = self.fallback_path
        if path is None:
            return
        async with self._fallback_lock:
            if not self._fallback_pending:
                return
            text = await anyio.to_thread.run_sync(_read_text, path)
            rows = _parse_rows(text, path)
            async with conn.transaction():
                for row in rows:
                    await row.apply(conn)
            await anyio.to_thread.run_sync(_truncate_synced, path)
            self._fallback_pending = False
        if rows:
            logger.info("wrote %d task(s) kept in %s to the task ledger's database", len(rows), path)

    # --- reading -------------------------------------------------------------------------------

    async def get(self, task_id: str) -> LedgerEntry | None:
        """The entry for ``task_id``, if this deployment created it."""

        async def work(conn: Conn) -> tuple[Any, ...] | None:
            cursor = await conn.execute(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = %s", (task_id,))
            return await cursor.fetchone()

        row = await self._tx(work)
        return _entry(row) if row else None

    async def recent(self, *, status: str | None = None, limit: int = 20) -> list[LedgerEntry]:
        """Entries newest first, optionally only those whose last status is ``status``."""
        query = f"SELECT {_COLUMNS} FROM tasks"
        params: list[Any] = []
        if status:
            query += " WHERE status = %s"
            params.append(status.lower())
        query += " ORDER BY created_at DESC, seq DESC LIMIT %s"
        params.append(limit)

        async def work(conn: Conn) -> list[tuple[Any, ...]]:
            await self._settle(conn, None)
            return await (await conn.execute(query, params)).fetchall()

        return [_entry(row) for row in await self._tx(work)]

    async def find_recent_request(self, fingerprint: str, *, within_seconds: float) -> LedgerEntry | None:
        """The newest task created from the same request in the last ``within_seconds``, not failed."""
        params = (fingerprint, self._now() - within_seconds)

        async def work(conn: Conn) -> tuple[Any, ...] | None:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE input_hash = %s AND created_at >= %s"
                " AND status NOT IN ('failed', 'cancelled') ORDER BY created_at DESC LIMIT 1",
                params,
            )
            return await cursor.fetchone()

        row = await self._tx(work)
        return _entry(row) if row else None

    async def spent_usd(self) -> float:
        """What the ledger's tasks of the last 24 h cost, in US$ (every replica's)."""
        now = self._now()
        return await self._tx(lambda conn: self._spent(conn, now))

    async def known_ids(self, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` the ledger already holds."""
        if not task_ids:
            return set()

        async def work(conn: Conn) -> list[tuple[Any, ...]]:
            cursor = await conn.execute("SELECT task_id FROM tasks WHERE task_id = ANY(%s)", (task_ids,))
            return await cursor.fetchall()

        return {row[0] for row in await self._tx(work)}

    async def _spent(self, conn: Conn, now: float) -> float:
        cursor = await conn.execute(
            "SELECT status, usage_json, estimated_usd FROM tasks WHERE created_at >= %s",
            (now - SPEND_WINDOW_SECONDS,),
        )
        return round(sum(_row_cost(*row) for row in await cursor.fetchall()), 7)

    async def _settle(self, conn: Conn, fingerprint: str | None) -> None:
        """Turn claims whose process is gone (or whose lease ran out) into ``unknown`` intents."""
        query = "SELECT task_id, claim_owner FROM tasks WHERE status = %s"
        params: list[Any] = [CREATING]
        if fingerprint is not None:
            query += " AND input_hash = %s"
            params.append(fingerprint)
        now = self._now()
        for task_id, owner in await (await conn.execute(query, params)).fetchall():
            if not _claim_alive(owner, now):
                # Only if still that claim: a replica may have resolved it meanwhile.
                await conn.execute(
                    "UPDATE tasks SET status = %s, note = %s, claim_owner = NULL, updated_at = %s"
                    " WHERE task_id = %s AND status = %s AND claim_owner IS NOT DISTINCT FROM %s",
                    (UNKNOWN, NOTE_MAY_EXIST, now, task_id, CREATING, owner),
                )


class _FallbackRow:
    """A task id PiAPI returned, as the fallback file keeps it: what resolving or recording it writes."""

    def __init__(
        self,
        *,
        task_id: str,
        model: str | None,
        task_type: str | None,
        status: str,
        images_json: str,
        usage_json: str | None,
        error_json: str | None,
        at: float,
        placeholder: str | None = None,
        tool: str | None = None,
        input_json: str | None = None,
        fingerprint: str | None = None,
        estimated_usd: float | None = None,
    ) -> None:
        self.task_id = task_id
        self.model = model
        self.task_type = task_type
        self.status = status
        self.images_json = images_json
        self.usage_json = usage_json
        self.error_json = error_json
        self.at = at
        self.placeholder = placeholder
        self.tool = tool
        self.input_json = input_json
        self.fingerprint = fingerprint
        self.estimated_usd = estimated_usd

    @classmethod
    def of(cls, task: Task, *, at: float, **extra: Any) -> _FallbackRow:
        status, images_json, usage_json, error_json = _state_columns(task)
        return cls(
            task_id=task.task_id,
            model=task.model,
            task_type=task.task_type,
            status=status,
            images_json=images_json,
            usage_json=usage_json,
            error_json=error_json,
            at=at,
            **extra,
        )

    async def apply(self, conn: Conn) -> None:
        """Write the row: the intent becomes the task, else the task is inserted; idempotent."""
        if self.placeholder is not None:
            if await _exists(conn, self.task_id):
                # Found meanwhile (recovered from PiAPI's history): the intent has nothing left to say.
                await conn.execute("DELETE FROM tasks WHERE task_id = %s", (self.placeholder,))
                return
            cursor = await conn.execute(
                "UPDATE tasks SET task_id = %s, model = COALESCE(%s, model),"
                " task_type = COALESCE(%s, task_type), status = %s, images_json = %s, usage_json = %s,"
                " error_json = %s, note = NULL,"
                " claim_owner = NULL, updated_at = %s WHERE task_id = %s",
                (
                    self.task_id,
                    self.model,
                    self.task_type,
                    self.status,
                    self.images_json,
                    self.usage_json,
                    self.error_json,
                    self.at,
                    self.placeholder,
                ),
            )
            if cursor.rowcount > 0:
                return
        await conn.execute(
            "INSERT INTO tasks (task_id, tool, model, task_type, input_json, input_hash, created_at,"
            " updated_at, status, images_json, usage_json, error_json, estimated_usd)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (task_id) DO NOTHING",
            (
                self.task_id,
                self.tool or "unknown",
                self.model,
                self.task_type,
                self.input_json or "{}",
                self.fingerprint or "",
                self.at,
                self.at,
                self.status,
                self.images_json,
                self.usage_json,
                self.error_json,
                self.estimated_usd,
            ),
        )


def _parse_rows(text: str, path: Path) -> list[_FallbackRow]:
    """The fallback file's rows; a line that is not one (torn by a crash mid-append) is logged and skipped."""
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(_FallbackRow(**json.loads(line)))
        except (ValueError, TypeError):
            logger.warning("skipped an unreadable line of %s: %.200s", path, line)
    return rows


async def _exists(conn: Conn, task_id: str) -> bool:
    cursor = await conn.execute("SELECT 1 FROM tasks WHERE task_id = %s", (task_id,))
    return await cursor.fetchone() is not None


def _has_lines(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _append_synced(path: Path, line: str) -> None:
    """Append ``line`` and fsync it (and the folder, the first time), before anyone is told it is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if new and hasattr(os, "O_DIRECTORY"):
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _truncate_synced(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.flush()
        os.fsync(handle.fileno())
