"""What only PostgresStore has: data in a server that outlives the store, group commit
in few statements, units of work failing alone, a writer that survives losing its
connection, and the schema's versions. What every store does is in
`test_contract.py`. Each test has a schema of its own (`postgres_schema`)."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
import trio
from conftest import NET_TIMEOUT

from workyard import Attempt, Task, TaskState
from workyard.store import (
    ActivityBucket,
    AppendEvents,
    InsertTasks,
    OutboxEvent,
    PostgresStore,
    RecordStats,
    StatBucket,
    StoreError,
)
from workyard.store._postgres_migrations import VERSION

_ids = itertools.count(1)
_seq = itertools.count(1)


def task(name: str = "tag", **fields: object) -> Task:
    n = next(_seq)
    return Task(id=f"p{next(_ids)}", name=name, seq=n, created=float(n),
                **fields)  # type: ignore[arg-type]


async def wait(event: trio.Event) -> None:
    with trio.fail_after(NET_TIMEOUT):
        await event.wait()


def admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def schema_version(url: str, schema: str) -> int | None:
    with admin(url) as db:
        row = db.execute(f"SELECT version FROM {schema}.workyard_schema").fetchone()
    return None if row is None else int(row[0])


@pytest.fixture
async def pg(postgres_schema: tuple[str, str], nursery: trio.Nursery) -> PostgresStore:
    url, schema = postgres_schema
    store = PostgresStore(url, schema=schema)
    await nursery.start(store.run)
    return store


async def writer_pid(store: PostgresStore) -> int:
    """The server process behind the store's writer connection."""
    assert store._writer is not None
    return store._writer.info.backend_pid


async def terminate(url: str, pid: int) -> None:
    """Terminate a server process and wait until it is gone (its goodbye sent)."""
    with admin(url) as db:
        assert db.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        with trio.fail_after(NET_TIMEOUT):
            while db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                             (pid,)).fetchone():
                await trio.sleep(0.01)


# -- the server keeps it ------------------------------------------------------------


async def test_data_survives_a_new_store_on_the_same_schema(
        postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    queued, done, running = task(), task(), task()
    store = PostgresStore(url, schema=schema)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.tasks.insert([queued, done, running])
        running.state, running.attempts = TaskState.RUNNING, [Attempt(worker="w1", started=3.0)]
        store.tasks.started(running)
        done.state, done.finished = TaskState.DONE, 1.0
        store.tasks.finish(done, lambda _: None)
        nursery.cancel_scope.cancel()  # the pending writes are flushed on the way out
    reopened = PostgresStore(url, schema=schema)
    async with trio.open_nursery() as nursery:
        await nursery.start(reopened.run)
        assert [t.id for t in await reopened.tasks.unfinished()] == [queued.id, running.id]
        got = await reopened.tasks.get(running.id)
        assert got is not None and got.worker == "w1"
        assert got.attempts == [Attempt(worker="w1", started=3.0)]
        got = await reopened.tasks.get(done.id)
        assert got is not None and got.state is TaskState.DONE
        nursery.cancel_scope.cancel()


async def test_a_closed_store_refuses_commits_and_reads(
        postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    store = PostgresStore(url, schema=schema)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        nursery.cancel_scope.cancel()
    with pytest.raises(StoreError, match="closed"):
        await store.tasks.insert([task()])
    with pytest.raises(StoreError, match="not running"):
        await store.tasks.get("x")


async def test_a_server_that_cannot_be_reached_fails_the_start_without_the_password() -> None:
    store = PostgresStore("postgresql://someone:secret@127.0.0.1:1/nowhere")
    with pytest.raises(StoreError) as refused:
        await store.run()
    message = str(refused.value)
    assert "postgresql://someone@127.0.0.1:1/nowhere" in message
    assert "secret" not in message


# -- group commit -------------------------------------------------------------------


async def test_concurrent_writes_share_commits(pg: PostgresStore) -> None:
    before = pg.commits
    async with trio.open_nursery() as nursery:
        for _ in range(50):
            nursery.start_soon(pg.tasks.insert, [task()])
    assert len(await pg.tasks.unfinished()) == 50
    assert pg.commits - before < 50


class TracedStore(PostgresStore):
    """A PostgresStore whose writer's statements the server reports back (LOG notices)."""

    statements: list[str]

    def _connect(self) -> psycopg.Connection:
        db = super()._connect()
        self.statements = []

        def notice(diagnostic: psycopg.errors.Diagnostic) -> None:
            message = diagnostic.message_primary or ""
            if message.startswith(("execute", "statement")):
                self.statements.append(message.split(": ", 1)[1])

        db.add_notice_handler(notice)
        db.execute("SET log_statement = 'all'")
        db.execute("SET client_min_messages = 'log'")
        db.commit()
        return db


async def test_interleaved_inserts_starts_and_finishes_share_two_statements(
        postgres_schema: tuple[str, str], nursery: trio.Nursery) -> None:
    url, schema = postgres_schema
    store = TracedStore(url, schema=schema)
    await nursery.start(store.run)
    running = [task() for _ in range(40)]
    await store.tasks.insert(running)
    new = [task() for _ in range(40)]
    before = store.commits
    store.statements.clear()
    for t, n in zip(running, new, strict=True):  # as a busy hub hands them over
        store.commit_soon(InsertTasks([n]))
        t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=1.0)]
        store.tasks.started(t)
        t.state, t.finished = TaskState.DONE, 2.0
        store.tasks.finish(t, lambda _: None)
    await store.commit()
    assert store.commits - before == 1  # the 120 changes and the barrier
    kinds = [s.split()[0].upper() for s in store.statements]
    assert kinds.count("INSERT") == 1 and kinds.count("UPDATE") == 1, kinds
    assert "SAVEPOINT" not in kinds, kinds  # the happy path pays none
    assert len(await store.tasks.unfinished()) == 40
    assert len(await store.tasks.find(name=None, state=TaskState.DONE, limit=100)) == 40


async def test_thousands_of_writes_go_out_in_one_transaction(pg: PostgresStore) -> None:
    many = [task() for _ in range(3000)]
    assert await pg.tasks.insert(many) == [t.id for t in many]
    before = pg.commits
    announced = 0
    all_done = trio.Event()

    def then(_: Task) -> None:
        nonlocal announced
        announced += 1
        if announced == len(many):
            all_done.set()

    for t in many:
        t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=1.0)]
        pg.tasks.started(t)
        t.state, t.finished = TaskState.DONE, 2.0
        pg.tasks.finish(t, then)
    await wait(all_done)
    assert pg.commits - before == 1
    assert await pg.tasks.unfinished() == []


async def test_a_batch_with_one_out_of_range_integer_fails_that_unit_only(
        pg: PostgresStore) -> None:
    good, bad, later = task(), task(priority=2**63), task()
    await pg.tasks.insert([good])
    good.state, good.finished = TaskState.DONE, 2.0
    finished = trio.Event()
    errors: list[BaseException] = []

    async def insert_bad() -> None:
        try:
            await pg.tasks.insert([bad])
        except StoreError as exc:
            errors.append(exc)

    before = pg.commits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(insert_bad)
        nursery.start_soon(pg.tasks.insert, [later])
        pg.tasks.finish(good, lambda _: finished.set())
    await wait(finished)
    assert pg.commits - before == 1  # one group commit held all three
    (error,) = errors
    assert isinstance(error.__cause__, psycopg.errors.NumericValueOutOfRange)
    assert "InsertTasks" in str(error)
    assert await pg.tasks.get(bad.id) is None
    assert [t.id for t in await pg.tasks.unfinished()] == [later.id]
    got = await pg.tasks.get(good.id)
    assert got is not None and got.state is TaskState.DONE


async def test_a_failed_unit_in_a_batch_leaves_no_gap_in_the_outbox_seqs(
        pg: PostgresStore) -> None:
    """The batch is rolled back and replayed unit by unit: the seqs the failed unit had
    taken go to the units after it (a stream reads a gap as missed events)."""
    def event(n: int) -> OutboxEvent:
        return OutboxEvent("exchange/x", f"primary.{n}", b"{}", 1.0)

    results: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    async def append(name: str, *more: InsertTasks) -> None:
        try:
            (results[name],) = (await pg.commit(AppendEvents([event(1), event(2)]), *more))[:1]
        except StoreError as exc:
            errors.append(exc)

    before = pg.commits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(append, "first")
        nursery.start_soon(append, "failed", InsertTasks([task(priority=2**63)]))
        nursery.start_soon(append, "last")
    assert pg.commits - before == 1 and len(errors) == 1
    assert sorted(results.values()) == [[1, 2], [3, 4]] and "failed" not in results
    assert [r.seq for r in await pg.outbox.read(0, 10)] == [1, 2, 3, 4]


async def test_a_finish_the_database_refuses_is_logged_and_called_back_and_fails_alone(
        pg: PostgresStore, caplog: pytest.LogCaptureFixture) -> None:
    refused, fine = task(), task()
    await pg.tasks.insert([refused, fine])
    refused.state, refused.finished = TaskState.FAILED, 1.0
    refused.error = "a NUL \x00 PostgreSQL text cannot hold"
    fine.state, fine.finished = TaskState.DONE, 1.0
    called: list[str] = []
    both = trio.Event()

    def then(t: Task) -> None:
        called.append(t.id)
        if len(called) == 2:
            both.set()

    with caplog.at_level(logging.ERROR, logger="workyard.store"):
        pg.tasks.finish(refused, then)  # one batch: the writer has not woken yet
        pg.tasks.finish(fine, then)
        await wait(both)
    assert sorted(called) == sorted([refused.id, fine.id])
    assert "store write failed (FinishTask)" in caplog.text
    assert [t.id for t in await pg.tasks.unfinished()] == [refused.id]
    got = await pg.tasks.get(fine.id)
    assert got is not None and got.state is TaskState.DONE


# -- losing the connection ----------------------------------------------------------


async def test_a_terminated_writer_connection_is_replaced_before_the_next_batch(
        pg: PostgresStore, postgres_url: str, caplog: pytest.LogCaptureFixture) -> None:
    first = task()
    await pg.tasks.insert([first])
    old = await writer_pid(pg)
    await terminate(postgres_url, old)
    after = task()
    with caplog.at_level(logging.WARNING, logger="workyard.store"):
        assert await pg.tasks.insert([after]) == [after.id]
    assert "connecting again" in caplog.text
    assert await writer_pid(pg) != old
    assert [t.id for t in await pg.tasks.unfinished()] == [first.id, after.id]


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A database of this test's own, for what must not touch the shared one."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with admin(postgres_url) as db:
        db.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    yield postgres_url.rsplit("/", 1)[0] + "/" + name
    with admin(postgres_url) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


@pytest.fixture
async def outage_store(database: str, nursery: trio.Nursery) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(database)
    await nursery.start(store.run)
    yield store


async def test_while_the_database_refuses_connections_writes_fail_and_then_recover(
        outage_store: PostgresStore, database: str, postgres_url: str) -> None:
    name = database.rsplit("/", 1)[1]
    with admin(postgres_url) as db:  # an outage of this database alone
        db.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")  # type: ignore[arg-type]
    await terminate(postgres_url, await writer_pid(outage_store))
    lost = task()
    with pytest.raises(StoreError):
        await outage_store.tasks.insert([lost])
    with admin(postgres_url) as db:
        db.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")  # type: ignore[arg-type]
    back = task()
    assert await outage_store.tasks.insert([back]) == [back.id]
    assert await outage_store.tasks.get(lost.id) is None
    assert await outage_store.tasks.get(back.id) is not None


# -- schema versions ----------------------------------------------------------------


async def test_a_new_schema_gets_the_current_version(postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    store = PostgresStore(url, schema=schema)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        nursery.cancel_scope.cancel()
    assert schema_version(url, schema) == VERSION == 6


async def test_stores_starting_together_on_an_empty_schema_migrate_it_once(
        postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    stores = [PostgresStore(url, schema=schema) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        async with trio.open_nursery() as starting:  # all at once
            for store in stores:
                starting.start_soon(nursery.start, store.run)
        # every one started: none raised on a table another had just created
        for i, store in enumerate(stores):
            t = task()
            assert await store.tasks.insert([t]) == [t.id], i
        nursery.cancel_scope.cancel()
    with admin(url) as db:
        assert db.execute(f"SELECT count(*) FROM {schema}.workyard_schema").fetchone() == (1,)
        assert db.execute(f"SELECT count(*) FROM {schema}.tasks").fetchone() == (3,)


async def test_a_schema_from_a_newer_workyard_is_refused_and_left_alone(
        postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    with admin(url) as db:
        db.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
        db.execute(f"CREATE TABLE {schema}.workyard_schema (version INTEGER NOT NULL)")
        db.execute(f"INSERT INTO {schema}.workyard_schema VALUES (99)")  # type: ignore[arg-type]
    store = PostgresStore(url, schema=schema)
    with pytest.raises(StoreError) as refused:
        await store.run()
    message = str(refused.value)
    assert "\n" not in message
    assert schema in message and "99" in message and f"({VERSION})" in message
    assert schema_version(url, schema) == 99
    with admin(url) as db:
        assert db.execute("SELECT table_name FROM information_schema.tables "
                          "WHERE table_schema = %s", (schema,)).fetchall() == [
            ("workyard_schema",)]


# -- several hubs on one database -----------------------------------------------------


async def test_a_leaders_writes_fail_whole_once_another_term_began_and_it_is_told(
        pg: PostgresStore, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    told: list[tuple[int, str]] = []
    pg.on_deposed = lambda term, why: told.append((term, why))
    with admin(url) as db:
        db.execute(f"UPDATE {schema}.hub_leader SET term = 7")  # type: ignore[arg-type]
    pg.fence = 7
    kept = task()
    await pg.commit(InsertTasks([kept]))  # the current term writes
    with admin(url) as db:  # another hub is elected
        db.execute(f"UPDATE {schema}.hub_leader SET term = 8")  # type: ignore[arg-type]
    late = task()
    with pytest.raises(StoreError, match="another hub was elected after term 7"):
        await pg.commit(InsertTasks([late]))
    assert told and told[0][0] == 7 and "term 7" in told[0][1]
    assert await pg.tasks.get(kept.id) is not None
    assert await pg.tasks.get(late.id) is None  # nothing of the fenced batch was kept


async def test_a_followers_inserts_are_announced_to_listeners_at_commit(
        pg: PostgresStore, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    pg.channel = f"workyard.{schema}"
    with admin(url) as listener:
        listener.execute(f'LISTEN "workyard.{schema}"')  # type: ignore[arg-type]
        tasks = [task() for _ in range(3)]
        await pg.commit(InsertTasks(tasks))
        heard = [n.payload for n in listener.notifies(timeout=NET_TIMEOUT, stop_after=1)]
    assert heard == [",".join(t.id for t in tasks)]


def _schema_at_version(url: str, schema: str, version: int) -> psycopg.Connection[Any]:
    """A new schema as an older workyard of `version` left it (commits when closed)."""
    from workyard.store._postgres_migrations import MIGRATIONS

    db = psycopg.connect(url, options=f"-c search_path={schema}")
    db.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    for migration in MIGRATIONS[:version]:
        for statement in migration.statements:
            db.execute(statement)  # type: ignore[arg-type]
    db.execute("CREATE TABLE workyard_schema (version INTEGER NOT NULL)")
    db.execute("INSERT INTO workyard_schema VALUES (%s)", (version,))
    return db


async def test_a_version_5_schema_s_readings_move_into_their_reports_exactly(
        postgres_schema: tuple[str, str]) -> None:
    """Migration 6 packs each report's readings into its row: raw reads answer as
    before, to the last bit of every value, and the reports keep their tasks."""
    url, schema = postgres_schema
    third = 0.1 + 0.2  # 0.30000000000000004: 17 digits
    with _schema_at_version(url, schema, 5) as db:
        rows = db.cursor()
        rows.executemany("INSERT INTO stat_series VALUES (%s, %s, %s, %s)",
                         [(1, "w1", "gpu_usage", "0"), (2, "w1", "gpu_usage", "1"),
                          (3, "w2", "memory_used", "total"), (4, "w1", "gpu_usage", "")])
        rows.executemany("INSERT INTO stat_samples VALUES (%s, %s, %s)",
                         [(1, 10, third), (2, 10, 3.0), (1, 20, 1e-300), (3, 10, 5e-324),
                          (3, 20, -1.7976931348623157e308)])
        rows.executemany("INSERT INTO stat_reports VALUES (%s, %s, %s)",
                         [(10, "w1", "t"), (20, "w1", None), (10, "w2", None),
                          (20, "w2", None), (30, "w2", "idle-of-readings")])
    store = PostgresStore(url, schema=schema)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        got = await store.stats.buckets(since=0, until=99, interval=10,
                                        metrics=["gpu_usage", "memory_used"])
        big = -1.7976931348623157e308
        assert got == [StatBucket("w1", "gpu_usage", "0", 10, 1, third, third, third),
                       StatBucket("w1", "gpu_usage", "0", 20, 1, 1e-300, 1e-300, 1e-300),
                       StatBucket("w1", "gpu_usage", "1", 10, 1, 3.0, 3.0, 3.0),
                       StatBucket("w2", "memory_used", "total", 10, 1, 5e-324, 5e-324, 5e-324),
                       StatBucket("w2", "memory_used", "total", 20, 1, big, big, big)]
        assert await store.stats.activity(since=0, until=99, interval=100) == [
            ActivityBucket(0, 2, 2)]
        # a repeat of a moved report: its readings merge with the moved ones
        await store.stats.record(RecordStats("w1", 10, "t", [("gpu_usage", "1", 4.0)]))
        got = await store.stats.buckets(since=0, until=10, interval=10, metrics=["gpu_usage"])
        assert [(b.variant, b.total) for b in got] == [("0", third), ("1", 4.0)]
        assert await store.stats.purge(3_600_000) == 5  # the repeat replaced one of 5
        nursery.cancel_scope.cancel()
    assert schema_version(url, schema) == VERSION
    with admin(url) as db:
        tables = {name for (name,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,))}
        assert "stat_samples" not in tables and "stat_reports_6" not in tables
        assert "stat_reports" in tables


async def test_a_version_5_schema_s_reports_keep_their_readings_and_tasks(
        postgres_schema: tuple[str, str]) -> None:
    """The rows migration 6 writes: one per report, its readings keyed by series id,
    an idle report's readings an empty object; the keys are the old ones."""
    url, schema = postgres_schema
    with _schema_at_version(url, schema, 5) as db:
        rows = db.cursor()
        rows.executemany("INSERT INTO stat_series VALUES (%s, %s, %s, %s)",
                         [(1, "w1", "cpu_usage", "total"), (2, "w2", "cpu_usage", "total")])
        rows.executemany("INSERT INTO stat_samples VALUES (%s, %s, %s)",
                         [(1, 10, 0.5), (2, 10, 2.5)])
        rows.executemany("INSERT INTO stat_reports VALUES (%s, %s, %s)",
                         [(10, "w1", "t"), (10, "w2", None), (20, "w1", None)])
    store = PostgresStore(url, schema=schema)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        nursery.cancel_scope.cancel()
    with admin(url) as db:
        assert db.execute(f"SELECT ts, worker, task, readings::text FROM {schema}.stat_reports "
                          "ORDER BY ts, worker").fetchall() == [  # type: ignore[arg-type]
            (10, "w1", "t", '{"1": 0.5}'), (10, "w2", None, '{"2": 2.5}'),
            (20, "w1", None, "{}")]
        assert db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND "
                          "tablename = 'stat_reports' ORDER BY 1", (schema,)).fetchall() == [
            ("stat_reports_pkey",), ("stat_reports_worker",)]


# -- machine statistics ----------------------------------------------------------------


async def test_readings_read_back_to_the_last_bit(pg: PostgresStore) -> None:
    """A report's readings go through JSON into jsonb (decimal digits): the shortest
    text of each float is exact, whatever its digits or exponent."""
    values = [0.1 + 0.2, 1e-300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
              -123456.78901234567, 1 / 3]
    await pg.stats.record(RecordStats("w1", 1_000, None, [
        ("gpu_usage", str(i), v) for i, v in enumerate(values)]))
    got = await pg.stats.buckets(since=0, until=9_999, interval=1_000, metrics=["gpu_usage"])
    assert [b.total for b in got] == values
    assert [b.low for b in got] == values and [b.high for b in got] == values


async def test_a_batch_of_reports_writes_one_row_each_and_learns_each_worker_s_series_once(
        pg: PostgresStore, postgres_schema: tuple[str, str]) -> None:
    """A worker's first report stores its series; the next ones find them in the
    writer's shapes. Reports of one worker in one batch sum into the same buckets."""
    url, schema = postgres_schema
    readings = [("gpu_usage", "0", 1.0), ("gpu_usage", "1", 3.0), ("cpu_usage", "total", 2.0)]
    async with trio.open_nursery() as nursery:  # one batch: two reports of each worker
        for worker in ("w1", "w2"):
            for ts in (1_000, 2_000):
                nursery.start_soon(pg.stats.record, RecordStats(worker, ts, None, readings))
    await pg.stats.record(RecordStats("w1", 3_000, "t", readings))
    assert set(pg._known.shapes) == {"w1", "w2"}
    with admin(url) as db:
        assert db.execute(f"SELECT count(*) FROM {schema}.stat_reports").fetchone() == (5,)
        # per worker: two variants, their pooled series, and the number's
        assert db.execute(f"SELECT count(*) FROM {schema}.stat_series").fetchone() == (8,)
    got = await pg.stats.buckets(since=0, until=299_999, interval=300_000,
                                 metrics=["gpu_usage"], workers=["w1"], by_variant=False)
    assert got == [StatBucket("w1", "gpu_usage", "", 0, 6, 12.0, 1.0, 3.0)]
    assert await pg.stats.activity(since=0, until=299_999, interval=300_000) == [
        ActivityBucket(0, 2, 1)]


async def test_series_added_by_a_unit_that_fails_alone_are_not_remembered(
        pg: PostgresStore) -> None:
    """A unit rolled back to its savepoint takes its new series rows with it: the
    writer must not keep their ids, and the worker's next report adds them again.
    Another unit of the batch keeps the series it added."""
    bad = task(priority=2**63)
    failed: list[BaseException] = []

    async def bad_unit() -> None:
        try:
            await pg.commit(RecordStats("w1", 1_000, None, [("cpu_usage", "total", 1.0)]),
                            InsertTasks([bad]))
        except StoreError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:  # one batch
        nursery.start_soon(bad_unit)
        nursery.start_soon(pg.stats.record,
                           RecordStats("w2", 1_000, None, [("cpu_usage", "total", 2.0)]))
    assert len(failed) == 1
    assert set(pg._known.shapes) == {"w2"}
    await pg.stats.record(RecordStats("w1", 2_000, None, [("cpu_usage", "total", 3.0)]))
    await pg.stats.record(RecordStats("w2", 2_000, None, [("cpu_usage", "total", 4.0)]))
    got = await pg.stats.buckets(since=0, until=299_999, interval=300_000,
                                 metrics=["cpu_usage"])
    assert [(b.worker, b.count, b.total) for b in got] == [("w1", 1, 3.0), ("w2", 2, 6.0)]
    got = await pg.stats.buckets(since=0, until=9_999, interval=1_000, metrics=["cpu_usage"])
    assert [(b.worker, b.start, b.total) for b in got] == [
        ("w1", 2_000, 3.0), ("w2", 1_000, 2.0), ("w2", 2_000, 4.0)]
