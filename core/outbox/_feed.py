"""Committed outbox events, live: what the embedded stream's subscribers read while
they keep up, and what the relay delivers next without reading the store back.

A subscriber never slows the hub: each has a bounded buffer, and one that falls behind
is told so (`Behind`) and reads the rest from the store, where every event is kept in
order — it loses nothing, unlike a subscriber of the hub's in-process stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import trio

from ..store import OutboxRow
from ._exchanges import HUB_EXCHANGE_PREFIX, POOL_REMOVED, Binding

__all__ = ["Behind", "Feed", "Subscription"]

#: rows a live subscriber may fall behind by before it must read from the store
BUFFER = 10_000
#: committed rows kept for the relay; one that falls further behind reads the store
RELAY_BUFFER = 20_000


class Behind(Exception):
    """The subscriber fell behind the live feed: read from the store after `seq`."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"fell behind after seq {seq}")
        self.seq = seq


class Subscription:
    """One live subscriber: the committed rows its bindings match, in seq order."""

    def __init__(self, bindings: Sequence[Binding], size: int) -> None:
        self.bindings = tuple(bindings)
        #: it binds hub events (workyard's exchanges, live only)
        self.hub = any(b.exchange.startswith(HUB_EXCHANGE_PREFIX)
                       and b.exchange != POOL_REMOVED for b in bindings)
        self.size = size
        self.rows: deque[OutboxRow] = deque()
        self.wake = trio.Event()
        #: the last seq handed out, or skipped because it did not match
        self.seen = 0
        self.behind = False

    def wants(self, row: OutboxRow) -> bool:
        return any(b.matches(row.exchange, row.routing_key) for b in self.bindings)

    def offer(self, row: OutboxRow) -> None:
        if self.behind:
            return
        if len(self.rows) >= self.size:
            self.behind = True
        else:
            self.rows.append(row)
        self.wake.set()

    async def next(self) -> OutboxRow:
        """The next matching row; raises `Behind` once rows were dropped."""
        while not self.rows:
            if self.behind:
                raise Behind(self.seen)
            self.wake = trio.Event()
            await self.wake.wait()
        row = self.rows.popleft()
        if row.seq > 0:  # live hub events have no seq
            self.seen = row.seq
        return row

    def skip_to(self, seq: int) -> None:
        """Drop buffered rows up to `seq` (already replayed from the store)."""
        while self.rows and self.rows[0].seq <= seq:
            self.rows.popleft()
        self.seen = max(self.seen, seq)


class Feed:
    """Fans committed outbox rows out to live subscribers; wakes the relay."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._wake = trio.Event()
        #: the highest seq committed since this hub started (0: none yet)
        self.last_seq = 0
        #: subscribers binding hub events, and an event set while there are some
        self.hub_subscribers = 0
        self.hub_wanted = trio.Event()
        #: committed rows the relay has not taken yet, in seq order
        self._relay: deque[OutboxRow] = deque(maxlen=RELAY_BUFFER)

    def armed(self) -> trio.Event:
        """An event set by the next commit (take it before reading the store)."""
        if self._wake.is_set():
            self._wake = trio.Event()
        return self._wake

    def take(self, after: int, limit: int) -> list[OutboxRow] | None:
        """The relay's next rows after seq `after` straight from the commits, or None
        if they are not all here (a gap: it fell behind, or just started) and it must
        read the store."""
        buffered = self._relay
        while buffered and buffered[0].seq <= after:
            buffered.popleft()
        if not buffered:
            return []
        if buffered[0].seq != after + 1:
            return None
        return [buffered.popleft() for _ in range(min(limit, len(buffered)))]

    def committed(self, rows: Iterable[OutboxRow]) -> None:
        for row in rows:
            self.last_seq = max(self.last_seq, row.seq)
            self._relay.append(row)
            for sub in self._subscribers:
                if sub.wants(row):
                    sub.offer(row)
        self._wake.set()

    def live(self, row: OutboxRow) -> None:
        """A hub event (seq 0): to the subscribers that bind it, not stored."""
        for sub in self._subscribers:
            if sub.hub and sub.wants(row):
                sub.offer(row)

    @contextmanager
    def subscribe(self, bindings: Sequence[Binding],
                  size: int = BUFFER) -> Iterator[Subscription]:
        sub = Subscription(bindings, size)
        self._subscribers.add(sub)
        if sub.hub:
            self.hub_subscribers += 1
            self.hub_wanted.set()
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            if sub.hub:
                self.hub_subscribers -= 1
                if not self.hub_subscribers:
                    self.hub_wanted = trio.Event()
