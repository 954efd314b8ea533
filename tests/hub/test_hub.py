"""The hub shell on a MemoryStore with fake links: deadlines in virtual time, waiting,
cancelling, idempotency keys, reconnects.

Time-dependent behaviour runs under `autojump_clock`, so a 10 s timeout costs nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import msgspec
import pytest
import trio

from workyard import Hub, Outcome, Subscription, Task, TaskState
from workyard.hub import QueueView, queue_views, worker_views
from workyard.protocol import Answer
from workyard.testing import MemoryStore, RecordingLink

StartHub = Callable[..., Awaitable[Hub]]

_ids = itertools.count(1)
TAG = [Subscription.of("tag")]


def task(**fields: object) -> Task:
    return Task(id=f"h{next(_ids)}", name="tag", **fields)  # type: ignore[arg-type]


def done(task_id: str, data: bytes = b"null") -> Answer:
    return Answer(task_id, "done", data=msgspec.Raw(data))


async def test_timeout_redispatches_to_another_worker(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    a, b = RecordingLink(), RecordingLink()
    hub.attach("a", TAG, a)
    [t] = [task(timeout=10.0)]
    await hub.submit([t])
    hub.attach("b", TAG, b)
    assert a.ids == [t.id] and b.ids == []
    await trio.sleep(9.9)
    assert b.ids == []
    await trio.sleep(0.2)
    assert b.ids == [t.id]
    assert t.attempts[0].outcome is Outcome.TIMEOUT
    assert queue_views(hub)["tag"].running == 1


async def test_schedule_timeout_fails_a_task_nobody_takes(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    t = task(schedule_timeout=5.0)
    start = trio.current_time()
    await hub.submit([t])
    final = await hub.wait(t.id, 60.0)
    assert final is not None and final.state is TaskState.FAILED
    assert "schedule_timeout" in final.error
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_timeouts_exhaust_retries_and_the_failure_says_why(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    link = RecordingLink()
    hub.attach("a", TAG, link)
    t = task(timeout=2.0, retries=2)
    await hub.submit([t])
    final = await hub.wait(t.id, 60.0)
    assert final is not None and final.state is TaskState.FAILED
    assert "timed out" in final.error and "retries=2" in final.error
    assert link.ids == [t.id] * 3
    assert worker_views(hub)[0].outstanding == 0


async def test_wait_returns_as_soon_as_the_task_is_final(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    link = RecordingLink()
    hub.attach("a", TAG, link)
    t = task()
    await hub.submit([t])
    got: list[Task | None] = []

    async def waiter() -> None:
        got.append(await hub.wait(t.id, 100.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(3.0)
        assert got == []
        start = trio.current_time()
        assert hub.answer("a", done(t.id, b'{"n": 1}')) is None
    assert trio.current_time() == start
    [final] = got
    assert final is not None and final.state is TaskState.DONE
    assert bytes(final.result) == b'{"n": 1}'


async def test_wait_times_out_with_the_task_as_it_stands(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    t = task()
    await hub.submit([t])
    got = await hub.wait(t.id, 2.0)
    assert got is not None and got.state is TaskState.QUEUED
    assert await hub.wait("nope", 1.0) is None


async def test_idempotency_key_returns_the_existing_id(start_hub: StartHub) -> None:
    hub = await start_hub()
    link = RecordingLink()
    hub.attach("a", TAG, link)
    first = task(key="k1")
    assert await hub.submit([first]) == [first.id]
    again, other = task(key="k1"), task(key="k2")
    assert await hub.submit([again, other]) == [first.id, other.id]
    assert link.ids == [first.id, other.id]  # the repeat is not scheduled


async def test_cancel_queued_and_running(start_hub: StartHub) -> None:
    hub = await start_hub()
    link = RecordingLink()
    hub.attach("a", TAG, link, capacity=1)
    running, queued = task(), task()
    await hub.submit([running, queued])
    assert link.ids == [running.id]
    got = await hub.cancel(queued.id)
    assert got is not None and got.state is TaskState.CANCELLED
    got = await hub.cancel(running.id)
    assert got is not None and got.state is TaskState.CANCELLED
    assert hub.answer("a", done(running.id)) is not None  # too late now
    assert (await hub.get(running.id)).state is TaskState.CANCELLED  # type: ignore[union-attr]
    assert await hub.cancel("unknown") is None


async def test_detach_reschedules_in_the_same_step(start_hub: StartHub) -> None:
    hub = await start_hub()
    a, b = RecordingLink(), RecordingLink()
    hub.attach("a", TAG, a)
    ts = [task(), task()]
    await hub.submit(ts)
    hub.attach("b", TAG, b)
    hub.detach("a", a)  # no checkpoint between this and the check
    assert b.ids == [t.id for t in ts]
    assert all(t.worker == "b" for t in ts)


async def test_backlog_is_dispatched_on_attach_without_waiting(start_hub: StartHub) -> None:
    hub = await start_hub()
    ts = [task() for _ in range(3)]
    await hub.submit(ts)
    link = RecordingLink()
    hub.attach("late", TAG, link)
    assert link.ids == [t.id for t in ts]


async def test_same_worker_id_reconnecting_replaces_the_old_link(start_hub: StartHub) -> None:
    hub = await start_hub()
    old, new = RecordingLink(), RecordingLink()
    hub.attach("w", TAG, old)
    t = task()
    await hub.submit([t])
    hub.attach("w", TAG, new)
    assert old.closed is not None and "replaced" in old.closed
    assert new.ids == [t.id]
    hub.detach("w", old)  # the old connection's finally: must not detach the new one
    assert "w" in hub.sessions.attached and t.worker == "w"
    assert hub.answer("w", done(t.id)) is None


async def test_late_answer_wins_and_the_duplicate_is_ignored(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    a, b = RecordingLink(), RecordingLink()
    hub.attach("a", TAG, a)
    t = task(timeout=5.0)
    await hub.submit([t])
    hub.attach("b", TAG, b)
    await trio.sleep(6.0)
    assert b.ids == [t.id]
    assert hub.answer("a", done(t.id, b'"a"')) is None
    assert hub.answer("b", done(t.id, b'"b"')) is not None
    assert hub.answer("nobody", done(t.id)) is not None
    final = await hub.get(t.id)
    assert final is not None and bytes(final.result) == b'"a"'
    assert [w.outstanding for w in worker_views(hub)] == [0, 0]


async def test_views(start_hub: StartHub) -> None:
    hub = await start_hub()
    hub.attach("a", [Subscription.of("tag", {"cloud": "aws,gcp"})], RecordingLink(), capacity=4)
    await hub.submit([task(attrs={"cloud": "aws"}), task(attrs={"cloud": "azure"})])
    [worker] = worker_views(hub)
    assert worker.id == "a" and worker.capacity == 4 and worker.outstanding == 1
    assert worker.subscriptions == [{"name": "tag", "filter": {"cloud": ["aws", "gcp"]}}]
    assert queue_views(hub) == {"tag": QueueView(queued=1, running=1, workers=1, processed=0,
                                                 failed=0)}


async def test_old_final_tasks_are_purged(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    store = MemoryStore()
    hub = await start_hub(store=store, retention=100.0, purge_interval=30.0)
    t = task()
    await hub.submit([t])
    await hub.cancel(t.id)
    await trio.sleep(60.0)
    assert await store.tasks.get(t.id) is not None
    await trio.sleep(100.0)
    assert await store.tasks.get(t.id) is None
