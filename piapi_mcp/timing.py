"""Time as a seam: everything that waits or reads the clock takes a :class:`Clock`.

``SystemClock`` is the real one. ``ManualClock`` never waits: ``sleep`` moves its time forward
at once, so tests and the simulator can run minutes of PiAPI time in milliseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

import anyio
import anyio.lowlevel


class Clock(Protocol):
    """Monotonic time for intervals, wall time for timestamps, and a way to wait."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    def now(self) -> datetime:
        """The current wall time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (cancellable)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """``anyio.sleep``."""
        await anyio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that only moves when told to, or when someone sleeps on it (time travel)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0

    def monotonic(self) -> float:
        """Seconds since the clock was made, as far as it has been advanced."""
        return self._elapsed

    def now(self) -> datetime:
        """The start time plus the elapsed seconds."""
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``."""
        self._elapsed += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` and let other tasks run; never waits for real."""
        self.advance(seconds)
        await anyio.lowlevel.checkpoint()
