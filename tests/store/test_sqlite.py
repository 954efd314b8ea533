"""What only SQLiteStore has: a real file that outlives the process, group commit, the
multi-row statements, units of work failing alone inside one transaction, and the
schema's versions. What every store does is in `test_contract.py`."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import NET_TIMEOUT

from workyard import Attempt, SQLiteStore, Task, TaskState
from workyard.store import ActivityBucket, InsertTasks, RecordStats, StatBucket, StoreError, _wal
from workyard.store._migrations import VERSION
from workyard.store._sqlite import CHECKPOINT_COMMITS, CHUNK

_ids = itertools.count(1)
_seq = itertools.count(1)

#: The schema from before versioning (user_version 0), as it was shipped.
SCHEMA_BEFORE_VERSIONS = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    attrs BLOB NOT NULL,
    data BLOB NOT NULL,
    priority INTEGER NOT NULL,
    timeout REAL NOT NULL,
    retries INTEGER NOT NULL,
    schedule_timeout REAL,
    key TEXT UNIQUE,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    result BLOB,
    error TEXT,
    attempts BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (seq) WHERE finished IS NULL;
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished) WHERE finished IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, seq);
CREATE TABLE IF NOT EXISTS queue_configurations (
    queue TEXT PRIMARY KEY,
    configuration BLOB NOT NULL
);
"""


def task(name: str = "tag", **fields: object) -> Task:
    n = next(_seq)
    return Task(id=f"s{next(_ids)}", name=name, seq=n, created=float(n),
                **fields)  # type: ignore[arg-type]


def user_version(path: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


async def wait(event: trio.Event) -> None:
    with trio.fail_after(NET_TIMEOUT):
        await event.wait()


# -- the file -----------------------------------------------------------------------


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


async def test_machine_statistics_survive_reopening_and_their_series_carry_on(
        hub_db: str) -> None:
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.stats.record(RecordStats("w1", 1_000, "t", [("cpu_usage", "0", 1.0)]))
        nursery.cancel_scope.cancel()
    reopened = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(reopened.run)
        await reopened.stats.record(RecordStats("w1", 2_000, None, [("cpu_usage", "0", 3.0),
                                                                   ("cpu_usage", "1", 5.0)]))
        got = await reopened.stats.buckets(since=0, until=9_000, interval=9_000,
                                           metrics=["cpu_usage"])
        assert [(b.variant, b.count, b.total) for b in got] == [("0", 2, 4.0), ("1", 1, 5.0)]
        nursery.cancel_scope.cancel()
    with sqlite3.connect(hub_db) as db:  # one series row per (worker, metric, variant),
        # and one pooling the listed metric's variants (its rollups only)
        assert db.execute("SELECT variant FROM stat_series ORDER BY variant").fetchall() == [
            ("",), ("0",), ("1",)]


async def test_after_a_crash_a_running_task_comes_back_with_its_cut_off_attempt(
        hub_db: str) -> None:
    t = task()
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.tasks.insert([t])
        t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w1", started=3.0)]
        store.tasks.started(t)
        await store.commit()
        nursery.cancel_scope.cancel()  # the hub dies with the attempt open
    reopened = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(reopened.run)
        (got,) = await reopened.tasks.unfinished()
        assert got.state is TaskState.RUNNING and got.worker == "w1"
        assert got.attempts == [Attempt(worker="w1", started=3.0)]
        nursery.cancel_scope.cancel()


async def test_a_closed_store_refuses_commits(hub_db: str) -> None:
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        nursery.cancel_scope.cancel()
    with pytest.raises(StoreError, match="closed"):
        await store.tasks.insert([task()])
    with pytest.raises(StoreError, match="not running"):
        await store.tasks.get("x")



async def test_a_slow_read_leaves_the_other_reader_connections_to_other_reads(
        hub_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from workyard.store import _sqlite

    monkeypatch.setattr(_sqlite, "READERS", 2)
    store = SQLiteStore(hub_db)
    release = threading.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        nursery.start_soon(store._aside, lambda db: release.wait(NET_TIMEOUT))
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(NET_TIMEOUT):  # one connection would wait for the slow read
            assert await store.tasks.get("x") is None
        release.set()
        nursery.cancel_scope.cancel()


async def test_a_read_queued_for_a_reader_connection_when_the_store_stops_is_served_first(
        hub_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store closes a connection only once no read is using it or waiting for it."""
    from workyard.store import _sqlite

    monkeypatch.setattr(_sqlite, "READERS", 1)
    store = SQLiteStore(hub_db)
    release = threading.Event()
    served = []

    async def queued_read() -> None:
        served.append(await store.tasks.get("x"))

    async with trio.open_nursery() as outer, trio.open_nursery() as nursery:
        await nursery.start(store.run)
        outer.start_soon(store._aside, lambda db: release.wait(NET_TIMEOUT))
        await trio.testing.wait_all_tasks_blocked()
        outer.start_soon(queued_read)  # behind the slow read, for the one connection
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()  # the store stops and waits for its connection
        release.set()
    assert served == [None]
    with pytest.raises(StoreError, match="not running"):
        await store.tasks.get("x")

# -- group commit -------------------------------------------------------------------


async def test_concurrent_writes_share_commits(sqlite_store: SQLiteStore) -> None:
    before = sqlite_store.commits
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(sqlite_store.tasks.insert, [task()])
    assert len(await sqlite_store.tasks.unfinished()) == 50
    assert sqlite_store.commits - before < 50


async def test_many_small_commits_keep_the_wal_near_its_limit(nursery: trio.Nursery,
                                                               hub_db: str) -> None:
    # each of these commits on the loop's thread, where SQLite's own checkpoint is off:
    # without checkpoints the WAL grows by ~26 KB a commit (~11 MB here), without end;
    # back to back, no checkpoint beside the writer finishes between two commits, so
    # the WAL starts again only after the ones the writer waits for
    store = SQLiteStore(hub_db)
    store.wal_limit = 1_000_000
    await nursery.start(store.run)
    for _ in range(3 * CHECKPOINT_COMMITS):
        await store.tasks.insert([task()])
    assert len(await store.tasks.unfinished()) == 3 * CHECKPOINT_COMMITS
    assert Path(hub_db + "-wal").stat().st_size < store.wal_limit + 100_000


async def test_commits_go_on_while_the_wal_is_checkpointed(
        sqlite_store: SQLiteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    checkpoint = _wal.checkpoint

    def held(db: sqlite3.Connection) -> tuple[int, int]:
        started.set()
        release.wait(NET_TIMEOUT)
        return checkpoint(db)
    monkeypatch.setattr(_wal, "checkpoint", held)
    try:
        for _ in range(CHECKPOINT_COMMITS):  # the last one asks for a checkpoint
            await sqlite_store.tasks.insert([task()])
        assert await trio.to_thread.run_sync(started.wait, NET_TIMEOUT)
        with trio.fail_after(NET_TIMEOUT):
            for _ in range(CHECKPOINT_COMMITS):
                await sqlite_store.tasks.insert([task()])
        assert not release.is_set()  # all committed while the checkpoint was held
    finally:
        release.set()
    assert len(await sqlite_store.tasks.unfinished()) == 2 * CHECKPOINT_COMMITS


async def test_a_store_closing_during_a_checkpoint_waits_for_it(
        hub_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    checkpoint = _wal.checkpoint
    ended = []

    def held(db: sqlite3.Connection) -> tuple[int, int]:
        started.set()
        release.wait(NET_TIMEOUT)
        result = checkpoint(db)
        ended.append(result)
        return result
    monkeypatch.setattr(_wal, "checkpoint", held)
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        for _ in range(CHECKPOINT_COMMITS):
            await store.tasks.insert([task()])
        assert await trio.to_thread.run_sync(started.wait, NET_TIMEOUT)
        nursery.cancel_scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert not ended
        release.set()
    assert ended  # its connection was closed only after it
    async with trio.open_nursery() as nursery:
        again = SQLiteStore(hub_db)
        await nursery.start(again.run)
        assert len(await again.tasks.unfinished()) == CHECKPOINT_COMMITS
        nursery.cancel_scope.cancel()


async def test_writes_beyond_one_chunk_are_all_stored(sqlite_store: SQLiteStore) -> None:
    many = [task() for _ in range(2 * CHUNK + 7)]
    assert await sqlite_store.tasks.insert(many) == [t.id for t in many]
    before = sqlite_store.commits
    announced = 0
    all_done = trio.Event()

    def then(_: Task) -> None:
        nonlocal announced
        announced += 1
        if announced == len(many):
            all_done.set()

    for t in many:
        t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=1.0)]
        sqlite_store.tasks.started(t)
    for t in many:
        t.state, t.finished = TaskState.DONE, 2.0
        sqlite_store.tasks.finish(t, then)
    await wait(all_done)
    assert sqlite_store.commits - before == 1
    done = await sqlite_store.tasks.find(name=None, state=TaskState.DONE, limit=10_000)
    assert len(done) == len(many)


class TracedStore(SQLiteStore):
    """A SQLiteStore that records the statements its writer runs."""

    statements: list[str]

    def _open_writer(self) -> sqlite3.Connection:
        db = super()._open_writer()
        self.statements = []
        db.set_trace_callback(self.statements.append)
        return db


async def test_interleaved_inserts_starts_and_finishes_share_two_statements(
        nursery: trio.Nursery, hub_db: str) -> None:
    store = TracedStore(hub_db)
    await nursery.start(store.run)
    running = [task() for _ in range(40)]
    await store.tasks.insert(running)
    new = [task(key=f"k{i}") for i in range(40)]
    store.statements.clear()
    for t, n in zip(running, new):  # as a busy hub hands them over
        store.commit_soon(InsertTasks([n]))
        t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=1.0)]
        store.tasks.started(t)
        t.state, t.finished = TaskState.DONE, 2.0
        store.tasks.finish(t, lambda _: None)
    await store.commit()
    kinds = [s.split()[0] for s in store.statements]
    assert kinds.count("INSERT") == 1 and kinds.count("UPDATE") == 1, kinds
    assert len(await store.tasks.unfinished()) == 40
    assert len(await store.tasks.find(name=None, state=TaskState.DONE, limit=100)) == 40


async def test_started_and_finish_of_one_task_in_one_batch_end_final(
        sqlite_store: SQLiteStore) -> None:
    ts = [task() for _ in range(5)]
    await sqlite_store.tasks.insert(ts)
    committed = trio.Event()
    for t in ts:  # dispatched and answered before the writer wakes
        t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=1.0)]
        sqlite_store.tasks.started(t)
        t.state, t.finished = TaskState.DONE, 2.0
        sqlite_store.tasks.finish(t, lambda _: committed.set())
    await wait(committed)
    assert await sqlite_store.tasks.unfinished() == []


async def test_a_batch_with_one_out_of_range_integer_fails_that_unit_only(
        sqlite_store: SQLiteStore) -> None:
    good, bad, later = task(), task(priority=2**63), task()
    await sqlite_store.tasks.insert([good])
    good.state, good.finished = TaskState.DONE, 2.0
    finished = trio.Event()
    errors: list[BaseException] = []

    async def insert_bad() -> None:
        try:
            await sqlite_store.tasks.insert([bad])
        except StoreError as exc:
            errors.append(exc)

    before = sqlite_store.commits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_bad)
        nursery.start_soon(sqlite_store.tasks.insert, [later])
        sqlite_store.tasks.finish(good, lambda _: finished.set())
    await wait(finished)
    assert sqlite_store.commits - before == 1  # one transaction held all three
    (error,) = errors
    assert isinstance(error.__cause__, OverflowError)
    assert "InsertTasks" in str(error)
    assert await sqlite_store.tasks.get(bad.id) is None
    assert [t.id for t in await sqlite_store.tasks.unfinished()] == [later.id]
    got = await sqlite_store.tasks.get(good.id)
    assert got is not None and got.state is TaskState.DONE
    after = task()
    assert await sqlite_store.tasks.insert([after]) == [after.id]


async def test_a_finish_the_database_refuses_is_logged_and_called_back_and_fails_alone(
        sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    refused, fine = task(), task()
    await sqlite_store.tasks.insert([refused, fine])
    refused.state, refused.finished = TaskState.FAILED, 1.0
    refused.error = ["not", "a", "string"]  # type: ignore[assignment]  # SQLite cannot bind it
    fine.state, fine.finished = TaskState.DONE, 1.0
    called: list[str] = []
    both = trio.Event()

    def then(t: Task) -> None:
        called.append(t.id)
        if len(called) == 2:
            both.set()

    with caplog.at_level(logging.ERROR, logger="workyard.store"):
        sqlite_store.tasks.finish(refused, then)  # one batch: the writer has not woken yet
        sqlite_store.tasks.finish(fine, then)
        await wait(both)
    assert sorted(called) == sorted([refused.id, fine.id])
    assert "store write failed (FinishTask)" in caplog.text
    assert [t.id for t in await sqlite_store.tasks.unfinished()] == [refused.id]
    got = await sqlite_store.tasks.get(fine.id)
    assert got is not None and got.state is TaskState.DONE


async def test_a_failing_callback_is_logged_and_the_writer_goes_on(
        sqlite_store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    t = task()
    await sqlite_store.tasks.insert([t])

    def broken(_: Task) -> None:
        raise ValueError("a bug in the caller")

    t.state, t.finished = TaskState.DONE, 1.0
    with caplog.at_level(logging.ERROR, logger="workyard.store"):
        sqlite_store.tasks.finish(t, broken)
        await sqlite_store.commit()
    assert "store commit callback failed" in caplog.text
    after = task()
    assert await sqlite_store.tasks.insert([after]) == [after.id]


# -- schema versions ----------------------------------------------------------------


async def test_a_new_file_gets_the_current_schema_version(hub_db: str) -> None:
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        nursery.cancel_scope.cancel()
    assert user_version(hub_db) == VERSION == 6


async def test_a_file_from_before_versions_opens_and_upgrades_in_place(hub_db: str) -> None:
    with sqlite3.connect(hub_db) as db:
        db.executescript(SCHEMA_BEFORE_VERSIONS)
        # as the code from before versions wrote them: JSON blobs, raw payload bytes
        rows = [("old1", 1, "tag", b"{}", b'{"x":1}', 0, 60.0, 3, None, "k", "queued", 1.0,
                 None, None, None, b"[]"),
                ("old2", 2, "tag", b'{"a":"b"}', b"null", 5, 60.0, 3, None, None, "done", 2.0,
                 3.0, b'"ok"', None,
                 b'[{"worker":"w","started":2.5,"ended":3.0,"outcome":"done"}]')]
        db.executemany(f"INSERT INTO tasks VALUES ({', '.join('?' * 16)})", rows)
        db.execute("INSERT INTO queue_configurations VALUES ('tag', ?)", (b'{"v":1}',))
    assert user_version(hub_db) == 0
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        (queued,) = await store.tasks.unfinished()
        assert (queued.id, queued.key, bytes(queued.data)) == ("old1", "k", b'{"x":1}')
        done = await store.tasks.find(name=None, state=TaskState.DONE, limit=5)
        assert [(t.id, t.attrs, t.attempts[0].worker) for t in done] == [("old2", {"a": "b"}, "w")]
        assert await store.queues.configurations() == {"tag": b'{"v":1}'}
        assert await store.tasks.insert([task(key="k")]) == ["old1"]  # the key still holds
        nursery.cancel_scope.cancel()
    assert user_version(hub_db) == VERSION
    with sqlite3.connect(hub_db) as db:
        plan = db.execute("EXPLAIN QUERY PLAN SELECT id FROM tasks WHERE state = ? "
                          "ORDER BY seq DESC LIMIT 5", ("done",)).fetchall()
    assert "tasks_state" in str(plan) and "TEMP B-TREE" not in str(plan)


async def test_a_file_from_a_newer_workyard_is_refused_and_left_alone(hub_db: str) -> None:
    with sqlite3.connect(hub_db) as db:
        db.execute("PRAGMA user_version = 99")
    store = SQLiteStore(hub_db)
    with pytest.raises(StoreError) as refused:
        await store.run()
    message = str(refused.value)
    assert "\n" not in message
    assert hub_db in message and "99" in message and f"({VERSION})" in message
    assert user_version(hub_db) == 99
    with sqlite3.connect(hub_db) as db:
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def _file_at_version(path: str, version: int) -> sqlite3.Connection:
    """A new file with the schema of `version`, as an older workyard left it."""
    from workyard.store._migrations import MIGRATIONS

    db = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:version]:
        for statement in migration.statements:
            db.execute(statement)
    db.execute(f"PRAGMA user_version = {version:d}")
    return db


async def test_a_version_4_file_s_samples_are_rolled_up_by_the_upgrade(hub_db: str) -> None:
    """Migration 5 rolls up what a version 4 file holds: reads across whole hours then
    come from rollups and equal the raw samples."""
    hour = 3_600_000
    with _file_at_version(hub_db, 4) as db:
        db.executemany("INSERT INTO stat_series VALUES (?, ?, ?, ?)",
                       [(1, "w1", "gpu_usage", "0"), (2, "w1", "gpu_usage", "1"),
                        (3, "w1", "memory_used", "total")])
        db.executemany("INSERT INTO stat_samples VALUES (?, ?, ?)",
                       [(1, 10, 1.0), (2, 10, 3.0), (1, hour + 5, 7.0), (3, 20, 0.0)])
        db.executemany("INSERT INTO stat_reports VALUES (?, ?, ?)",
                       [(10, "w1", "t"), (20, "w1", None), (hour + 5, "w1", None)])
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.stats.purge(2 * hour)  # raw samples gone: rollups answer
        got = await store.stats.series(since=0, until=2 * hour - 1, interval=hour,
                                       metrics=["gpu_usage", "memory_used"], by_variant=False)
        assert [(s.metric, s.dates, s.avg, s.low, s.high) for s in got] == [
            ("gpu_usage", f"[0,{hour}]", "[2.0,7.0]", "[1.0,7.0]", "[3.0,7.0]"),
            ("memory_used", "[0]", "[0.0]", "[0.0]", "[0.0]")]
        assert await store.stats.activity(since=0, until=2 * hour - 1, interval=hour) == [
            ActivityBucket(0, 1, 1), ActivityBucket(hour, 1, 0)]
        nursery.cancel_scope.cancel()


async def test_a_version_5_file_s_readings_move_into_their_reports_exactly(
        hub_db: str) -> None:
    """Migration 6 packs each report's readings into its row: raw reads answer as
    before, to the last bit of every value, and the reports keep their tasks."""
    third = 0.1 + 0.2  # 0.30000000000000004: 17 digits, not SQLite JSON's 15
    with _file_at_version(hub_db, 5) as db:
        db.executemany("INSERT INTO stat_series VALUES (?, ?, ?, ?)",
                       [(1, "w1", "gpu_usage", "0"), (2, "w1", "gpu_usage", "1"),
                        (3, "w2", "memory_used", "total"), (4, "w1", "gpu_usage", "")])
        db.executemany("INSERT INTO stat_samples VALUES (?, ?, ?)",
                       [(1, 10, third), (2, 10, 3.0), (1, 20, 1e-300), (3, 10, 0.0)])
        db.executemany("INSERT INTO stat_reports VALUES (?, ?, ?)",
                       [(10, "w1", "t"), (20, "w1", None), (10, "w2", None),
                        (30, "w2", "idle-of-readings")])
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        got = await store.stats.buckets(since=0, until=99, interval=10,
                                        metrics=["gpu_usage", "memory_used"])
        assert got == [StatBucket("w1", "gpu_usage", "0", 10, 1, third, third, third),
                       StatBucket("w1", "gpu_usage", "0", 20, 1, 1e-300, 1e-300, 1e-300),
                       StatBucket("w1", "gpu_usage", "1", 10, 1, 3.0, 3.0, 3.0),
                       StatBucket("w2", "memory_used", "total", 10, 1, 0.0, 0.0, 0.0)]
        assert await store.stats.activity(since=0, until=99, interval=100) == [
            ActivityBucket(0, 2, 2)]
        nursery.cancel_scope.cancel()
    assert user_version(hub_db) == VERSION
    with sqlite3.connect(hub_db) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
        assert "stat_samples" not in tables and "stat_reports_6" not in tables
        assert db.execute("SELECT ts, worker, task, readings IS NULL FROM stat_reports "
                          "ORDER BY ts, worker").fetchall() == [
            (10, "w1", "t", 0), (10, "w2", None, 0), (20, "w1", None, 0),
            (30, "w2", "idle-of-readings", 1)]


def test_a_stats_query_reads_index_ranges_of_the_series_asked_not_whole_tables(
        hub_db: str) -> None:
    from workyard.store._migrations import migrate
    from workyard.store._rollups import plan
    from workyard.store._sqlite import _buckets_sql, _middle_sql

    with sqlite3.connect(hub_db, isolation_level=None) as db:
        migrate(db, hub_db)
        queries = [_buckets_sql(plan(1_234, 10 * 3_600_000 + 5, 300_000), 300_000, ["cpu"],
                                workers, by_variant)
                   for workers in (None, ["a", "b"]) for by_variant in (True, False)]
        # one rollup row per bucket: read in the order of the groups, nothing sorted,
        # whole or in parts
        for workers, by_variant, part in itertools.product(
                (None, ["a"]), (True, False), ((0, 1), (1, 2))):
            sql, args = _middle_sql(300_000, 0, 3_600_000, 300_000, ["cpu", "gpu"],
                                    workers, by_variant, part=part)
            plan_text = str(db.execute(f"EXPLAIN QUERY PLAN {sql}", args).fetchall())
            assert "TEMP B-TREE" not in plan_text, plan_text
        queries += [_middle_sql(300_000, 0, 3_600_000, interval, ["cpu", "gpu"], workers,
                                by_variant) for interval in (300_000, 900_000)
                    for workers in (None, ["a"]) for by_variant in (True, False)]
        for sql, args in queries:
            plan_text = " | ".join(r[3] for r in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            for table in ("stat_rollups", "stat_reports", "stat_series"):
                assert f"SCAN {table}" not in plan_text, plan_text
            assert "SEARCH r USING PRIMARY KEY (span=? AND series=? AND start>? AND start<?)" \
                in plan_text, plan_text
            if "stat_reports" in sql:  # the edges: one range of reports, series by id
                assert "SEARCH r USING INDEX sqlite_autoindex_stat_reports_1 (ts>? AND ts<?)" \
                    in plan_text and "SEARCH s USING INTEGER PRIMARY KEY (rowid=?)" \
                    in plan_text, plan_text


async def test_rollups_held_back_when_the_store_stopped_are_rolled_up_at_the_next_start(
        hub_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rollup increments are written every few seconds; a store killed in between
    loses none of them: their spans are marked pending with the raw rows."""
    from workyard.store import _sqlite
    from workyard.store._handover import Unit

    monkeypatch.setattr(_sqlite, "ROLLUP_EVERY", 3600.0)
    hour = 3_600_000
    killed = SQLiteStore(hub_db)
    db = killed._open_writer()
    reports = [RecordStats("w1", 1_000, "t", [("gpu_usage", "0", 2.0), ("gpu_usage", "1", 4.0)]),
               RecordStats("w1", 400_000, None, [("gpu_usage", "0", 6.0)]),
               RecordStats("w2", hour + 1, None, [("memory_used", "total", 0.0)])]
    killed._flushed_at = time.monotonic()
    for report in reports:  # all held back: their three spans are pending
        killed._write(db, [killed._prepare(Unit([report]))])
    assert db.execute("SELECT count(*) FROM stat_pending").fetchone() == (3,)
    db.close()  # as kill -9 would: no final write of the held-back increments
    store = SQLiteStore(hub_db)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.stats.purge(2 * hour)  # from here on, only rollups answer
        got = await store.stats.series(since=0, until=2 * hour - 1, interval=300_000,
                                       metrics=["gpu_usage", "memory_used"])
        assert [(s.worker, s.variant, s.dates, s.avg) for s in got] == [
            ("w1", "0", "[0,300000]", "[2.0,6.0]"), ("w1", "1", "[0]", "[4.0]"),
            ("w2", "total", f"[{hour}]", "[0.0]")]
        (pooled,) = await store.stats.series(since=0, until=hour - 1, interval=hour,
                                             metrics=["gpu_usage"], by_variant=False)
        assert (pooled.avg, pooled.low, pooled.high) == ("[4.0]", "[2.0]", "[6.0]")
        assert await store.stats.activity(since=0, until=2 * hour - 1, interval=300_000) == [
            ActivityBucket(0, 1, 1), ActivityBucket(300_000, 1, 0),
            ActivityBucket(hour, 1, 0)]
        nursery.cancel_scope.cancel()
    with sqlite3.connect(hub_db) as check:
        assert check.execute("SELECT count(*) FROM stat_pending").fetchone() == (0,)


def test_held_back_rollups_once_due_are_written_a_slice_per_transaction_and_add_up(
        hub_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A transaction writes at most `ROLLUP_SLICE` held sums, so that writing them does
    not hold up the commit it rides on; the last slice takes the rest with it, and
    clears the pending spans. Reports keep coming meanwhile; the rollups are exactly the
    raw samples' all the same."""
    from workyard.store import _sqlite
    from workyard.store._handover import Unit

    monkeypatch.setattr(_sqlite, "ROLLUP_EVERY", 3600.0)
    monkeypatch.setattr(_sqlite, "ROLLUP_SLICE", 4)
    store = SQLiteStore(hub_db)
    db = store._open_writer()
    store._flushed_at = time.monotonic()

    def report(worker: str, i: int) -> None:
        unit = store._prepare(Unit([RecordStats(worker, 1_000 + i, None, [
            ("cpu_usage", "total", float(i)), ("gpu_usage", "0", 1.0), ("gpu_usage", "1", 3.0)])]))
        store._write(db, [unit], store._roll_up_due())

    for i in range(10):  # 5 workers x 3 series: 15 sums held
        report(f"w{i % 5}", i)
    assert db.execute("SELECT count(*) FROM stat_rollups").fetchone() == (0,)
    monkeypatch.setattr(_sqlite, "ROLLUP_EVERY", 0.0)  # due
    held = []
    for i in range(10, 15):  # a new worker's 3 sums come with the first slice
        assert store._roll_up_due() is (_sqlite.RollUp.ALL if i == 14 else _sqlite.RollUp.SLICE)
        report("w9", i)
        held.append(len(store._backlog))
        assert db.execute("SELECT count(*) FROM stat_pending").fetchone() == (0 if i == 14 else 1,)
    # the oldest sums first: the fourth slice takes one of w9's, which its next report
    # brings back
    assert held == [14, 10, 6, 3, 0]
    readings = ("SELECT CAST(j.key AS INTEGER) AS series, r.ts, j.value FROM stat_reports r "
                "CROSS JOIN json_each(r.readings) j")
    expected = db.execute(
        "SELECT span, series, start, count(*), sum(value), min(value), max(value) FROM "
        f"(SELECT 300000 AS span, series, ts / 300000 * 300000 AS start, value FROM ({readings}) "
        f"UNION ALL SELECT 3600000, series, ts / 3600000 * 3600000, value FROM ({readings})) "
        "GROUP BY span, series, start ORDER BY span, series, start").fetchall()
    got = db.execute("SELECT r.span, r.series, r.start, r.count, r.total, r.low, r.high "
                     "FROM stat_rollups r JOIN stat_series s ON s.id = r.series "
                     "WHERE s.variant != '' ORDER BY r.span, r.series, r.start").fetchall()
    assert got == expected
    pooled = db.execute("SELECT s.worker, r.count, r.total FROM stat_rollups r "
                        "JOIN stat_series s ON s.id = r.series WHERE s.variant = '' "
                        "AND r.span = 300000 ORDER BY s.worker").fetchall()
    assert pooled == [*((f"w{w}", 4, 8.0) for w in range(5)), ("w9", 10, 20.0)]
    db.close()
