"""The relay: delivers the outbox in order, at least once.

It takes the events after its cursor — straight from the feed as they commit (the
commit wakes it: no polling), or from the store when it starts or fell behind — and
hands them to the sink (RabbitMQ, when configured) in batches, up to `WINDOW` events
in flight, so the broker confirms one batch while the next is sent. The cursor moves,
in order, only past batches the broker confirmed, and the store's copy of it follows.
A sink that fails (broker down) is started again after a bounded backoff while the
hub goes on committing to the outbox; delivery restarts from the cursor, so nothing
is lost and nothing overtakes. A hub killed meanwhile starts again from the stored
cursor, so an event can be delivered twice, never not at all.

With no sink the cursor follows the commits: the embedded stream reads the outbox
itself. Delivered events are kept for `retention` seconds, for streams to replay.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from ..store import MarkDelivered, OutboxRow, Store, StoreError
from ._feed import Feed

__all__ = ["Relay", "Sink"]

log = logging.getLogger("workyard.outbox")

#: events per sink call
BATCH = 500
#: events handed to the sink and not yet confirmed, at most
WINDOW = 4 * BATCH
#: seconds between retries of a failed sink: doubling from the first to the last
BACKOFF = (0.05, 2.0)
PURGE_INTERVAL = 600.0
#: seconds between writes of the store's copy of the cursor, at least
CURSOR_INTERVAL = 0.05


class Confirmation(Protocol):
    async def wait(self) -> None:
        """Return once every row of the send is confirmed; raise if one is not."""


class Sink(Protocol):
    """Where the relay delivers. `send` hands rows over at once and in call order
    (several sends may be unconfirmed at a time); after a failure every send fails
    until `start` succeeds again."""

    async def start(self) -> None:
        """Connect (declare exchanges) before any event; may fail (then retried)."""

    def send(self, rows: Sequence[OutboxRow]) -> Confirmation:
        """Publish `rows` in order, after those of earlier calls."""

    async def close(self) -> None: ...


class _SinkFailed(Exception):
    pass


class _Confirmed:
    async def wait(self) -> None:
        return


_CONFIRMED = _Confirmed()


class Relay:
    def __init__(self, store: Store, feed: Feed, sink: Sink | None = None, *,
                 retention: float = 24 * 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self.feed = feed
        self.sink = sink
        self.retention = retention
        #: every event up to this seq is delivered
        self.cursor = 0
        #: consecutive failed sink calls (0 while delivering)
        self.failures = 0
        self._progress = trio.Event()
        self._mark = trio.Event()
        self._next_purge = 0.0

    async def wait_delivered(self, seq: int) -> None:
        """Return once every event up to `seq` is delivered (for tests and benchmarks)."""
        while self.cursor < seq:
            self._progress = trio.Event() if self._progress.is_set() else self._progress
            await self._progress.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.cursor = await self.store.outbox.delivered()
        started = self.sink is None or await self._start_sink()
        task_status.started()
        self._next_purge = trio.current_time() + PURGE_INTERVAL
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._store_cursor)
                while True:
                    if started:
                        try:
                            await self._deliver()
                        except _SinkFailed as exc:
                            await self._failed(f"could not publish events: {exc.__cause__}")
                    started = await self._start_sink()
        finally:
            with trio.CancelScope(shield=True):
                if self.sink is not None:
                    await self.sink.close()
                await self._last_cursor()

    async def _start_sink(self) -> bool:
        assert self.sink is not None
        try:
            await self.sink.start()
        except Exception as exc:  # noqa: BLE001 - the broker may come later
            await self._failed(f"event broker unavailable ({exc}); events wait in the outbox")
            return False
        return True

    async def _failed(self, why: str) -> None:
        self.failures += 1
        delay = min(BACKOFF[0] * 2 ** (self.failures - 1), BACKOFF[1])
        if self.failures == 1 or math.log2(self.failures).is_integer():
            log.warning("%s (attempt %d, next in %.2f s)", why, self.failures, delay)
        await trio.sleep(delay)

    async def _deliver(self) -> None:
        """Deliver from the cursor on until the sink fails (raises _SinkFailed)."""
        inflight: deque[tuple[Sequence[OutboxRow], Confirmation]] = deque()
        #: set when a send is handed over or confirmed
        moved = [trio.Event()]
        failure: list[Exception] = []

        def signal() -> None:
            moved[0].set()
            moved[0] = trio.Event()

        async def confirm(scope: trio.CancelScope) -> None:
            while True:
                while not inflight:
                    await moved[0].wait()
                rows, confirmation = inflight[0]
                try:
                    await confirmation.wait()
                except Exception as exc:  # noqa: BLE001 - any failure: keep the rows, retry
                    failure.append(exc)
                    scope.cancel()
                    return
                inflight.popleft()
                self._delivered(rows[-1].seq)
                signal()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(confirm, nursery.cancel_scope)
            sent, caught_up = self.cursor, False
            while True:
                while sum(len(rows) for rows, _ in inflight) >= WINDOW:
                    await moved[0].wait()
                wake = self.feed.armed()
                rows = self.feed.take(sent, BATCH) if caught_up else None
                if rows is None:
                    try:
                        rows = await self.store.outbox.read(sent, BATCH)
                    except StoreError as exc:  # closing, or failing: wait for the next commit
                        log.warning("could not read the outbox: %s", exc)
                        rows = []
                    caught_up = len(rows) < BATCH
                if not rows:
                    with trio.move_on_at(self._next_purge):
                        await wake.wait()
                    if trio.current_time() >= self._next_purge:
                        self._next_purge = trio.current_time() + PURGE_INTERVAL
                        await self._purge()
                    continue
                sink = self.sink
                inflight.append((rows, _CONFIRMED if sink is None else sink.send(rows)))
                signal()
                sent = rows[-1].seq
        raise _SinkFailed from failure[0]

    def _delivered(self, seq: int) -> None:
        self.cursor = seq
        if self.failures:
            log.info("event broker back after %d failed attempts", self.failures)
            self.failures = 0
        self._progress.set()
        self._mark.set()

    async def _store_cursor(self) -> None:
        """Keeps the store's copy of the cursor, one write at a time and at most one per
        CURSOR_INTERVAL (a later one covers every earlier one; lagging only means
        delivering a few events again after a kill)."""
        stored = await self.store.outbox.delivered()
        while True:
            await self._mark.wait()
            await trio.sleep(CURSOR_INTERVAL)
            self._mark = trio.Event()
            seq = self.cursor
            if seq <= stored:
                continue
            try:
                await self.store.commit(MarkDelivered(seq))
                stored = seq
            except StoreError as exc:  # delivered again later: at least once
                log.warning("could not store the relay's cursor: %s", exc)
                await trio.sleep(BACKOFF[1])
                self._mark.set()

    async def _last_cursor(self) -> None:
        """On the way out, store the cursor if the store still takes writes (else the
        last few events are delivered again after the restart: at least once)."""
        with trio.move_on_after(1.0):
            try:
                if self.cursor > await self.store.outbox.delivered():
                    await self.store.commit(MarkDelivered(self.cursor))
            except StoreError:
                pass

    async def _purge(self) -> None:
        try:
            purged = await self.store.outbox.purge(self.clock() - self.retention)
        except StoreError:
            log.exception("could not purge the outbox")
            return
        if purged:
            log.info("purged %d delivered events older than %g s", purged, self.retention)
