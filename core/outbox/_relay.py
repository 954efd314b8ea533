"""The relay: delivers the outbox in order, at least once.

It reads the events after the store's cursor, hands them to the sink (RabbitMQ, when
configured) and moves the cursor only once the sink returned, i.e. the broker
confirmed every one of them. A sink that fails (broker down) is retried with a
bounded backoff while the hub goes on committing to the outbox; nothing is lost and
nothing overtakes. A hub killed meanwhile starts again from the cursor, so an event
can be delivered twice, never not at all.

With no sink the cursor follows the commits: the embedded stream reads the outbox
itself. Delivered events are kept for `retention` seconds, for streams to replay.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from ..store import MarkDelivered, OutboxRow, Store, StoreError
from ._feed import Feed

__all__ = ["Relay", "Sink"]

log = logging.getLogger("workyard.outbox")

#: events per sink call
BATCH = 500
#: seconds between retries of a failed sink: doubling from the first to the last
BACKOFF = (0.05, 2.0)
PURGE_INTERVAL = 600.0


class Sink(Protocol):
    """Where the relay delivers: `publish` returns once every row is confirmed."""

    async def start(self) -> None:
        """Prepare (connect, declare exchanges) before any event; may fail (retried)."""

    async def publish(self, rows: Sequence[OutboxRow]) -> None:
        """Deliver `rows` in order; raise if any is not confirmed."""

    async def close(self) -> None: ...


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

    async def wait_delivered(self, seq: int) -> None:
        """Return once every event up to `seq` is delivered (for tests and benchmarks)."""
        while self.cursor < seq:
            self._progress = trio.Event() if self._progress.is_set() else self._progress
            await self._progress.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.cursor = await self.store.outbox.delivered()
        if self.sink is not None:
            try:
                await self.sink.start()
            except Exception as exc:  # noqa: BLE001 - the broker may come later
                log.warning("event broker unavailable at start (%s); events wait in the "
                            "outbox", exc)
        task_status.started()
        try:
            await self._deliver_forever()
        finally:
            if self.sink is not None:
                with trio.CancelScope(shield=True):
                    await self.sink.close()

    async def _deliver_forever(self) -> None:
        next_purge = trio.current_time() + PURGE_INTERVAL
        while True:
            wake = self.feed.armed()
            try:
                rows = await self.store.outbox.read(self.cursor, BATCH)
            except StoreError as exc:  # closing, or failing: wait for the next commit
                log.warning("could not read the outbox: %s", exc)
                rows = []
            if not rows:
                with trio.move_on_at(next_purge):
                    await wake.wait()
                if trio.current_time() >= next_purge:
                    next_purge = trio.current_time() + PURGE_INTERVAL
                    await self._purge()
                continue
            if not await self._publish(rows):
                continue
            try:
                await self.store.commit(MarkDelivered(rows[-1].seq))
            except StoreError as exc:  # delivered again later: at least once
                log.warning("could not store the relay's cursor: %s", exc)
                await trio.sleep(BACKOFF[1])
                continue
            self.cursor = rows[-1].seq
            self._progress.set()

    async def _publish(self, rows: Sequence[OutboxRow]) -> bool:
        """Hand `rows` to the sink; False (after a backoff) if it failed."""
        if self.sink is None:
            return True
        try:
            await self.sink.publish(rows)
        except Exception as exc:  # noqa: BLE001 - any failure: keep the rows, retry
            self.failures += 1
            delay = min(BACKOFF[0] * 2 ** (self.failures - 1), BACKOFF[1])
            if self.failures == 1 or math.log2(self.failures).is_integer():
                log.warning("could not publish %d events (attempt %d, next in %.2f s): %s",
                            len(rows), self.failures, delay, exc)
            await trio.sleep(delay)
            return False
        if self.failures:
            log.info("event broker back after %d failed attempts", self.failures)
            self.failures = 0
        return True

    async def _purge(self) -> None:
        try:
            purged = await self.store.outbox.purge(self.clock() - self.retention)
        except StoreError:
            log.exception("could not purge the outbox")
            return
        if purged:
            log.info("purged %d delivered events older than %g s", purged, self.retention)
