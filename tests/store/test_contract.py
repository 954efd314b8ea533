"""The store contract: every `Store` implementation against the same expectations.

`STORES` names each implementation and how a test gets a fresh one; the `store`
fixture runs every test on each. Adding a store (PostgreSQL, say) is one line there.
What only one implementation has (files, group-commit counts) is tested beside it.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import msgspec
import pytest
import trio
from conftest import NET_TIMEOUT

from workyard import Attempt, Outcome, SQLiteStore, Task, TaskState
from workyard.store import (
    ActivityBucket,
    AppendEvents,
    ConfigureQueue,
    DeletePool,
    InsertTasks,
    MarkDelivered,
    OutboxEvent,
    PoolRecord,
    PostgresStore,
    RecordStats,
    SavePool,
    StatBucket,
    Store,
    StoreError,
)
from workyard.testing import MemoryStore


def _postgres(request: pytest.FixtureRequest) -> PostgresStore:
    url, schema = request.getfixturevalue("postgres_schema")
    return PostgresStore(url, schema=schema)


#: How a test gets a fresh store of each kind (fixtures come from `request`).
STORES: dict[str, Callable[[pytest.FixtureRequest], Store]] = {
    "memory": lambda request: MemoryStore(),
    "sqlite": lambda request: SQLiteStore(request.getfixturevalue("tmp_path") / "contract.db"),
    "postgresql": _postgres,
}

_ids = itertools.count(1)
_seq = itertools.count(1)

#: one beyond SQLite's (and so every store's) INTEGER range
TOO_BIG = 2**63


@pytest.fixture(params=sorted(STORES))
def fresh_store(request: pytest.FixtureRequest) -> Store:
    """A new store of each kind, not running yet (outside trio, so a fixture it needs
    can skip the test with its reason)."""
    return STORES[request.param](request)


@pytest.fixture
async def store(fresh_store: Store, nursery: trio.Nursery) -> Store:
    await nursery.start(fresh_store.run)
    return fresh_store


def task(name: str = "tag", **fields: object) -> Task:
    n = next(_seq)
    return Task(id=f"c{next(_ids)}", name=name, seq=n, created=float(n),
                **fields)  # type: ignore[arg-type]


def ids(tasks: list[Task]) -> list[str]:
    return [t.id for t in tasks]


async def finish(store: Store, t: Task, state: TaskState, when: float) -> None:
    """Mark `t` final and wait until the store says it is durable."""
    t.state, t.finished = state, when
    committed = trio.Event()
    store.tasks.finish(t, lambda _: committed.set())
    with trio.fail_after(NET_TIMEOUT):
        await committed.wait()


def run(t: Task, worker: str = "w", at: float = 1.0) -> None:
    """What the scheduler does on dispatch: a running state and a new open attempt."""
    t.state = TaskState.RUNNING
    t.attempts = [*t.attempts, Attempt(worker=worker, started=at)]


# -- insert and keys ----------------------------------------------------------------


async def test_an_inserted_task_reads_back_field_for_field_and_byte_for_byte(store: Store) -> None:
    t = task(attrs={"cloud": "aws"}, data=msgspec.Raw(b'{"big":  [1, 2]}'), priority=3,
             timeout=5.5, retries=1, schedule_timeout=9.0, key="k1")
    assert await store.tasks.insert([t]) == [t.id]
    got = await store.tasks.get(t.id)
    assert got is not None
    assert (got.name, got.attrs, got.priority, got.timeout, got.retries, got.schedule_timeout,
            got.key, got.state, got.seq, got.created, got.attempts) == (
        "tag", {"cloud": "aws"}, 3, 5.5, 1, 9.0, "k1", TaskState.QUEUED, t.seq, t.created, [])
    assert bytes(got.data) == b'{"big":  [1, 2]}'


async def test_an_unknown_id_reads_as_none(store: Store) -> None:
    assert await store.tasks.get("missing") is None


async def test_many_ids_read_back_in_one_call_leaving_out_the_unknown_ones(store: Store) -> None:
    tasks = [task(data=msgspec.Raw(b"%d" % i)) for i in range(300)]  # beyond one chunk
    await store.tasks.insert(tasks)
    await finish(store, tasks[7], TaskState.DONE, 9.0)
    wanted = [t.id for t in tasks[::-1]] + ["missing", tasks[0].id]
    got = {t.id: t for t in await store.tasks.get_many(wanted)}
    assert sorted(got) == sorted(ids(tasks))
    assert got[tasks[7].id].state is TaskState.DONE and bytes(got[tasks[5].id].data) == b"5"
    assert await store.tasks.get_many([]) == []
    assert await store.tasks.get_many(["missing"]) == []


async def test_the_store_keeps_what_was_written_not_the_live_object(store: Store) -> None:
    t = task()
    await store.tasks.insert([t])
    t.state, t.priority = TaskState.DONE, 9  # the scheduler's copy moves on
    got = await store.tasks.get(t.id)
    assert got is not None and (got.state, got.priority) == (TaskState.QUEUED, 0)


async def test_a_task_with_a_known_key_returns_the_existing_id(store: Store) -> None:
    first = task(key="k")
    await store.tasks.insert([first])
    again = task(key="k")
    assert await store.tasks.insert([again]) == [first.id]
    assert await store.tasks.get(again.id) is None


async def test_a_key_repeated_within_one_batch_is_inserted_once(store: Store) -> None:
    first, repeat, other = task(key="k"), task(key="k"), task(key="other")
    assert await store.tasks.insert([first, repeat, other]) == [first.id, first.id, other.id]
    assert await store.tasks.get(repeat.id) is None
    assert ids(await store.tasks.unfinished()) == [first.id, other.id]


async def test_tasks_without_keys_are_all_inserted(store: Store) -> None:
    a, b = task(), task()
    assert await store.tasks.insert([a, b]) == [a.id, b.id]
    assert ids(await store.tasks.unfinished()) == [a.id, b.id]


async def test_an_id_already_stored_fails_the_insert_and_keeps_the_first(store: Store) -> None:
    first = task()
    await store.tasks.insert([first])
    clash = task(name="other")
    clash.id = first.id
    with pytest.raises(StoreError):
        await store.tasks.insert([clash])
    got = await store.tasks.get(first.id)
    assert got is not None and got.name == "tag"


async def test_an_integer_beyond_64_bits_fails_the_insert_and_stores_nothing(store: Store) -> None:
    fine, bad = task(), task(priority=TOO_BIG)
    with pytest.raises(StoreError):
        await store.tasks.insert([fine, bad])
    assert await store.tasks.get(fine.id) is None
    assert await store.tasks.insert([task(retries=TOO_BIG - 1)])  # the edge still fits


# -- started and finish -------------------------------------------------------------


async def test_a_started_task_shows_its_running_attempt_in_unfinished(store: Store) -> None:
    t = task()
    await store.tasks.insert([t])
    run(t, worker="w1", at=7.0)
    store.tasks.started(t)
    await store.commit()  # a barrier: returns once what was handed over before is durable
    (got,) = await store.tasks.unfinished()
    assert got.state is TaskState.RUNNING
    assert got.attempts == [Attempt(worker="w1", started=7.0)]
    assert got.attempts[-1].ended is None


async def test_started_records_the_task_as_it_was_when_handed_over(store: Store) -> None:
    t = task()
    await store.tasks.insert([t])
    run(t)
    store.tasks.started(t)
    t.attempts[-1].ended, t.attempts[-1].outcome = 2.0, Outcome.TIMEOUT  # later, not written
    await store.commit()
    got = await store.tasks.get(t.id)
    assert got is not None and got.attempts == [Attempt(worker="w", started=1.0)]


async def test_started_for_a_task_not_stored_stores_nothing(store: Store) -> None:
    t = task()
    run(t)
    store.tasks.started(t)
    await store.commit()
    assert await store.tasks.get(t.id) is None


async def test_finish_calls_back_once_the_final_state_is_durable(store: Store) -> None:
    t = task()
    await store.tasks.insert([t])
    run(t)
    store.tasks.started(t)
    t.result = msgspec.Raw(b'"ok"')
    t.attempts[-1].ended, t.attempts[-1].outcome = 2.0, Outcome.DONE
    called: list[Task] = []
    done = trio.Event()

    def then(task: Task) -> None:
        called.append(task)
        done.set()

    t.state, t.finished = TaskState.DONE, 2.0
    store.tasks.finish(t, then)
    with trio.fail_after(NET_TIMEOUT):
        await done.wait()
    assert called == [t]
    got = await store.tasks.get(t.id)
    assert got is not None and (got.state, got.finished) == (TaskState.DONE, 2.0)
    assert bytes(got.result) == b'"ok"'  # type: ignore[arg-type]
    assert got.attempts == [Attempt(worker="w", started=1.0, ended=2.0, outcome=Outcome.DONE)]
    assert await store.tasks.unfinished() == []


async def test_a_finish_that_cannot_be_stored_still_calls_back(store: Store) -> None:
    t = task()
    await store.tasks.insert([t])
    t.attempts = [object()]  # type: ignore[list-item]  # cannot be encoded
    done = trio.Event()
    t.state, t.finished = TaskState.DONE, 2.0
    store.tasks.finish(t, lambda _: done.set())
    with trio.fail_after(NET_TIMEOUT):
        await done.wait()
    got = await store.tasks.get(t.id)
    assert got is not None and got.state is TaskState.QUEUED
    ok = task()
    assert await store.tasks.insert([ok]) == [ok.id]  # and the store goes on


# -- queries ------------------------------------------------------------------------


async def test_find_filters_by_name_and_state_newest_first(store: Store) -> None:
    a1, b1, a2 = task("a"), task("b"), task("a")
    await store.tasks.insert([a1, b1, a2])
    await finish(store, a1, TaskState.DONE, 5.0)
    assert ids(await store.tasks.find(name=None, state=None, limit=10)) == [a2.id, b1.id, a1.id]
    assert ids(await store.tasks.find(name="a", state=None, limit=10)) == [a2.id, a1.id]
    assert ids(await store.tasks.find(name="a", state=TaskState.DONE, limit=10)) == [a1.id]
    assert ids(await store.tasks.find(name=None, state=TaskState.QUEUED, limit=10)) == [
        a2.id, b1.id]
    assert ids(await store.tasks.find(name="b", state=TaskState.DONE, limit=10)) == []


async def test_find_orders_by_seq_not_by_insertion_and_stops_at_the_limit(store: Store) -> None:
    old, new = task(), task()
    await store.tasks.insert([new])
    await store.tasks.insert([old])
    assert ids(await store.tasks.find(name=None, state=None, limit=1)) == [new.id]
    assert ids(await store.tasks.find(name=None, state=None, limit=5)) == [new.id, old.id]


async def test_unfinished_is_oldest_first_and_skips_final_tasks(store: Store) -> None:
    ts = [task() for _ in range(4)]
    await store.tasks.insert([ts[2], ts[0], ts[3], ts[1]])
    await finish(store, ts[1], TaskState.CANCELLED, 1.0)
    assert ids(await store.tasks.unfinished()) == [ts[0].id, ts[2].id, ts[3].id]


async def test_purge_drops_only_final_tasks_older_than_the_cutoff(store: Store) -> None:
    old, recent, live = task(), task(), task()
    await store.tasks.insert([old, recent, live])
    await finish(store, old, TaskState.DONE, 10.0)
    await finish(store, recent, TaskState.FAILED, 100.0)
    assert await store.tasks.purge(50.0) == 1
    assert await store.tasks.get(old.id) is None
    assert await store.tasks.get(recent.id) is not None
    assert await store.tasks.get(live.id) is not None
    assert await store.tasks.purge(50.0) == 0


async def test_a_purged_tasks_key_can_be_used_again(store: Store) -> None:
    old = task(key="k")
    await store.tasks.insert([old])
    await finish(store, old, TaskState.DONE, 10.0)
    await store.tasks.purge(50.0)
    new = task(key="k")
    assert await store.tasks.insert([new]) == [new.id]


# -- queues -------------------------------------------------------------------------


async def test_a_queue_configuration_replaces_the_previous_one(store: Store) -> None:
    assert await store.queues.configurations() == {}
    await store.queues.configure("a", b'{"v":1}')
    await store.queues.configure("b", b'{"v":2}')
    await store.queues.configure("a", b'{"v":3}')
    assert await store.queues.configurations() == {"a": b'{"v":3}', "b": b'{"v":2}'}


# -- commit -------------------------------------------------------------------------


async def test_one_commit_stores_tasks_and_queue_configurations_together(store: Store) -> None:
    t = task(key="k")
    results = await store.commit(InsertTasks([t]), ConfigureQueue("q", b"{}"),
                                 InsertTasks([task(key="k")]))
    assert results == [[t.id], None, [t.id]]
    assert await store.tasks.get(t.id) is not None
    assert await store.queues.configurations() == {"q": b"{}"}


async def test_a_commit_with_one_failing_change_keeps_none_of_them(store: Store) -> None:
    await store.queues.configure("q", b'{"v":1}')
    fine = task()
    with pytest.raises(StoreError):
        await store.commit(InsertTasks([fine]), ConfigureQueue("q", b'{"v":2}'),
                           InsertTasks([task(retries=TOO_BIG)]))
    assert await store.tasks.get(fine.id) is None
    assert await store.queues.configurations() == {"q": b'{"v":1}'}


async def test_a_failing_commit_fails_alone_beside_concurrent_ones(store: Store) -> None:
    good = [task() for _ in range(3)]
    failed: list[StoreError] = []

    async def insert_bad() -> None:
        try:
            await store.tasks.insert([task(priority=TOO_BIG)])
        except StoreError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.tasks.insert, [good[0]])
        nursery.start_soon(insert_bad)
        nursery.start_soon(store.tasks.insert, good[1:])
    assert len(failed) == 1
    assert ids(await store.tasks.unfinished()) == ids(good)
    after = task()
    assert await store.tasks.insert([after]) == [after.id]  # the writer still serves


# -- worker pools and the outbox ------------------------------------------------------


def pool(pool_id: str = "proj/pool", provider: str = "aws", **fields: object) -> PoolRecord:
    record = PoolRecord(pool_id, provider, description="d", config=b'{"a": 1}',
                        owner="me@example.com", email_on_error=False, created=1.5,
                        last_modified=2.5)
    return dataclasses.replace(record, **fields)  # type: ignore[arg-type]


def event(n: int, at: float = 1.0) -> OutboxEvent:
    return OutboxEvent("exchange/x", f"primary.{n}", b'{"n": %d}' % n, at)


async def test_a_saved_pool_reads_back_field_for_field_and_replaces_the_previous(
        store: Store) -> None:
    await store.commit(SavePool(pool(email_on_error=True)))
    assert await store.pools.get("proj/pool") == pool(email_on_error=True)
    await store.commit(SavePool(pool(provider="gcp")))
    assert await store.pools.all() == [pool(provider="gcp")]
    assert await store.pools.get("other/pool") is None


async def test_all_pools_come_sorted_by_id_and_a_deleted_pool_is_gone(store: Store) -> None:
    await store.commit(SavePool(pool("b/x")), SavePool(pool("a/y")), SavePool(pool("c/z")))
    await store.commit(DeletePool("c/z"), DeletePool("never/stored"))
    assert [p.worker_pool_id for p in await store.pools.all()] == ["a/y", "b/x"]


async def test_appended_events_get_increasing_seqs_in_commit_order(store: Store) -> None:
    (first,) = await store.commit(AppendEvents([event(1), event(2)]))
    (second,) = await store.commit(AppendEvents([event(3)]))
    assert first == [1, 2] and second == [3]
    rows = await store.outbox.read(0, 10)
    assert [(r.seq, r.routing_key, r.body) for r in rows] == [
        (1, "primary.1", b'{"n": 1}'), (2, "primary.2", b'{"n": 2}'), (3, "primary.3", b'{"n": 3}')]
    assert [r.seq for r in await store.outbox.read(1, 1)] == [2]


async def test_many_events_in_one_change_keep_their_order_across_chunks(store: Store) -> None:
    (seqs,) = await store.commit(AppendEvents([event(n) for n in range(300)]))
    assert seqs == list(range(1, 301))
    rows = await store.outbox.read(0, 1000)
    assert [r.routing_key for r in rows] == [f"primary.{n}" for n in range(300)]


async def test_an_event_commits_with_its_pool_change_or_not_at_all(store: Store) -> None:
    await store.commit(SavePool(pool()), AppendEvents([event(1)]))
    with pytest.raises(StoreError):
        await store.commit(SavePool(pool("x/y")), AppendEvents([event(2)]),
                           InsertTasks([task(priority=TOO_BIG)]))
    assert [r.routing_key for r in await store.outbox.read(0, 10)] == ["primary.1"]
    assert await store.pools.get("x/y") is None
    (seqs,) = await store.commit(AppendEvents([event(3)]))
    assert seqs == [2]  # the failed commit's seq was not handed out


async def test_the_delivered_cursor_only_moves_forward(store: Store) -> None:
    assert await store.outbox.delivered() == 0
    await store.commit(AppendEvents([event(1), event(2), event(3)]))
    await store.commit(MarkDelivered(2))
    await store.commit(MarkDelivered(1))
    assert await store.outbox.delivered() == 2


async def test_purge_drops_only_delivered_events_older_than_the_cutoff(store: Store) -> None:
    await store.commit(AppendEvents([event(1, at=1.0), event(2, at=1.0), event(3, at=9.0)]))
    await store.commit(MarkDelivered(1))
    assert await store.outbox.purge(before=5.0) == 1
    assert [r.seq for r in await store.outbox.read(0, 10)] == [2, 3]
    await store.commit(MarkDelivered(3))
    assert await store.outbox.purge(before=5.0) == 1
    (seqs,) = await store.commit(AppendEvents([event(4)]))
    assert seqs == [4]  # a purged seq is never handed out again


# -- machine statistics -------------------------------------------------------------


async def test_readings_come_back_pooled_per_worker_metric_variant_and_epoch_bucket(
        store: Store) -> None:
    await store.stats.record(RecordStats("w1", 1_000, "t1", [("cpu_usage", "0", 10.0),
                                                            ("cpu_usage", "1", 30.0)]))
    await store.stats.record(RecordStats("w1", 9_999, None, [("cpu_usage", "0", 20.0)]))
    await store.stats.record(RecordStats("w1", 10_000, None, [("cpu_usage", "0", 0.0)]))
    await store.stats.record(RecordStats("w2", 5_000, None, [("cpu_usage", "0", 7.5),
                                                            ("memory_used", "total", 1.0)]))
    got = await store.stats.buckets(since=0, until=20_000, interval=10_000,
                                    metrics=["cpu_usage"])
    assert got == [  # per worker, metric, variant, then bucket
        StatBucket("w1", "cpu_usage", "0", 0, 2, 30.0, 10.0, 20.0),
        StatBucket("w1", "cpu_usage", "0", 10_000, 1, 0.0, 0.0, 0.0),  # a zero is a reading
        StatBucket("w1", "cpu_usage", "1", 0, 1, 30.0, 30.0, 30.0),
        StatBucket("w2", "cpu_usage", "0", 0, 1, 7.5, 7.5, 7.5),
    ]


async def test_buckets_keep_both_ends_of_the_range_and_only_the_workers_and_metrics_asked(
        store: Store) -> None:
    for ts in (999, 1_000, 2_000, 2_001):
        await store.stats.record(RecordStats("w1", ts, None, [("gpu_usage", "0", float(ts)),
                                                             ("disk_read", "total", 1.0)]))
    await store.stats.record(RecordStats("w2", 1_500, None, [("gpu_usage", "0", 5.0)]))
    got = await store.stats.buckets(since=1_000, until=2_000, interval=1, metrics=["gpu_usage"],
                                    workers=["w1"])
    assert [(b.worker, b.metric, b.start, b.total) for b in got] == [
        ("w1", "gpu_usage", 1_000, 1_000.0), ("w1", "gpu_usage", 2_000, 2_000.0)]
    assert await store.stats.buckets(since=0, until=9_000, interval=1_000,
                                     metrics=["gpu_usage"], workers=[]) == []


async def test_a_repeated_reading_at_the_same_millisecond_replaces_the_first(store: Store) -> None:
    await store.stats.record(RecordStats("w1", 1_000, None, [("memory_used", "total", 1.0)]))
    await store.stats.record(RecordStats("w1", 1_000, "t", [("memory_used", "total", 3.0)]))
    (bucket,) = await store.stats.buckets(since=0, until=2_000, interval=2_000,
                                          metrics=["memory_used"])
    assert (bucket.count, bucket.total) == (1, 3.0)
    (activity,) = await store.stats.activity(since=0, until=2_000, interval=2_000)
    assert activity == ActivityBucket(0, 1, 1)


async def test_activity_counts_distinct_workers_per_bucket_and_those_with_a_task(
        store: Store) -> None:
    await store.stats.record(RecordStats("w1", 100, "t1"))
    await store.stats.record(RecordStats("w1", 200, None))
    await store.stats.record(RecordStats("w2", 300, None, [("cpu_usage", "0", 1.0)]))
    await store.stats.record(RecordStats("w2", 1_100, "t2"))
    await store.stats.record(RecordStats("w3", 5_000, "t3"))  # beyond `until`
    assert await store.stats.activity(since=0, until=4_999, interval=1_000) == [
        ActivityBucket(0, 2, 1), ActivityBucket(1_000, 1, 1)]


async def test_metric_keys_are_the_sorted_metrics_of_the_workers_asked(store: Store) -> None:
    await store.stats.record(RecordStats("w1", 1, None, [("memory_used", "total", 1.0),
                                                        ("cpu_usage", "0", 1.0)]))
    await store.stats.record(RecordStats("w2", 1, None, [("gpu_usage", "0", 1.0)]))
    assert await store.stats.metric_keys() == ["cpu_usage", "gpu_usage", "memory_used"]
    assert await store.stats.metric_keys(["w2", "nobody"]) == ["gpu_usage"]
    assert await store.stats.metric_keys([]) == []


HOUR = 3_600_000


async def test_purge_drops_raw_reports_and_readings_older_than_the_cutoff_in_whole_hours(
        store: Store) -> None:
    await store.stats.record(RecordStats("w1", 1_000, "t", [("cpu_usage", "0", 1.0),
                                                           ("cpu_usage", "1", 2.0)]))
    await store.stats.record(RecordStats("w2", HOUR + 2_000, None,
                                         [("memory_used", "total", 1.0)]))
    assert await store.stats.purge(HOUR - 1) == 0  # rounded down to a whole hour: 0
    assert await store.stats.purge(HOUR + 2_000) == 2
    # raw samples of the first hour are gone; its rollups are not
    assert await store.stats.buckets(since=0, until=HOUR - 1, interval=1_000,
                                     metrics=["cpu_usage"]) == []
    assert await store.stats.metric_keys() == ["cpu_usage", "memory_used"]
    assert await store.stats.activity(since=0, until=2 * HOUR - 1, interval=HOUR) == [
        ActivityBucket(0, 1, 1), ActivityBucket(HOUR, 1, 0)]
    assert await store.stats.activity(since=0, until=2 * HOUR - 1, interval=1_000) == [
        ActivityBucket(HOUR + 2_000, 1, 0)]
    await store.stats.record(RecordStats("w1", HOUR + 3_000, None, [("cpu_usage", "0", 4.0)]))
    got = await store.stats.buckets(since=0, until=2 * HOUR - 1, interval=HOUR,
                                    metrics=["cpu_usage"], by_variant=False)
    assert got == [StatBucket("w1", "cpu_usage", "", 0, 2, 3.0, 1.0, 2.0),
                   StatBucket("w1", "cpu_usage", "", HOUR, 1, 4.0, 4.0, 4.0)]


async def test_rollups_are_purged_per_span_at_their_own_cutoff(store: Store) -> None:
    await store.stats.record(RecordStats("w1", 1_000, "t", [("cpu_usage", "0", 1.0)]))
    await store.stats.record(RecordStats("w1", 3 * HOUR, None, [("cpu_usage", "0", 5.0)]))
    await store.stats.purge(3 * HOUR, {300_000: 3 * HOUR, HOUR: HOUR})
    # nothing before the third hour at 5 minutes, nor before the first at an hour
    assert await store.stats.buckets(since=0, until=HOUR - 1, interval=300_000,
                                     metrics=["cpu_usage"]) == []
    assert [b.start for b in await store.stats.buckets(
        since=0, until=4 * HOUR - 1, interval=HOUR, metrics=["cpu_usage"])] == [HOUR * 3]
    assert await store.stats.activity(since=0, until=4 * HOUR - 1, interval=HOUR) == [
        ActivityBucket(3 * HOUR, 1, 0)]


async def test_a_reading_that_is_not_a_finite_number_fails_its_report_alone(
        store: Store) -> None:
    """A store keeps readings as JSON numbers, which have no inf or nan: such a report is
    refused naming its worker, and the reports committed with it are stored."""
    outcomes: dict[str, str] = {}

    async def record(worker: str, value: float) -> None:
        try:
            await store.stats.record(RecordStats(worker, 1_000, None,
                                                 [("cpu_usage", "total", value)]))
        except StoreError as exc:
            outcomes[worker] = str(exc)
        else:
            outcomes[worker] = "stored"

    async with trio.open_nursery() as nursery:  # one batch
        for worker, value in (("w1", 1.0), ("w2", float("inf")), ("w3", float("nan"))):
            nursery.start_soon(record, worker, value)
    assert outcomes["w1"] == "stored"
    assert "'w2'" in outcomes["w2"] and "finite" in outcomes["w2"]
    assert "'w3'" in outcomes["w3"] and "finite" in outcomes["w3"]
    assert [b.worker for b in await store.stats.buckets(
        since=0, until=9_999, interval=1_000, metrics=["cpu_usage"])] == ["w1"]


def test_a_query_reads_whole_hours_then_whole_5_minute_spans_then_raw_readings() -> None:
    from workyard.store._rollups import plan

    five = 300_000
    p = plan(7 * five + 1, 2 * HOUR + 3 * five + 2, HOUR)
    assert p.rollups == ((HOUR, HOUR, 2 * HOUR), (five, 8 * five, HOUR),
                         (five, 2 * HOUR, 2 * HOUR + 3 * five))
    assert p.raw == ((7 * five + 1, 8 * five - 1), (2 * HOUR + 3 * five, 2 * HOUR + 3 * five + 2))
    assert plan(0, HOUR - 1, 45_000).rollups == ()  # no span divides 45 s: all raw


async def test_a_ragged_hour_is_answered_from_5_minute_rollups_once_raw_readings_are_gone(
        store: Store) -> None:
    """The part of a range finer than an hour reads 5-minute rollups, so it is answered
    for as long as they are kept, not only while the raw readings are."""
    for ts, value in ((600_000, 1.0), (3_000_000, 3.0), (HOUR + 100, 8.0)):
        await store.stats.record(RecordStats("w1", ts, None, [("cpu_usage", "total", value)]))
    await store.stats.purge(2 * HOUR)  # raw readings gone, rollups kept
    got = await store.stats.buckets(since=300_000, until=2 * HOUR - 1, interval=HOUR,
                                    metrics=["cpu_usage"])
    assert got == [StatBucket("w1", "cpu_usage", "total", 0, 2, 4.0, 1.0, 3.0),
                   StatBucket("w1", "cpu_usage", "total", HOUR, 1, 8.0, 8.0, 8.0)]


def _reports(n: int) -> list[RecordStats]:
    """`n` reports of three workers over ~7 hours: ragged times, lists and scalars,
    some repeated (same worker and ms: a replacement), integer values so sums are exact."""
    reports = []
    for i in range(n):
        worker = f"w{i % 3}"
        ts = 1_000_000 + i * 97_003 // 3 * 3 + (i % 3)
        readings = [("cpu_usage", "total", float(i * 7 % 101)),
                    ("gpu_usage", "0", float(i * 13 % 89)), ("gpu_usage", "1", float(i % 5))]
        if i % 4:
            readings.append(("memory_used", "total", 0.0 if i % 8 == 1 else float(i % 977)))
        reports.append(RecordStats(worker, ts, None if i % 5 else f"t{i}", readings))
        if i % 17 == 0 and i:  # a repeat of an earlier report, with other values
            old = reports[i - 3]
            reports.append(RecordStats(old.worker, old.ts, "again",
                                       [(m, v, value + 1) for m, v, value in old.readings[:2]]))
    return reports


def _expected(reports: list[RecordStats], since: int, until: int, interval: int,
              metrics: list[str], by_variant: bool) -> list[StatBucket]:
    """get_stats' buckets straight from the raw samples (the last of a repeat wins)."""
    raw: dict[tuple[str, str, str, int], float] = {}
    for r in reports:
        for metric, variant, value in r.readings:
            raw[(r.worker, metric, variant, r.ts)] = value
    acc: dict[tuple[str, str, str, int], list[float]] = {}
    for (worker, metric, variant, ts), value in raw.items():
        if metric in metrics and since <= ts <= until:
            key = (worker, metric, variant if by_variant else "", ts // interval * interval)
            a = acc.setdefault(key, [0, 0.0, value, value])
            a[0] += 1
            a[1] += value
            a[2], a[3] = min(a[2], value), max(a[3], value)
    return [StatBucket(w, m, v, s, int(a[0]), a[1], a[2], a[3]) for (w, m, v, s), a in sorted(
        acc.items(), key=lambda kv: (kv[0][0], metrics.index(kv[0][1]), kv[0][2], kv[0][3]))]


def _expected_activity(reports: list[RecordStats], since: int, until: int,
                       interval: int) -> list[ActivityBucket]:
    tasks = {(r.worker, r.ts): r.task for r in reports}
    seen: dict[int, dict[str, bool]] = {}
    for (worker, ts), t in tasks.items():
        if since <= ts <= until:
            bucket = seen.setdefault(ts // interval * interval, {})
            bucket[worker] = bucket.get(worker, False) or t is not None
    return [ActivityBucket(s, len(w), sum(w.values())) for s, w in sorted(seen.items())]


#: (since, until, interval): whole spans and ragged edges, rollup and raw-only intervals
RANGES = [(0, 30 * HOUR, HOUR), (1_234_567, 6 * HOUR + 777, HOUR), (0, 9 * HOUR, 300_000),
          (2_000_001, 5 * HOUR + 299_999, 300_000), (1_500_000, 7 * HOUR, 900_000),
          (3 * HOUR + 1, 4 * HOUR - 1, HOUR), (0, 9 * HOUR, 7_200_000),
          (1_000_000, 4 * HOUR, 45_000), (1_000_000, 2_000_000, 1)]


async def test_stats_from_rollups_equal_the_raw_samples_for_any_range_and_interval(
        store: Store) -> None:
    reports = _reports(700)
    for i in range(0, len(reports), 50):  # several group commits, repeats across them
        await store.commit(*reports[i:i + 50])
    metrics = ["memory_used", "gpu_usage", "cpu_usage"]
    for since, until, interval in RANGES:
        for by_variant in (True, False):
            got = await store.stats.buckets(since=since, until=until, interval=interval,
                                            metrics=metrics, by_variant=by_variant)
            assert got == _expected(reports, since, until, interval, metrics, by_variant), (
                since, until, interval, by_variant)
        assert await store.stats.activity(since=since, until=until, interval=interval) == (
            _expected_activity(reports, since, until, interval)), (since, until, interval)
    few = await store.stats.buckets(since=0, until=9 * HOUR, interval=HOUR,
                                    metrics=["gpu_usage"], workers=["w1"])
    assert few == _expected([r for r in reports if r.worker == "w1"], 0, 9 * HOUR, HOUR,
                            ["gpu_usage"], True)


async def test_a_repeated_report_replaces_its_readings_in_the_rollups_too(store: Store) -> None:
    await store.stats.record(RecordStats("w1", 1_000, "t", [("cpu_usage", "0", 90.0)]))
    await store.stats.record(RecordStats("w1", 2_000, None, [("cpu_usage", "0", 10.0)]))
    await store.commit(RecordStats("w1", 1_000, None, [("cpu_usage", "0", 30.0)]),
                       RecordStats("w1", 1_000, None, [("cpu_usage", "0", 50.0)]))
    (got,) = await store.stats.buckets(since=0, until=HOUR - 1, interval=HOUR,
                                       metrics=["cpu_usage"])
    assert got == StatBucket("w1", "cpu_usage", "0", 0, 2, 60.0, 10.0, 50.0)
    assert await store.stats.activity(since=0, until=HOUR - 1, interval=HOUR) == [
        ActivityBucket(0, 1, 0)]


async def test_a_stats_report_committed_with_a_failing_change_is_not_kept(store: Store) -> None:
    with pytest.raises(StoreError):
        await store.commit(RecordStats("w1", 1_000, None, [("cpu_usage", "0", 1.0)]),
                           InsertTasks([task(retries=TOO_BIG)]))
    assert await store.stats.metric_keys() == []
    assert await store.stats.activity(since=0, until=9_000, interval=1_000) == []
    await store.stats.record(RecordStats("w1", 1_000, None, [("cpu_usage", "0", 2.0)]))
    (bucket,) = await store.stats.buckets(since=0, until=9_000, interval=1_000,
                                          metrics=["cpu_usage"])
    assert bucket.total == 2.0


async def test_series_are_the_buckets_as_json_arrays_per_series(store: Store) -> None:
    reports = _reports(400)
    for i in range(0, len(reports), 100):
        await store.commit(*reports[i:i + 100])
    metrics = ["gpu_usage", "cpu_usage"]
    for since, until, interval in RANGES:
        for by_variant in (True, False):
            got = await store.stats.series(since=since, until=until, interval=interval,
                                           metrics=metrics, by_variant=by_variant)
            want = _expected(reports, since, until, interval, metrics, by_variant)
            flat = [StatBucket(s.worker, s.metric, s.variant, d, 0, a, lo, hi)
                    for s in got for d, a, lo, hi in zip(*(
                        msgspec.json.decode(x) for x in (s.dates, s.avg, s.low, s.high)),
                        strict=True)]
            assert [(b.worker, b.metric, b.variant, b.start, b.low, b.high) for b in flat] == [
                (b.worker, b.metric, b.variant, b.start, b.low, b.high) for b in want]
            assert [b.total for b in flat] == pytest.approx(
                [b.total / b.count for b in want], rel=1e-12), (since, until, interval)


async def test_a_metric_sent_as_a_number_and_as_a_list_pools_all_its_readings(
        store: Store) -> None:
    reports = []
    for i in range(60):  # every 10 minutes; the even reports a number, the odd a list
        readings = ([("gpu_usage", "total", float(i))] if i % 2 == 0 else
                    [("gpu_usage", "0", float(i)), ("gpu_usage", "1", float(i + 100))])
        reports.append(RecordStats(f"w{i % 2}", 1_000 + i * 600_000, None, readings))
        reports.append(RecordStats("w2", 2_000 + i * 600_000, None, readings))
    await store.commit(*reports)
    for interval in (300_000, 900_000, HOUR):
        got = await store.stats.series(since=0, until=10 * HOUR, interval=interval,
                                       metrics=["gpu_usage"], by_variant=False)
        want = _expected(reports, 0, 10 * HOUR, interval, ["gpu_usage"], False)
        flat = [(s.worker, d, lo, hi) for s in got for d, lo, hi in zip(*(
            msgspec.json.decode(x) for x in (s.dates, s.low, s.high)), strict=True)]
        assert flat == [(b.worker, b.start, b.low, b.high) for b in want], interval


async def test_a_worker_whose_readings_change_between_reports_has_each_in_its_series(
        store: Store) -> None:
    shapes = [[("cpu_usage", "0", 1.0), ("cpu_usage", "1", 2.0)],
              [("cpu_usage", "1", 3.0)],  # a null left out: fewer variants of the metric
              [("cpu_usage", "0", 4.0), ("cpu_usage", "1", 5.0)],
              [("memory_used", "total", 6.0), ("cpu_usage", "0", 7.0)]]
    for i, readings in enumerate(shapes):  # one commit each: each shape after another
        await store.stats.record(RecordStats("w1", 1_000 * (i + 1), None, readings))
    metrics = ["cpu_usage", "memory_used"]
    got = await store.stats.buckets(since=0, until=9_999, interval=10_000, metrics=metrics)
    assert [(b.metric, b.variant, b.count, b.total) for b in got] == [
        ("cpu_usage", "0", 3, 12.0), ("cpu_usage", "1", 3, 10.0),
        ("memory_used", "total", 1, 6.0)]
    pooled = await store.stats.buckets(since=0, until=9_999, interval=10_000, metrics=metrics,
                                       by_variant=False)
    assert [(b.metric, b.count, b.total) for b in pooled] == [
        ("cpu_usage", 6, 22.0), ("memory_used", 1, 6.0)]


async def test_series_fill_only_the_arrays_of_the_aggregations_asked(store: Store) -> None:
    await store.commit(*_reports(60))
    for since, until, interval in RANGES[:4]:
        full = await store.stats.series(since=since, until=until, interval=interval,
                                        metrics=["gpu_usage"], by_variant=False)
        just_max = await store.stats.series(since=since, until=until, interval=interval,
                                            metrics=["gpu_usage"], by_variant=False,
                                            aggregations=("max",))
        assert [(s.dates, s.high) for s in just_max] == [(s.dates, s.high) for s in full]
        assert {(s.avg, s.low) for s in just_max} <= {("[]", "[]")}
