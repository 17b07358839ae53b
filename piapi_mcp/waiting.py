"""Waiting for a PiAPI task within a time budget: adaptive polling, heartbeats and an ETA.

Over stdio PiAPI has no way to reach us, so we poll. Blind polling cannot be
both cheap and quick: for a 30 s task, detecting the end within 1.5 s by backoff alone costs
dozens of polls. So the waiter learns how long tasks of each (model, task_type) take (from
PiAPI's own timestamps) and backs off early, then polls tightly around the expected end.

Hosted with a public URL, PiAPI also pushes task changes by webhook: the wait then listens to the
task's events (:mod:`piapi_mcp.events`), polls at once when one arrives, and polls
:data:`WEBHOOK_POLL_FACTOR` times less often meanwhile (a lost webhook costs latency, never the result).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import statistics
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import anyio

from piapi_mcp.client import PiAPIClient
from piapi_mcp.errors import (
    APIConnectionError,
    InvalidResponseError,
    PiAPIError,
    RateLimitError,
    UpstreamServerError,
)
from piapi_mcp.events import TaskSubscription
from piapi_mcp.models import COMPLETED, Task
from piapi_mcp.timing import Clock

#: The first poll, this long after the create: it catches tasks that fail at once, and PiAPI's
#: ``started_at`` (queue time apart from run time).
EARLY_POLL_SECONDS: Final = 1.0
#: Without an estimate we trust (none, a catalog prior only, or one the task has overrun), polls come
#: this often: never worse than a fixed 2 s poller.
UNKNOWN_POLL_INTERVAL: Final = 2.0
#: With a learned estimate, the few polls before the expected end start this far apart and double...
SPARSE_POLL_INTERVAL: Final = 4.0
#: ...up to this, so a failure midway is still noticed within it.
MAX_SPARSE_POLL_INTERVAL: Final = 10.0
#: Around the expected end, polls come this share of the estimate apart...
END_LAG_FRACTION: Final = 0.03
#: ...but never closer than this.
MIN_END_LAG: Final = 0.3
#: The poll aimed at the expected end lands this long after it (PiAPI's clock and ours differ a little).
END_POLL_OFFSET: Final = 0.05
#: A progress figure (0-100) below this says too little about the end to plan by.
MIN_PROGRESS_PERCENT: Final = 5.0
#: Progress is reported at least this often, polled or not (the issue asks for <= 5 s).
HEARTBEAT_SECONDS: Final = 4.0
#: How many recent durations the estimator keeps per (model, task_type).
ESTIMATE_WINDOW: Final = 7
#: With webhooks on, every polling interval is this many times longer: polling is only the fallback.
WEBHOOK_POLL_FACTOR: Final = 2.0
#: A poll started with less budget than this left is not worth its round trip.
_MIN_POLL_BUDGET: Final = 0.2
_SLACK: Final = 1e-6
#: A learned duration at or above this (a day) is nonsense in the durations file, and ignored.
_MAX_LEARNED_SECONDS: Final = 86_400.0


TRANSIENT_ERRORS: Final = (APIConnectionError, RateLimitError, UpstreamServerError, InvalidResponseError)

logger = logging.getLogger("piapi_mcp")


Key = tuple[str | None, str | None]


@functools.cache
def duration_priors() -> dict[Key, float]:
    """Typical durations (create to end, for the entry's reference inputs) before any task of the kind
    has been seen: each catalog entry's own. Read on first use: the catalog is not imported at start."""
    from piapi_mcp.catalog import CATALOG

    return {spec.key: spec.typical_seconds for spec in CATALOG.all()}


def duration_factor(model: str | None, task_type: str | None, task_input: dict[str, Any] | None) -> float:
    """How many times its entry's reference run time a task of these inputs takes (1 when unknown)."""
    from piapi_mcp.catalog import CATALOG

    spec = CATALOG.find(model, task_type) if model is not None and task_type is not None else None
    return spec.duration_factor(task_input) if spec is not None else 1.0


@dataclass(frozen=True)
class Estimate:
    """How long a task should take: its queue (create to start) and its run (start to end), in seconds."""

    queue: float
    run: float
    #: From tasks of its entry seen before (``True``), or only the catalog's prior (``False``).
    learned: bool

    @property
    def total(self) -> float:
        """Seconds from create to end."""
        return self.queue + self.run


class DurationEstimator:
    """Remembers how long recent completed tasks of each catalog entry (model, task_type) took.

    A run time is kept divided by the task's duration factor (its steps, pixels, video length...,
    from its spec's ``duration_drivers``), so one entry learns one figure and a task of other inputs
    scales it. Queue time (PiAPI's ``created_at`` to ``started_at``) is kept apart: it depends on
    PiAPI's load, not on the task. With a ``path``, what it learns survives restarts: MCP hosts start
    a new stdio server for every session, and a server that forgot would poll its first task blindly.
    """

    def __init__(
        self,
        window: int = ESTIMATE_WINDOW,
        priors: dict[Key, float] | None = None,
        path: Path | None = None,
    ) -> None:
        self._window = window
        self._priors = None if priors is None else dict(priors)
        self._runs: dict[Key, deque[float]] = {}
        self._queues: dict[Key, deque[float]] = {}
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
            if not isinstance(entry, dict):
                continue
            model, task_type = entry.get("model"), entry.get("task_type")
            if not (model is None or isinstance(model, str)) or not (
                task_type is None or isinstance(task_type, str)
            ):
                continue
            # "seconds": run times (files written before queue time was kept apart hold only these).
            for name, table in (("seconds", self._runs), ("queue", self._queues)):
                seconds = [s for s in _seconds_list(entry.get(name)) if s > 0 or name == "queue"]
                if seconds:
                    table[(model, task_type)] = deque(seconds[-self._window :], maxlen=self._window)

    def _save(self, path: Path) -> None:
        entries = [
            {
                "model": model,
                "task_type": task_type,
                "seconds": list(runs),
                "queue": list(self._queues.get((model, task_type), ())),
            }
            for (model, task_type), runs in self._runs.items()
        ]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            scratch.write_text(json.dumps(entries), encoding="utf-8")
            os.replace(scratch, path)  # atomic: several servers may share the file
        except OSError:
            logger.warning("could not save task durations to %s", path, exc_info=True)

    def record(self, task: Task, fallback_seconds: float | None = None) -> None:
        """Learn from a completed task (PiAPI's timestamps first, else ``fallback_seconds`` from create)."""
        if task.status != COMPLETED:
            return
        queue = _queue_seconds(task)
        if queue is not None and task.ended_at is not None and task.started_at is not None:
            run: float | None = (task.ended_at - task.started_at).total_seconds()
        else:
            queue = None
            run = task.duration_seconds if task.duration_seconds is not None else fallback_seconds
        if run is None or run <= 0:
            return
        factor = duration_factor(task.model, task.task_type, task.input)
        self._learn((task.model, task.task_type), run / factor, queue)

    def _learn(self, key: Key, run: float, queue: float | None) -> None:
        """Keep one sample (``run`` already divided by the task's duration factor) and save the file."""
        self._runs.setdefault(key, deque(maxlen=self._window)).append(run)
        if queue is not None:
            self._queues.setdefault(key, deque(maxlen=self._window)).append(queue)
        if self._path is not None:
            self._save(self._path)

    def expect(
        self, model: str | None, task_type: str | None, task_input: dict[str, Any] | None = None
    ) -> Estimate | None:
        """How long a task of this entry and these inputs should take; ``None`` when nothing is known."""
        key = (model, task_type)
        factor = duration_factor(model, task_type, task_input)
        runs = self._runs.get(key)
        if runs:
            queues = self._queues.get(key)
            queue = statistics.median(queues) if queues else 0.0
            return Estimate(queue=queue, run=statistics.median(runs) * factor, learned=True)
        prior = (duration_priors() if self._priors is None else self._priors).get(key)
        return None if prior is None else Estimate(queue=0.0, run=prior * factor, learned=False)

    def estimate(
        self, model: str | None, task_type: str | None, task_input: dict[str, Any] | None = None
    ) -> float | None:
        """Seconds from create to end a task of this kind should take (learned, else the prior), if known."""
        expected = self.expect(model, task_type, task_input)
        return None if expected is None else expected.total


def _seconds_list(value: object) -> list[float]:
    if not isinstance(value, list):
        return []
    return [
        float(s)
        for s in value
        if isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s < _MAX_LEARNED_SECONDS
    ]


def _queue_seconds(task: Task) -> float | None:
    """Seconds the task waited before PiAPI started it, by PiAPI's own timestamps; ``None`` if not known."""
    if task.created_at is None or task.started_at is None:
        return None
    queued = (task.started_at - task.created_at).total_seconds()
    return queued if 0 <= queued < _MAX_LEARNED_SECONDS else None


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


@dataclass
class _Expected:
    """Where the schedule aims: the expected end (monotonic), the duration it stands for, and trust."""

    end: float
    duration: float
    trusted: bool


class PollSchedule:
    """When to poll next, from what is known about a task's end.

    - Nothing trusted (no estimate, only the catalog's prior, or an overrun one): every
      :data:`UNKNOWN_POLL_INTERVAL` after an early poll, so never worse than a fixed 2 s poller.
    - A trusted end (learned from tasks of the entry, or from PiAPI's progress figure): the early poll,
      a few sparse ones (:data:`SPARSE_POLL_INTERVAL` doubling to :data:`MAX_SPARSE_POLL_INTERVAL`),
      one just after the expected end and one :func:`end_lag` later; past that the estimate is
      overrun, and polls come every :data:`UNKNOWN_POLL_INTERVAL`.

    ``factor`` stretches every interval (the early poll apart): :data:`WEBHOOK_POLL_FACTOR` when
    webhooks announce the end and polling is only the fallback.
    """

    def __init__(self, created_at: float, factor: float = 1.0) -> None:
        self._created = created_at
        self._factor = factor
        self._last: float | None = None
        self._sparse = SPARSE_POLL_INTERVAL * factor
        #: Where the 2 s grid of an untrusted or overrun estimate is anchored.
        self._grid: float | None = None

    def polled(self, at: float, sparse: bool) -> None:
        """Note a poll sent at ``at`` (``sparse``: one of the polls before the expected window)."""
        self._last = at
        if sparse:
            self._sparse = min(self._sparse * 2, MAX_SPARSE_POLL_INTERVAL * self._factor)

    def next_poll(self, now: float, expected: _Expected | None) -> tuple[float, bool]:
        """The monotonic time of the next poll, and whether it is a sparse one."""
        last = self._last
        if expected is None or not expected.trusted:
            if self._grid is None:
                self._grid = self._created + EARLY_POLL_SECONDS
            return max(now, self._grid_after(last)), False
        lag = end_lag(expected.duration) * self._factor
        # One poll just after the expected end, one more a lag later; a task ending a little early
        # is caught by the first within a lag, so no poll is spent before it.
        aim = expected.end + END_POLL_OFFSET
        end = aim + lag
        if last is None:
            first = min(self._created + EARLY_POLL_SECONDS, aim)
            if first < end:
                return max(now, first), False
        if last is None or last >= end - _SLACK:
            if self._grid is None:  # the estimate is overrun: back to a 2 s poller from here
                self._grid = last if last is not None else now
            return max(now, self._grid_after(last)), False
        self._grid = None  # a later estimate (progress, a start seen) may move the end out again
        if last >= aim - _SLACK:
            return max(now, aim + lag * math.floor((last - aim) / lag + 1 + _SLACK)), False
        candidate = last + self._sparse
        if candidate > aim - self._sparse:  # rather one longer gap than two polls close together
            return max(now, aim), False
        return max(now, candidate), True

    def _grid_after(self, last: float | None) -> float:
        grid = self._grid if self._grid is not None else self._created
        if last is None or last < grid - _SLACK:
            return grid
        interval = UNKNOWN_POLL_INTERVAL * self._factor
        return grid + interval * math.floor((last - grid) / interval + 1 + _SLACK)


def end_lag(duration: float) -> float:
    """How far apart polls come around the expected end of a task of ``duration`` seconds."""
    return max(MIN_END_LAG, END_LAG_FRACTION * duration)


def _started_at(task: Task, created_at: float) -> float | None:
    """When PiAPI started the task, on our monotonic clock (from PiAPI's own created-to-started gap)."""
    queued = _queue_seconds(task)
    return None if queued is None else created_at + queued


def _progress(task: Task) -> float | None:
    """PiAPI's progress figure (0-100) for a running task of a family that reports one, if it did."""
    from piapi_mcp.catalog import CATALOG

    spec = CATALOG.find(task.model, task.task_type) if task.model and task.task_type else None
    if spec is None or spec.progress_field is None or task.output is None:
        return None
    value = task.output.get(spec.progress_field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if MIN_PROGRESS_PERCENT <= value < 100 else None


def _expect(
    task: Task,
    estimator: DurationEstimator,
    created_at: float,
    by_progress: float | None,
) -> _Expected | None:
    """The expected end: PiAPI's progress first, else the estimate, from ``started_at`` once known."""
    estimate = estimator.expect(task.model, task.task_type, task.input)
    started = _started_at(task, created_at)
    if by_progress is not None and started is not None:
        return _Expected(end=by_progress, duration=by_progress - created_at, trusted=True)
    if estimate is None:
        return None
    begin = started if started is not None else created_at + estimate.queue
    end = begin + estimate.run
    return _Expected(end=end, duration=end - created_at, trusted=estimate.learned)


async def wait_for_task(
    client: PiAPIClient,
    task: Task,
    *,
    clock: Clock,
    estimator: DurationEstimator,
    deadline: float,
    created_at: float,
    on_update: OnUpdate,
    events: TaskSubscription | None = None,
) -> WaitOutcome:
    """Poll ``task`` until it is done or the monotonic ``deadline`` passes, reporting as it goes.

    ``created_at`` is the monotonic time at which PiAPI accepted the task. ``on_update`` is
    awaited whenever the status changes and at least every :data:`HEARTBEAT_SECONDS`, from the
    clock, however far apart the polls are. Polls follow :class:`PollSchedule`.
    With ``events`` (webhooks on), an event for the task triggers a poll at once, and the schedule
    is :data:`WEBHOOK_POLL_FACTOR` times sparser.
    Passing errors (network, 429, 5xx, garbled answers) are retried until the deadline; the
    outcome carries the last one. Any other PiAPI error is raised.

    Raises:
        PiAPIError: an error that waiting longer cannot fix (bad key, unknown task...).
    """
    polls = 0
    last_error: PiAPIError | None = None
    last_update = clock.monotonic()
    schedule = PollSchedule(created_at, WEBHOOK_POLL_FACTOR if events is not None else 1.0)
    by_progress: float | None = None
    retry_after = 0.0
    expected = _expect(task, estimator, created_at, by_progress)

    while not task.done:
        now = clock.monotonic()
        if deadline - now < _MIN_POLL_BUDGET:
            break  # too little time left for another poll to be worth waiting for
        # Re-read: a task of the same kind finishing meanwhile may have taught us its duration.
        expected = _expect(task, estimator, created_at, by_progress)
        next_poll, sparse = schedule.next_poll(now, expected)
        next_poll = max(next_poll, retry_after)
        wake = min(next_poll, last_update + HEARTBEAT_SECONDS, deadline)
        if events is None:
            await clock.sleep(wake - now)
            pushed = False
        else:
            # A webhook's event moves the poll to now (a 429's back-off still holds).
            pushed = await events.wait(clock, wake - now) and clock.monotonic() >= retry_after
        now = clock.monotonic()

        # The slack absorbs float rounding: sleeping "until t" may wake a hair before t.
        if pushed or now >= next_poll - _SLACK:
            sparse = sparse and not pushed
            previous_status = task.status
            schedule.polled(now, sparse)
            try:
                with anyio.fail_after(deadline - now):
                    task = await client.get_task(task.task_id)
                last_error = None
            except TimeoutError:
                break
            except TRANSIENT_ERRORS as err:
                last_error = err
                logger.debug("polling PiAPI task %s failed for now (%s)", task.task_id, type(err).__name__)
                if isinstance(err, RateLimitError) and err.retry_after:
                    retry_after = clock.monotonic() + err.retry_after
            polls += 1
            now = clock.monotonic()
            by_progress = _end_by_progress(task, created_at, now) or by_progress
            if task.status != previous_status or task.done:
                expected = _expect(task, estimator, created_at, by_progress)
                await on_update(_update(task, now, created_at, expected, polls))
                last_update = clock.monotonic()
                continue
        if clock.monotonic() - last_update >= HEARTBEAT_SECONDS - _SLACK:
            await on_update(_update(task, clock.monotonic(), created_at, expected, polls))
            last_update = clock.monotonic()

    now = clock.monotonic()
    elapsed = now - created_at
    if task.done:
        estimator.record(task, fallback_seconds=elapsed)
    return WaitOutcome(
        task=task,
        elapsed=elapsed,
        eta=None if task.done else _eta(now, created_at, expected),
        polls=polls,
        last_error=last_error,
    )


def _end_by_progress(task: Task, created_at: float, now: float) -> float | None:
    """The end PiAPI's progress figure points at: the run so far, stretched to 100 %."""
    percent = _progress(task)
    started = _started_at(task, created_at)
    if percent is None or started is None or now <= started:
        return None
    return started + (now - started) * 100 / percent


def _eta(now: float, created_at: float, expected: _Expected | None) -> float | None:
    return None if expected is None else estimate_eta(expected.duration, now - created_at)


def _update(task: Task, now: float, created_at: float, expected: _Expected | None, polls: int) -> WaitUpdate:
    return WaitUpdate(task=task, elapsed=now - created_at, eta=_eta(now, created_at, expected), polls=polls)
