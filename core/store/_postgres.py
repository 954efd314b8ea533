"""PostgreSQL store with group commit and units of work that fail alone.

The same semantics as `SQLiteStore`, on psycopg 3's synchronous connections run on
worker threads (psycopg's async API needs asyncio; the hub runs on trio):

* **One writer.** The writer actor owns one connection. Units of work (one `commit`
  call, or one `commit_soon` change) queue up while the previous transaction commits,
  and the actor applies everything queued in one transaction on a worker thread, so
  durability (PostgreSQL's synchronous commit) is paid once per batch, not per write.
  A lost connection fails the batch it was in (`StoreError`) and is opened again for
  the next one: the writer never dies.
* **Few round trips, little Python.** A transaction's task rows go out as one `INSERT
  ... SELECT FROM json_to_recordset(...)` and one `UPDATE ... FROM json_to_recordset`
  however its inserts, starts and finishes interleave (`_Statements`), all of it
  pipelined: BEGIN, the statements and COMMIT reach the server in one flush. Each
  round trip releases and retakes the GIL, which a busy event loop makes slow (see
  `_sqlite.CHUNK`). Each row is encoded once, by msgspec, when its change is handed
  over; a statement's parameter is their JSON array (psycopg's own adaptation of
  lists costs ~20x more CPU per row).
* **Failing alone.** If anything in the batch fails, the whole transaction is rolled
  back (nothing of it was kept) and the batch is replayed in a new one, one SAVEPOINT
  per unit, dropping the units that fail. The happy path pays no savepoint at all.
* **Gap-free outbox seqs.** A sequence skips the numbers of a rolled-back transaction,
  and the event stream reads a gap as missed events; so the writer numbers events from
  a counter row (`outbox_cursor.appended`) moved in the same statement and
  transaction (`APPEND`): rolled back, the numbers are given back; purged, never
  reused. That statement's seqs are its result, so it costs a round trip.
* **Machine statistics in few rows.** A status report is one row of `stat_reports`,
  its readings a jsonb object of values by series id, written from its worker's
  shape (`_Shape`: the writer keeps each worker's series ids, so a report costs no
  lookups); the server sums the rollup increments of a transaction's new reports
  from three arrays, so no row of Python dicts is encoded per reading.
* **Reads beside the writer.** Reads, and purging, use a `psycopg_pool.ConnectionPool`
  of autocommit connections, so they neither wait for nor slow down a group commit.
* **Several hubs on one database** (`cluster.Election` sets `fence`, `channel` and
  `on_deposed`). A unit handed over while its hub leads carries the leader's term;
  the transaction begins with `workyard_fence(term)` (pipelined, no round trip),
  which fails once another hub was elected: the batch fails whole (`Deposed`) and the
  hub is told. Units handed over while it follows NOTIFY the ids they insert, at
  commit, for the leader to schedule.

The schema is versioned (`_postgres_migrations.py`) and brought up to date when `run`
starts. `schema=` puts the store's tables in a schema of their own (created if
missing), e.g. one per test.

To add an aggregate: its change types get a `_prepare` entry (what to snapshot when
the change is handed over) and a `_Statements` method (how to write it); its reads go
through `_read`.
"""

from __future__ import annotations

import logging
import math
import re
import select
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

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
from ._postgres_migrations import migrate, refuse_newer
from ._rollups import POOLED, SCALAR, SPANS, as_series, plan, raw_cutoff, readings_template
from ._writes import QueueWrites, TaskWrites

__all__ = ["Deposed", "PostgresStore"]

T = TypeVar("T")

log = logging.getLogger("workyard.store")

COLUMNS = ("id, seq, name, attrs, data, priority, timeout, retries, schedule_timeout, key, "
           "state, created, finished, result, error, attempts")
#: What reads select: the json columns as text, for msgspec to decode.
SELECT = ("SELECT id, seq, name, attrs::text, data, priority, timeout, retries, "
          "schedule_timeout, key, state, created, finished, result, error, attempts::text "
          "FROM tasks")
#: Any number of new rows in one statement: a JSON array of `_NewRow`s, which msgspec
#: encodes in C (psycopg adapts a Python list element by element, ~20x slower).
INSERT = (f"INSERT INTO tasks ({COLUMNS}) "
          "SELECT id, seq, name, attrs, decode(data, 'base64'), priority, timeout, retries, "
          "schedule_timeout, key, state, created, finished, decode(result, 'base64'), error, "
          "attempts FROM json_to_recordset(%s::json) AS v(id text, seq bigint, name text, "
          "attrs json, data text, priority bigint, timeout float8, retries bigint, "
          "schedule_timeout float8, key text, state text, created float8, finished float8, "
          "result text, error text, attempts json)")
#: Any number of tasks' changing columns (`StartAttempt`, `FinishTask`) in one statement,
#: a JSON array of `_SavedRow`s.
SAVE = ("UPDATE tasks SET state = v.state, finished = v.finished, "
        "result = decode(v.result, 'base64'), error = v.error, attempts = v.attempts "
        "FROM json_to_recordset(%s::json) AS v(id text, state text, finished float8, "
        "result text, error text, attempts json) WHERE tasks.id = v.id")
KEYS = "SELECT key, id FROM tasks WHERE key = ANY(%s::text[])"
CONFIGURE = ("INSERT INTO queue_configurations (queue, configuration) VALUES (%s, %s) "
             "ON CONFLICT (queue) DO UPDATE SET configuration = excluded.configuration")
POOL_COLUMNS = ("worker_pool_id, provider_id, description, config, owner, email_on_error, "
                "created, last_modified")
SAVE_POOL = (f"INSERT INTO worker_pools ({POOL_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
             "ON CONFLICT (worker_pool_id) DO UPDATE SET provider_id = excluded.provider_id, "
             "description = excluded.description, config = excluded.config, "
             "owner = excluded.owner, email_on_error = excluded.email_on_error, "
             "created = excluded.created, last_modified = excluded.last_modified")
DELETE_POOL = "DELETE FROM worker_pools WHERE worker_pool_id = %s"
#: Events numbered from the counter row, moved in the same statement: the seqs are
#: consecutive, and a rolled-back transaction gives its numbers back (no gap for a
#: stream to read as missed events). `i` is the event's place in its change, from 1.
APPEND = ("WITH n AS (UPDATE outbox_cursor SET appended = appended + %(count)s WHERE id = 1 "
          "RETURNING appended) "
          "INSERT INTO outbox (seq, exchange, routing_key, body, at) "
          "SELECT n.appended - %(count)s + v.i, v.exchange, v.routing_key, "
          "decode(v.body, 'base64'), v.at FROM n, json_to_recordset(%(rows)s::json) AS "
          "v(i bigint, exchange text, routing_key text, body text, at float8) RETURNING seq")
MARK_DELIVERED = "UPDATE outbox_cursor SET delivered = greatest(delivered, %s) WHERE id = 1"
#: A transaction's new series (a unique key: each is added once, whichever hub comes
#: first), then their ids, stored now or before: one index lookup each.
SERIES = ("INSERT INTO stat_series (worker, metric, variant) "
          "SELECT worker, metric, variant FROM json_to_recordset(%s::json) AS "
          "v(worker text, metric text, variant text) ON CONFLICT DO NOTHING")
SERIES_IDS = ("SELECT s.id, v.worker, v.metric, v.variant FROM json_to_recordset(%s::json) "
              "AS v(worker text, metric text, variant text) CROSS JOIN LATERAL (SELECT id "
              "FROM stat_series s WHERE s.worker = v.worker AND s.metric = v.metric "
              "AND s.variant = v.variant LIMIT 1) s")
#: A leader's write transactions begin with this (migration 4): it fails with
#: `FENCED_STATE` once another hub holds a newer term.
FENCE = "SELECT workyard_fence(%s)"
FENCED_STATE = "WY001"
#: Each NOTIFY payload carries at most this many bytes of task ids (PostgreSQL: 8000).
NOTIFY_BYTES = 7000
#: Reports, each one row: its readings a jsonb object of values by series id (jsonb
#: keeps a number's decimal digits, and a float's shortest text is exact). A repeat's
#: readings replace the stored ones of the same series and keep the others, as one row
#: per reading would.
REPORTS = ("INSERT INTO stat_reports AS r (ts, worker, task, readings) "
           "SELECT ts, worker, task, readings FROM json_to_recordset(%s::json) AS "
           "v(ts bigint, worker text, task text, readings jsonb) "
           "ON CONFLICT (ts, worker) DO UPDATE SET task = excluded.task, "
           "readings = r.readings || excluded.readings")
#: Those of a transaction's reports already stored (their keys are among these): an
#: index range of the primary key per ts, whatever the table's size.
STORED_REPORTS = ("SELECT ts, worker FROM stat_reports WHERE ts = ANY(%s::bigint[]) "
                  "AND worker = ANY(%s::text[])")
#: A report's readings as rows (ts, series, value), of `stat_reports x`; the caller adds
#: its WHERE and the closing parenthesis.
READINGS = ("(SELECT x.ts, j.key::bigint AS series, j.value::float8 AS value "
            "FROM stat_reports x CROSS JOIN LATERAL jsonb_each_text(x.readings) j")
#: the rollup spans as rows p(span)
_SPANS = "(VALUES " + ", ".join(f"({span}::bigint)" for span in SPANS) + ") AS p(span)"
#: Rollups (see `_rollups.py`): the increments of new reports, summed here from their
#: readings (series, ts, value: arrays; a listed metric's readings once more under its
#: pooled series), then the buckets of repeated ones computed again from the rows
#: just written, per (span, start, worker).
ROLLUPS = ("INSERT INTO stat_rollups AS r (span, series, start, count, total, low, high) "
           "SELECT p.span, v.series, v.ts / p.span * p.span, count(*), sum(v.value), "
           "min(v.value), max(v.value) FROM unnest(%s::bigint[], %s::bigint[], %s::float8[]) "
           f"AS v(series, ts, value) CROSS JOIN {_SPANS} GROUP BY 1, 2, 3 "
           "ON CONFLICT (span, series, start) DO UPDATE SET count = r.count + excluded.count, "
           "total = r.total + excluded.total, low = least(r.low, excluded.low), "
           "high = greatest(r.high, excluded.high)")
ACTIVITY = ("INSERT INTO stat_activity AS a (span, start, worker, active) "
            "SELECT p.span, v.ts / p.span * p.span, v.worker, bool_or(v.task IS NOT NULL) "
            "FROM json_to_recordset(%s::json) AS v(ts bigint, worker text, task text) "
            f"CROSS JOIN {_SPANS} GROUP BY 1, 2, 3 "
            "ON CONFLICT (span, start, worker) DO UPDATE SET active = a.active OR excluded.active")
#: the (span, start, worker) buckets to compute again, and each one's reports
_AGAIN = ("FROM json_to_recordset(%s::json) AS k(span bigint, start bigint, worker text) "
          "CROSS JOIN LATERAL " + READINGS + " WHERE x.worker = k.worker AND x.ts >= k.start "
          "AND x.ts < k.start + k.span) x ")
ROLL_UP_AGAIN = ("INSERT INTO stat_rollups AS r (span, series, start, count, total, low, high) "
                 "SELECT k.span, x.series, k.start, count(*), sum(x.value), min(x.value), "
                 f"max(x.value) {_AGAIN}GROUP BY k.span, k.start, x.series "
                 "ON CONFLICT (span, series, start) DO UPDATE SET count = excluded.count, "
                 "total = excluded.total, low = excluded.low, high = excluded.high")
POOL_AGAIN = ("INSERT INTO stat_rollups AS r (span, series, start, count, total, low, high) "
              "SELECT k.span, p.id, k.start, count(*), sum(x.value), min(x.value), "
              f"max(x.value) {_AGAIN}JOIN stat_series s ON s.id = x.series "
              "AND s.variant NOT IN ('', 'total') JOIN stat_series p ON p.worker = s.worker "
              "AND p.metric = s.metric AND p.variant = '' GROUP BY k.span, k.start, p.id "
              "ON CONFLICT (span, series, start) DO UPDATE SET count = excluded.count, "
              "total = excluded.total, low = excluded.low, high = excluded.high")
ACTIVITY_AGAIN = ("INSERT INTO stat_activity AS a (span, start, worker, active) "
                  "SELECT k.span, k.start, k.worker, bool_or(x.task IS NOT NULL) "
                  "FROM json_to_recordset(%s::json) AS k(span bigint, start bigint, "
                  "worker text) JOIN stat_reports x ON x.worker = k.worker "
                  "AND x.ts >= k.start AND x.ts < k.start + k.span GROUP BY 1, 2, 3 "
                  "ON CONFLICT (span, start, worker) DO UPDATE SET active = excluded.active")

#: seconds a read waits for a pool connection before it connects on its own (the
#: limiter keeps reads within the pool's size, so only a failing database makes it wait)
POOL_WAIT = 2.0

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_encode = msgspec.json.Encoder().encode
_attrs = msgspec.json.Decoder(dict[str, str])
_attempts = msgspec.json.Decoder(list[Attempt])


class _NewRow(msgspec.Struct, gc=False):
    """A task row as INSERT reads it; bytes go as base64 (msgspec's bytes encoding)."""

    id: str
    seq: int
    name: str
    attrs: dict[str, str]
    data: bytes
    priority: int
    timeout: float
    retries: int
    schedule_timeout: float | None
    key: str | None
    state: str
    created: float
    finished: float | None
    result: bytes | None
    error: str | None
    attempts: list[Attempt]


class _SavedRow(msgspec.Struct, gc=False):
    """A task's changing columns as SAVE reads them."""

    id: str
    state: str
    finished: float | None
    result: bytes | None
    error: str | None
    attempts: list[Attempt]


class _EventRow(msgspec.Struct, gc=False):
    """An outbox event as APPEND reads it: `i` its place in the change, from 1."""

    i: int
    exchange: str
    routing_key: str
    body: bytes
    at: float


class _ReportRow(msgspec.Struct, gc=False):
    """A status report as REPORTS reads it: `readings` a JSON object (`_Shape.template`)."""

    ts: int
    worker: str
    task: str | None
    readings: msgspec.Raw


class _SeriesRow(msgspec.Struct, gc=False):
    """A series as SERIES and SERIES_IDS read it."""

    worker: str
    metric: str
    variant: str


class _BucketRow(msgspec.Struct, gc=False):
    """A (span, start, worker) bucket as the statements that compute it again read it."""

    span: int
    start: int
    worker: str


class _ActiveRow(msgspec.Struct, gc=False):
    """A new report as ACTIVITY reads it."""

    ts: int
    worker: str
    task: str | None


class Deposed(StoreError):
    """A leader's write refused: another hub holds a newer term (see `fence`)."""

    #: the term the refused write was handed over in
    term: int | None = None


def _refuse_if_fenced(exc: BaseException, fence: int | None, where: str) -> None:
    """A leader's transaction failed its fence: another hub was elected. Nothing of the
    batch was kept, and the hub must stop scheduling at once."""
    if fence is not None and getattr(exc, "sqlstate", None) == FENCED_STATE:
        deposed = Deposed(f"the store {where} refused the write: another hub was elected "
                          f"after term {fence}")
        deposed.term = fence
        raise deposed from exc


def _new_row(task: Task) -> bytes:
    """A new task's row as JSON, encoded when the change is handed over (so it is what
    was handed over, and a task that cannot be encoded fails alone, there)."""
    return _encode(_NewRow(
        task.id, task.seq, task.name, task.attrs, bytes(task.data), task.priority,
        task.timeout, task.retries, task.schedule_timeout, task.key, task.state.value,
        task.created, task.finished, None if task.result is None else bytes(task.result),
        task.error, task.attempts))


def _saved_row(task: Task) -> bytes:
    """A task's changing columns as JSON, encoded when the change is handed over."""
    return _encode(_SavedRow(
        task.id, task.state.value, task.finished,
        None if task.result is None else bytes(task.result), task.error, task.attempts))


def _json_array(rows: Iterable[bytes]) -> str:
    return (b"[" + b",".join(rows) + b"]").decode()


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


# -- changes as the writer thread applies them --------------------------------------


@dataclass(frozen=True, slots=True)
class _NewTasks:
    """An `InsertTasks`: its rows (`_new_row`), ids and keys."""

    rows: list[bytes]
    ids: list[str]
    keys: list[str | None]


@dataclass(frozen=True, slots=True)
class _Save:
    """A `StartAttempt` or `FinishTask`: the task's changing columns (`_saved_row`)."""

    task_id: str
    row: bytes


@dataclass(frozen=True, slots=True)
class _Events:
    """An `AppendEvents`: its rows (`_EventRow`)."""

    rows: list[bytes]


@dataclass(frozen=True, slots=True)
class _Report:
    """A `RecordStats`: its readings' (metric, variant) in order and their values."""

    ts: int
    worker: str
    task: str | None
    names: tuple[tuple[str, str], ...]
    values: list[float]


@dataclass(frozen=True, slots=True)
class _Shape:
    """The series of a worker's report: its readings' (metric, variant) in order, their
    stat_series ids, and for the rollups those ids followed by the pooled series of its
    listed readings (`pool`: their places). A worker sends the same metrics report
    after report, so the writer keeps its last shape and finds a report's series with
    one comparison rather than a lookup per reading."""

    names: tuple[tuple[str, str], ...]
    series: tuple[int, ...]
    rolled: tuple[int, ...]
    pool: tuple[int, ...]
    #: the report's `readings`, a JSON object, as a %-format of its values
    template: str


@dataclass(slots=True)
class _Known:
    """The writer's series ids, by (worker, metric, variant), and each worker's last
    shape: the store's (committed), or a transaction's, added once it commits (ids of
    a rolled-back one were never stored)."""

    series: dict[tuple[str, str, str], int] = field(default_factory=dict)
    shapes: dict[str, _Shape] = field(default_factory=dict)
    #: a unit's own, replayed alone (`PostgresStore._apply_one_by_one`): the batch's so far
    parent: _Known | None = None

    def id_of(self, key: tuple[str, str, str]) -> int | None:
        known: _Known | None = self
        while known is not None:
            id_ = known.series.get(key)
            if id_ is not None:
                return id_
            known = known.parent
        return None

    def shape_of(self, worker: str) -> _Shape | None:
        known: _Known | None = self
        while known is not None:
            shape = known.shapes.get(worker)
            if shape is not None:
                return shape
            known = known.parent
        return None

    def absorb(self, other: _Known) -> None:
        self.series.update(other.series)
        self.shapes.update(other.shapes)


_Op = (_NewTasks | _Save | ConfigureQueue | SavePool | DeletePool | _Events | MarkDelivered
       | _Report)


def _events(change: AppendEvents) -> _Events:
    return _Events([_encode(_EventRow(i, e.exchange, e.routing_key, bytes(e.body), e.at))
                    for i, e in enumerate(change.events, 1)])


def _report(change: RecordStats) -> _Report:
    values = [float(value) for _, _, value in change.readings]
    if not all(map(math.isfinite, values)):  # JSON (and so jsonb) has no inf or nan
        raise ValueError(f"a reading of worker {change.worker!r} is not a finite number")
    return _Report(change.ts, change.worker, change.task,
                   tuple([(metric, variant) for metric, variant, _ in change.readings]), values)


def _merged(first: _Report, then: _Report) -> _Report:
    """A report repeated within one transaction: `then`'s readings replace those of the
    same series and keep the others (ON CONFLICT cannot change one row twice)."""
    readings = dict(zip(first.names, first.values, strict=True))
    for name in then.names:
        readings.pop(name, None)
    readings.update(zip(then.names, then.values, strict=True))
    return _Report(then.ts, then.worker, then.task, tuple(readings), list(readings.values()))


def _array(values: list[int] | list[float]) -> str:
    """A PostgreSQL array literal of numbers: their JSON array (shortest exact text of
    each float) in braces, encoded in C."""
    return "{" + _encode(values)[1:-1].decode() + "}"


def _new_tasks(change: InsertTasks) -> _NewTasks:
    return _NewTasks([_new_row(t) for t in change.tasks], [t.id for t in change.tasks],
                     [t.key for t in change.tasks])


def _save(change: StartAttempt | FinishTask) -> _Save:
    return _Save(change.task.id, _saved_row(change.task))


#: Per change type: what to snapshot when it is handed over.
_PREPARE: dict[type, Callable[[Any], _Op]] = {
    InsertTasks: _new_tasks,
    StartAttempt: _save,
    FinishTask: _save,
    ConfigureQueue: lambda change: change,
    SavePool: lambda change: change,
    DeletePool: lambda change: change,
    AppendEvents: _events,
    MarkDelivered: lambda change: change,
    RecordStats: _report,
}


class _Statements:
    """The writes of one transaction, held back to go out in as few statements as the
    order allows: new task rows in one INSERT, saved columns in one UPDATE, each with
    one array per column (however many rows).

    Rows of different tasks do not depend on each other, so they need not go out in
    the order they came; rows of one task do. A save for a task whose insert is held
    back sends the inserts first, an insert of a task with a save held back sends the
    saves first, and a task saved twice keeps its last save (both are whole snapshots).
    One method per kind of write; `apply` picks it.
    """

    def __init__(self, db: psycopg.Connection, known: _Known, written: _Known) -> None:
        self.db = db
        #: the writer's series and shapes, and those this transaction adds
        self.known = known
        self.written = written
        #: NOTIFY the ids of inserted tasks on this channel (a follower's submissions)
        self.channel: str | None = None
        self.notify: list[str] = []
        self.inserts: dict[str, bytes] = {}
        self.saves: dict[str, bytes] = {}
        #: idempotency key -> id, for the rows this transaction inserted
        self.keys: dict[str, str] = {}
        #: ids in `inserts` twice: the second INSERT must fail, as it would alone
        self.repeats: list[bytes] = []
        #: status reports by (ts, worker), a repeat merged into the first (`_merged`)
        self.reports: dict[tuple[int, str], _Report] = {}

    def apply(self, op: _Op) -> Result:
        method = _APPLY.get(type(op))
        if method is None:
            raise TypeError(f"unknown change {op!r}")
        return method(self, op)

    def save_task(self, op: _Save) -> None:
        if op.task_id in self.inserts:
            self._flush_inserts()
        self.saves.pop(op.task_id, None)
        self.saves[op.task_id] = op.row

    def insert_tasks(self, op: _NewTasks) -> list[str]:
        """Hold back the rows, but not those whose key is stored or repeated; returns
        the ids."""
        known = self._stored_keys([k for k in op.keys if k is not None and k not in self.keys])
        ids = []
        for row, task_id, key in zip(op.rows, op.ids, op.keys, strict=True):
            if key is not None:
                existing = self.keys.get(key) or known.get(key)
                if existing is not None:
                    ids.append(existing)
                    continue
                self.keys[key] = task_id
            if task_id in self.saves:
                self._flush_saves()
            if task_id in self.inserts:
                self.repeats.append(row)
            else:
                self.inserts[task_id] = row
                if self.channel is not None:
                    self.notify.append(task_id)
            ids.append(task_id)
        return ids

    def configure_queue(self, op: ConfigureQueue) -> None:
        self.db.execute(CONFIGURE, (op.queue, bytes(op.configuration)))

    def save_pool(self, op: SavePool) -> None:
        p = op.pool
        self.db.execute(SAVE_POOL, (p.worker_pool_id, p.provider_id, p.description,
                                    bytes(p.config), p.owner, p.email_on_error, p.created,
                                    p.last_modified))

    def delete_pool(self, op: DeletePool) -> None:
        self.db.execute(DELETE_POOL, (op.worker_pool_id,))

    def append_events(self, op: _Events) -> list[int]:
        """The events' seqs: the statement's result is needed now, so this one costs a
        round trip (events are rare next to task writes)."""
        if not op.rows:
            return []
        cur = self.db.execute(APPEND, {"count": len(op.rows), "rows": _json_array(op.rows)})
        return sorted(seq for (seq,) in cur.fetchall())

    def mark_delivered(self, op: MarkDelivered) -> None:
        self.db.execute(MARK_DELIVERED, (op.seq,))

    def record_stats(self, op: _Report) -> None:
        key = (op.ts, op.worker)
        first = self.reports.pop(key, None)  # a repeat goes last, as on SQLite
        self.reports[key] = op if first is None else _merged(first, op)

    def flush(self) -> None:
        self._flush_inserts()
        self._flush_saves()
        if self.reports:
            self._flush_reports()
        if self.notify:  # delivered at commit, so the leader reads rows that are there
            for payload in _chunks(self.notify, NOTIFY_BYTES):
                self.db.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))
            self.notify.clear()

    def _flush_reports(self) -> None:
        """The reports, one row each, and their rollups: the increments of new reports,
        summed by the server from arrays of their readings; the buckets of repeated
        ones (already stored, found first) computed again once their rows are written."""
        db, reports = self.db, list(self.reports.values())
        self.reports.clear()
        shapes = self._shapes(reports)
        keys = list(zip(*[(op.ts, op.worker) for op in reports], strict=True))
        stored = set(db.execute(STORED_REPORTS, (list(keys[0]), list(keys[1]))).fetchall())
        rows: list[bytes] = []
        active: list[_ActiveRow] = []
        again: list[_BucketRow] = []
        series: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        for op, shape in zip(reports, shapes, strict=True):
            ts, worker, task, readings = op.ts, op.worker, op.task, op.values
            rows.append(_encode(_ReportRow(ts, worker, task, msgspec.Raw(
                (shape.template % tuple(readings)).encode()))))
            if (ts, worker) in stored:
                again += [_BucketRow(span, ts // span * span, worker) for span in SPANS]
                continue
            active.append(_ActiveRow(ts, worker, task))
            rolled = shape.rolled
            series += rolled
            stamps += [ts] * len(rolled)
            values += readings
            values += [readings[i] for i in shape.pool]
        db.execute(REPORTS, (_json_array(rows),))
        if series:
            db.execute(ROLLUPS, (_array(series), _array(stamps), _array(values)))
        if active:
            db.execute(ACTIVITY, (_encode(active).decode(),))
        if again:
            buckets = _encode(again).decode()
            for statement in (ROLL_UP_AGAIN, POOL_AGAIN, ACTIVITY_AGAIN):
                db.execute(statement, (buckets,))

    def _shapes(self, reports: list[_Report]) -> list[_Shape]:
        """The shape of each report: its worker's last one if its readings name the same
        series, else made anew, the series not known yet stored and looked up first."""
        known, written = self.known, self.written
        shapes: list[_Shape | None] = []
        changed: list[int] = []
        for i, op in enumerate(reports):
            shape = written.shape_of(op.worker) or known.shapes.get(op.worker)
            if shape is not None and shape.names == op.names:
                shapes.append(shape)
            else:
                changed.append(i)
                shapes.append(None)
        if not changed:
            return shapes  # type: ignore[return-value] # no None in it
        ids = self._series([reports[i] for i in changed])
        for i in changed:
            op = reports[i]
            worker = op.worker
            series = tuple([ids[worker, m, v] for m, v in op.names])
            pool = tuple([k for k, (_, v) in enumerate(op.names) if v != SCALAR])
            pooled = tuple([ids[worker, op.names[k][0], POOLED] for k in pool])
            shapes[i] = written.shapes[worker] = _Shape(
                op.names, series, series + pooled, pool, readings_template(series))
        return shapes  # type: ignore[return-value] # every None was replaced

    def _series(self, reports: list[_Report]) -> Mapping[tuple[str, str, str], int]:
        """The ids of the series `reports` name, and of the pooled series of their listed
        metrics; those not known yet stored (by whichever hub is first) and read back."""
        known, written = self.known.series, self.written
        ids: dict[tuple[str, str, str], int] = {}
        missing: dict[tuple[str, str, str], None] = {}
        for op in reports:
            for metric, variant in op.names:
                for key in ((op.worker, metric, variant), (op.worker, metric, POOLED)):
                    id_ = written.id_of(key) or known.get(key)
                    if id_ is None:
                        missing[key] = None
                    else:
                        ids[key] = id_
                    if variant == SCALAR:
                        break
        if missing:
            rows = _encode([_SeriesRow(*key) for key in missing]).decode()
            self.db.execute(SERIES, (rows,))
            for id_, worker, metric, variant in self.db.execute(SERIES_IDS, (rows,)).fetchall():
                ids[worker, metric, variant] = written.series[worker, metric, variant] = id_
        return ids

    def _stored_keys(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        return dict(self.db.execute(KEYS, (keys,)).fetchall())

    def _flush_inserts(self) -> None:
        if self.inserts or self.repeats:
            self.db.execute(INSERT, (_json_array([*self.inserts.values(), *self.repeats]),))
            self.inserts.clear()
            self.repeats.clear()

    def _flush_saves(self) -> None:
        if self.saves:
            self.db.execute(SAVE, (_json_array(self.saves.values()),))
            self.saves.clear()


def _chunks(ids: list[str], limit: int) -> Iterable[str]:
    """`ids` comma-separated, in pieces of at most `limit` bytes (ids are short ASCII)."""
    piece: list[str] = []
    size = 0
    for task_id in ids:
        if piece and size + len(task_id) + 1 > limit:
            yield ",".join(piece)
            piece, size = [], 0
        piece.append(task_id)
        size += len(task_id) + 1
    if piece:
        yield ",".join(piece)


#: Per op type: the `_Statements` method that writes it.
_APPLY: dict[type, Callable[[_Statements, Any], Result]] = {
    _Save: _Statements.save_task,
    _NewTasks: _Statements.insert_tasks,
    ConfigureQueue: _Statements.configure_queue,
    SavePool: _Statements.save_pool,
    DeletePool: _Statements.delete_pool,
    _Events: _Statements.append_events,
    MarkDelivered: _Statements.mark_delivered,
    _Report: _Statements.record_stats,
}


# -- the aggregates' reads (writes: `_writes.py`) -----------------------------------


class _Tasks(TaskWrites):
    _store: PostgresStore

    async def get(self, task_id: str) -> Task | None:
        row = await self._store._read(lambda db: db.execute(
            f"{SELECT} WHERE id = %s", (task_id,)).fetchone())
        return None if row is None else _task(row)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        wanted = list(dict.fromkeys(task_ids))
        if not wanted:
            return []
        rows = await self._store._read(lambda db: db.execute(
            f"{SELECT} WHERE id = ANY(%s)", (wanted,)).fetchall())
        return [_task(r) for r in rows]

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        where, args = [], []
        if name is not None:
            where.append("name = %s")
            args.append(name)
        if state is not None:
            where.append("state = %s")
            args.append(state.value)
        query = SELECT
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY seq DESC LIMIT %s"
        rows = await self._store._read(
            lambda db: db.execute(query, (*args, limit)).fetchall())  # type: ignore[arg-type]
        return [_task(r) for r in rows]

    async def unfinished(self) -> list[Task]:
        rows = await self._store._read(lambda db: db.execute(
            f"{SELECT} WHERE finished IS NULL ORDER BY seq").fetchall())
        return [_task(r) for r in rows]

    async def unfinished_of(self, ids: list[str]) -> list[Task]:
        """Those of `ids` not final yet (the tasks a follower announced), in order."""
        rows = await self._store._read(lambda db: db.execute(
            f"{SELECT} WHERE id = ANY(%s::text[]) AND finished IS NULL ORDER BY seq",
            (ids,)).fetchall())
        return [_task(r) for r in rows]

    async def purge(self, finished_before: float) -> int:
        # On a pool connection, outside group commit: a large delete must not hold up
        # the hot path, and nothing else commits with it.
        def delete(db: psycopg.Connection) -> int:
            return db.execute("DELETE FROM tasks WHERE finished IS NOT NULL AND finished < %s",
                              (finished_before,)).rowcount
        return await self._store._read(delete)


class _Queues(QueueWrites):
    _store: PostgresStore

    async def configurations(self) -> dict[str, bytes]:
        rows = await self._store._read(lambda db: db.execute(
            "SELECT queue, configuration FROM queue_configurations").fetchall())
        return {queue: bytes(configuration) for queue, configuration in rows}


def _pool(row: tuple[Any, ...]) -> PoolRecord:
    (id_, provider, description, config, owner, email, created, modified) = row
    return PoolRecord(id_, provider, description, bytes(config), owner, bool(email),
                      created, modified)


class _Pools:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def all(self) -> list[PoolRecord]:
        # COLLATE "C": ordered by code point, as SQLite and Python order them
        rows = await self._store._read(lambda db: db.execute(
            f"SELECT {POOL_COLUMNS} FROM worker_pools ORDER BY worker_pool_id COLLATE \"C\""
        ).fetchall())
        return [_pool(r) for r in rows]

    async def get(self, worker_pool_id: str) -> PoolRecord | None:
        row = await self._store._read(lambda db: db.execute(
            f"SELECT {POOL_COLUMNS} FROM worker_pools WHERE worker_pool_id = %s",
            (worker_pool_id,)).fetchone())
        return None if row is None else _pool(row)


class _Outbox:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def read(self, after: int, limit: int) -> list[OutboxRow]:
        rows = await self._store._read(lambda db: db.execute(
            "SELECT seq, exchange, routing_key, body, at FROM outbox WHERE seq > %s "
            "ORDER BY seq LIMIT %s", (after, limit)).fetchall())
        return [OutboxRow(seq, exchange, key, bytes(body), at)
                for seq, exchange, key, body, at in rows]

    async def delivered(self) -> int:
        row = await self._store._read(lambda db: db.execute(
            "SELECT delivered FROM outbox_cursor WHERE id = 1").fetchone())
        assert row is not None  # the migration inserted it
        return int(row[0])

    async def purge(self, before: float) -> int:
        def delete(db: psycopg.Connection) -> int:
            return db.execute(
                "DELETE FROM outbox WHERE at < %s AND seq <= "
                "(SELECT delivered FROM outbox_cursor WHERE id = 1)", (before,)).rowcount
        return await self._store._read(delete)


class _Stats:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def record(self, report: RecordStats) -> None:
        await self._store.commit(report)

    async def buckets(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                      workers: Sequence[str] | None = None,
                      by_variant: bool = True) -> list[StatBucket]:
        if not metrics or (workers is not None and not workers):
            return []
        p = plan(since, until, interval)
        where = "s.metric = ANY(%(metrics)s::text[])"
        reports = ""
        if workers is not None:
            where += " AND s.worker = ANY(%(workers)s::text[])"
            reports = " AND x.worker = ANY(%(workers)s::text[])"
        variant = "s.variant" if by_variant else "''::text"
        parts = []
        args: dict[str, object] = {"metrics": list(metrics), "interval": interval,
                                   "workers": None if workers is None else list(workers)}
        for i, (span, lo, hi) in enumerate(p.rollups):
            parts.append(f"SELECT s.worker, s.metric, {variant} AS variant, "
                         "r.start / %(interval)s::bigint * %(interval)s::bigint AS b, "
                         "r.count AS c, r.total AS t, r.low AS l, r.high AS h "
                         f"FROM stat_series s JOIN stat_rollups r ON r.span = %(span{i})s::bigint "
                         f"AND r.series = s.id AND r.start >= %(lo{i})s::bigint "
                         f"AND r.start < %(hi{i})s::bigint WHERE {where} AND "
                         + ("s.variant != ''" if by_variant else "s.variant IN ('', 'total')"))
            args.update({f"span{i}": span, f"lo{i}": lo, f"hi{i}": hi})
        for i, (a, b) in enumerate(p.raw):
            # the edges: one range of reports (of the workers asked), their readings
            # matched to the series by id
            parts.append(f"SELECT s.worker, s.metric, {variant} AS variant, "
                         "x.ts / %(interval)s::bigint * %(interval)s::bigint AS b, 1::bigint AS c, "
                         f"x.value AS t, x.value AS l, x.value AS h FROM {READINGS} "
                         f"WHERE x.ts BETWEEN %(a{i})s::bigint AND %(b{i})s::bigint{reports}) x "
                         f"JOIN stat_series s ON s.id = x.series WHERE {where}")
            args.update({f"a{i}": a, f"b{i}": b})
        query = ("SELECT worker, metric, variant, b, sum(c)::bigint, sum(t), min(l), max(h) "
                 f"FROM ({' UNION ALL '.join(parts)}) u GROUP BY worker, metric, variant, b")
        rows = await self._store._read(
            lambda db: db.execute(query, args).fetchall())  # type: ignore[arg-type]
        order = {m: i for i, m in enumerate(metrics)}
        rows.sort(key=lambda r: (r[0], order[r[1]], r[2], r[3]))
        return [StatBucket(*r) for r in rows]

    async def series(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                     workers: Sequence[str] | None = None, by_variant: bool = True,
                     aggregations: Collection[str] = AGGREGATIONS) -> list[StatSeries]:
        return as_series(await self.buckets(since=since, until=until, interval=interval,
                                            metrics=metrics, workers=workers,
                                            by_variant=by_variant), aggregations)

    async def activity(self, *, since: int, until: int, interval: int) -> list[ActivityBucket]:
        p = plan(since, until, interval)
        parts, args = [], {"interval": interval}
        for i, (span, lo, hi) in enumerate(p.rollups):
            parts.append("SELECT start / %(interval)s::bigint * %(interval)s::bigint AS b, "
                         f"worker, active FROM stat_activity WHERE span = %(span{i})s::bigint "
                         f"AND start >= %(lo{i})s::bigint AND start < %(hi{i})s::bigint")
            args.update({f"span{i}": span, f"lo{i}": lo, f"hi{i}": hi})
        for i, (a, b) in enumerate(p.raw):
            parts.append("SELECT ts / %(interval)s::bigint * %(interval)s::bigint AS b, worker, "
                         "task IS NOT NULL AS active FROM stat_reports "
                         f"WHERE ts BETWEEN %(a{i})s::bigint AND %(b{i})s::bigint")
            args.update({f"a{i}": a, f"b{i}": b})
        query = ("SELECT b, count(DISTINCT worker), count(DISTINCT worker) FILTER (WHERE active) "
                 f"FROM ({' UNION ALL '.join(parts)}) u GROUP BY b ORDER BY b")
        rows = await self._store._read(
            lambda db: db.execute(query, args).fetchall())  # type: ignore[arg-type]
        return [ActivityBucket(*r) for r in rows]

    async def metric_keys(self, workers: Sequence[str] | None = None) -> list[str]:
        # The series with rollups: every reading is in them (written in its transaction)
        # for as long as raw readings are kept (the registry purges rollups no sooner),
        # and longer.
        if workers is not None and not workers:
            return []
        where = "" if workers is None else "AND s.worker = ANY(%(workers)s::text[])"
        query = ("SELECT DISTINCT s.metric COLLATE \"C\" FROM stat_series s WHERE EXISTS "
                 "(SELECT 1 FROM stat_rollups r WHERE r.span = ANY(%(spans)s::bigint[]) "
                 f"AND r.series = s.id) {where} ORDER BY 1")
        args = {"spans": list(SPANS), "workers": None if workers is None else list(workers)}
        rows = await self._store._read(
            lambda db: db.execute(query, args).fetchall())  # type: ignore[arg-type]
        return [metric for (metric,) in rows]

    async def purge(self, before: int, rollups_before: Mapping[int, int] | None = None) -> int:
        # On a pool connection, like the tasks' purge; series rows stay.
        cutoff = raw_cutoff(before)

        def delete(db: psycopg.Connection) -> int:
            with db.transaction():
                # the readings purged: the keys of the reports' objects
                row = db.execute("WITH d AS (DELETE FROM stat_reports WHERE ts < %s RETURNING "
                                 "readings) SELECT coalesce(sum((SELECT count(*) FROM "
                                 "jsonb_object_keys(d.readings))), 0)::bigint FROM d",
                                 (cutoff,)).fetchone()
                n = 0 if row is None else int(row[0])
                for span, until in (rollups_before or {}).items():
                    db.execute("DELETE FROM stat_rollups WHERE span = %s AND series IN "
                               "(SELECT id FROM stat_series) AND start < %s", (span, until))
                    db.execute("DELETE FROM stat_activity WHERE span = %s AND start < %s",
                               (span, until))
            return n
        return await self._store._read(delete)


# -- the store --------------------------------------------------------------------


def _readable(db: psycopg.Connection) -> bool:
    """Whether the server sent anything on `db`, without waiting."""
    readable, _, _ = select.select([db.fileno()], [], [], 0)
    return bool(readable)


def describe_url(url: str, schema: str | None = None) -> str:
    """`url` without its password (for messages and logs), and the schema if any."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    where = (f"postgresql://{params.get('user', '')}@{params.get('host', '')}"
             f"{':' + str(params['port']) if 'port' in params else ''}/"
             f"{params.get('dbname', '')}")
    return where if schema is None else f"{where} (schema {schema})"


class PostgresStore(HandOver):
    """A `Store` in a PostgreSQL database (its tables in `schema`, else in the search_path)."""

    def __init__(self, url: str, *, schema: str | None = None, readers: int = 4) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must be a lower-case identifier, not {schema!r}")
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.url = url
        self.schema = schema
        self.readers = readers
        self.where = describe_url(url, schema)
        self._connect_args: dict[str, Any] = {"connect_timeout": 10,
                                              "application_name": "workyard"}
        if schema is not None:
            self._connect_args["options"] = f"-c search_path={schema}"
        self._pending: list[Unit] = []
        self._wake = trio.Event()
        self._closed = False
        self._writer: psycopg.Connection | None = None
        self._pool: ConnectionPool | None = None
        self._read_limiter = trio.CapacityLimiter(readers)
        self.tasks = _Tasks(self)
        self.queues = _Queues(self)
        self.pools = _Pools(self)
        self.outbox = _Outbox(self)
        self.stats = _Stats(self)
        #: the series and shapes of committed reports (`_Statements._shapes`)
        self._known = _Known()
        self.commits = 0  # transactions committed: the group-commit ratio is writes / commits
        #: told (units of work, seconds) after each transaction, e.g. by /metrics
        self.on_commit: Callable[[int, float], None] | None = None
        #: Several hubs on one database (`cluster.Election` sets these). While this hub
        #: leads, `fence` is its term: each unit handed over carries it, each transaction
        #: checks it first and fails whole (`Deposed`) once another hub was elected,
        #: telling `on_deposed`. Units handed over while it follows announce the tasks
        #: they insert on `channel`, for the leader.
        self.fence: int | None = None
        self.channel: str | None = None
        self.on_deposed: Callable[[int, str], None] | None = None

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, **self._connect_args)

    def _open_writer(self) -> psycopg.Connection:
        """The writer's connection, the schema created and migrated."""
        db = self._connect()
        try:
            if self.schema is not None:
                with db.transaction():  # concurrent CREATE SCHEMA IF NOT EXISTS can clash
                    db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
                    db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.schema)))
            refuse_newer(db, self.where)  # before anything writes to a schema we do not know
            migrate(db, self.where)
        except BaseException:
            db.close()
            raise
        return db

    def _open_pool(self) -> ConnectionPool:
        pool = ConnectionPool(self.url, min_size=1, max_size=self.readers, open=False,
                              kwargs={**self._connect_args, "autocommit": True},
                              name="workyard-readers")
        pool.open(wait=True, timeout=10)
        return pool

    def _open(self) -> None:
        try:
            self._writer = self._open_writer()
            self._pool = self._open_pool()
        except psycopg.Error as exc:
            self._close()
            raise StoreError(f"{self.where}: cannot open the store: {exc}".strip()) from exc
        except PoolTimeout as exc:
            self._close()
            raise StoreError(f"{self.where}: cannot open the store: {exc}") from exc
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- the writer actor -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(self._open)
        self._closed = False
        try:
            task_status.started()
            while True:
                await self._wake.wait()
                # One more scheduler round, so that writes handed over by tasks that
                # run in the same round as this wake-up share this commit.
                await trio.lowlevel.checkpoint()
                self._wake = trio.Event()
                batch, self._pending = self._pending, []
                # A batch taken off the queue is committed even if we are cancelled
                # meanwhile: otherwise neither this loop nor the flush below writes it.
                with trio.CancelScope(shield=True):
                    await self._commit(batch)
        finally:
            # Cancelled: flush what callers already handed over, then close.
            with trio.CancelScope(shield=True):
                self._closed = True
                if self._pending:
                    batch, self._pending = self._pending, []
                    await self._commit(batch)
                await trio.to_thread.run_sync(self._close)

    async def _commit(self, batch: list[Unit]) -> None:
        started = time.perf_counter()
        try:
            await trio.to_thread.run_sync(self._write, batch)
        except Exception as exc:  # noqa: BLE001 - connection lost, database down: fail every unit
            log.error("store transaction failed (%s): %s", self.where, exc)
            if isinstance(exc, Deposed) and exc.term is not None and \
                    self.on_deposed is not None:
                self.on_deposed(exc.term, str(exc))
            for unit in batch:
                if unit.error is None:
                    unit.error, unit.results = exc, []
        else:
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

    def _connection(self) -> psycopg.Connection:
        """The writer's connection, opened again if it was lost. An idle connection the
        server sent something on has been closed by it (terminated, restarted; the
        writer never LISTENs): that is found without a round trip, so the next batch
        does not fail on it."""
        db = self._writer
        if db is None or db.closed or db.broken or _readable(db):
            if db is not None:
                db.close()
                log.warning("store connection lost (%s): connecting again", self.where)
            self._writer = None
            self._writer = db = self._connect()
        return db

    def _write(self, batch: list[Unit]) -> None:
        """One transaction for the whole batch, on a worker thread. A leader's units
        carry its term, checked first (`FENCE`); a follower's announce their inserts."""
        fence = max((u.fence for u in batch if u.fence is not None), default=None)
        for unit in batch:
            if unit.fence is not None and unit.fence != fence:  # handed over in an older term
                unit.error = Deposed(f"term {unit.fence} of this hub's leadership ended")
        db = self._connection()
        written = _Known()
        try:
            with db.pipeline(), db.transaction():
                if fence is not None:
                    db.execute(FENCE, (fence,))
                self._apply(db, batch, self.channel, written)
        except Exception as exc:
            if db.broken or db.closed:
                raise  # the connection, not a unit: the whole batch failed
            _refuse_if_fenced(exc, fence, self.where)
            # Rolled back whole: find the failing units, commit the others.
            written = _Known()
            try:
                with db.transaction():
                    if fence is not None:
                        db.execute(FENCE, (fence,))
                    self._apply_one_by_one(db, batch, self.channel, written)
            except Exception as again:
                _refuse_if_fenced(again, fence, self.where)
                raise
        self._known.absorb(written)

    def _apply_one_by_one(self, db: psycopg.Connection, batch: list[Unit],
                          channel: str | None, written: _Known) -> None:
        """Apply each unit in its own SAVEPOINT; a unit that raises is rolled back alone
        (and so are the series it added)."""
        for unit in batch:
            if unit.error is not None:
                continue
            own = _Known(parent=written)
            try:
                with db.transaction():  # a savepoint
                    self._apply(db, [unit], channel, own)
            except Exception as exc:  # any failure is this unit's alone
                if db.broken or db.closed:
                    raise
                unit.error, unit.results = exc, []
            else:
                written.absorb(own)

    def _apply(self, db: psycopg.Connection, units: list[Unit], channel: str | None,
               written: _Known) -> None:
        """Apply `units` in order, as few statements as the order allows; a follower's
        (no fence) inserts are announced on `channel`; the series and shapes they add
        go to `written`."""
        statements = _Statements(db, self._known, written)
        for unit in units:
            if unit.error is None:
                statements.channel = channel if unit.fence is None else None
                unit.results = [statements.apply(op) for op in unit.ops]
        statements.flush()

    # -- handing over writes --------------------------------------------------------

    def _prepare(self, unit: Unit) -> Unit:
        unit.fence = self.fence
        try:
            for change in unit.changes:
                prepare = _PREPARE.get(type(change))
                if prepare is None:
                    raise TypeError(f"unknown change {change!r}")
                unit.ops.append(prepare(change))
        except Exception as exc:  # noqa: BLE001 - the unit fails alone, reported as usual
            unit.error = exc
        return unit

    async def _read(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run `fn` on a pool connection (autocommit): reads, and the rare writes (purge)
        that need not wait for, or slow down, a group commit."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"the store {self.where} is not running")

        def read() -> T:
            try:
                with pool.connection(timeout=POOL_WAIT) as db:
                    return fn(db)
            except (psycopg.OperationalError, PoolTimeout):
                # An idle connection the server dropped (the pool discards it), or none
                # to be had: after an outage the pool reconnects with a growing backoff,
                # so do not wait for it, connect once for this read.
                with psycopg.connect(self.url, autocommit=True, **self._connect_args) as db:
                    return fn(db)

        try:
            return await trio.to_thread.run_sync(read, limiter=self._read_limiter)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"the store {self.where} could not read: {exc}".strip()) from exc
