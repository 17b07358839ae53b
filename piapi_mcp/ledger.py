"""The task ledger: every task this server creates, recorded durably before anyone waits on it.

SQLite under ``PIAPI_STATE_DIR`` (``tasks.sqlite3``), in WAL mode with a busy time-out so that
several server processes can share one ledger. Each operation opens its own short connection:
the ledger is written a few times per task, far from any hot path, and a connection per call
keeps it safe across threads and processes. Inputs are stored as sent to PiAPI; they hold no
secrets (the API key travels in a header and is never stored).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, Field

from piapi_mcp.models import TERMINAL_STATUSES, Task
from piapi_mcp.timing import Clock, SystemClock

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
_BUSY_TIMEOUT_SECONDS: Final = 10.0


class LedgerEntry(BaseModel):
    """One task as the ledger remembers it."""

    task_id: str = Field(description="PiAPI's id for the task.")
    tool: str = Field(description="The tool that created it, e.g. 'kontext_edit'.")
    model: str | None = Field(description="PiAPI model.")
    task_type: str | None = Field(description="PiAPI task type.")
    status: str = Field(description="Last status seen (lowercase).")
    done: bool = Field(description="Whether that status is final.")
    input: dict[str, Any] = Field(description="The input sent to PiAPI.")
    images: list[str] = Field(description="Output image URLs, once known.")
    local_paths: list[str] = Field(description="Where outputs were saved on this machine, if they were.")
    usage: dict[str, Any] | None = Field(description="PiAPI's usage figures, as last seen.")
    error: dict[str, Any] | None = Field(description="PiAPI's error, for failed tasks.")
    created_at: datetime = Field(description="When this server created the task.")
    updated_at: datetime = Field(description="When this entry last changed.")


def request_fingerprint(model: str, task_type: str, task_input: dict[str, Any]) -> str:
    """A stable hash of what a create would send: the same edit asked twice has the same one."""
    canonical = json.dumps([model, task_type, task_input], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class TaskLedger:
    """Durable record of created tasks; ``path=None`` keeps it in memory (one process only)."""

    def __init__(self, path: Path | None, clock: Clock | None = None) -> None:
        self._path = path
        self._clock: Clock = clock or SystemClock()
        self._memory: sqlite3.Connection | None = None
        if path is None:
            self._memory = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._memory.executescript(_SCHEMA)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)

    @property
    def path(self) -> Path | None:
        """The SQLite file, or ``None`` for an in-memory ledger."""
        return self._path

    def _now(self) -> float:
        return self._clock.now().timestamp()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self._memory is not None:
            yield self._memory
            return
        assert self._path is not None
        db = sqlite3.connect(self._path, timeout=_BUSY_TIMEOUT_SECONDS, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    def record_created(self, task: Task, *, tool: str, task_input: dict[str, Any], fingerprint: str) -> None:
        """Record a task PiAPI has just accepted, as first seen; recording the same id again does nothing."""
        now = self._now()
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO tasks (task_id, tool, model, task_type, input_json, input_hash,"
                " created_at, updated_at, status, images_json, usage_json, error_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.task_id,
                    tool,
                    task.model,
                    task.task_type,
                    json.dumps(task_input, sort_keys=True),
                    fingerprint,
                    now,
                    now,
                    *_state_columns(task),
                ),
            )

    def record_seen(self, task: Task, local_paths: list[str] | None = None) -> bool:
        """Store the latest state of a task the ledger knows; returns whether it knew it."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE tasks SET status = ?, images_json = ?, usage_json = ?, error_json = ?,"
                " paths_json = COALESCE(?, paths_json), updated_at = ? WHERE task_id = ?",
                (
                    *_state_columns(task),
                    json.dumps(local_paths) if local_paths is not None else None,
                    self._now(),
                    task.task_id,
                ),
            )
            return cursor.rowcount > 0

    def get(self, task_id: str) -> LedgerEntry | None:
        """The entry for ``task_id``, if this server created it."""
        with self._connect() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return _entry(row) if row else None

    def recent(self, *, status: str | None = None, limit: int = 20) -> list[LedgerEntry]:
        """Entries newest first, optionally only those whose last status is ``status``."""
        query = f"SELECT {_COLUMNS} FROM tasks"
        params: list[Any] = []
        if status:
            query += " WHERE status = ?"
            params.append(status.lower())
        query += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(limit)
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
        return [_entry(row) for row in rows]

    def find_recent_request(self, fingerprint: str, *, within_seconds: float) -> LedgerEntry | None:
        """The newest task created from the same request in the last ``within_seconds``, not failed."""
        since = self._now() - within_seconds
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM tasks WHERE input_hash = ? AND created_at >= ?"
                " AND status NOT IN ('failed', 'cancelled') ORDER BY created_at DESC LIMIT 1",
                (fingerprint, since),
            ).fetchone()
        return _entry(row) if row else None


_COLUMNS: Final = (
    "task_id, tool, model, task_type, status, input_json, images_json, paths_json, usage_json,"
    " error_json, created_at, updated_at"
)


def _state_columns(task: Task) -> tuple[str, str, str | None, str | None]:
    """status, images_json, usage_json, error_json for ``task``."""
    return (
        task.status,
        json.dumps(task.images),
        task.usage.model_dump_json() if task.usage else None,
        task.error.model_dump_json() if task.error else None,
    )


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    (task_id, tool, model, task_type, status, input_json, images_json, paths_json, usage_json, error_json,
     created_at, updated_at) = row  # fmt: skip
    return LedgerEntry(
        task_id=task_id,
        tool=tool,
        model=model,
        task_type=task_type,
        status=status,
        done=status in TERMINAL_STATUSES,
        input=json.loads(input_json),
        images=json.loads(images_json),
        local_paths=json.loads(paths_json),
        usage=json.loads(usage_json) if usage_json else None,
        error=json.loads(error_json) if error_json else None,
        created_at=datetime.fromtimestamp(created_at, UTC),
        updated_at=datetime.fromtimestamp(updated_at, UTC),
    )
