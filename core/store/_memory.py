"""The in-memory store: the test double for the store seam, used by tests and the simulator.

It keeps the semantics of the durable stores (idempotency keys, newest-first finds,
purge, atomic commits that fail alone, 64-bit integer columns) so a test that passes
on it means the same on SQLite; the contract suite (`tests/store/test_contract.py`)
holds both to that. Commits are instant: `commit_soon` applies the change and calls
`then` before it returns. Tasks are copied in and out, so the store holds what was
written, not the live object the scheduler keeps changing.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import msgspec
import trio

from .._model import Task, TaskState
from ._interface import (
    AGGREGATIONS,
    ActivityBucket,
    AppendEvents,
    Change,
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
from ._rollups import POOLED, SCALAR, Rollups, as_series, plan, raw_cutoff
from ._writes import QueueWrites, TaskWrites

__all__ = ["MemoryStore"]

log = logging.getLogger("workyard.store")

#: SQLite's INTEGER range; the memory store refuses what SQLite would.
_INT64 = range(-(2**63), 2**63)
_MISSING: Any = object()


def _copy(task: Task) -> Task:
    return msgspec.structs.replace(
        task, attrs=dict(task.attrs),
        attempts=[msgspec.structs.replace(a) for a in task.attempts])


def _check(task: Task) -> None:
    for column in ("seq", "priority", "retries"):
        value = getattr(task, column)
        if value not in _INT64:
            raise StoreError(f"task {task.id}: {column} {value} does not fit in 64 bits")


class _Undo:
    """What a failing commit must put back: (dict, key, old value) in write order."""

    def __init__(self) -> None:
        self.log: list[tuple[dict[Any, Any], Any, Any]] = []

    def set(self, d: dict[Any, Any], key: Any, value: Any) -> None:
        self.log.append((d, key, d.get(key, _MISSING)))
        d[key] = value

    def rollback(self) -> None:
        for d, key, old in reversed(self.log):
            if old is _MISSING:
                d.pop(key, None)
            else:
                d[key] = old


class _Tasks(TaskWrites):
    _store: MemoryStore

    async def get(self, task_id: str) -> Task | None:
        task = self._store.rows.get(task_id)
        return None if task is None else _copy(task)

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        rows = self._store.rows
        return [_copy(rows[i]) for i in dict.fromkeys(task_ids) if i in rows]

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        found = [t for t in self._store.rows.values()
                 if (name is None or t.name == name) and (state is None or t.state is state)]
        found.sort(key=lambda t: t.seq, reverse=True)
        return [_copy(t) for t in found[:limit]]

    async def unfinished(self) -> list[Task]:
        found = sorted((t for t in self._store.rows.values() if t.finished is None),
                       key=lambda t: t.seq)
        return [_copy(t) for t in found]

    async def purge(self, finished_before: float) -> int:
        rows, keys = self._store.rows, self._store.keys
        old = [t for t in rows.values() if t.finished is not None and t.finished < finished_before]
        for task in old:
            del rows[task.id]
            if task.key is not None:
                keys.pop(task.key, None)
        return len(old)


class _Queues(QueueWrites):
    _store: MemoryStore

    async def configurations(self) -> dict[str, bytes]:
        return dict(self._store.configurations)


class _Pools:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def all(self) -> list[PoolRecord]:
        return [self._store.pools_by_id[k] for k in sorted(self._store.pools_by_id)]

    async def get(self, worker_pool_id: str) -> PoolRecord | None:
        return self._store.pools_by_id.get(worker_pool_id)


class _Outbox:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def read(self, after: int, limit: int) -> list[OutboxRow]:
        rows = self._store.events
        start = bisect.bisect_right(rows, after, key=lambda r: r.seq)
        return rows[start:start + limit]

    async def delivered(self) -> int:
        return int(self._store.cursor["delivered"])

    async def purge(self, before: float) -> int:
        store = self._store
        cursor = int(store.cursor["delivered"])
        keep = [r for r in store.events if r.seq > cursor or r.at >= before]
        purged = len(store.events) - len(keep)
        store.events[:] = keep
        return purged


class _Stats:
    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def record(self, report: RecordStats) -> None:
        await self._store.commit(report)

    async def buckets(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                      workers: Sequence[str] | None = None,
                      by_variant: bool = True) -> list[StatBucket]:
        store, p = self._store, plan(since, until, interval)
        wanted, among = set(metrics), None if workers is None else set(workers)
        acc: dict[tuple[str, str, str, int], list[float]] = {}

        def add(worker: str, metric: str, variant: str, start: int, count: float,
                total: float, low: float, high: float) -> None:
            key = (worker, metric, variant if by_variant else "", start // interval * interval)
            a = acc.get(key)
            if a is None:
                acc[key] = [count, total, low, high]
            else:
                a[0] += count
                a[1] += total
                a[2] = min(a[2], low)
                a[3] = max(a[3], high)

        if p.rollups:
            for (span, (worker, metric, variant), start), r in store.rollups.items():
                if (metric in wanted and p.reads(span, start)
                        and (variant != POOLED if by_variant else variant in (POOLED, SCALAR))
                        and (among is None or worker in among)):
                    add(worker, metric, variant, start, *r)
        for (worker, metric, variant, ts), value in store.readings.items():
            if (metric in wanted and any(a <= ts <= b for a, b in p.raw)
                    and (among is None or worker in among)):
                add(worker, metric, variant, ts, 1, value, value, value)
        order = {m: i for i, m in enumerate(metrics)}
        return [StatBucket(w, m, v, start, int(a[0]), a[1], a[2], a[3])
                for (w, m, v, start), a in sorted(
                    acc.items(), key=lambda kv: (kv[0][0], order[kv[0][1]], *kv[0][2:]))]

    async def series(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                     workers: Sequence[str] | None = None, by_variant: bool = True,
                     aggregations: Collection[str] = AGGREGATIONS) -> list[StatSeries]:
        return as_series(await self.buckets(since=since, until=until, interval=interval,
                                            metrics=metrics, workers=workers,
                                            by_variant=by_variant), aggregations)

    async def activity(self, *, since: int, until: int, interval: int) -> list[ActivityBucket]:
        store, p = self._store, plan(since, until, interval)
        seen: dict[int, dict[str, bool]] = {}

        def add(worker: str, start: int, active: bool) -> None:
            bucket = seen.setdefault(start // interval * interval, {})
            bucket[worker] = bucket.get(worker, False) or active

        if p.rollups:
            for (span, start, worker), active in store.activity.items():
                if p.reads(span, start):
                    add(worker, start, active)
        for (worker, ts), task in store.reports.items():
            if any(a <= ts <= b for a, b in p.raw):
                add(worker, ts, task is not None)
        return [ActivityBucket(start, len(w), sum(w.values())) for start, w in sorted(seen.items())]

    async def metric_keys(self, workers: Sequence[str] | None = None) -> list[str]:
        store = self._store
        among = None if workers is None else set(workers)
        keys = [(w, m) for (w, m, _, _) in store.readings]
        keys += [(w, m) for (_, (w, m, _), _) in store.rollups]
        return sorted({metric for worker, metric in keys if among is None or worker in among})

    async def purge(self, before: int, rollups_before: Mapping[int, int] | None = None) -> int:
        store, cutoff = self._store, raw_cutoff(before)
        old = [key for key in store.readings if key[3] < cutoff]
        for key in old:
            del store.readings[key]
        for report in [k for k in store.reports if k[1] < cutoff]:
            del store.reports[report]
        for span, until in (rollups_before or {}).items():
            for rkey in [k for k in store.rollups if k[0] == span and k[2] < until]:
                del store.rollups[rkey]
            for akey in [k for k in store.activity if k[0] == span and k[1] < until]:
                del store.activity[akey]
        return len(old)


class MemoryStore:
    """A `Store` in dicts: instant commits, nothing survives the process."""

    def __init__(self) -> None:
        #: the stored tasks by id (copies), their keys, the queue configurations
        self.rows: dict[str, Task] = {}
        self.keys: dict[str, str] = {}
        self.configurations: dict[str, bytes] = {}
        #: worker pools by id; the outbox in seq order, its next seq and relay cursor
        self.pools_by_id: dict[str, PoolRecord] = {}
        self.events: list[OutboxRow] = []
        self.cursor: dict[str, Any] = {"delivered": 0, "next": 1}
        #: machine statistics: task by (worker, ts), value by (worker, metric, variant, ts)
        self.reports: dict[tuple[str, int], str | None] = {}
        self.readings: dict[tuple[str, str, str, int], float] = {}
        #: rollups: (count, total, low, high) by (span, (worker, metric, variant), start);
        #: whether a worker reported with a task by (span, start, worker)
        self.rollups: dict[tuple[int, tuple[str, str, str], int],
                           tuple[float, float, float, float]] = {}
        self.activity: dict[tuple[int, int, str], bool] = {}
        self.tasks = _Tasks(self)
        self.queues = _Queues(self)
        self.pools = _Pools(self)
        self.outbox = _Outbox(self)
        self.stats = _Stats(self)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def commit(self, *changes: Change) -> list[Result]:
        # No checkpoint: an instant commit must not add a scheduler round to every
        # submission the simulator makes.
        return self._commit(changes)

    def commit_soon(self, change: Change, then: Callable[[], None] | None = None) -> None:
        try:
            self._commit((change,))
        except StoreError:
            log.exception("store write failed: %s", type(change).__name__)
        if then is not None:
            then()

    def _commit(self, changes: Sequence[Change]) -> list[Result]:
        undo = _Undo()
        appended = len(self.events)
        try:
            results = [self._apply(change, undo) for change in changes]
        except Exception as exc:
            undo.rollback()
            del self.events[appended:]
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"the store could not commit: {exc!r}") from exc
        for change in changes:
            self.applied(change)
        return results

    def _roll(self, rollups: Rollups[tuple[str, str, str]], undo: _Undo) -> None:
        """Apply a report's rollup writes (after its raw readings)."""
        for key, (count, total, low, high) in rollups.add.items():
            r = self.rollups.get(key)
            if r is not None:
                count, total = r[0] + count, r[1] + total
                low, high = min(r[2], low), max(r[3], high)
            undo.set(self.rollups, key, (count, total, low, high))
        for akey, active in rollups.active.items():
            undo.set(self.activity, akey, self.activity.get(akey, False) or active)
        for span, start, worker in rollups.redo:  # a repeat: scan (rare, and in memory)
            values: dict[tuple[str, str, str], list[float]] = {}
            for (w, m, var, ts), v in self.readings.items():
                if w == worker and start <= ts < start + span:
                    values.setdefault((w, m, var), []).append(v)
                    if var != SCALAR:
                        values.setdefault((w, m, POOLED), []).append(v)
            for series, vs in values.items():
                undo.set(self.rollups, (span, series, start), (len(vs), sum(vs), min(vs), max(vs)))
            undo.set(self.activity, (span, start, worker), any(
                task is not None for (w, ts), task in self.reports.items()
                if w == worker and start <= ts < start + span))

    def applied(self, change: Change) -> None:
        """Called for every change once committed. A subclass may override it to watch
        the writes (the simulator does)."""

    def _apply(self, change: Change, undo: _Undo) -> Result:
        """Apply one change, recording in `undo` what it overwrote."""
        if type(change) is InsertTasks:
            ids = []
            for task in change.tasks:
                existing = self.keys.get(task.key) if task.key is not None else None
                if existing is not None:
                    ids.append(existing)
                    continue
                _check(task)
                if task.id in self.rows:
                    raise StoreError(f"task {task.id} is already stored")
                undo.set(self.rows, task.id, _copy(task))
                if task.key is not None:
                    undo.set(self.keys, task.key, task.id)
                ids.append(task.id)
            return ids
        if type(change) is StartAttempt or type(change) is FinishTask:
            task = change.task
            stored = self.rows.get(task.id)
            if stored is not None:  # like an UPDATE: a task not stored stays so
                undo.set(self.rows, task.id, msgspec.structs.replace(
                    stored, state=task.state, finished=task.finished, result=task.result,
                    error=task.error,
                    attempts=[msgspec.structs.replace(a) for a in task.attempts]))
            return None
        if type(change) is ConfigureQueue:
            undo.set(self.configurations, change.queue, bytes(change.configuration))
            return None
        if type(change) is SavePool:
            undo.set(self.pools_by_id, change.pool.worker_pool_id, change.pool)
            return None
        if type(change) is DeletePool:
            if change.worker_pool_id in self.pools_by_id:
                undo.set(self.pools_by_id, change.worker_pool_id, None)
                del self.pools_by_id[change.worker_pool_id]
            return None
        if type(change) is AppendEvents:
            seqs: list[int] = []
            for event in change.events:
                seq = int(self.cursor["next"])
                undo.set(self.cursor, "next", seq + 1)
                self.events.append(OutboxRow(seq, event.exchange, event.routing_key,
                                             bytes(event.body), event.at))
                seqs.append(seq)
            return seqs
        if type(change) is MarkDelivered:
            if change.seq > self.cursor["delivered"]:
                undo.set(self.cursor, "delivered", change.seq)
            return None
        if type(change) is RecordStats:
            if change.ts not in _INT64:
                raise StoreError(f"stats of {change.worker}: ts {change.ts} does not fit in 64 bits")
            w, ts = change.worker, change.ts
            values = [((w, metric, variant), float(value))
                      for metric, variant, value in change.readings]
            if not all(math.isfinite(value) for _, value in values):  # as the others: JSON
                raise StoreError(f"a reading of worker {w!r} is not a finite number")
            rollups: Rollups[tuple[str, str, str]] = Rollups()
            pooled = [((w, m, POOLED), value) for (_, m, v), value in values if v != SCALAR]
            if (w, ts) in self.reports:
                rollups.repeat(w, ts)
            else:
                rollups.report(w, ts, change.task, values + pooled)
            undo.set(self.reports, (w, ts), change.task)
            for (_, metric, variant), value in values:
                undo.set(self.readings, (w, metric, variant, ts), value)
            self._roll(rollups, undo)
            return None
        raise StoreError(f"unknown change {change!r}")
