"""The duration estimator behind ETAs and polling: what it learns, and that it survives restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from piapi_mcp import DurationEstimator, Task


def completed_task(seconds: float, model: str = "Qubico/flux1-dev-advanced") -> Task:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return Task(
        task_id="t",
        model=model,
        task_type="kontext",
        status="completed",
        created_at=start,
        ended_at=start + timedelta(seconds=seconds),
    )


def test_kontext_starts_from_piapi_documented_duration_then_learns_the_median() -> None:
    """Before any task the prior is used; afterwards the median of what was seen."""
    estimator = DurationEstimator()
    assert estimator.estimate("Qubico/flux1-dev-advanced", "kontext") == 32.7

    for seconds in (10, 12, 50):
        estimator.record(completed_task(seconds))

    assert estimator.estimate("Qubico/flux1-dev-advanced", "kontext") == 12
    assert estimator.estimate("other", "kontext") is None


def test_failed_tasks_teach_nothing() -> None:
    """A failure's duration says nothing about how long a success takes."""
    estimator = DurationEstimator(priors={})
    estimator.record(completed_task(3).model_copy(update={"status": "failed"}))

    assert estimator.estimate("Qubico/flux1-dev-advanced", "kontext") is None


def test_learned_durations_survive_a_restart(tmp_path: Path) -> None:
    """A new server process sharing the file starts with what the last one learned."""
    path = tmp_path / "state" / "durations.json"
    DurationEstimator(path=path).record(completed_task(7))

    assert DurationEstimator(path=path).estimate("Qubico/flux1-dev-advanced", "kontext") == 7


def test_an_unreadable_duration_file_is_ignored(tmp_path: Path) -> None:
    """A corrupt file never stops the server; it falls back to the prior."""
    path = tmp_path / "durations.json"
    path.write_text("{not json", encoding="utf-8")

    assert DurationEstimator(path=path).estimate("Qubico/flux1-dev-advanced", "kontext") == 32.7
