"""Task events: "something happened to task X", from whoever learns it to whoever waits on X.

A PiAPI webhook lands on whichever replica the load balancer picks; the call waiting on that task
may be on another. The waiter therefore does not listen to the webhook route itself: it subscribes
to a task's events (:meth:`TaskEvents.subscribe`) and the route announces them
(:meth:`TaskEvents.notify`). An event carries only the task id, never the webhook's body: the
waiter, woken, asks PiAPI for the task with its key (the same checked answer as any poll), so an
event can end a wait early but can never put anything into a result.

:class:`LocalTaskEvents` reaches waiters in this process. The interface is small on purpose, so a
shared implementation can stand beside it: with PostgreSQL, ``notify`` is ``NOTIFY piapi_task,
'<id>'`` and a subscription is a ``LISTEN`` on one pooled connection that dispatches ids to the
local subscribers (for example by delegating to a :class:`LocalTaskEvents`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import anyio

from piapi_mcp.timing import Clock


class TaskSubscription(Protocol):
    """One waiter's interest in one task's events."""

    async def wait(self, clock: Clock, seconds: float) -> bool:
        """Wait up to ``seconds`` on ``clock`` for an event; ``True`` if one came (or since the last wait).

        An event announced while the waiter was busy elsewhere (polling) is not lost: the next
        wait returns ``True`` at once.
        """
        ...


class TaskEvents(Protocol):
    """Announces task events and lets waiters subscribe to them."""

    async def notify(self, task_id: str) -> None:
        """Tell every waiter subscribed to ``task_id`` that its task changed."""
        ...

    def subscribe(self, task_id: str) -> AbstractAsyncContextManager[TaskSubscription]:
        """Subscribe to ``task_id``'s events for the duration of the ``async with`` block."""
        ...


class _LocalSubscription:
    """A subscription of :class:`LocalTaskEvents`: a flag, and an event to wake a wait."""

    def __init__(self) -> None:
        self._pending = False
        self._woken = anyio.Event()

    def set(self) -> None:
        """Mark an event and wake the current wait, if any."""
        self._pending = True
        self._woken.set()

    async def wait(self, clock: Clock, seconds: float) -> bool:
        """See :meth:`TaskSubscription.wait`."""
        if not self._pending:
            async with anyio.create_task_group() as group:

                async def sleep() -> None:
                    await clock.sleep(seconds)
                    group.cancel_scope.cancel()

                async def woken() -> None:
                    await self._woken.wait()
                    group.cancel_scope.cancel()

                group.start_soon(woken)
                group.start_soon(sleep)
        pushed, self._pending = self._pending, False
        if pushed:
            self._woken = anyio.Event()
        return pushed


class LocalTaskEvents:
    """Task events within this process (one server, or replicas that each wait on their own tasks)."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[_LocalSubscription]] = {}
        #: Events announced so far (tests and the start-up log count them).
        self.notified = 0

    async def notify(self, task_id: str) -> None:
        """See :meth:`TaskEvents.notify`."""
        self.notified += 1
        for subscription in self._subscribers.get(task_id, ()):
            subscription.set()

    @asynccontextmanager
    async def subscribe(self, task_id: str) -> AsyncIterator[TaskSubscription]:
        """See :meth:`TaskEvents.subscribe`."""
        subscription = _LocalSubscription()
        self._subscribers.setdefault(task_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(task_id)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[task_id]
