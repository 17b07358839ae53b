"""Time as a seam: everything that waits or reads the clock takes a :class:`Clock`.

``SystemClock`` is the real one. ``ManualClock`` never waits: ``sleep`` moves its time forward
at once, so tests and the simulator can run minutes of PiAPI time in milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
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

    async def wait_until(self, moment: float) -> None:
        """Wait, without moving time, until ``monotonic()`` reaches ``moment`` (cancellable).

        For watchers that run beside other work (heartbeats): on a manual clock they wake when
        that work moves time, and never move it themselves.
        """
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

    async def wait_until(self, moment: float) -> None:
        """Sleep until ``time.monotonic()`` reaches ``moment``."""
        await anyio.sleep(max(0.0, moment - time.monotonic()))


#: How many event-loop turns a woken watcher gets before a sleeper moves time past it.
_WATCHER_TURNS = 50


class ManualClock:
    """A clock that only moves when told to, or when someone sleeps on it (time travel)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self._watchers: list[tuple[float, anyio.Event]] = []
        self._registrations = 0
        self._holds = 0
        self._released: anyio.Event | None = None

    def monotonic(self) -> float:
        """Seconds since the clock was made, as far as it has been advanced."""
        return self._elapsed

    def now(self) -> datetime:
        """The start time plus the elapsed seconds."""
        return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking the watchers whose moment has come."""
        self._elapsed += max(0.0, seconds)
        due = [watcher for watcher in self._watchers if watcher[0] <= self._elapsed]
        for watcher in due:
            self._watchers.remove(watcher)
            watcher[1].set()

    async def sleep(self, seconds: float) -> None:
        """Advance the clock by ``seconds`` and let other tasks run; never waits for real.

        Time passes through every watcher's moment on the way, and each woken watcher gets to run
        (until it watches again, or a few dozen turns of the event loop) before time moves on, as
        it would on a real clock.
        """
        target = self._elapsed + max(0.0, seconds)
        while self._watchers and (moment := min(m for m, _ in self._watchers)) <= target:
            registered = self._registrations
            self.advance(moment - self._elapsed)
            for _ in range(_WATCHER_TURNS):
                await anyio.lowlevel.checkpoint()
                if self._registrations != registered:
                    break
            await self._until_released()
        self.advance(target - self._elapsed)
        await anyio.lowlevel.checkpoint()

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep sleepers from moving time on while the block runs (a woken watcher's work that takes
        real time, such as an HTTP request in process, happens at the moment it woke at)."""
        self._holds += 1
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds and self._released is not None:
                self._released.set()
                self._released = None

    async def _until_released(self) -> None:
        if not self._holds:
            return
        while self._holds:
            if self._released is None:
                self._released = anyio.Event()
            await self._released.wait()
        # What the held work set in motion (a wait it ended, say) runs before time moves on.
        for _ in range(_WATCHER_TURNS):
            await anyio.lowlevel.checkpoint()

    async def wait_until(self, moment: float) -> None:
        """Wait until someone else moves the clock to ``moment``; never moves it."""
        if self._elapsed >= moment:
            await anyio.lowlevel.checkpoint()
            return
        watcher = (moment, anyio.Event())
        self._watchers.append(watcher)
        self._registrations += 1
        try:
            await watcher[1].wait()
        finally:
            if watcher in self._watchers:
                self._watchers.remove(watcher)
