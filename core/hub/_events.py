"""What happened in a hub, as typed events on one in-process stream.

Every state change comes out of the one place that applies scheduler effects
(`Hub._apply`) or changes the fleet (`Hub.attach`, `Hub.detach`, `Hub.update`),
numbered in order. Metrics, the dashboard, an event outbox and statistics all read
this stream instead of reaching into the hub.

A subscriber can never slow the scheduler down: `publish` appends to each
subscriber's bounded buffer and returns; a subscriber that falls behind loses its
oldest events and is told so by a `Missed` event where the gap is.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import msgspec
import trio

from .._model import Outcome, TaskState

__all__ = [
    "Event",
    "EventStream",
    "Missed",
    "TaskCancelled",
    "TaskDispatched",
    "TaskFinished",
    "TaskRequeued",
    "TaskSubmitted",
    "WorkerAttached",
    "WorkerCapacityChanged",
    "WorkerDetached",
]

#: events a subscriber may fall behind by before it starts missing some
DEFAULT_BUFFER = 10_000


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    #: position in the hub's stream: consecutive, starting at 1
    seq: int = 0
    #: hub time (wall-clock seconds)
    at: float = 0.0


class TaskSubmitted(Event, frozen=True, tag="task.submitted"):
    task: str
    name: str
    attrs: dict[str, str]
    priority: int


class TaskDispatched(Event, frozen=True, tag="task.dispatched"):
    task: str
    name: str
    worker: str
    attempt: int


class TaskRequeued(Event, frozen=True, tag="task.requeued"):
    task: str
    name: str
    worker: str
    reason: Outcome


class TaskFinished(Event, frozen=True, tag="task.finished"):
    """A final state (done or failed), published once it is durable."""

    task: str
    name: str
    state: TaskState
    #: whose answer or loss ended it; None for a schedule timeout
    worker: str | None
    error: str | None = None


class TaskCancelled(Event, frozen=True, tag="task.cancelled"):
    task: str
    name: str
    #: the worker that was running it, if any
    worker: str | None


class WorkerAttached(Event, frozen=True, tag="worker.attached"):
    worker: str
    transport: str
    subscriptions: list[dict[str, object]]
    capacity: int | None


class WorkerDetached(Event, frozen=True, tag="worker.detached"):
    worker: str
    reason: str
    #: tasks it held, rescheduled in the same step
    requeued: int


class WorkerCapacityChanged(Event, frozen=True, tag="worker.capacity_changed"):
    worker: str
    capacity: int | None


class Missed(Event, frozen=True, tag="missed"):
    """This subscriber fell behind: `count` events before this point were dropped."""

    count: int


class _Subscriber:
    __slots__ = ("buffer", "missed", "size", "wake")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer: deque[Event] = deque()
        self.missed = 0
        self.wake = trio.Event()


class EventStream:
    """Numbered events, fanned out to bounded subscriber buffers."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seq = 0
        self._subscribers: set[_Subscriber] = set()
        #: does anyone subscribe? If not, the hot paths `skip` instead of building events
        #: (an attribute, not a property: it is read three times per task)
        self.watched = False
        #: events dropped from subscribers' buffers, over all subscribers
        self.dropped = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def backlog(self) -> int:
        """Events the slowest subscriber has not read yet (0 with no subscriber)."""
        return max((len(sub.buffer) for sub in self._subscribers), default=0)

    def skip(self) -> None:
        """Number an event that nobody would receive, without building it."""
        self._seq += 1

    def publish(self, event: Event) -> None:
        """Number `event`, stamp it with the hub's time and hand it to every subscriber."""
        self._seq += 1
        if not self._subscribers:  # nobody to hand it to: skip the stamped copy
            return
        event = msgspec.structs.replace(event, seq=self._seq, at=self._clock())
        for sub in self._subscribers:
            if len(sub.buffer) >= sub.size:
                sub.buffer.popleft()
                sub.missed += 1
                self.dropped += 1
            sub.buffer.append(event)
            sub.wake.set()

    @contextmanager
    def subscribe(self, buffer: int = DEFAULT_BUFFER) -> Iterator[AsyncIterator[Event]]:
        """Events from now on, for as long as the block lasts:

            with hub.events.subscribe() as events:
                async for event in events: ...
        """
        if buffer < 1:
            raise ValueError("a subscriber needs room for at least one event")
        sub = _Subscriber(buffer)
        self._subscribers.add(sub)
        self.watched = True
        try:
            yield self._receive(sub)
        finally:
            self._subscribers.discard(sub)
            self.watched = bool(self._subscribers)

    @contextmanager
    def subscribe_batches(self, buffer: int = DEFAULT_BUFFER, *, idle: float = math.inf
                          ) -> Iterator[AsyncIterator[list[Event]]]:
        """As `subscribe`, but each step gives every event that arrived meanwhile (a
        `Missed` first where some were dropped): one wake-up per burst, not per event.
        After `idle` seconds without an event it gives an empty list."""
        if buffer < 1:
            raise ValueError("a subscriber needs room for at least one event")
        sub = _Subscriber(buffer)
        self._subscribers.add(sub)
        self.watched = True
        try:
            yield self._receive_batches(sub, idle)
        finally:
            self._subscribers.discard(sub)
            self.watched = bool(self._subscribers)

    async def _receive_batches(self, sub: _Subscriber, idle: float
                               ) -> AsyncIterator[list[Event]]:
        while True:
            if not sub.buffer:
                sub.wake = trio.Event()
                with trio.move_on_after(idle):
                    await sub.wake.wait()
                if not sub.buffer:
                    yield []
                    continue
            batch: list[Event] = []
            if sub.missed:
                count, sub.missed = sub.missed, 0
                first = sub.buffer[0]
                batch.append(Missed(seq=first.seq - 1, at=first.at, count=count))
            batch.extend(sub.buffer)
            sub.buffer.clear()
            yield batch

    async def _receive(self, sub: _Subscriber) -> AsyncIterator[Event]:
        while True:
            if not sub.buffer:
                sub.wake = trio.Event()
                await sub.wake.wait()
            if sub.missed:
                count, sub.missed = sub.missed, 0
                first = sub.buffer[0]
                yield Missed(seq=first.seq - 1, at=first.at, count=count)
            yield sub.buffer.popleft()
