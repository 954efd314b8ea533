"""The outbox relay over a scripted sink: batches pipelined, the cursor moved in order
only past confirmed ones, and a failure sending everything again from the cursor."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from workyard.outbox import Feed, Relay
from workyard.outbox._relay import BACKOFF, CURSOR_INTERVAL
from workyard.store import AppendEvents, OutboxEvent, OutboxRow
from workyard.testing import MemoryStore


class Pending:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.error: Exception | None = None

    async def wait(self) -> None:
        await self.done.wait()
        if self.error is not None:
            raise self.error


class ScriptedSink:
    """Keeps every send unconfirmed until the test confirms or fails it."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[int], Pending]] = []
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1

    def send(self, rows: Sequence[OutboxRow]) -> Pending:
        pending = Pending()
        self.sent.append(([r.seq for r in rows], pending))
        return pending

    async def close(self) -> None:
        pass


async def commit(store: MemoryStore, feed: Feed, count: int) -> None:
    (seqs,) = await store.commit(AppendEvents(
        [OutboxEvent("x", "k", b"{}", 0.0) for _ in range(count)]))
    feed.committed([OutboxRow(int(s), "x", "k", b"{}", 0.0) for s in seqs])  # type: ignore[union-attr]


async def test_the_cursor_moves_only_past_confirmed_batches_in_order_and_a_failure_resends(
        nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    store, feed, sink = MemoryStore(), Feed(), ScriptedSink()
    await nursery.start(store.run)
    relay = Relay(store, feed, sink)
    await nursery.start(relay.run)
    for _ in range(3):  # three commits, three sends, none waiting for the one before
        await commit(store, feed, 2)
        await trio.testing.wait_all_tasks_blocked()
    assert [seqs for seqs, _ in sink.sent] == [[1, 2], [3, 4], [5, 6]]
    sink.sent[2][1].done.set()  # the third confirmed first: the cursor must not move
    await trio.testing.wait_all_tasks_blocked()
    assert relay.cursor == 0
    sink.sent[0][1].done.set()
    await relay.wait_delivered(2)
    sink.sent[1][1].error = RuntimeError("nack")
    sink.sent[1][1].done.set()
    await trio.sleep(BACKOFF[1])  # virtual time: the backoff, then the relay starts again
    assert sink.starts == 2 and relay.cursor == 2
    assert [seqs for seqs, _ in sink.sent[3:]] == [[3, 4, 5, 6]]  # all after the cursor
    sink.sent[3][1].done.set()
    await relay.wait_delivered(6)
    await trio.sleep(2 * CURSOR_INTERVAL)  # virtual time: the store's copy follows
    assert await store.outbox.delivered() == 6
