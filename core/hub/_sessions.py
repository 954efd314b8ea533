"""Worker sessions: one per worker id, whatever transport it uses.

A session owns what the hub knows of a worker beyond scheduling: its identity and
transport, how it proves it is alive, and counters that outlive one connection —
a worker that reconnects under the same id (or a poller that changes its filters)
keeps its processed, failed and lost counts and the time it was first seen.

Liveness is one mechanism for every transport: a session is alive while its
`last_seen` is younger than its window (its kind's, or its own), or while the
transport holds it (a long poll in progress). `LivenessWatch` detaches the ones that fall silent.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import trio

from .._model import Subscription, Task

__all__ = ["Link", "Liveness", "LivenessWatch", "Session", "Sessions"]

#: detached sessions remembered for a reconnect, most recent first out last
KEEP_DETACHED = 10_000


class Link(Protocol):
    """How the hub reaches one attached worker."""

    def deliver(self, task: Task) -> None:
        """Hand `task` to the worker's transport. Must not block."""

    def close(self, reason: str) -> None:
        """End the connection: the hub detached the worker (`reason` says why)."""


class Liveness(enum.StrEnum):
    """How a worker proves it is alive."""

    #: a connection that answers pings (WebSocket workers)
    CONNECTION = "connection"
    #: requests within the window; alive throughout a long poll (HTTP polling workers)
    POLL = "poll"
    #: status reports within the window (a registry daemon)
    HEARTBEAT = "heartbeat"

    def silence(self, window: float) -> str:
        """Why a worker of this kind was dropped after `window` silent seconds."""
        what = {Liveness.CONNECTION: "answer to pings", Liveness.POLL: "poll",
                Liveness.HEARTBEAT: "status report"}[self]
        return f"no {what} for {window:g} s"


@dataclass(eq=False, slots=True)
class Session:
    id: str
    transport: str
    liveness: Liveness
    subscriptions: tuple[Subscription, ...]
    capacity: int | None
    #: when this worker id was first attached (kept across reconnects)
    since: float
    #: when the current attachment began
    connected: float
    last_seen: float
    link: Link | None = None
    #: a poller anonymous to the hub: nothing of it is kept once it detaches
    anonymous: bool = False
    #: transport activities that prove life while they last (an open long poll)
    holds: int = 0
    #: attachments so far: tells a liveness entry of an earlier one from the current
    generation: int = 0
    #: the worker pool (Taskcluster's workerPoolId) and group it declared, if any
    worker_pool: str | None = None
    worker_group: str | None = None
    processed: int = 0
    failed: int = 0
    lost: int = 0
    #: this session's own liveness window (a ClearML worker's registration `timeout`);
    #: None: its kind's window
    window: float | None = None

    @property
    def attached(self) -> bool:
        return self.link is not None


class Sessions:
    """Attached sessions by worker id, and recently detached ones for a reconnect."""

    def __init__(self, keep_detached: int = KEEP_DETACHED) -> None:
        self.attached: dict[str, Session] = {}
        self._detached: OrderedDict[str, Session] = OrderedDict()
        self._keep = keep_detached

    def __iter__(self) -> Iterator[Session]:
        return iter(self.attached.values())

    def __len__(self) -> int:
        return len(self.attached)

    def get(self, worker_id: str) -> Session | None:
        """The attached session of `worker_id`, else its remembered detached one."""
        return self.attached.get(worker_id) or self._detached.get(worker_id)

    def attach(self, session: Session) -> None:
        self._detached.pop(session.id, None)
        self.attached[session.id] = session

    def detach(self, session: Session) -> None:
        if self.attached.get(session.id) is session:
            del self.attached[session.id]
        session.link = None
        if session.anonymous:
            return
        self._detached[session.id] = session
        self._detached.move_to_end(session.id)
        while len(self._detached) > self._keep:
            self._detached.popitem(last=False)


class LivenessWatch:
    """Detaches sessions that stopped proving they are alive.

    Each watched session has one entry in a heap ordered by when it would expire;
    `touch`ing a session only moves its `last_seen`, so proof of life on every frame
    or poll costs one assignment, and the entry is pushed back when it comes due.
    """

    def __init__(self, windows: Mapping[Liveness, float], now: Callable[[], float],
                 expire: Callable[[Session, str], None]) -> None:
        self.windows = dict(windows)
        self._now = now
        self._expire = expire
        self._heap: list[tuple[float, int, int, Session]] = []
        self._order = itertools.count()
        self._wake = trio.Event()

    def window(self, session: Session) -> float:
        if session.window is not None:
            return session.window
        return self.windows.get(session.liveness, math.inf)

    def watch(self, session: Session) -> None:
        """Start watching a session that was just attached (or whose window shrank)."""
        window = self.window(session)
        if window == math.inf:
            return
        due = session.last_seen + window
        if not self._heap or due < self._heap[0][0]:
            self._wake.set()
        heapq.heappush(self._heap, (due, next(self._order), session.generation, session))

    async def run(self, to_trio: Callable[[float], float]) -> None:
        """The watch actor; `to_trio` turns a hub time into a trio deadline."""
        while True:
            self._wake = trio.Event()
            if not self._heap:
                await self._wake.wait()
                continue
            with trio.move_on_at(to_trio(self._heap[0][0])):
                await self._wake.wait()
                continue
            self._check_due()

    def _check_due(self) -> None:
        now = self._now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, generation, session = heapq.heappop(heap)
            if not session.attached or session.generation != generation:
                continue  # detached (and maybe attached again, with an entry of its own)
            window = self.window(session)
            due = session.last_seen + window
            if session.holds or due > now:
                heapq.heappush(heap, (max(due, now + window) if session.holds else due,
                                      next(self._order), generation, session))
                continue
            self._expire(session, session.liveness.silence(window))
