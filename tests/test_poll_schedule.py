"""How soon a finished task is noticed, and with how many polls: issue 11's targets, on the manual clock.

Every figure here is simulated time (the server and the simulator share a ``ManualClock``), so the
targets can be asserted exactly. Polls are the ``GET /api/v1/task/{id}`` requests the simulator
received for the task; lag is the clock when the caller has the result less the task's end.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from mcp import Client

from piapi_mcp import DurationEstimator, ManualClock, PiAPISimulator, Task
from tests.conftest import Progress, make_server

pytestmark = pytest.mark.anyio

DURATIONS = (7, 13, 21, 31, 47, 90)
#: Seconds a simulated task is pending before it starts (PiAPI's documented Kontext example: 1 s).
QUEUE = 1.0
KONTEXT = ("Qubico/flux1-dev-advanced", "kontext")
#: A wait long enough for the longest task.
WAIT = 200


@dataclass(frozen=True)
class Measured:
    """One call: how many polls it took and how late the caller learned of the end."""

    polls: int
    lag: float


class Caller:
    """One MCP session on a server over the simulator: each call a new Kontext edit (never deduplicated)."""

    def __init__(self, client: Client, simulator: PiAPISimulator, clock: ManualClock) -> None:
        self.client = client
        self.simulator = simulator
        self.clock = clock
        self._count = itertools.count()

    async def edit(self, seconds: float, progress: Progress | None = None, **arguments: Any) -> Measured:
        """A Kontext edit whose task runs ``seconds`` from create to end (for its reference inputs)."""
        self.simulator.controls.queue_seconds = QUEUE
        self.simulator.controls.duration = seconds - QUEUE
        prompt = f"make the sky purple, take {next(self._count)}"
        return await self.call(
            "kontext_edit",
            {"prompt": prompt, "image": "https://example.com/photo.png", "wait_seconds": WAIT, **arguments},
            progress,
        )

    async def call(self, tool: str, arguments: dict[str, Any], progress: Progress | None = None) -> Measured:
        """Call ``tool`` until its task ends; the polls it sent and its detection lag."""
        result = await self.client.call_tool(tool, arguments, progress_callback=progress)
        assert not result.is_error, result.content
        task_id = (result.structured_content or {})["task_id"]
        assert (result.structured_content or {})["done"] is True
        task = self.simulator.tasks[task_id]
        ended = task.created + task.queue_seconds + task.duration
        polls = self.simulator.requests.count(("GET", f"/api/v1/task/{task_id}"))
        return Measured(polls=polls, lag=self.clock.monotonic() - ended)


@pytest.fixture
async def caller(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> AsyncIterator[Caller]:
    async with Client(make_server(simulator, clock, http), raise_exceptions=True) as client:
        yield Caller(client, simulator, clock)


def fresh_poll_bound(seconds: float) -> int:
    return math.ceil(seconds / 2) + 1


def warm_lag_bound(seconds: float) -> float:
    return max(0.3, 0.03 * seconds)


def warm_poll_bound(seconds: float) -> int:
    return math.ceil(seconds / 4) + 3


@pytest.mark.parametrize("seconds", DURATIONS)
async def test_a_task_of_unlearned_duration_is_noticed_within_two_seconds_with_few_polls(
    caller: Caller, seconds: int
) -> None:
    """Fresh state (only the catalog's 32.7 s prior): never worse than a fixed 2 s poller."""
    measured = await caller.edit(seconds)

    assert 0 <= measured.lag <= 2.0, measured
    assert measured.polls <= fresh_poll_bound(seconds), measured


async def test_tasks_of_unlearned_durations_are_noticed_within_a_second_on_average(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Over the issue's durations, each on a fresh server, the mean detection lag is at most 1 s.

    A 2 s grid's lag depends on where the end falls against it: whole-second ends land on its polls,
    so the durations are also run half a second longer, and the mean is over both.
    """
    lags = []
    for seconds in [*DURATIONS, *(d + 0.5 for d in DURATIONS)]:
        async with Client(make_server(simulator, clock, http), raise_exceptions=True) as client:
            lags.append((await Caller(client, simulator, clock).edit(seconds)).lag)

    assert statistics.fmean(lags) <= 1.0, lags


async def test_a_task_ending_between_polls_is_still_noticed_within_two_seconds(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Whatever the phase of the end against the poll grid, the fresh lag stays within 2 s."""
    for seconds in (7.25, 7.5, 7.75, 8.0, 8.5, 33.9):
        async with Client(make_server(simulator, clock, http), raise_exceptions=True) as client:
            measured = await Caller(client, simulator, clock).edit(seconds)

        assert 0 <= measured.lag <= 2.0, (seconds, measured)
        assert measured.polls <= fresh_poll_bound(seconds), (seconds, measured)


@pytest.mark.parametrize("seconds", DURATIONS)
async def test_a_task_of_learned_duration_is_noticed_just_after_its_end_with_few_polls(
    caller: Caller, seconds: int
) -> None:
    """Warm state: once one task of the entry was seen, the next is noticed within 3 % (0.3 s)."""
    await caller.edit(seconds)

    measured = await caller.edit(seconds)

    assert 0 <= measured.lag <= warm_lag_bound(seconds), measured
    assert measured.polls <= warm_poll_bound(seconds), measured


async def test_a_task_longer_than_learned_falls_back_to_polling_every_two_seconds(caller: Caller) -> None:
    """Learn 7 s, then a 30 s task: the overrun estimate never costs more than a fresh state would."""
    await caller.edit(7)

    measured = await caller.edit(30)

    assert 0 <= measured.lag <= 2.0, measured
    assert measured.polls <= fresh_poll_bound(30), measured


async def test_a_duration_learned_at_ten_steps_is_scaled_for_forty(caller: Caller) -> None:
    """Kontext's time grows with its steps: learning at 10 steps predicts 40 as well as warm state."""
    # The simulator runs a task in proportion to its steps: 28 steps (the default) take 18 s here.
    await caller.edit(18, steps=10)
    short_task = next(reversed(caller.simulator.tasks.values()))

    measured = await caller.edit(18, steps=40)
    long_task = next(reversed(caller.simulator.tasks.values()))

    assert long_task.duration == pytest.approx(4 * short_task.duration)
    seconds = QUEUE + long_task.duration
    assert 0 <= measured.lag <= warm_lag_bound(seconds), measured
    assert measured.polls <= warm_poll_bound(seconds), measured


async def test_a_duration_learned_at_one_size_is_scaled_for_another(caller: Caller) -> None:
    """Output pixels drive Kontext's time too: a 512 x 512 task teaches what a 1024 x 1024 one takes."""
    await caller.edit(41, width=512, height=512)

    measured = await caller.edit(41)

    seconds = QUEUE + 40
    assert 0 <= measured.lag <= warm_lag_bound(seconds), measured
    assert measured.polls <= warm_poll_bound(seconds), measured


async def test_a_task_that_fails_at_once_is_noticed_by_the_early_poll(caller: Caller) -> None:
    """Even with a long learned duration, one early poll catches a task that fails in its first second."""
    await caller.edit(47)
    caller.simulator.controls.queue_seconds = 0.0
    caller.simulator.controls.duration = 0.5

    result = await caller.client.call_tool(
        "kontext_edit",
        {"prompt": "[fail] at once", "image": "https://example.com/photo.png", "wait_seconds": WAIT},
    )

    assert result.is_error
    (task_id,) = [
        task.task_id for task in caller.simulator.tasks.values() if "[fail]" in task.input["prompt"]
    ]
    task = caller.simulator.tasks[task_id]
    assert caller.clock.monotonic() - (task.created + task.duration) <= 1.0
    assert caller.simulator.requests.count(("GET", f"/api/v1/task/{task_id}")) == 1


async def test_progress_reaches_the_caller_every_few_seconds_between_sparse_polls(caller: Caller) -> None:
    """Heartbeats with an ETA come from the clock: at least every 5 s while polls are 10 s apart."""
    await caller.edit(90)
    progress = Progress()
    gets_before = len(caller.simulator.requests)

    measured = await caller.edit(90, progress)

    values = [value for value, _, _ in progress.seen]
    assert max(b - a for a, b in itertools.pairwise(values)) <= 5.0
    assert sum("left" in message for message in progress.messages) >= 10
    assert measured.polls <= warm_poll_bound(90) and len(caller.simulator.requests) > gets_before


async def test_a_queue_time_apart_from_the_run_moves_the_expected_end(caller: Caller) -> None:
    """Time counts from PiAPI's ``started_at``: a task queued 5 s longer than usual is still met at its end."""
    await caller.edit(21)
    caller.simulator.controls.queue_seconds = QUEUE + 5
    caller.simulator.controls.duration = 20

    measured = await caller.call(
        "kontext_edit",
        {"prompt": "a queued edit", "image": "https://example.com/photo.png", "wait_seconds": WAIT},
    )

    assert 0 <= measured.lag <= warm_lag_bound(21), measured
    assert measured.polls <= warm_poll_bound(26), measured


async def test_piapi_progress_figures_plan_the_polls_of_a_family_that_reports_them(caller: Caller) -> None:
    """Hailuo reports ``output.percent``: its first task, far from its 180 s prior, needs few polls."""
    caller.simulator.controls.queue_seconds = QUEUE
    caller.simulator.controls.duration = 59

    measured = await caller.call(
        "run_task",
        {
            "model": "hailuo",
            "task_type": "video_generation",
            "input": {"prompt": "a paper boat drifts down a rainy street", "duration": 6},
            "wait_seconds": WAIT,
        },
    )

    assert 0 <= measured.lag <= 2.0, measured
    assert measured.polls <= warm_poll_bound(60), measured


def completed(seconds: float, queue: float = 0.0, **task_input: Any) -> Task:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    return Task(
        task_id="t",
        model=KONTEXT[0],
        task_type=KONTEXT[1],
        status="completed",
        created_at=created,
        started_at=created + timedelta(seconds=queue),
        ended_at=created + timedelta(seconds=queue + seconds),
        input={"steps": 28, "width": 1024, "height": 1024, **task_input},
    )


def test_one_learned_figure_per_entry_scales_with_steps_and_pixels() -> None:
    """A run learned at 10 steps and 512 x 512 predicts 28 steps at 1024 x 1024 by the inputs' ratio."""
    estimator = DurationEstimator()
    estimator.record(completed(2.0, steps=10, width=512, height=512))

    assert estimator.estimate(*KONTEXT, {"steps": 10, "width": 512, "height": 512}) == pytest.approx(2.0)
    assert estimator.estimate(*KONTEXT, {"steps": 28, "width": 1024, "height": 1024}) == pytest.approx(22.4)


def test_queue_time_is_learned_apart_from_run_time() -> None:
    """PiAPI's started_at splits a task's time: the queue is not scaled by the inputs, the run is."""
    estimator = DurationEstimator()
    estimator.record(completed(10.0, queue=3.0, steps=14))

    expected = estimator.expect(*KONTEXT, {"steps": 28})
    assert expected is not None and expected.learned
    assert (expected.queue, expected.run) == pytest.approx((3.0, 20.0))


def test_the_prior_scales_with_inputs_but_is_not_trusted_as_learned() -> None:
    """Before any task, the catalog's 32.7 s (for 28 steps) is scaled, and marked as a prior."""
    expected = DurationEstimator().expect(*KONTEXT, {"steps": 14})

    assert expected is not None and not expected.learned
    assert expected.total == pytest.approx(32.7 / 2)
