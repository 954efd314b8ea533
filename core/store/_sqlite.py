"""SQLite store (WAL) with group commit and units of work that fail alone.

Concurrent writes do not each pay for a transaction: units of work (one `commit`
call, or one `commit_soon` change) queue up while the previous transaction commits,
and the writer actor applies everything queued in one transaction — on a worker
thread when the batch is large, on the event loop's own thread when it is small (see
`INLINE_ROWS`: under steady load the hop to the thread, not SQLite, was a commit's
time). The writer has the WAL checkpointed beside it, on a connection of its own
(`CHECKPOINT_CHANGES`, `_wal.py`). Reads, and
purging, use other connections (`READERS` of them), which WAL lets run beside the
writer and beside each other: SQLite releases the GIL while it steps a statement, so
reads on several threads use several cores.

Within a transaction the task rows go out in multi-row statements whatever order
inserts, starts and finishes arrived in (`_Rows`, and `CHUNK` for why).

A unit that raises is rolled back alone: the batch runs inside a SAVEPOINT, and if
anything in it fails the writer rolls back to it and replays the batch one unit per
SAVEPOINT, dropping the units that fail. The happy path thus pays two statements per
batch rather than two per unit (every statement is a GIL round trip, see `CHUNK`).
The failed units get a `StoreError`; the others commit; the writer keeps serving.

The schema is versioned (`_migrations.py`) and brought up to date when `run` starts.
"""

from __future__ import annotations

import enum
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import trio

from .._gather import gather
from .._model import Attempt, Task, TaskState
from ._handover import HandOver, Unit, describe
from ._interface import (
    AGGREGATIONS,
    ActivityBucket,
    AppendEvents,
    ConfigureQueue,
    DeletePool,
    FinishTask,
    InsertTasks,
    MarkDelivered,
    OutboxRow,
    PoolRecord,
    RecordStats,
    Result,
    SavePool,
    StartAttempt,
    StatBucket,
    StatSeries,
    StoreError,
)
from ._migrations import migrate, refuse_newer
from ._rollups import (
    POOLED,
    SCALAR,
    SPANS,
    Backlog,
    Plan,
    Rollups,
    as_series,
    join_series,
    plan,
    raw_cutoff,
    readings_template,
    span_for,
)
from ._wal import WAL_LIMIT, Checkpoints
from ._writes import QueueWrites, TaskWrites

__all__ = ["SQLiteStore"]

T = TypeVar("T")

log = logging.getLogger("workyard.store")

#: connections that read (and purge) beside the writer, one per core (up to 4): a read
#: in parts (`_Stats.series`) runs them on as many threads, and a slow read leaves the
#: others to the rest
READERS = max(1, min(4, os.cpu_count() or 1))

COLUMNS = ("id, seq, name, attrs, data, priority, timeout, retries, schedule_timeout, key, "
           "state, created, finished, result, error, attempts")
INSERT = f"INSERT INTO tasks ({COLUMNS}) VALUES ({', '.join('?' * 16)})"
#: One task's changing columns (a `StartAttempt` or a `FinishTask`), one row at a time.
SAVE = "UPDATE tasks SET state = ?, finished = ?, result = ?, error = ?, attempts = ? WHERE id = ?"
CONFIGURE = ("INSERT INTO queue_configurations (queue, configuration) VALUES (?, ?) "
             "ON CONFLICT (queue) DO UPDATE SET configuration = excluded.configuration")
POOL_COLUMNS = ("worker_pool_id, provider_id, description, config, owner, email_on_error, "
                "created, last_modified")
SAVE_POOL = f"INSERT OR REPLACE INTO worker_pools ({POOL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
DELETE_POOL = "DELETE FROM worker_pools WHERE worker_pool_id = ?"
MARK_DELIVERED = "UPDATE outbox_cursor SET delivered = max(delivered, ?) WHERE id = 1"

#: Rows per statement. The writer thread runs one multi-row statement per chunk rather
#: than one per row (`executemany`): each statement releases and retakes the GIL, and
#: while the event loop is busy every retake waits up to the switch interval (5 ms),
#: which made commits many times slower than their SQLite work. 128 x 16 columns stays
#: far below SQLite's 32766 parameters.
CHUNK = 128

#: A batch of at most this many rows is committed on the event loop's own thread. Its
#: SQLite work is small (WAL with synchronous=NORMAL: no fsync at commit; ~0.4 ms for a
#: few rows, ~8 ms for this many), while the hop to a worker thread and back costs far
#: more whenever the loop is busy: the thread waits for the GIL to start, for it again
#: after every statement, and the loop for its result. Measured at 300 tasks/s on a
#: loaded machine: 18 ms per commit (p90 91 ms), 0.4 ms of it SQLite's work. Larger
#: batches (a backlog) still go to the thread, in one large transaction that costs less
#: per row. The limit must exceed what arrives during one commit on the thread under
#: steady load, or one slow commit makes the next batch too large as well and the
#: writer never comes back: with 64, half the peak rate (~2,500 tasks/s, ~25 ms per
#: commit on the thread) kept every commit on the thread.
INLINE_ROWS = 1024
#: The writer has the WAL checkpointed, beside it (`_wal.Checkpoints`), once this many
#: rows changed or this many transactions committed since it last asked (a small commit
#: still writes ~6 pages: 150 of them are about SQLite's own 1000-page threshold). The
#: more often, the less each copies, but each syncs the database file.
#: SQLite's automatic checkpoint (off) would run in whichever commit crossed its
#: threshold, inline ones included, and hold the loop for its fsync (17-24 ms).
CHECKPOINT_CHANGES = 1000
CHECKPOINT_COMMITS = 150


@functools.cache
def _insert_sql(rows: int) -> str:
    row = f"({', '.join('?' * 16)})"
    return f"INSERT INTO tasks ({COLUMNS}) VALUES {', '.join([row] * rows)}"


@functools.cache
def _save_sql(rows: int) -> str:
    return ("UPDATE tasks SET state = v.column1, finished = v.column2, result = v.column3, "
            "error = v.column4, attempts = v.column5 FROM (VALUES "
            f"{', '.join(['(?, ?, ?, ?, ?, ?)'] * rows)}) AS v WHERE tasks.id = v.column6")


def _execute_chunked(db: sqlite3.Connection, sql: Callable[[int], str],
                     rows: Sequence[tuple[object, ...]]) -> None:
    """Run `rows` through multi-row statements of at most CHUNK rows each."""
    for i in range(0, len(rows), CHUNK):
        part = rows[i:i + CHUNK]
        db.execute(sql(len(part)), [value for row in part for value in row])


def _execute_flat(db: sqlite3.Connection, sql: Callable[[int], str], width: int,
                  values: Sequence[object]) -> None:
    """`_execute_chunked` for rows of `width` values laid end to end in `values` (no
    tuple per row: statistics come by the ten thousand)."""
    step = CHUNK * width
    for i in range(0, len(values), step):
        part = values[i:i + step]
        db.execute(sql(len(part) // width), part)


_encode = msgspec.json.Encoder().encode
_attrs = msgspec.json.Decoder(dict[str, str])
_attempts = msgspec.json.Decoder(list[Attempt])


def _row(task: Task) -> tuple[object, ...]:
    return (
        task.id, task.seq, task.name, _encode(task.attrs), bytes(task.data), task.priority,
        task.timeout, task.retries, task.schedule_timeout, task.key, task.state.value,
        task.created, task.finished, None if task.result is None else bytes(task.result),
        task.error, _encode(task.attempts),
    )


def _save_row(task: Task) -> tuple[object, ...]:
    """The columns a `StartAttempt` or `FinishTask` writes, taken when the change is
    handed over: the scheduler goes on changing the task meanwhile."""
    return (task.state.value, task.finished, None if task.result is None else bytes(task.result),
            task.error, _encode(task.attempts), task.id)


def _task(row: tuple[Any, ...]) -> Task:
    (id_, seq, name, attrs, data, priority, timeout, retries, schedule_timeout, key, state,
     created, finished, result, error, attempts) = row
    return Task(
        id=id_, seq=seq, name=name, attrs=_attrs.decode(attrs), data=msgspec.Raw(data),
        priority=priority, timeout=timeout, retries=retries, schedule_timeout=schedule_timeout,
        key=key, state=TaskState(state), created=created, finished=finished,
        result=None if result is None else msgspec.Raw(result), error=error,
        attempts=_attempts.decode(attempts),
    )


@functools.cache
def _append_sql(rows: int) -> str:
    return ("INSERT INTO outbox (exchange, routing_key, body, at) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * rows))


def _append(db: sqlite3.Connection, change: AppendEvents) -> list[int]:
    """Insert the events in chunks; the writer is alone, so one statement's rows take
    consecutive seqs ending at its `lastrowid`."""
    seqs: list[int] = []
    events = change.events
    for i in range(0, len(events), CHUNK):
        part = events[i:i + CHUNK]
        cur = db.execute(_append_sql(len(part)), [
            v for e in part for v in (e.exchange, e.routing_key, bytes(e.body), e.at)])
        last = cur.lastrowid
        assert last is not None
        seqs.extend(range(last - len(part) + 1, last + 1))
    return seqs


def _pool(row: tuple[Any, ...]) -> PoolRecord:
    (id_, provider, description, config, owner, email, created, modified) = row
    return PoolRecord(id_, provider, description, bytes(config), owner, bool(email),
                      created, modified)


@functools.cache
def _reports_sql(rows: int) -> str:
    """Reports (ts, worker, task, readings); a repeat's readings replace the stored ones
    of the same series and keep the others, as one row per reading would."""
    return ("INSERT INTO stat_reports (ts, worker, task, readings) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * rows)
            + " ON CONFLICT (ts, worker) DO UPDATE SET task = excluded.task, readings = "
            "CASE WHEN readings IS NULL THEN excluded.readings "
            "WHEN excluded.readings IS NULL THEN readings "
            "ELSE json_patch(readings, excluded.readings) END")


#: A report's readings as rows (series, value), after `FROM stat_reports r`; its
#: `readings` are a JSON object of values by series id (`_Shape.template`), read back
#: exactly: SQLite keeps a number's text.
READINGS = "CROSS JOIN json_each(r.readings) j"


@functools.cache
def _rollups_sql(rows: int) -> str:
    """5-minute increments (series, start, count, total, low, high) added to the
    rollups of every span (`_rollups.Backlog.increments`)."""
    spans = " UNION ALL ".join(
        f"SELECT {span}, series, start / {span} * {span}, count, total, low, high FROM v"
        for span in SPANS)
    return ("WITH v (series, start, count, total, low, high) AS (VALUES "
            + ", ".join(["(?, ?, ?, ?, ?, ?)"] * rows)
            + ") INSERT INTO stat_rollups (span, series, start, count, total, low, high) "
            f"{spans} WHERE true ON CONFLICT (span, series, start) DO UPDATE SET "
            "count = count + excluded.count, total = total + excluded.total, "
            "low = min(low, excluded.low), high = max(high, excluded.high)")


@functools.cache
def _activity_sql(rows: int) -> str:
    """Who reported (start, worker, with a task) per 5-minute span, for every span."""
    spans = " UNION ALL ".join(
        f"SELECT {span}, start / {span} * {span}, worker, active FROM v" for span in SPANS)
    return ("WITH v (start, worker, active) AS (VALUES " + ", ".join(["(?, ?, ?)"] * rows)
            + f") INSERT INTO stat_activity (span, start, worker, active) {spans} WHERE true "
            "ON CONFLICT (span, start, worker) DO UPDATE SET "
            "active = max(active, excluded.active)")


@functools.cache
def _stored_reports_sql(rows: int) -> str:
    # A join from the values, not `(ts, worker) IN (VALUES ...)`: SQLite scans the whole
    # table for that one.
    return ("SELECT r.ts, r.worker FROM (VALUES " + ", ".join(["(?, ?)"] * rows)
            + ") AS v CROSS JOIN stat_reports r ON r.ts = v.column1 AND r.worker = v.column2")


#: The rollups of one span and bucket (?1 span, ?2 start) from the raw rows, of one
#: worker (?3) or of all (?3 null): at start for the spans left pending
#: (`SQLiteStore._recover`), and for the buckets of a repeated report (`_redo_rollups`).
ROLL_UP_AGAIN = ("INSERT OR REPLACE INTO stat_rollups (span, series, start, count, total, "
                 "low, high) SELECT ?1, j.key, ?2, count(*), sum(j.value), min(j.value), "
                 f"max(j.value) FROM stat_reports r {READINGS} "
                 "WHERE r.ts >= ?2 AND r.ts < ?2 + ?1 AND (?3 IS NULL OR r.worker = ?3) "
                 "GROUP BY j.key")
POOL_AGAIN = ("INSERT OR REPLACE INTO stat_rollups (span, series, start, count, total, "
              "low, high) SELECT ?1, p.id, ?2, count(*), sum(j.value), min(j.value), "
              f"max(j.value) FROM stat_reports r {READINGS} "
              "CROSS JOIN stat_series s ON s.id = j.key "
              "JOIN stat_series p ON p.worker = s.worker AND p.metric = s.metric "
              "AND p.variant = '' WHERE r.ts >= ?2 AND r.ts < ?2 + ?1 "
              "AND (?3 IS NULL OR r.worker = ?3) AND s.variant NOT IN ('', 'total') "
              "GROUP BY p.id")
ACTIVITY_AGAIN = ("INSERT OR REPLACE INTO stat_activity (span, start, worker, active) "
                  "SELECT ?1, ?2, worker, max(task IS NOT NULL) FROM stat_reports "
                  "WHERE ts >= ?2 AND ts < ?2 + ?1 AND (?3 IS NULL OR worker = ?3) "
                  "GROUP BY worker")


@functools.cache
def _series_sql(rows: int) -> str:
    return ("INSERT INTO stat_series (worker, metric, variant) VALUES "
            + ", ".join(["(?, ?, ?)"] * rows)
            + " ON CONFLICT (worker, metric, variant) DO UPDATE SET worker = excluded.worker "
            "RETURNING id, worker, metric, variant")


#: seconds rollup increments are held back at most (`SQLiteStore._roll_up`), and how
#: many (series, 5-minute span) sums of them. The longer, the more reports of a worker
#: share an increment; a read waits for them all to be written, but never more than
#: the held sums, one per bucket written to.
ROLLUP_EVERY = 5.0
ROLLUP_MAX_HELD = 200_000
#: Held sums written per transaction once they are due (unless a read waits for them):
#: all 64,000 rows of 1,000 workers in one transaction held the next commit for over
#: 100 ms; a slice costs it a few.
ROLLUP_SLICE = 4096


class RollUp(enum.Enum):
    """How much of the held-back rollups a transaction writes (`SQLiteStore._roll_up_due`)."""

    NONE = "none"
    SLICE = "a slice"  # `ROLLUP_SLICE` sums
    ALL = "all"


#: A change as the writer thread applies it: a task's changing columns (`_save_row`),
#: or the change itself.
_Op = (tuple[object, ...] | InsertTasks | ConfigureQueue | SavePool | DeletePool
       | AppendEvents | MarkDelivered | RecordStats)


#: changes the writer applies as they are (task saves become rows, see `_save_row`)
_AS_IS = frozenset({InsertTasks, ConfigureQueue, SavePool, DeletePool, AppendEvents,
                    MarkDelivered, RecordStats})


@dataclass(slots=True, frozen=True)
class _Shape:
    """The series of a worker's report: its readings' (metric, variant) in order, their
    stat_series ids, and the pooled series of its listed metrics. A worker sends the
    same metrics report after report, so the writer keeps its last shape and finds a
    report's series with one lookup rather than one (or two) per reading."""

    names: tuple[tuple[str, str], ...]
    series: tuple[int, ...]
    pooled: frozenset[int]
    #: the report's `readings`, a JSON object, as a %-format of its values
    template: str


@dataclass(slots=True)
class _Written:
    """What a transaction adds to the writer's own state once it commits."""

    #: stat_series ids it stored, by (worker, metric, variant)
    series: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: a new variant series -> its pooled series
    pooled: dict[int, int] = field(default_factory=dict)
    #: the shapes of its reports that were not the last known, by worker
    shapes: dict[str, _Shape] = field(default_factory=dict)
    #: its new reports (worker, ts, task, series, values), for the rollups
    reports: list[tuple[str, int, str | None, Sequence[int], list[float]]] = field(
        default_factory=list)
    #: the buckets of its repeated reports, to compute again
    repeats: Rollups[int] = field(default_factory=Rollups)
    #: the 5-minute spans it marked pending
    pending: set[int] = field(default_factory=set)

    def absorb(self, other: _Written) -> None:
        self.series.update(other.series)
        self.pooled.update(other.pooled)
        self.shapes.update(other.shapes)
        self.reports += other.reports
        self.repeats.absorb(other.repeats)


class _Tasks(TaskWrites):
    _store: SQLiteStore

    async def get(self, task_id: str) -> Task | None:
        row = await self._store._aside(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone())
        return None if row is None else _task(row)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        wanted = list(dict.fromkeys(task_ids))

        def read(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            rows: list[tuple[Any, ...]] = []
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                rows += db.execute(f"SELECT {COLUMNS} FROM tasks WHERE id IN {_in(chunk)}",
                                   chunk).fetchall()
            return rows
        return [_task(r) for r in await self._store._aside(read)] if wanted else []

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        where, args = [], []
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        sql = f"SELECT {COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = await self._store._aside(lambda db: db.execute(sql, (*args, limit)).fetchall())
        return [_task(r) for r in rows]

    async def unfinished(self) -> list[Task]:
        rows = await self._store._aside(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE finished IS NULL ORDER BY seq").fetchall())
        return [_task(r) for r in rows]

    async def purge(self, finished_before: float) -> int:
        # On a reader connection, outside group commit: a large delete must not hold
        # up the hot path, and nothing else commits with it.
        def delete(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM tasks WHERE finished IS NOT NULL AND finished < ?",
                              (finished_before,)).rowcount
        return await self._store._aside_write(delete)


class _Queues(QueueWrites):
    _store: SQLiteStore

    async def configurations(self) -> dict[str, bytes]:
        rows = await self._store._aside(lambda db: db.execute(
            "SELECT queue, configuration FROM queue_configurations").fetchall())
        return {queue: bytes(configuration) for queue, configuration in rows}


class _Pools:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def all(self) -> list[PoolRecord]:
        rows = await self._store._aside(lambda db: db.execute(
            f"SELECT {POOL_COLUMNS} FROM worker_pools ORDER BY worker_pool_id").fetchall())
        return [_pool(r) for r in rows]

    async def get(self, worker_pool_id: str) -> PoolRecord | None:
        row = await self._store._aside(lambda db: db.execute(
            f"SELECT {POOL_COLUMNS} FROM worker_pools WHERE worker_pool_id = ?",
            (worker_pool_id,)).fetchone())
        return None if row is None else _pool(row)


class _Outbox:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def read(self, after: int, limit: int) -> list[OutboxRow]:
        rows = await self._store._aside(lambda db: db.execute(
            "SELECT seq, exchange, routing_key, body, at FROM outbox WHERE seq > ? "
            "ORDER BY seq LIMIT ?", (after, limit)).fetchall())
        return [OutboxRow(seq, exchange, key, bytes(body), at)
                for seq, exchange, key, body, at in rows]

    async def delivered(self) -> int:
        (seq,) = await self._store._aside(lambda db: db.execute(
            "SELECT delivered FROM outbox_cursor WHERE id = 1").fetchone())
        return int(seq)

    async def purge(self, before: float) -> int:
        def delete(db: sqlite3.Connection) -> int:
            return db.execute(
                "DELETE FROM outbox WHERE at < ? AND seq <= "
                "(SELECT delivered FROM outbox_cursor WHERE id = 1)", (before,)).rowcount
        return await self._store._aside_write(delete)


def _stored_reports(db: sqlite3.Connection, units: list[Unit]) -> set[tuple[int, str]]:
    """The (ts, worker) of the units' reports that are stored already (repeats)."""
    keys = list({(op.ts, op.worker) for unit in units if unit.error is None
                 for op in unit.ops if type(op) is RecordStats})
    found: set[tuple[int, str]] = set()
    for i in range(0, len(keys), CHUNK):
        part = keys[i:i + CHUNK]
        found.update(db.execute(_stored_reports_sql(len(part)),
                                [v for key in part for v in key]).fetchall())
    return found


def _write_increments(db: sqlite3.Connection, backlog: Backlog[int],
                      pooled: Mapping[int, int]) -> None:
    """Add `backlog`'s increments to the rollups, in key order (neighbouring rows share
    B-tree pages)."""
    sums = backlog.increments(pooled)
    flat: list[object] = []
    for key in sorted(sums):
        flat += key
        flat += sums[key]
    _execute_flat(db, _rollups_sql, 6, flat)
    flat = []
    for (start, worker), busy in sorted(backlog.active.items()):
        flat += (start, worker, int(busy))
    _execute_flat(db, _activity_sql, 3, flat)


def _redo_rollups(db: sqlite3.Connection, rollups: Rollups[int]) -> None:
    """The buckets of repeated reports computed again, once their rows are written:
    all of the worker's series in each (its reports of the bucket are read once)."""
    buckets = sorted(rollups.redo)  # (span, start, worker)
    for sql in (ROLL_UP_AGAIN, POOL_AGAIN, ACTIVITY_AGAIN):
        db.executemany(sql, buckets)


def _in(values: Sequence[object]) -> str:
    return "(" + ", ".join("?" * len(values)) + ")"


class _Stats:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def record(self, report: RecordStats) -> None:
        await self._store.commit(report)

    async def buckets(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                      workers: Sequence[str] | None = None,
                      by_variant: bool = True) -> list[StatBucket]:
        if not metrics or (workers is not None and not workers):
            return []
        await self._store._rolled_up()
        sql, args = _buckets_sql(plan(since, until, interval), interval, metrics, workers,
                                 by_variant)
        rows = await self._store._aside(lambda db: db.execute(sql, args).fetchall())
        order = {m: i for i, m in enumerate(metrics)}
        rows.sort(key=lambda r: (r[0], order[r[1]], r[2], r[3]))
        return [StatBucket(*r) for r in rows]

    async def series(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                     workers: Sequence[str] | None = None, by_variant: bool = True,
                     aggregations: Collection[str] = AGGREGATIONS) -> list[StatSeries]:
        # The buckets wholly inside the range are whole rollup spans: SQLite reads them
        # and writes their JSON arrays itself (`_middle_sql`), in one part per reader
        # connection, all at once; the (at most two) ragged buckets at the ends go
        # through `buckets`, beside them.
        lo, hi = -(-since // interval) * interval, (until + 1) // interval * interval
        span = span_for(interval)
        if span is None or lo >= hi or not metrics or (workers is not None and not workers):
            return as_series(await self.buckets(since=since, until=until, interval=interval,
                                                metrics=metrics, workers=workers,
                                                by_variant=by_variant), aggregations)
        await self._store._rolled_up()

        async def edge(a: int, b: int) -> list[StatBucket]:
            if a > b:
                return []
            return await self.buckets(since=a, until=b, interval=interval, metrics=metrics,
                                      workers=workers, by_variant=by_variant)

        def part(k: int) -> Callable[[], Awaitable[list[Any]]]:
            sql, args = _middle_sql(span, lo, hi, interval, metrics, workers, by_variant,
                                    aggregations, (k, READERS))
            return lambda: self._store._aside(lambda db: db.execute(sql, args).fetchall())

        head, tail, *parts = await gather(
            lambda: edge(since, lo - 1), lambda: edge(hi, until),
            *(part(k) for k in range(READERS)))
        middle = [row for rows in parts for row in rows]
        if len({tuple(r[:3]) for r in middle}) < len(middle):  # a metric sent as a number
            # and as a list: its "total" and "" series pool in the general query
            return as_series(await edge(since, until), aggregations)
        return join_series(as_series(head, aggregations), [StatSeries(*r) for r in middle],
                           as_series(tail, aggregations), metrics)

    async def activity(self, *, since: int, until: int, interval: int) -> list[ActivityBucket]:
        await self._store._rolled_up()
        p = plan(since, until, interval)
        parts, args = [], {"interval": interval}
        for i, (span, lo, hi) in enumerate(p.rollups):
            parts.append("SELECT start / :interval * :interval AS b, worker, active "
                         f"FROM stat_activity WHERE span = :span{i} AND start >= :lo{i} "
                         f"AND start < :hi{i}")
            args.update({f"span{i}": span, f"lo{i}": lo, f"hi{i}": hi})
        for i, (a, b) in enumerate(p.raw):
            parts.append("SELECT ts / :interval * :interval AS b, worker, "
                         "task IS NOT NULL AS active "
                         f"FROM stat_reports WHERE ts BETWEEN :a{i} AND :b{i}")
            args.update({f"a{i}": a, f"b{i}": b})
        sql = ("SELECT b, count(DISTINCT worker), count(DISTINCT CASE WHEN active THEN worker "
               f"END) FROM ({' UNION ALL '.join(parts)}) GROUP BY b ORDER BY b")
        rows = await self._store._aside(lambda db: db.execute(sql, args).fetchall())
        return [ActivityBucket(*r) for r in rows]

    async def metric_keys(self, workers: Sequence[str] | None = None) -> list[str]:
        # The series with rollups: every reading is in them once the held-back ones are
        # written, for as long as raw readings are kept (the registry purges rollups no
        # sooner), and longer.
        if workers is not None and not workers:
            return []
        await self._store._rolled_up()
        where, args = "", list(workers or ())
        if workers is not None:
            where = f"AND s.worker IN {_in(workers)}"
        rows = await self._store._aside(lambda db: db.execute(
            "SELECT DISTINCT s.metric FROM stat_series s WHERE EXISTS "
            f"(SELECT 1 FROM stat_rollups r WHERE r.span IN {_in(SPANS)} AND r.series = s.id) "
            f"{where} ORDER BY s.metric", [*SPANS, *args]).fetchall())
        return [metric for (metric,) in rows]

    async def purge(self, before: int, rollups_before: Mapping[int, int] | None = None) -> int:
        # On a reader connection, like the tasks' purge. Series rows stay (the writer
        # keeps their ids); the primary keys (series, ts) and (span, series, start) make
        # each series one range.
        cutoff = raw_cutoff(before)

        def delete(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                # the readings: one ':' each in a report's JSON object (`readings_template`)
                (n,) = db.execute("SELECT coalesce(sum(length(readings) - length(replace("
                                  "readings, ':', ''))), 0) FROM stat_reports WHERE ts < ?",
                                  (cutoff,)).fetchone()
                db.execute("DELETE FROM stat_reports WHERE ts < ?", (cutoff,))
                for span, until in (rollups_before or {}).items():
                    db.execute("DELETE FROM stat_rollups WHERE span = ? AND series IN "
                               "(SELECT id FROM stat_series) AND start < ?", (span, until))
                    db.execute("DELETE FROM stat_activity WHERE span = ? AND start < ?",
                               (span, until))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return n
        return await self._store._aside_write(delete)


def _series_filter(metrics: Sequence[str], workers: Sequence[str] | None,
                   args: dict[str, object]) -> str:
    args.update({f"m{i}": m for i, m in enumerate(metrics)})
    where = f"s.metric IN {_named('m', len(metrics))}"
    if workers is not None:
        args.update({f"w{i}": w for i, w in enumerate(workers)})
        where += f" AND s.worker IN {_named('w', len(workers))}"
    return where


def _named(prefix: str, n: int) -> str:
    """`(:p0, :p1, ...)`, the parameters `_series_filter` names."""
    return "(" + ", ".join([f":{prefix}{i}" for i in range(n)]) + ")"


def _rollup_variants(by_variant: bool) -> str:
    """The rollup series a query reads: each variant, or the pooled ones (`POOLED`, and
    `SCALAR` for a metric sent as a number)."""
    return "s.variant != ''" if by_variant else "s.variant IN ('', 'total')"


def _middle_sql(span: int, lo: int, hi: int, interval: int, metrics: Sequence[str],
                workers: Sequence[str] | None, by_variant: bool,
                aggregations: Collection[str] = AGGREGATIONS,
                part: tuple[int, int] = (0, 1)) -> tuple[str, dict[str, object]]:
    """Whole buckets `lo <= start < hi` from the rollups of `span`, as JSON arrays per
    series (or metric). Per variant and with one span per bucket, rows come in the
    order of the groups (series by metric and worker, then start): no sort at all.
    `part` (k, n): only the series whose id is k modulo n, for n statements on n
    connections (a metric both sent as a number and as a list may then come back as two
    rows: `series` reads such a metric in the general query anyway)."""
    args: dict[str, object] = {"span": span, "lo": lo, "hi": hi, "interval": interval}
    where = _series_filter(metrics, workers, args)
    if part[1] > 1:
        where += " AND s.id % :parts = :part"
        args.update(part=part[0], parts=part[1])
    # only the arrays asked for: formatting floats is most of the work per row
    arrays = ", ".join(["json_group_array(b)"] + [
        f"json_group_array({expr})" if name in aggregations else "'[]'"
        for name, expr in (("avg", "t / c"), ("min", "l"), ("max", "h"))])
    # INDEXED BY: series in (metric, worker, id) order, the GROUP BY's, whatever the filter
    source = ("FROM stat_series s INDEXED BY stat_series_metric CROSS JOIN stat_rollups r "
              "ON r.span = :span "
              f"AND r.series = s.id AND r.start >= :lo AND r.start < :hi WHERE {where} "
              f"AND {_rollup_variants(by_variant)}")
    if span == interval:  # one row per bucket (variants pooled: the "" or "total" series)
        variant = "s.variant" if by_variant else "''"
        return (f"SELECT worker, metric, variant, {arrays} FROM (SELECT s.worker, s.metric, "
                f"{variant} AS variant, s.id, r.start AS b, r.count AS c, r.total AS t, "
                f"r.low AS l, r.high AS h {source}) GROUP BY metric, worker, id"), args
    if by_variant:
        key, group = "s.variant AS variant, s.id AS id", "s.metric, s.worker, s.id"
    else:
        key, group = "'' AS variant", "s.metric, s.worker"
    return (f"SELECT worker, metric, variant, {arrays} FROM (SELECT s.worker, s.metric, "
            f"{key}, r.start / :interval * :interval AS b, sum(r.count) AS c, "
            "sum(r.total) AS t, min(r.low) AS l, max(r.high) AS h "
            f"{source} GROUP BY {group}, b ORDER BY {group}, b) "
            f"GROUP BY metric, worker{', id' if by_variant else ''}"), args


def _buckets_sql(p: Plan, interval: int, metrics: Sequence[str],
                 workers: Sequence[str] | None, by_variant: bool) -> tuple[str, dict[str, object]]:
    """One statement: the rollups of the whole spans (of each span in `p`) and the raw
    readings of the edges, pooled per series (or per metric) and bucket. CROSS JOIN keeps SQLite's order: for
    rollups the series first (by metric, or worker and metric), then one key range of
    each; for readings the reports of the range (of the workers asked), then theirs."""
    args: dict[str, object] = {"interval": interval}
    where = _series_filter(metrics, workers, args)
    reports = "" if workers is None else f" AND r.worker IN {_named('w', len(workers))}"
    variant = "s.variant" if by_variant else "''"
    parts = []
    for i, (span, lo, hi) in enumerate(p.rollups):
        parts.append(f"SELECT s.worker, s.metric, {variant} AS variant, "
                     "r.start / :interval * :interval AS b, r.count AS c, r.total AS t, "
                     "r.low AS l, r.high AS h FROM stat_series s CROSS JOIN stat_rollups r "
                     f"ON r.span = :span{i} AND r.series = s.id AND r.start >= :lo{i} "
                     f"AND r.start < :hi{i} WHERE {where} AND {_rollup_variants(by_variant)}")
        args.update({f"span{i}": span, f"lo{i}": lo, f"hi{i}": hi})
    for i, (a, b) in enumerate(p.raw):
        parts.append(f"SELECT s.worker, s.metric, {variant} AS variant, "
                     "r.ts / :interval * :interval AS b, 1 AS c, j.value AS t, j.value AS l, "
                     f"j.value AS h FROM stat_reports r {READINGS} CROSS JOIN stat_series s "
                     f"ON s.id = j.key WHERE r.ts BETWEEN :a{i} AND :b{i}{reports} AND {where}")
        args.update({f"a{i}": a, f"b{i}": b})
    sql = ("SELECT worker, metric, variant, b, sum(c), sum(t), min(l), max(h) "
           f"FROM ({' UNION ALL '.join(parts)}) GROUP BY worker, metric, variant, b")
    return sql, args


class SQLiteStore(HandOver):
    """A `Store` in one SQLite file."""

    #: bytes of WAL past which the writer waits for a checkpoint (`_wal.py`)
    wal_limit = WAL_LIMIT

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = self.where = str(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self._pending: list[Unit] = []
        self._wake = trio.Event()
        self._closed = False
        #: the idle reader connections (`_aside`); None while the store is not running
        self._idle: tuple[trio.MemorySendChannel[sqlite3.Connection],
                          trio.MemoryReceiveChannel[sqlite3.Connection]] | None = None
        #: one write at a time on the reader connections (purges): another would wait
        #: for its lock in SQLite, and fail after the busy timeout
        self._aside_writes = trio.Lock()
        self.tasks = _Tasks(self)
        self.queues = _Queues(self)
        self.pools = _Pools(self)
        self.outbox = _Outbox(self)
        self.stats = _Stats(self)
        #: stat_series ids by (worker, metric, variant), as committed (writer thread only)
        self._series: dict[tuple[str, str, str], int] = {}
        #: a listed metric's variant series -> its pooled series, as committed
        self._pooled: dict[int, int] = {}
        #: each worker's last report shape, as committed (writer thread only)
        self._shapes: dict[str, _Shape] = {}
        #: reports committed raw but not yet rolled up (writer thread only), the spans
        #: marked pending for them, when rollups were last all written, whether a read
        #: asked for them, and whether they are being written slice by slice
        #: (`_roll_up`)
        self._backlog: Backlog[int] = Backlog()
        self._pending_spans: set[int] = set()
        self._flushed_at = 0.0
        self._flush_asked = False
        self._draining = False
        self.commits = 0  # transactions committed: the group-commit ratio is writes / commits
        #: the writer's `total_changes` when it last had the WAL checkpointed
        #: (`CHECKPOINT_CHANGES`)
        self._checkpointed = 0
        self._commits_since_checkpoint = 0
        #: the checkpoints beside the writer, while it runs
        self._wal: Checkpoints | None = None
        #: told (units of work, seconds) after each transaction, e.g. by /metrics
        self.on_commit: Callable[[int, float], None] | None = None

    # -- the writer actor -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # Room for the multi-row statements of every chunk size besides the others.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             cached_statements=2 * CHUNK + 64)
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute(f"PRAGMA journal_size_limit = {self.wal_limit}")  # see `_wal.py`
        return db

    def _open_writer(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            refuse_newer(db, self.path)  # before anything writes to a file we do not know
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.execute("PRAGMA wal_autocheckpoint = 0")  # see CHECKPOINT_CHANGES
            migrate(db, self.path)
            self._recover(db)
            self._series = {(w, m, v): i for i, w, m, v in db.execute(
                "SELECT id, worker, metric, variant FROM stat_series")}
            self._pooled = {(self._series[w, m, v]): self._series[w, m, POOLED]
                            for w, m, v in self._series
                            if v not in (POOLED, SCALAR) and (w, m, POOLED) in self._series}
        except BaseException:
            db.close()
            raise
        return db

    def _open_reader(self) -> sqlite3.Connection:
        db = self._connect()
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        return db

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = await trio.to_thread.run_sync(self._open_writer)
        wal = self._wal = Checkpoints(await trio.to_thread.run_sync(self._open_reader),
                                      self.path, limit=self.wal_limit)
        readers = READERS
        send, receive = trio.open_memory_channel[sqlite3.Connection](readers)
        for _ in range(readers):
            send.send_nowait(await trio.to_thread.run_sync(self._open_reader))
        self._idle = send, receive
        self._closed = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wal.run)
                task_status.started()
                while True:
                    await self._wake.wait()
                    if wal.too_long():  # before the batch is taken: more join it meanwhile
                        await wal.alone()
                    # One more scheduler round, so that writes handed over by tasks that
                    # run in the same round as this wake-up share this commit.
                    await trio.lowlevel.checkpoint()
                    self._wake = trio.Event()
                    batch, self._pending = self._pending, []
                    # A batch taken off the queue is committed even if we are cancelled
                    # meanwhile: otherwise neither this loop nor the flush below writes it.
                    with trio.CancelScope(shield=True):
                        await self._commit(writer, batch)
        finally:
            # Cancelled: flush what callers already handed over, then close (the
            # checkpoints' connection too: their nursery waited for the running one).
            with trio.CancelScope(shield=True):
                self._closed = True
                self._wal = None
                self._flush_asked = True  # the held-back rollups too
                batch, self._pending = self._pending, []
                await self._commit(writer, batch)
                writer.close()
                wal.db.close()
                # Closing a connection a read is using on a worker thread crashes the
                # process: close each once its read gave it back, then the channel (reads
                # still waiting for a connection fail).
                for _ in range(readers):
                    (await receive.receive()).close()
                self._idle = None
                send.close()

    async def _commit(self, db: sqlite3.Connection, batch: list[Unit]) -> None:
        started = time.perf_counter()
        roll_up = self._roll_up_due()
        try:
            if _rows_in(batch) <= INLINE_ROWS and roll_up is RollUp.NONE:
                self._write(db, batch)  # see INLINE_ROWS
            else:
                await trio.to_thread.run_sync(self._write, db, batch, roll_up)
        except Exception as exc:  # disk full, corrupt file, ...: fail every unit loudly
            log.exception("store transaction failed")
            for unit in batch:
                if unit.error is None:
                    unit.error, unit.results = exc, []
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit(len(batch), time.perf_counter() - started)
        for unit in batch:
            if unit.done is not None:
                unit.done.set()
                continue
            if unit.error is not None:
                log.error("store write failed (%s): %r", describe(unit.changes), unit.error)
            if unit.then is not None:
                try:
                    unit.then()
                except Exception:  # a callback's bug must not stop the writer
                    log.exception("store commit callback failed")
        self._checkpoint_now_and_then(db)

    def _checkpoint_now_and_then(self, db: sqlite3.Connection) -> None:
        """Have the WAL checkpointed, beside the writer, once enough was written since
        the last time (`CHECKPOINT_CHANGES`)."""
        self._commits_since_checkpoint += 1
        if self._wal is None or (db.total_changes - self._checkpointed < CHECKPOINT_CHANGES
                                 and self._commits_since_checkpoint < CHECKPOINT_COMMITS):
            return
        if self._wal.start():  # else one runs: ask again after the next commit
            self._checkpointed, self._commits_since_checkpoint = db.total_changes, 0

    def _write(self, db: sqlite3.Connection, batch: list[Unit],
               roll_up: RollUp = RollUp.NONE) -> None:
        """One transaction for the whole batch, on the writer thread (or, for a small
        batch, the loop's: `INLINE_ROWS`); with `roll_up` of the held-back rollups
        (`_roll_up_due`)."""
        written = _Written()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("SAVEPOINT batch")
            try:
                self._apply(db, batch, written)
                db.execute("RELEASE batch")
            except Exception:  # noqa: BLE001 - find the failing units, commit the others
                db.execute("ROLLBACK TO batch")
                db.execute("RELEASE batch")
                written = _Written()  # ids of a rolled-back unit were never stored
                self._apply_one_by_one(db, batch, written)
            rolled_up = self._roll_up(db, written, roll_up)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._series.update(written.series)
        self._pooled.update(written.pooled)
        self._shapes.update(written.shapes)
        if rolled_up is self._backlog:  # and the transaction's own
            self._backlog, self._pending_spans = Backlog(), set()
            self._flushed_at, self._draining = time.monotonic(), False
            return
        if rolled_up is not None:
            self._backlog.drop(rolled_up)
        for report in written.reports:
            self._backlog.report(*report)
        self._pending_spans |= written.pending

    def _roll_up_due(self) -> RollUp:
        """How much of the held-back rollups the next transaction writes (on the
        thread, as they are many rows): all of them if a read asked, once due (it is
        time, or they are many) a slice per transaction until the rest fits in one.
        Taken on the loop, before the transaction."""
        if not self._backlog:
            return RollUp.NONE
        asked, self._flush_asked = self._flush_asked, False
        if asked:
            return RollUp.ALL
        if not self._draining and (time.monotonic() - self._flushed_at >= ROLLUP_EVERY
                                   or len(self._backlog) > ROLLUP_MAX_HELD):
            self._draining = True
        if not self._draining:
            return RollUp.NONE
        return RollUp.ALL if len(self._backlog) <= ROLLUP_SLICE else RollUp.SLICE

    def _roll_up(self, db: sqlite3.Connection, written: _Written,
                 due: RollUp) -> Backlog[int] | None:
        """Hold a transaction's new reports back, to write the rollup increments of many
        transactions at once (a worker's next reports add to the same rows), marking
        their 5-minute spans pending so that a crash meanwhile loses nothing
        (`_recover`), and write the held sums `due` (`_roll_up_due`): all of them, and
        the transaction's own, if so or if a repeat is to be computed again from raw
        readings (after the increments of its buckets). Returns the part of the held
        backlog it wrote: the backlog itself if all."""
        repeats = written.repeats
        if due is RollUp.ALL or repeats:
            mine: Backlog[int] = Backlog()  # apart: the held one stays if this rolls back
            for report in written.reports:
                mine.report(*report)
            pooled = self._pooled_now(written)
            _write_increments(db, self._backlog, pooled)
            _write_increments(db, mine, pooled)
            _redo_rollups(db, repeats)
            if self._pending_spans:
                db.execute("DELETE FROM stat_pending")
            return self._backlog
        fine = SPANS[0]
        spans = {ts // fine * fine for _, ts, *_ in written.reports}
        spans -= self._pending_spans
        if spans:
            db.executemany("INSERT OR IGNORE INTO stat_pending (start) VALUES (?)",
                           [(start,) for start in spans])
            written.pending = spans
        if due is RollUp.NONE:
            return None
        part = self._backlog.take(ROLLUP_SLICE)
        _write_increments(db, part, self._pooled_now(written))
        return part

    def _pooled_now(self, written: _Written) -> Mapping[int, int]:
        """`_pooled` with the transaction's new series."""
        return {**self._pooled, **written.pooled} if written.pooled else self._pooled

    def _recover(self, db: sqlite3.Connection) -> None:
        """Roll up again, from the raw rows, the spans whose increments were held back
        when the store last stopped (a crash, or a close before they were written)."""
        pending = [start for (start,) in db.execute("SELECT start FROM stat_pending")]
        if not pending:
            return
        hours = sorted({start // SPANS[-1] * SPANS[-1] for start in pending})
        db.execute("BEGIN IMMEDIATE")
        try:
            for span, starts in ((SPANS[0], sorted(pending)), (SPANS[-1], hours)):
                for start in starts:
                    for sql in (ROLL_UP_AGAIN, POOL_AGAIN, ACTIVITY_AGAIN):
                        db.execute(sql, (span, start, None))
            db.execute("DELETE FROM stat_pending")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        log.info("rolled up %d span(s) of machine statistics left pending", len(pending))

    def _apply_one_by_one(self, db: sqlite3.Connection, batch: list[Unit],
                          written: _Written) -> None:
        """Apply each unit in its own SAVEPOINT; a unit that raises is rolled back alone."""
        for unit in batch:
            if unit.error is not None:
                continue
            db.execute("SAVEPOINT unit")
            mine = _Written()
            try:
                self._apply(db, [unit], mine)
            except Exception as exc:  # noqa: BLE001 - any failure is this unit's alone
                db.execute("ROLLBACK TO unit")
                unit.error, unit.results = exc, []
            else:
                written.absorb(mine)
            db.execute("RELEASE unit")

    def _apply(self, db: sqlite3.Connection, units: list[Unit], written: _Written) -> None:
        """Apply `units` in order, as few statements as the order allows (`_Rows`);
        what they add to the writer's state goes to `written`."""
        rows = _Rows(db)
        reports: list[tuple[object, ...]] = []
        seen = _stored_reports(db, units)
        shapes = iter(self._shapes_of(db, units, written))
        for unit in units:
            if unit.error is not None:
                continue
            results: list[Result] = []
            for op in unit.ops:
                if type(op) is tuple:
                    rows.save(op)
                    results.append(None)
                elif type(op) is InsertTasks:
                    results.append(rows.insert(op.tasks))
                elif type(op) is ConfigureQueue:
                    db.execute(CONFIGURE, (op.queue, op.configuration))
                    results.append(None)
                elif type(op) is AppendEvents:
                    results.append(_append(db, op))
                elif type(op) is SavePool:
                    p = op.pool
                    db.execute(SAVE_POOL, (p.worker_pool_id, p.provider_id, p.description,
                                           bytes(p.config), p.owner, int(p.email_on_error),
                                           p.created, p.last_modified))
                    results.append(None)
                elif type(op) is DeletePool:
                    db.execute(DELETE_POOL, (op.worker_pool_id,))
                    results.append(None)
                elif type(op) is MarkDelivered:
                    db.execute(MARK_DELIVERED, (op.seq,))
                    results.append(None)
                elif type(op) is RecordStats:
                    worker, ts = op.worker, op.ts
                    shape = next(shapes)
                    series = shape.series
                    values = [float(value) for _, _, value in op.readings]
                    readings = shape.template % tuple(values) if values else None
                    if readings is not None and "n" in readings:  # nan, inf: not JSON
                        raise ValueError(f"a reading of worker {worker!r} is not a "
                                         "finite number")
                    reports.append((ts, worker, op.task, readings))
                    if (ts, worker) in seen:
                        written.repeats.repeat(worker, ts)
                    else:
                        seen.add((ts, worker))
                        written.reports.append((worker, ts, op.task, series, values))
                    results.append(None)
                else:
                    raise TypeError(f"unknown change {op!r}")
            unit.results = results
        rows.flush()
        _execute_chunked(db, _reports_sql, reports)

    def _shapes_of(self, db: sqlite3.Connection, units: list[Unit],
                   written: _Written) -> list[_Shape]:
        """The shape of each report of `units`, in order: the worker's last one if its
        readings name the same series, else found anew (`_add_series`)."""
        known = self._shapes
        shapes: list[_Shape | None] = []
        changed: list[tuple[int, RecordStats, tuple[tuple[str, str], ...]]] = []
        for unit in units:
            if unit.error is not None:
                continue
            for op in unit.ops:
                if type(op) is not RecordStats:
                    continue
                names = tuple([(metric, variant) for metric, variant, _ in op.readings])
                shape = written.shapes.get(op.worker) or known.get(op.worker)
                if shape is not None and shape.names == names:
                    shapes.append(shape)
                else:
                    changed.append((len(shapes), op, names))
                    shapes.append(None)
        if changed:
            self._add_series(db, [op for _, op, _ in changed], written)
            series, new = self._series, written.series
            for i, op, names in changed:
                worker = op.worker
                ids = tuple([series.get(k) or new[k]  # all stored by `_add_series`
                             for k in [(worker, m, v) for m, v in names]])
                pooled = frozenset([series.get(k) or new[k] for k in {
                    (worker, m, POOLED) for m, v in names if v != SCALAR}])
                shapes[i] = written.shapes[worker] = _Shape(names, ids, pooled,
                                                            readings_template(ids))
        return shapes  # type: ignore[return-value] # every None was replaced

    def _add_series(self, db: sqlite3.Connection, reports: list[RecordStats],
                    written: _Written) -> None:
        """Store the series `reports` name for the first time, in multi-row statements
        (a new worker brings some thirty), and pair each new variant series of a listed
        metric with its pooled one."""
        known, new = self._series, written.series
        missing: dict[tuple[str, str, str], None] = {}
        for op in reports:
            for metric, variant, _ in op.readings:
                for key in ((op.worker, metric, variant), (op.worker, metric, POOLED)):
                    if key not in known and key not in new:
                        missing[key] = None
                    if variant == SCALAR:
                        break
        if not missing:
            return
        keys = list(missing)
        for i in range(0, len(keys), CHUNK):
            part = keys[i:i + CHUNK]
            for id_, *key in db.execute(_series_sql(len(part)), [v for k in part for v in k]):
                new[tuple(key)] = id_  # type: ignore[index]
        for worker, metric, variant in keys:
            if variant not in (POOLED, SCALAR):
                pool = (worker, metric, POOLED)
                written.pooled[new[worker, metric, variant]] = known.get(pool) or new[pool]

    # -- handing over writes --------------------------------------------------------

    @staticmethod
    def _prepare(unit: Unit) -> Unit:
        try:
            for change in unit.changes:
                if type(change) is StartAttempt or type(change) is FinishTask:
                    unit.ops.append(_save_row(change.task))
                elif type(change) in _AS_IS:
                    unit.ops.append(change)
                else:
                    raise TypeError(f"unknown change {change!r}")
        except Exception as exc:  # noqa: BLE001 - the unit fails alone, reported as usual
            unit.error = exc
        return unit

    async def _rolled_up(self) -> None:
        """Have the rollup increments of every committed write written, for a read."""
        if self._backlog:  # set after the commit and before its writer is woken
            self._flush_asked = True
            await self.commit()

    async def _aside(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on an idle reader connection, on a thread: reads, and the rare writes
        (purge: `_aside_write`) that need not wait for, or slow down, a group commit."""
        if self._idle is None:
            raise StoreError(f"the store {self.path} is not running")
        send, receive = self._idle
        try:
            db = await receive.receive()
        except (trio.ClosedResourceError, trio.EndOfChannel) as exc:  # shutting down
            raise StoreError(f"the store {self.path} closed") from exc
        try:
            return await trio.to_thread.run_sync(fn, db)
        finally:
            send.send_nowait(db)

    async def _aside_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`_aside` for a write: one at a time (`_aside_writes`)."""
        async with self._aside_writes:
            return await self._aside(fn)


def _rows_in(batch: list[Unit]) -> int:
    """About how many rows `batch` writes (a task's save is one)."""
    def rows(op: _Op) -> int:
        if type(op) is InsertTasks:
            return len(op.tasks)
        if type(op) is AppendEvents:
            return len(op.events)
        if type(op) is RecordStats:
            return len(op.readings) + 1
        return 1
    return sum(rows(op) for unit in batch for op in unit.ops)


class _Rows:
    """The task rows of one transaction, held back to go out in multi-row statements
    (`CHUNK`): new rows in chunked INSERTs, saved columns in chunked UPDATEs.

    Rows of different tasks do not depend on each other, so they need not go out in
    the order they came; rows of one task do. A save for a task whose insert is held
    back sends the inserts first, an insert of a task with a save held back sends the
    saves first, and a task saved twice keeps its last save (both are whole snapshots,
    and one UPDATE ... FROM would pick either). So a batch costs a few statements,
    however its inserts, starts and finishes interleave.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.inserts: dict[str, tuple[object, ...]] = {}
        self.saves: dict[object, tuple[object, ...]] = {}
        #: idempotency key -> id, for the rows this transaction inserted
        self.keys: dict[str, str] = {}
        #: ids in `inserts` twice: the second INSERT must fail, as it would alone
        self.repeats: list[tuple[object, ...]] = []

    def save(self, row: tuple[object, ...]) -> None:
        task_id = row[-1]
        if task_id in self.inserts:
            self._flush_inserts()
        self.saves.pop(task_id, None)
        self.saves[task_id] = row

    def insert(self, tasks: Sequence[Task]) -> list[str]:
        """Hold back `tasks`, but not those whose key is stored or repeated; returns
        the ids."""
        known = self._stored_keys([t.key for t in tasks
                                   if t.key is not None and t.key not in self.keys])
        ids = []
        for t in tasks:
            if t.key is not None:
                existing = self.keys.get(t.key) or known.get(t.key)
                if existing is not None:
                    ids.append(existing)
                    continue
                self.keys[t.key] = t.id
            if t.id in self.saves:
                self._flush_saves()
            if t.id in self.inserts:
                self.repeats.append(_row(t))
            else:
                self.inserts[t.id] = _row(t)
            ids.append(t.id)
        return ids

    def flush(self) -> None:
        self._flush_inserts()
        self._flush_saves()

    def _stored_keys(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(keys), CHUNK):
            part = keys[i:i + CHUNK]
            found.update(self.db.execute(
                f"SELECT key, id FROM tasks WHERE key IN ({', '.join('?' * len(part))})",
                part).fetchall())
        return found

    def _flush_inserts(self) -> None:
        if self.inserts or self.repeats:
            _execute_chunked(self.db, _insert_sql, [*self.inserts.values(), *self.repeats])
            self.inserts.clear()
            self.repeats.clear()

    def _flush_saves(self) -> None:
        if self.saves:
            _execute_chunked(self.db, _save_sql, list(self.saves.values()))
            self.saves.clear()
