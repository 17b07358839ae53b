"""Waiting for a PiAPI task within a time budget: adaptive polling, heartbeats and an ETA.

PiAPI has no push channel we can use from an MCP server, so we poll. Blind polling cannot be
both cheap and quick: for a 30 s task, detecting the end within 1.5 s by backoff alone costs
dozens of polls. So the waiter learns how long tasks of each (model, task_type) take (from
PiAPI's own timestamps) and backs off early, then polls tightly around the expected end.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio

from piapi_mcp.catalog import CATALOG
from piapi_mcp.client import PiAPIClient
from piapi_mcp.errors import (
    APIConnectionError,
    InvalidResponseError,
    PiAPIError,
    RateLimitError,
    UpstreamServerError,
)
from piapi_mcp.models import COMPLETED, Task
from piapi_mcp.timing import Clock

#: First pause after creation, growth factor and ceiling of the backoff between polls.
INITIAL_POLL_INTERVAL: Final = 0.5
POLL_BACKOFF: Final = 1.5
MAX_POLL_INTERVAL: Final = 5.0
#: Progress is reported at least this often, polled or not (the issue asks for <= 5 s).
HEARTBEAT_SECONDS: Final = 4.0
#: Around the expected end, poll often enough to notice the end within this share of the duration...
END_LAG_FRACTION: Final = 0.05
#: ...but never more often than this.
MIN_END_LAG: Final = 0.5
#: How many recent durations the estimator keeps per (model, task_type).
ESTIMATE_WINDOW: Final = 7
#: A poll started with less budget than this left is not worth its round trip.
_MIN_POLL_BUDGET: Final = 0.2
_SLACK: Final = 1e-6
#: A learned duration at or above this (a day) is nonsense in the durations file, and ignored.
_MAX_LEARNED_SECONDS: Final = 86_400.0

#: Typical durations before any task of the kind has been seen: each catalog entry's own.
DURATION_PRIORS: Final[dict[tuple[str | None, str | None], float]] = {
    spec.key: spec.typical_seconds for spec in CATALOG.all()
}

TRANSIENT_ERRORS: Final = (APIConnectionError, RateLimitError, UpstreamServerError, InvalidResponseError)

logger = logging.getLogger("piapi_mcp")


class DurationEstimator:
    """Remembers how long recent completed tasks took, per (model, task_type).

    With a ``path``, what it learns survives restarts: MCP hosts start a new stdio server for
    every session, and a server that forgot would poll its first task of each session blindly.
    """

    def __init__(
        self,
        window: int = ESTIMATE_WINDOW,
        priors: dict[tuple[str | None, str | None], float] | None = None,
        path: Path | None = None,
    ) -> None:
        self._window = window
        self._priors = dict(DURATION_PRIORS if priors is None else priors)
        self._seen: dict[tuple[str | None, str | None], deque[float]] = {}
        self._path = path
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        """Read what earlier runs learned; a file that is missing, unreadable or odd is only logged."""
        try:
            entries: Any = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as err:
            logger.warning("ignoring unreadable task duration file %s (%s)", path, type(err).__name__)
            return
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("seconds"), list):
                continue
            model, task_type = entry.get("model"), entry.get("task_type")
            if not (model is None or isinstance(model, str)) or not (
                task_type is None or isinstance(task_type, str)
            ):
                continue
            seconds = [
                float(s)
                for s in entry["seconds"]
                if isinstance(s, int | float) and not isinstance(s, bool) and 0 < s < _MAX_LEARNED_SECONDS
            ]
            if seconds:
                self._seen[(model, task_type)] = deque(seconds[-self._window :], maxlen=self._window)

    def _save(self, path: Path) -> None:
        entries = [
            {"model": model, "task_type": task_type, "seconds": list(seconds)}
            for (model, task_type), seconds in self._seen.items()
        ]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            scratch.write_text(json.dumps(entries), encoding="utf-8")
            os.replace(scratch, path)  # atomic: several servers may share the file
        except OSError:
            logger.warning("could not save task durations to %s", path, exc_info=True)

    def record(self, task: Task, fallback_seconds: float | None = None) -> None:
        """Learn from a completed task (PiAPI's timestamps first, else ``fallback_seconds``)."""
        if task.status != COMPLETED:
            return
        seconds = task.duration_seconds if task.duration_seconds is not None else fallback_seconds
        if seconds is None or seconds <= 0:
            return
        key = (task.model, task.task_type)
        self._seen.setdefault(key, deque(maxlen=self._window)).append(seconds)
        if self._path is not None:
            self._save(self._path)

    def estimate(self, model: str | None, task_type: str | None) -> float | None:
        """Median duration of recent tasks of this kind; before any, the prior for it, if one is known."""
        seen = self._seen.get((model, task_type))
        return statistics.median(seen) if seen else self._priors.get((model, task_type))


@dataclass(frozen=True)
class WaitUpdate:
    """A moment in a wait, as passed to the progress callback."""

    task: Task
    elapsed: float
    eta: float | None
    polls: int


@dataclass(frozen=True)
class WaitOutcome:
    """How a wait ended: with the last state seen, which may still be unfinished."""

    task: Task
    elapsed: float
    eta: float | None
    polls: int
    last_error: PiAPIError | None


OnUpdate = Callable[[WaitUpdate], Awaitable[None]]


def estimate_eta(estimate: float | None, elapsed: float) -> float | None:
    """Seconds left if a task of typical ``estimate`` duration has run ``elapsed``; ``None`` if unknown."""
    if estimate is None or elapsed > estimate * 1.5:
        return None
    return max(0.0, estimate - elapsed)


async def wait_for_task(
    client: PiAPIClient,
    task: Task,
    *,
    clock: Clock,
    estimator: DurationEstimator,
    deadline: float,
    created_at: float,
    on_update: OnUpdate,
) -> WaitOutcome:
    """Poll ``task`` until it is done or the monotonic ``deadline`` passes, reporting as it goes.

    ``created_at`` is the monotonic time at which PiAPI accepted the task. ``on_update`` is
    awaited whenever the status changes and at least every :data:`HEARTBEAT_SECONDS`.
    Passing errors (network, 429, 5xx, garbled answers) are retried until the deadline; the
    outcome carries the last one. Any other PiAPI error is raised.

    Raises:
        PiAPIError: an error that waiting longer cannot fix (bad key, unknown task...).
    """
    polls = 0
    interval = INITIAL_POLL_INTERVAL
    last_error: PiAPIError | None = None
    now = clock.monotonic()
    next_poll = now + interval
    last_update = now
    estimate = estimator.estimate(task.model, task.task_type)

    while not task.done:
        now = clock.monotonic()
        if deadline - now < _MIN_POLL_BUDGET:
            break  # too little time left for another poll to be worth waiting for
        # Re-read: a task of the same kind finishing meanwhile may have taught us its duration.
        estimate = estimator.estimate(task.model, task.task_type)
        if estimate is not None:
            next_poll = _aim_at_expected_end(next_poll, now, created_at + estimate, estimate)
        wake = min(next_poll, last_update + HEARTBEAT_SECONDS, deadline)
        await clock.sleep(wake - now)
        now = clock.monotonic()

        # The slack absorbs float rounding: sleeping "until t" may wake a hair before t.
        if now >= next_poll - _SLACK:
            previous_status = task.status
            try:
                with anyio.fail_after(deadline - now):
                    task = await client.get_task(task.task_id)
                last_error = None
            except TimeoutError:
                break
            except TRANSIENT_ERRORS as err:
                last_error = err
                if isinstance(err, RateLimitError) and err.retry_after:
                    interval = max(interval, err.retry_after)
            polls += 1
            now = clock.monotonic()
            interval = min(interval * POLL_BACKOFF, MAX_POLL_INTERVAL)
            next_poll = now + interval
            if task.status != previous_status or task.done:
                await on_update(_update(task, now - created_at, estimate, polls))
                last_update = clock.monotonic()
                continue
        if clock.monotonic() - last_update >= HEARTBEAT_SECONDS - _SLACK:
            await on_update(_update(task, clock.monotonic() - created_at, estimate, polls))
            last_update = clock.monotonic()

    elapsed = clock.monotonic() - created_at
    if task.done:
        estimator.record(task, fallback_seconds=elapsed)
    return WaitOutcome(
        task=task,
        elapsed=elapsed,
        eta=None if task.done else estimate_eta(estimate, elapsed),
        polls=polls,
        last_error=last_error,
    )


def _update(task: Task, elapsed: float, estimate: float | None, polls: int) -> WaitUpdate:
    return WaitUpdate(task=task, elapsed=elapsed, eta=estimate_eta(estimate, elapsed), polls=polls)


def _aim_at_expected_end(next_poll: float, now: float, expected_end: float, estimate: float) -> float:
    """Pull the next poll in so that one lands just after the expected end, then tightly after it."""
    tight = max(MIN_END_LAG, END_LAG_FRACTION * estimate) * 0.9
    if now > expected_end + 4 * tight:
        return next_poll
    return min(next_poll, max(now + tight, expected_end + tight / 2))
