"""The task ledger: every task this server creates, recorded durably before the create is sent.

SQLite under ``PIAPI_STATE_DIR`` (``tasks.sqlite3``), in WAL mode with a busy time-out so that
several server processes can share one ledger. Inputs are stored as sent to PiAPI; they hold no
secrets (the API key travels in a header and is never stored).

The interface is asynchronous (the seam for another backend). Each ledger keeps one connection,
used by one worker thread at a time, never on the event loop. Operations queue, and the writer
runs all those waiting in one ``BEGIN IMMEDIATE`` transaction (group commit: one fsync for a
burst of creates), each under its own savepoint so that one failing does not undo the others.
An operation returns only once its transaction is committed with ``synchronous=FULL``: a create's
intent row is on disk before the create is sent, and its task id before the caller is told it.

A create is recorded in three steps. :meth:`TaskLedger.claim` writes an *intent* row (status
``creating``, a placeholder id) in one ``BEGIN IMMEDIATE`` transaction that first looks for the
same request, so of two processes racing the same edit exactly one may send it. When PiAPI answers
with an id the row becomes the task (:meth:`~TaskLedger.resolve_claim`); when PiAPI refused, the
row is dropped (:meth:`~TaskLedger.release_claim`); when the answer was lost (or the process died
while the create was in flight) it stays as ``unknown``: PiAPI *may* have created the task.

:class:`Ledger` is the interface every backend follows: :class:`TaskLedger` (SQLite, the default) and
:class:`piapi_mcp.ledger_pg.PostgresLedger` (``PIAPI_LEDGER_URL=postgresql://…``, several replicas on
one database); :func:`open_ledger` picks one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field

from piapi_mcp.config import LEDGER_FILE_NAME
from piapi_mcp.models import CANCELLED, FAILED, TERMINAL_STATUSES, Task, usd_of_units
from piapi_mcp.timing import Clock, SystemClock

logger = logging.getLogger("piapi_mcp")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id     TEXT PRIMARY KEY,
    tool        TEXT NOT NULL,
    model       TEXT,
    task_type   TEXT,
    input_json  TEXT NOT NULL,
    input_hash  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    status      TEXT NOT NULL,
    images_json TEXT NOT NULL DEFAULT '[]',
    paths_json  TEXT NOT NULL DEFAULT '[]',
    usage_json  TEXT,
    error_json  TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_request ON tasks (input_hash, created_at);
CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (created_at);
"""
#: Columns added after the first release; an older ledger gets them on open.
_ADDED_COLUMNS: Final = (("note", "TEXT"), ("claim_owner", "TEXT"), ("estimated_usd", "REAL"))
_BUSY_TIMEOUT_SECONDS: Final = 10.0
#: The most operations one transaction of the writer takes (so other processes get the file in turn).
BATCH_MAX: Final = 128
FILE_NAME: Final = LEDGER_FILE_NAME

#: Placeholder ids of intent rows: creates whose PiAPI id is not (yet) known.
UNKNOWN_TASK_PREFIX: Final = "unknown-"
#: Status of an intent row whose create is being sent right now.
CREATING: Final = "creating"
#: Status of a create PiAPI may or may not have made (lost answer, killed process), and of a task
#: PiAPI no longer knows.
UNKNOWN: Final = "unknown"
#: A claim older than this is no longer trusted to be in flight, even if its process seems alive
#: (another machine sharing the folder, or a recycled process id).
CLAIM_LEASE_SECONDS: Final = 300.0
#: The daily budget looks back this far.
SPEND_WINDOW_SECONDS: Final = 86_400.0
#: Amounts closer than this are equal (float sums of prices).
_USD_EPSILON: Final = 1e-9

NOTE_MAY_EXIST: Final = (
    "PiAPI may have created this task, but its id never arrived (the answer was lost or the server "
    "stopped mid-create); check your PiAPI dashboard before creating the same edit again."
)
NOTE_GONE: Final = "PiAPI no longer knows this task (it answered 404); it may have expired or been deleted."

#: Claims this process holds right now (process-wide: several servers may live in one process).
_LIVE_CLAIMS: set[str] = set()
_LIVE_LOCK = threading.Lock()
_HOST: Final = socket.gethostname()

T = TypeVar("T")
#: One ledger operation, run by the writer thread inside the batch's transaction.
Work = Callable[[sqlite3.Connection], T]


class LedgerError(Exception):
    """A ledger backend could not do what was asked (its message is one sentence, with no secret)."""


class LedgerUnavailable(LedgerError):
    """The ledger's database could not be reached or answered with an error."""


class LedgerSchemaTooNew(LedgerError):
    """The database was set up by a newer piapi-mcp than this one; nothing is changed in it."""


#: What a ledger call may raise when the ledger cannot be used (callers log it, or refuse a budgeted create).
LEDGER_ERRORS: Final[tuple[type[Exception], ...]] = (sqlite3.Error, OSError, LedgerError)


class LedgerEntry(BaseModel):
    """One task as the ledger remembers it."""

    model_config = ConfigDict(defer_build=True)

    task_id: str = Field(
        description=f"PiAPI's id for the task ('{UNKNOWN_TASK_PREFIX}…' while PiAPI's id is not known)."
    )
    tool: str = Field(description="The tool that created it, e.g. 'kontext_edit'.")
    model: str | None = Field(description="PiAPI model.")
    task_type: str | None = Field(description="PiAPI task type.")
    status: str = Field(
        description="Last status seen (lowercase); 'creating' while the create is being sent, 'unknown' "
        "when PiAPI may have created it but its id never arrived, or PiAPI no longer knows it."
    )
    done: bool = Field(description="Whether that status is final.")
    input: dict[str, Any] = Field(description="The input sent to PiAPI.")
    outputs: list[str] = Field(description="Output file URLs, once known.")
    local_paths: list[str] = Field(description="Where outputs were saved on this machine, if they were.")
    usage: dict[str, Any] | None = Field(description="PiAPI's usage figures, as last seen.")
    error: dict[str, Any] | None = Field(description="PiAPI's error, for failed tasks.")
    note: str | None = Field(default=None, description="What an 'unknown' status means for this entry.")
    created_at: datetime = Field(description="When this server created the task (or started to).")
    updated_at: datetime = Field(description="When this entry last changed.")

    @property
    def is_intent(self) -> bool:
        """Whether PiAPI's id for this create is unknown (in flight, or maybe made)."""
        return self.task_id.startswith(UNKNOWN_TASK_PREFIX)

    @property
    def may_exist(self) -> bool:
        """An intent that is no longer in flight: PiAPI may have created (and charged) it."""
        return self.is_intent and self.status != CREATING


@dataclass(frozen=True)
class Claim:
    """The right to send one create, held by this process; ``placeholder`` is its intent row's id."""

    placeholder: str
    token: str


@dataclass(frozen=True)
class ClaimOutcome:
    """What :meth:`TaskLedger.claim` found: our new claim, or the entry of the same request."""

    claim: Claim | None
    existing: LedgerEntry | None
    #: ``existing`` is another process's create, in flight right now.
    in_flight: bool = False
    #: Set when the daily budget refused the create: what the last 24 h already cost (US$).
    over_budget_spent: float | None = None


class Ledger(Protocol):
    """What the server needs of a task ledger, whatever keeps it (see :class:`TaskLedger`'s methods).

    Every method may raise one of :data:`LEDGER_ERRORS`. ``resolve_claim`` and ``record_created``
    return a sentence for the caller when the task id was kept somewhere other than the ledger (a
    database outage: it is written there later), else ``None``.
    """

    #: A sentence saying the ledger is not the usual one (moved aside, in memory), or ``None``.
    notice: str | None

    @property
    def location(self) -> str | None:
        """Where the ledger lives, for people: its file, its database's URL without the password, or
        ``None`` when it is kept in memory."""
        ...

    async def start(self) -> None:
        """Make the ledger ready (connect, create or check its schema); raises :data:`LEDGER_ERRORS`."""
        ...

    async def aclose(self) -> None:
        """Release the ledger's connections; it is not used afterwards."""
        ...

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
        """See :meth:`TaskLedger.claim`."""
        ...

    async def set_claim_input(self, claim: Claim, task_input: dict[str, Any]) -> None:
        """See :meth:`TaskLedger.set_claim_input`."""
        ...

    async def resolve_claim(self, claim: Claim, task: Task) -> str | None:
        """See :meth:`TaskLedger.resolve_claim`."""
        ...

    async def release_claim(self, claim: Claim) -> None:
        """See :meth:`TaskLedger.release_claim`."""
        ...

    async def mark_unknown(self, claim: Claim, note: str = NOTE_MAY_EXIST) -> None:
        """See :meth:`TaskLedger.mark_unknown`."""
        ...

    async def recover(self, placeholder: str, task: Task) -> bool:
        """See :meth:`TaskLedger.recover`."""
        ...

    async def mark_gone(self, task_id: str) -> bool:
        """See :meth:`TaskLedger.mark_gone`."""
        ...

    async def record_created(
        self,
        task: Task,
        *,
        tool: str,
        task_input: dict[str, Any],
        fingerprint: str,
        estimated_usd: float | None = None,
    ) -> str | None:
        """See :meth:`TaskLedger.record_created`."""
        ...

    async def record_seen(self, task: Task, local_paths: list[str] | None = None) -> bool:
        """See :meth:`TaskLedger.record_seen`."""
        ...

    async def get(self, task_id: str) -> LedgerEntry | None:
        """See :meth:`TaskLedger.get`."""
        ...

    async def recent(self, *, status: str | None = None, limit: int = 20) -> list[LedgerEntry]:
        """See :meth:`TaskLedger.recent`."""
        ...

    async def find_recent_request(self, fingerprint: str, *, within_seconds: float) -> LedgerEntry | None:
        """See :meth:`TaskLedger.find_recent_request`."""
        ...

    async def spent_usd(self) -> float:
        """See :meth:`TaskLedger.spent_usd`."""
        ...

    async def known_ids(self, task_ids: list[str]) -> set[str]:
        """See :meth:`TaskLedger.known_ids`."""
        ...


def open_ledger(url: str | None, state_dir: Path, clock: Clock | None = None) -> Ledger:
    """The ledger the settings ask for: PostgreSQL at ``url``, else SQLite in ``state_dir``; never connects.

    Call :meth:`Ledger.start` before use: it connects, and creates or checks the schema.
    """
    if url:
        from piapi_mcp.ledger_pg import PostgresLedger

        return PostgresLedger(url, clock, state_dir=state_dir)
    return TaskLedger.open(state_dir / FILE_NAME, clock)


@dataclass(eq=False)
class _Job(Generic[T]):
    """One queued operation and, once its batch is committed (or failed), what came of it."""

    work: Work[T]
    writes: bool
    value: T | None = None
    error: Exception | None = None
    done: bool = field(default=False)

    def outcome(self) -> T:
        """The operation's value, or its error raised."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]  # None only when T admits it


def request_fingerprint(model: str, task_type: str, task_input: dict[str, Any]) -> str:
    """A stable hash of what a create would send: the same edit asked twice has the same one."""
    canonical = json.dumps([model, task_type, task_input], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskLedger:
    """Durable record of created tasks; ``path=None`` keeps it in memory (one process only).

    The constructor raises when the file cannot be used; :meth:`open` never does (it moves a corrupt
    file aside, or falls back to memory) and says what it did in :attr:`notice`. Its operations are
    coroutines, for one event loop; ``on_batch`` is called in the writer thread before each batch,
    with the batch's size (tests use it to hold the writer, or to count its transactions).
    """

    def __init__(
        self,
        path: Path | None,
        clock: Clock | None = None,
        *,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._path = path
        self._clock: Clock = clock or SystemClock()
        #: Called in the writer thread before each batch, with its size (a seam for tests).
        self._on_batch = on_batch
        #: A sentence saying the ledger is not the usual file (moved aside, or kept in memory).
        self.notice: str | None = None
        #: Operations waiting for the writer, oldest first.
        self._queue: list[_Job[Any]] = []
        # One batch at a time (the lock), in one thread of its own (the limiter): a burst never
        # waits behind other thread work, and the connection has one user at a time.
        self._turn = anyio.Lock()
        self._thread = anyio.CapacityLimiter(1)
        self._db_lock = threading.Lock()
        if path is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._db.executescript(_SCHEMA)
            _add_columns(self._db)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # Every commit reaches the disk before the caller hears of it (WAL's default is looser).
            db.execute("PRAGMA synchronous=FULL")
            # A truncated file can open and still fail later; find out now, not mid-create.
            (check,) = db.execute("PRAGMA quick_check(1)").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            db.executescript(_SCHEMA)
            _add_columns(db)
        except BaseException:
            db.close()
            raise
        self._db = db

    @classmethod
    def open(cls, path: Path, clock: Clock | None = None) -> TaskLedger:
        """The ledger at ``path``, whatever state the file or its folder is in; never raises.

        A file that is not a sound SQLite database is renamed ``<name>.corrupt-<UTC time>`` and a
        new ledger begun; a folder that cannot hold the ledger (read-only, a file in its place, a
        full disk) gives an in-memory ledger. Either is logged once and kept in :attr:`notice`.
        """
        try:
            return cls(path, clock)
        except sqlite3.DatabaseError as err:
            if _is_corrupt(err):
                moved = _move_aside(path, clock or SystemClock())
                if moved is not None:
                    try:
                        ledger = cls(path, clock)
                    except (sqlite3.Error, OSError) as again:
                        return cls._in_memory(path, clock, again)
                    ledger.notice = (
                        f"The task ledger {path} was unreadable ({err}); it was moved aside to {moved.name} "
                        "and a new one begun, so tasks recorded before are not listed."
                    )
                    logger.warning("%s", ledger.notice)
                    return ledger
            return cls._in_memory(path, clock, err)
        except OSError as err:
            return cls._in_memory(path, clock, err)

    @classmethod
    def _in_memory(cls, path: Path, clock: Clock | None, err: Exception) -> TaskLedger:
        ledger = cls(None, clock)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        ledger.notice = (
            f"The task ledger could not be kept at {path} ({reason}); tasks are recorded in memory "
            "only and will be forgotten when this server stops. Fix PIAPI_STATE_DIR to keep them."
        )
        logger.warning("%s", ledger.notice)
        return ledger

    @property
    def location(self) -> str | None:
        """The ledger's file, or ``None`` when it is kept in memory."""
        return None if self._path is None else str(self._path)

    def _now(self) -> float:
        return self._clock.now().timestamp()

    @property
    def queued(self) -> int:
        """How many operations are waiting for the writer right now."""
        return len(self._queue)

    def close(self) -> None:
        """Close the connection; the ledger is not used afterwards."""
        with self._db_lock:
            self._db.close()

    async def start(self) -> None:
        """Nothing to do: the file was opened (and its schema made) by the constructor."""

    async def aclose(self) -> None:
        """:meth:`close`, for the :class:`Ledger` interface."""
        self.close()

    async def _run(self, work: Work[T], *, writes: bool = True) -> T:
        """Run ``work`` in the writer's next batch; returns once that batch is committed."""
        job: _Job[T] = _Job(work, writes)
        self._queue.append(job)
        try:
            async with self._turn:
                while not job.done:
                    batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
                    await anyio.to_thread.run_sync(self._apply, batch, limiter=self._thread)
        finally:
            if not job.done and job in self._queue:
                self._queue.remove(job)  # cancelled before its turn: never run
        return job.outcome()

    def _apply(self, batch: list[_Job[Any]]) -> None:
        """Run a batch in one transaction (writer thread); each job ends done, with a value or an error."""
        with self._db_lock:
            db = self._db
            try:
                if self._on_batch is not None:
                    self._on_batch(len(batch))
                # A read-only batch takes no write lock (other processes keep writing meanwhile).
                db.execute("BEGIN IMMEDIATE" if any(job.writes for job in batch) else "BEGIN")
                try:
                    for job in batch:
                        db.execute("SAVEPOINT job")
                        try:
                            job.value = job.work(db)
                        except Exception as err:
                            db.execute("ROLLBACK TO job")
                            job.error = err
                        db.execute("RELEASE job")
                    db.execute("COMMIT")
                except BaseException:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
            except Exception as err:
                # Nothing of the batch was kept: every job reports the failure.
                for job in batch:
                    job.error = job.error or err
            finally:
                for job in batch:
                    job.done = True

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
        """Claim the right to create this request, unless it was made in the last ``within_seconds``.

        Atomic across processes: of several claims of one fingerprint at the same instant, one
        gets the claim and the others the entry it wrote (``in_flight`` while its create is sent).
        An entry is met when it was not failed, cancelled or lost by PiAPI. ``within_seconds`` 0
        (``force_new``, or deduplication off) always claims.

        With ``budget_usd``, a new create (not a reuse) is refused (``over_budget_spent``) when what
        the last 24 h cost (:meth:`spent_usd`) plus ``estimated_usd`` is over it, or already reaches it;
        checked in the claim's own transaction, so processes sharing the ledger cannot both slip under.
        The intent row is committed (on disk) when this returns.
        """
        now = self._now()
        stored_input = json.dumps(task_input, sort_keys=True)

        def work(db: sqlite3.Connection) -> ClaimOutcome:
            if within_seconds > 0:
                self._settle(db, fingerprint)
                row = db.execute(
                    f"SELECT {_COLUMNS} FROM tasks WHERE input_hash = ? AND created_at >= ?"
                    " AND status NOT IN ('failed', 'cancelled')"
                    " AND NOT (status = 'unknown' AND task_id NOT LIKE 'unknown-%')"
                    " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    (fingerprint, now - within_seconds),
                ).fetchone()
                if row is not None:
                    entry = _entry(row)
                    return ClaimOutcome(None, entry, in_flight=entry.status == CREATING)
            if budget_usd is not None:
                spent = self._spent(db, now)
                if spent + (estimated_usd or 0.0) > budget_usd + _USD_EPSILON or spent >= budget_usd:
                    return ClaimOutcome(None, None, over_budget_spent=spent)
            claim = Claim(f"{UNKNOWN_TASK_PREFIX}{uuid.uuid4()}", uuid.uuid4().hex)
            db.execute(
                "INSERT INTO tasks (task_id, tool, model, task_type, input_json, input_hash, created_at,"
                " updated_at, status, claim_owner, estimated_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            with _LIVE_LOCK:
                _LIVE_CLAIMS.add(claim.token)
            return ClaimOutcome(claim, None)

        return await self._run(work)

    async def set_claim_input(self, claim: Claim, task_input: dict[str, Any]) -> None:
        """Store the input as it will be sent (e.g. with an uploaded image's URL), before sending it."""
        params = (json.dumps(task_input, sort_keys=True), self._now(), claim.placeholder)
        await self._run(
            lambda db: db.execute("UPDATE tasks SET input_json = ?, updated_at = ? WHERE task_id = ?", params)
        )

    async def resolve_claim(self, claim: Claim, task: Task) -> str | None:
        """PiAPI answered with ``task``: the intent row becomes the task's row (committed on return).

        Returns ``None`` (SQLite has no fallback: trouble raises, and the caller logs it).
        """
        params = (
            task.task_id,
            task.model,
            task.task_type,
            *_state_columns(task),
            self._now(),
            claim.placeholder,
        )
        try:
            await self._run(
                lambda db: db.execute(
                    "UPDATE tasks SET task_id = ?, model = COALESCE(?, model),"
                    " task_type = COALESCE(?, task_type), status = ?, images_json = ?, usage_json = ?,"
                    " error_json = ?, note = NULL, claim_owner = NULL, updated_at = ? WHERE task_id = ?",
                    params,
                )
            )
        finally:
            _forget(claim)
        return None

    async def release_claim(self, claim: Claim) -> None:
        """PiAPI refused the create (nothing was made): forget the intent."""
        try:
            await self._run(
                lambda db: db.execute("DELETE FROM tasks WHERE task_id = ?", (claim.placeholder,))
            )
        finally:
            _forget(claim)

    async def mark_unknown(self, claim: Claim, note: str = NOTE_MAY_EXIST) -> None:
        """The create may have reached PiAPI but its answer did not come back: keep it as ``unknown``."""
        params = (UNKNOWN, note, self._now(), claim.placeholder)
        try:
            await self._run(
                lambda db: db.execute(
                    "UPDATE tasks SET status = ?, note = ?, claim_owner = NULL, updated_at = ?"
                    " WHERE task_id = ?",
                    params,
                )
            )
        finally:
            _forget(claim)

    async def recover(self, placeholder: str, task: Task) -> bool:
        """An ``unknown`` intent was found on PiAPI as ``task``: give the row its real id and state."""
        params = (task.task_id, *_state_columns(task), self._now(), placeholder, UNKNOWN)

        def work(db: sqlite3.Connection) -> bool:
            if db.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task.task_id,)).fetchone():
                return False
            cursor = db.execute(
                "UPDATE tasks SET task_id = ?, status = ?, images_json = ?, usage_json = ?, error_json = ?,"
                " note = NULL, claim_owner = NULL, updated_at = ? WHERE task_id = ? AND status = ?",
                params,
            )
            return cursor.rowcount > 0

        return await self._run(work)

    async def mark_gone(self, task_id: str) -> bool:
        """PiAPI answered 404 for a task of the ledger: it shows as ``unknown`` and is never reused."""
        params = (UNKNOWN, NOTE_GONE, self._now(), task_id)
        changed = await self._run(
            lambda db: (
                db.execute(
                    "UPDATE tasks SET status = ?, note = ?, updated_at = ? WHERE task_id = ?"
                    " AND status NOT IN ('completed', 'failed', 'cancelled')",
                    params,
                ).rowcount
            )
        )
        return changed > 0

    async def record_created(
        self,
        task: Task,
        *,
        tool: str,
        task_input: dict[str, Any],
        fingerprint: str,
        estimated_usd: float | None = None,
    ) -> str | None:
        """Record a task PiAPI has just accepted, as first seen; recording the same id again does nothing.

        Returns ``None`` (see :meth:`resolve_claim`).
        """
        now = self._now()
        params = (
            task.task_id,
            tool,
            task.model,
            task.task_type,
            json.dumps(task_input, sort_keys=True),
            fingerprint,
            now,
            now,
            *_state_columns(task),
            estimated_usd,
        )
        await self._run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO tasks (task_id, tool, model, task_type, input_json, input_hash,"
                " created_at, updated_at, status, images_json, usage_json, error_json, estimated_usd)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )
        )
        return None

    async def record_seen(self, task: Task, local_paths: list[str] | None = None) -> bool:
        """Store the latest state of a task the ledger knows; returns whether it knew it.

        Updates of many tasks arriving together share one transaction (see :meth:`_run`).
        """
        params = (
            *_state_columns(task),
            json.dumps(local_paths) if local_paths is not None else None,
            self._now(),
            task.task_id,
        )
        changed = await self._run(
            lambda db: (
                db.execute(
                    "UPDATE tasks SET status = ?, images_json = ?, usage_json = ?, error_json = ?,"
                    " paths_json = COALESCE(?, paths_json), note = NULL, updated_at = ? WHERE task_id = ?",
                    params,
                ).rowcount
            )
        )
        return changed > 0

    # --- reading -------------------------------------------------------------------------------

    async def get(self, task_id: str) -> LedgerEntry | None:
        """The entry for ``task_id``, if this server created it."""
        row = await self._run(
            lambda db: db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone(),
            writes=False,
        )
        return _entry(row) if row else None

    async def recent(self, *, status: str | None = None, limit: int = 20) -> list[LedgerEntry]:
        """Entries newest first, optionally only those whose last status is ``status``.

        A create whose process died while sending it shows as ``unknown`` (it may exist on PiAPI).
        """
        query = f"SELECT {_COLUMNS} FROM tasks"
        params: list[Any] = []
        if status:
            query += " WHERE status = ?"
            params.append(status.lower())
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(limit)

        def work(db: sqlite3.Connection) -> list[Any]:
            self._settle(db, None)
            return db.execute(query, params).fetchall()

        return [_entry(row) for row in await self._run(work)]

    async def find_recent_request(self, fingerprint: str, *, within_seconds: float) -> LedgerEntry | None:
        """The newest task created from the same request in the last ``within_seconds``, not failed."""
        params = (fingerprint, self._now() - within_seconds)
        row = await self._run(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE input_hash = ? AND created_at >= ?"
                " AND status NOT IN ('failed', 'cancelled') ORDER BY created_at DESC LIMIT 1",
                params,
            ).fetchone(),
            writes=False,
        )
        return _entry(row) if row else None

    async def spent_usd(self) -> float:
        """What this ledger's tasks of the last 24 h cost, in US$ (see :func:`_row_cost`)."""
        now = self._now()
        return await self._run(lambda db: self._spent(db, now), writes=False)

    async def known_ids(self, task_ids: list[str]) -> set[str]:
        """Which of ``task_ids`` the ledger already holds."""
        if not task_ids:
            return set()
        marks = ",".join("?" * len(task_ids))
        rows = await self._run(
            lambda db: db.execute(
                f"SELECT task_id FROM tasks WHERE task_id IN ({marks})", task_ids
            ).fetchall(),
            writes=False,
        )
        return {row[0] for row in rows}

    def _spent(self, db: sqlite3.Connection, now: float) -> float:
        rows = db.execute(
            "SELECT status, usage_json, estimated_usd FROM tasks WHERE created_at >= ?",
            (now - SPEND_WINDOW_SECONDS,),
        ).fetchall()
        return round(sum(_row_cost(*row) for row in rows), 7)

    def _settle(self, db: sqlite3.Connection, fingerprint: str | None) -> None:
        """Turn claims whose process is gone (or whose lease ran out) into ``unknown`` intents."""
        query = "SELECT task_id, claim_owner FROM tasks WHERE status = ?"
        params: list[Any] = [CREATING]
        if fingerprint is not None:
            query += " AND input_hash = ?"
            params.append(fingerprint)
        now = self._now()
        for task_id, owner in db.execute(query, params).fetchall():
            if not _claim_alive(owner, now):
                db.execute(
                    "UPDATE tasks SET status = ?, note = ?, claim_owner = NULL, updated_at = ?"
                    " WHERE task_id = ?",
                    (UNKNOWN, NOTE_MAY_EXIST, now, task_id),
                )


_COLUMNS: Final = (
    "task_id, tool, model, task_type, status, input_json, images_json, paths_json, usage_json,"
    " error_json, note, created_at, updated_at"
)


def _add_columns(db: sqlite3.Connection) -> None:
    have = {row[1] for row in db.execute("PRAGMA table_info(tasks)").fetchall()}
    for name, kind in _ADDED_COLUMNS:
        if name not in have:
            db.execute(f"ALTER TABLE tasks ADD COLUMN {name} {kind}")


def _row_cost(status: str, usage_json: str | None, estimated_usd: float | None) -> float:
    """One task's cost for the daily budget: what PiAPI charged where it said, else the estimate.

    A running task counts its estimate, or what PiAPI holds for it (``frozen``) if more. A failed or
    cancelled task PiAPI said nothing about counts nothing (PiAPI does not charge them); an intent
    whose create may have happened counts its estimate. Rows of ledgers older than estimates count
    only what PiAPI charged.
    """
    consume = frozen = None
    try:
        usage = json.loads(usage_json) if usage_json else None
    except ValueError:
        usage = None
    if isinstance(usage, dict):
        consume, frozen = _units(usage.get("consume")), _units(usage.get("frozen"))
    estimate = estimated_usd if isinstance(estimated_usd, int | float) and estimated_usd > 0 else 0.0
    if status in TERMINAL_STATUSES:
        if consume is not None:
            return usd_of_units(consume)
        return 0.0 if status in (FAILED, CANCELLED) else estimate
    held = max(consume or 0, frozen or 0)
    return max(estimate, usd_of_units(held))


def _units(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _owner(token: str, now: float) -> str:
    return json.dumps({"host": _HOST, "pid": os.getpid(), "token": token, "at": now})


def _forget(claim: Claim) -> None:
    with _LIVE_LOCK:
        _LIVE_CLAIMS.discard(claim.token)


def _claim_alive(owner: str | None, now: float) -> bool:
    """Whether the process that wrote this claim may still be sending its create."""
    try:
        data = json.loads(owner or "")
        host, pid, token, at = data["host"], int(data["pid"]), str(data["token"]), float(data["at"])
    except (ValueError, TypeError, KeyError):
        return False
    if now - at > CLAIM_LEASE_SECONDS:
        return False
    if pid == os.getpid() and host == _HOST:
        with _LIVE_LOCK:
            return token in _LIVE_CLAIMS
    if host != _HOST or sys.platform == "win32":
        return True  # cannot look: trust the lease
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists (another user's process)
    return True


def _is_corrupt(err: sqlite3.DatabaseError) -> bool:
    """A file that is not (or no longer) a sound database, as opposed to one we may not open or write."""
    # SQLite reports a damaged or foreign file as SQLITE_CORRUPT / SQLITE_NOTADB, which Python raises
    # as plain DatabaseError; OperationalError is "cannot open / write here" (permissions, full disk).
    return type(err) is sqlite3.DatabaseError


def _move_aside(path: Path, clock: Clock) -> Path | None:
    """Rename a corrupt ledger (and its WAL files) out of the way; ``None`` if it cannot be moved."""
    stamp = clock.now().strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        os.replace(path, target)
    except OSError:
        return None
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with suppress(OSError):
            os.replace(side, target.with_name(target.name + suffix))
    return target


def _state_columns(task: Task) -> tuple[str, str, str | None, str | None]:
    """status, images_json (every output URL, whatever its kind), usage_json, error_json for ``task``."""
    return (
        task.status,
        json.dumps(task.urls),
        task.usage.model_dump_json() if task.usage else None,
        task.error.model_dump_json() if task.error else None,
    )


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    (task_id, tool, model, task_type, status, input_json, images_json, paths_json, usage_json, error_json,
     note, created_at, updated_at) = row  # fmt: skip
    return LedgerEntry(
        task_id=task_id,
        tool=tool,
        model=model,
        task_type=task_type,
        status=status,
        done=status in TERMINAL_STATUSES,
        input=json.loads(input_json),
        outputs=json.loads(images_json),
        local_paths=json.loads(paths_json),
        usage=json.loads(usage_json) if usage_json else None,
        error=json.loads(error_json) if error_json else None,
        note=note,
        created_at=datetime.fromtimestamp(created_at, UTC),
        updated_at=datetime.fromtimestamp(updated_at, UTC),
    )
