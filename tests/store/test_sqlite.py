"""SQLiteStore on a real file: inserts, finals, queries, purge, keys, reopening."""

from __future__ import annotations

import itertools

import msgspec
import trio
from conftest import NET_TIMEOUT

from workyard import Attempt, Outcome, SQLiteStore, Task, TaskState

_ids = itertools.count(1)
_seq = itertools.count(1)


def task(name: str = "tag", **fields: object) -> Task:
    n = next(_seq)
    return Task(id=f"s{next(_ids)}", name=name, seq=n, created=float(n),
                **fields)  # type: ignore[arg-type]


async def finish(store: SQLiteStore, t: Task, state: TaskState, when: float) -> None:
    """Mark `t` final and wait until the store says it is durable."""
    t.state, t.finished = state, when
    committed = trio.Event()
    store.tasks.finish(t, lambda _: committed.set())
    with trio.fail_after(NET_TIMEOUT):
        await committed.wait()


async def test_insert_get_roundtrip_keeps_payload_bytes(sqlite_store: SQLiteStore) -> None:
    t = task(attrs={"cloud": "aws"}, data=msgspec.Raw(b'{"big":  [1, 2]}'), priority=3,
             timeout=5.5, retries=1, schedule_timeout=9.0)
    assert await sqlite_store.tasks.insert([t]) == [t.id]
    got = await sqlite_store.tasks.get(t.id)
    assert got is not None
    assert (got.name, got.attrs, got.priority, got.timeout, got.retries, got.schedule_timeout,
            got.state, got.seq) == ("tag", {"cloud": "aws"}, 3, 5.5, 1, 9.0, TaskState.QUEUED,
                                    t.seq)
    assert bytes(got.data) == b'{"big":  [1, 2]}'  # relayed byte for byte
    assert await sqlite_store.tasks.get("missing") is None


async def test_finish_stores_the_final_state(sqlite_store: SQLiteStore) -> None:
    t = task()
    await sqlite_store.tasks.insert([t])
    t.result = msgspec.Raw(b'"ok"')
    t.attempts = [Attempt(worker="w", started=1.0, ended=2.0, outcome=Outcome.DONE)]
    await finish(sqlite_store, t, TaskState.DONE, 2.0)
    got = await sqlite_store.tasks.get(t.id)
    assert got is not None and got.state is TaskState.DONE and got.finished == 2.0
    assert bytes(got.result) == b'"ok"'  # type: ignore[arg-type]
    assert got.attempts == t.attempts


async def test_find_filters_newest_first(sqlite_store: SQLiteStore) -> None:
    a1, b1, a2 = task("a"), task("b"), task("a")
    await sqlite_store.tasks.insert([a1, b1, a2])
    await finish(sqlite_store, a1, TaskState.DONE, 5.0)
    ids = lambda ts: [t.id for t in ts]  # noqa: E731
    assert ids(await sqlite_store.tasks.find(name=None, state=None, limit=10)) == [a2.id, b1.id, a1.id]
    assert ids(await sqlite_store.tasks.find(name="a", state=None, limit=10)) == [a2.id, a1.id]
    assert ids(await sqlite_store.tasks.find(name="a", state=TaskState.DONE, limit=10)) == [a1.id]
    assert ids(await sqlite_store.tasks.find(name=None, state=TaskState.QUEUED, limit=1)) == [a2.id]


async def test_unfinished_is_oldest_first(sqlite_store: SQLiteStore) -> None:
    ts = [task() for _ in range(4)]
    await sqlite_store.tasks.insert(ts)
    await finish(sqlite_store, ts[1], TaskState.CANCELLED, 1.0)
    assert [t.id for t in await sqlite_store.tasks.unfinished()] == [ts[0].id, ts[2].id, ts[3].id]


async def test_purge_drops_only_old_final_tasks(sqlite_store: SQLiteStore) -> None:
    old, recent, live = task(), task(), task()
    await sqlite_store.tasks.insert([old, recent, live])
    await finish(sqlite_store, old, TaskState.DONE, 10.0)
    await finish(sqlite_store, recent, TaskState.FAILED, 100.0)
    assert await sqlite_store.tasks.purge(50.0) == 1
    assert await sqlite_store.tasks.get(old.id) is None
    assert await sqlite_store.tasks.get(recent.id) is not None
    assert await sqlite_store.tasks.get(live.id) is not None


async def test_key_dedupe_within_and_across_batches(sqlite_store: SQLiteStore) -> None:
    first, repeat, other = task(key="k"), task(key="k"), task(key="other")
    assert await sqlite_store.tasks.insert([first, repeat, other]) == [first.id, first.id, other.id]
    again = task(key="k")
    assert await sqlite_store.tasks.insert([again]) == [first.id]
    assert await sqlite_store.tasks.get(repeat.id) is None
    assert await sqlite_store.tasks.get(again.id) is None


async def test_concurrent_writes_share_commits(sqlite_store: SQLiteStore) -> None:
    """Group commit: many inserts queued together cost fewer transactions than inserts."""
    before = sqlite_store.commits
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(sqlite_store.tasks.insert, [task()])
    assert len(await sqlite_store.tasks.unfinished()) == 50
    assert sqlite_store.commits - before < 50


async def test_data_survives_reopening_the_file(hub_db: str) -> None:
    t, finished_task = task(), task()
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.tasks.insert([t, finished_task])
        finished_task.state, finished_task.finished = TaskState.DONE, 1.0
        store.tasks.finish(finished_task, lambda _: None)
        nursery.cancel_scope.cancel()  # the pending finish is flushed on the way out
    reopened = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(reopened.run)
        assert [u.id for u in await reopened.tasks.unfinished()] == [t.id]
        got = await reopened.tasks.get(finished_task.id)
        assert got is not None and got.state is TaskState.DONE
        nursery.cancel_scope.cancel()
