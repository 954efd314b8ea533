"""The hub's event stream: every state change once, in order, and subscribers that
cannot slow the scheduler down."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import msgspec
import trio
import trio.testing

from workyard import Hub, Outcome, Subscription, Task, TaskState
from workyard.hub import Event, Missed, TaskCancelled, TaskFinished, TaskSubmitted, WorkerAttached
from workyard.protocol import Answer
from workyard.testing import RecordingLink

StartHub = Callable[..., Awaitable[Hub]]

_ids = itertools.count(1)
TAG = [Subscription.of("tag")]


def task(**fields: object) -> Task:
    return Task(id=f"e{next(_ids)}", name="tag", **fields)  # type: ignore[arg-type]


def summary(event: Event) -> tuple[object, ...]:
    """The part of an event a test can predict: its type and what it is about."""
    fields = msgspec.structs.asdict(event)
    fields.pop("seq")
    fields.pop("at")
    fields.pop("subscriptions", None)
    return (type(event).__name__, *fields.values())


async def collect(events: object, until: int) -> list[Event]:
    got: list[Event] = []
    with trio.fail_after(5):
        async for event in events:  # type: ignore[attr-defined]
            got.append(event)
            if len(got) == until:
                return got
    raise AssertionError("the stream ended")


async def test_every_state_change_appears_once_in_order(start_hub: StartHub) -> None:
    hub = await start_hub()
    a, b = RecordingLink(), RecordingLink()
    with hub.events.subscribe() as events:
        hub.attach("a", TAG, a, capacity=1)
        done_task, lost_task, cancelled = task(), task(), task()
        await hub.submit([done_task, lost_task, cancelled])
        hub.answer("a", Answer(done_task.id, "done"))  # a now takes lost_task
        await hub.cancel(cancelled.id)
        hub.update("a", capacity=4)
        hub.attach("b", TAG, b)
        hub.detach("a", a, "connection closed")  # lost_task goes to b
        hub.answer("b", Answer(lost_task.id, "error", error="boom"))
        got = await collect(events, 14)
    assert [summary(e) for e in got] == [
        ("WorkerAttached", "a", "websocket", 1),
        ("TaskSubmitted", done_task.id, "tag", {}, 0),
        ("TaskDispatched", done_task.id, "tag", "a", 1),
        ("TaskSubmitted", lost_task.id, "tag", {}, 0),
        ("TaskSubmitted", cancelled.id, "tag", {}, 0),
        ("TaskFinished", done_task.id, "tag", TaskState.DONE, "a", None),
        ("TaskDispatched", lost_task.id, "tag", "a", 1),
        ("TaskCancelled", cancelled.id, "tag", None),
        ("WorkerCapacityChanged", "a", 4),
        ("WorkerAttached", "b", "websocket", 32),
        ("WorkerDetached", "a", "connection closed", 1),
        ("TaskRequeued", lost_task.id, "tag", "a", Outcome.WORKER_LOST),
        ("TaskDispatched", lost_task.id, "tag", "b", 2),
        ("TaskFinished", lost_task.id, "tag", TaskState.FAILED, "b", "boom"),
    ]
    assert [e.seq for e in got] == list(range(got[0].seq, got[0].seq + len(got)))
    assert isinstance(got[0], WorkerAttached) and got[0].subscriptions == [
        {"name": "tag", "filter": {}}]


async def test_a_stalled_subscriber_neither_blocks_dispatch_nor_loses_anything(
    start_hub: StartHub,
) -> None:
    hub = await start_hub()
    link = RecordingLink()
    hub.attach("a", TAG, link, capacity=0)
    with hub.events.subscribe(buffer=5) as stalled:
        tasks = [task() for _ in range(50)]
        await hub.submit(tasks)  # never reads while the hub works
        for t in tasks:
            assert hub.answer("a", Answer(t.id, "done")) is None
        finals = [await hub.wait(t.id, 5) for t in tasks]
        assert all(f is not None and f.state is TaskState.DONE for f in finals)
        last = hub.events.last_seq
        missed, *kept = await collect(stalled, 6)
    assert isinstance(missed, Missed) and missed.count == 150 - 5
    assert [e.seq for e in kept] == list(range(last - 4, last + 1))
    assert all(isinstance(e, TaskFinished) for e in kept)


async def test_events_nobody_listens_to_are_numbered_all_the_same(start_hub: StartHub) -> None:
    hub = await start_hub()
    hub.attach("early", TAG, RecordingLink(), capacity=1)
    unheard = task()
    await hub.submit([unheard])  # submitted and dispatched, unheard
    hub.answer("early", Answer(unheard.id, "done"))
    final = await hub.wait(unheard.id, 5)  # finished, unheard
    assert final is not None and final.state is TaskState.DONE
    with hub.events.subscribe() as events:
        hub.attach("late", TAG, RecordingLink())
        [first] = await collect(events, 1)
    assert isinstance(first, WorkerAttached) and first.seq == 5 == hub.events.last_seq


async def test_subscribers_see_only_what_happens_while_they_listen(start_hub: StartHub) -> None:
    hub = await start_hub()
    hub.attach("early", TAG, RecordingLink())
    with hub.events.subscribe() as events:
        hub.attach("late", TAG, RecordingLink())
        [first] = await collect(events, 1)
    assert isinstance(first, WorkerAttached) and first.worker == "late"
    await trio.testing.wait_all_tasks_blocked()


async def test_a_task_running_when_it_is_cancelled_names_its_worker(start_hub: StartHub) -> None:
    hub = await start_hub()
    hub.attach("a", TAG, RecordingLink())
    t = task()
    with hub.events.subscribe() as events:
        await hub.submit([t])
        await hub.cancel(t.id)
        *_, cancelled = await collect(events, 3)
    assert isinstance(cancelled, TaskCancelled) and cancelled.worker == "a"


async def test_events_encode_as_tagged_json(start_hub: StartHub) -> None:
    hub = await start_hub()
    with hub.events.subscribe() as events:
        await hub.submit([task(attrs={"cloud": "aws"})])
        [submitted] = await collect(events, 1)
    assert isinstance(submitted, TaskSubmitted)
    decoded = msgspec.json.decode(msgspec.json.encode(submitted))
    assert decoded["type"] == "task.submitted" and decoded["attrs"] == {"cloud": "aws"}
    assert msgspec.json.decode(msgspec.json.encode(submitted), type=TaskSubmitted) == submitted
