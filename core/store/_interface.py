"""The store seam: one narrow interface per aggregate, and writes as data.

The hub talks to the store through `Store`, which has one attribute per aggregate —
`tasks` (`TaskStore`), `queues` (`QueueStore`), `pools`, `outbox` and `stats`
(`StatsStore`, machine statistics of the worker registry) — and one way to write:
`commit(*changes)`. A change is a plain value (`InsertTasks`, `StartAttempt`,
`FinishTask`, `ConfigureQueue`, `RecordStats`, ...); the store's writer applies them. Several changes
given to one `commit` are applied atomically, so a later change type (an event in
an outbox, a worker registration) can commit in the same transaction as the task
change it reports. The per-aggregate write methods are thin sugar over `commit`
(or, for the hot path, `commit_soon`).

Worker pools (`pools`, `PoolStore`: `SavePool`, `DeletePool`) and the event outbox
(`outbox`, `OutboxStore`: `AppendEvents`, `MarkDelivered`) are aggregates of their own:
a pool change and the event that reports it go to one `commit`, so an event is stored
exactly when its change is. Later aggregates add theirs the same way.

A unit of work (one `commit` call, or one `commit_soon` change) that cannot be
applied fails alone with a `StoreError`; the other units of the same group commit
are committed, and the writer keeps serving.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import trio

from .._errors import Unavailable
from .._model import Task, TaskState

__all__ = [
    "ActivityBucket",
    "AppendEvents",
    "Change",
    "ConfigureQueue",
    "DeletePool",
    "FinishTask",
    "InsertTasks",
    "MarkDelivered",
    "OnCommit",
    "OutboxEvent",
    "OutboxRow",
    "OutboxStore",
    "PoolRecord",
    "PoolStore",
    "QueueStore",
    "RecordStats",
    "Result",
    "SavePool",
    "StartAttempt",
    "StatBucket",
    "StatSeries",
    "StatsStore",
    "Store",
    "StoreError",
    "TaskStore",
]

OnCommit = Callable[[Task], None]


class StoreError(Unavailable):
    """The store could not carry out a write (or is not running); nothing of it was kept.
    A client is told to try again later (503)."""


# -- changes ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InsertTasks:
    """Store new tasks. Its result is their ids, in order: a task whose idempotency key
    is already stored (or repeated earlier in the same change) is not inserted and
    gets the id of the task holding that key."""

    tasks: Sequence[Task]


@dataclass(frozen=True, slots=True)
class StartAttempt:
    """A task was dispatched: store its state (running) and its attempts, so a hub that
    crashes now finds the attempt it cut off."""

    task: Task


@dataclass(frozen=True, slots=True)
class FinishTask:
    """A task reached a final state: store it (state, finished, result, error, attempts)."""

    task: Task


@dataclass(frozen=True, slots=True)
class ConfigureQueue:
    """Store a queue's configuration (a JSON object), replacing the previous one."""

    queue: str
    configuration: bytes


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A worker pool as stored: Taskcluster's fields, `config` as JSON text, times in
    wall-clock seconds."""

    worker_pool_id: str
    provider_id: str
    description: str
    config: bytes
    owner: str
    email_on_error: bool
    created: float
    last_modified: float


@dataclass(frozen=True, slots=True)
class SavePool:
    """Store a worker pool, replacing the one with the same id."""

    pool: PoolRecord


@dataclass(frozen=True, slots=True)
class DeletePool:
    """Remove a worker pool (nothing happens if it is not stored)."""

    worker_pool_id: str


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An event to publish: a topic exchange, a routing key and a JSON body."""

    exchange: str
    routing_key: str
    body: bytes
    at: float


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An event as stored, numbered in commit order (`seq`: increasing, never reused)."""

    seq: int
    exchange: str
    routing_key: str
    body: bytes
    at: float


@dataclass(frozen=True, slots=True)
class AppendEvents:
    """Add events to the outbox. Its result is their `seq` numbers, in order."""

    events: Sequence[OutboxEvent]


@dataclass(frozen=True, slots=True)
class MarkDelivered:
    """Every event up to `seq` is delivered: the relay's cursor moves there (never back)."""

    seq: int


@dataclass(frozen=True, slots=True)
class RecordStats:
    """One status report of a worker's machine: when (`ts`, milliseconds since the epoch),
    the task it was running (None: idle), and its readings as (metric, variant, value).
    A report without readings still counts for activity. A store keeps one reading per
    worker, metric, variant and millisecond: a repeat replaces it."""

    worker: str
    ts: int
    task: str | None = None
    readings: Sequence[tuple[str, str, float]] = ()


#: Every write the store knows. New aggregates add theirs here.
Change = (InsertTasks | StartAttempt | FinishTask | ConfigureQueue | SavePool | DeletePool
          | AppendEvents | MarkDelivered | RecordStats)

#: What `commit` gives back per change: the ids for `InsertTasks`, the seqs for
#: `AppendEvents`, None for the others.
Result = list[str] | list[int] | None


# -- one interface per aggregate ---------------------------------------------------


class TaskStore(Protocol):
    """Tasks: written when submitted, when dispatched and when final."""

    async def insert(self, tasks: Sequence[Task]) -> list[str]:
        """Store new tasks durably (`InsertTasks`); returns their ids."""
        ...

    def started(self, task: Task) -> None:
        """Record a dispatched attempt (`StartAttempt`) in the next group commit.
        Fire-and-forget: the hot path does not wait for it."""

    def finish(self, task: Task, then: OnCommit) -> None:
        """Store a final state (`FinishTask`) in the next group commit; call `then(task)`
        once it is durable. If the write fails it is logged and `then` is still called,
        so nobody waits forever for it."""

    async def get(self, task_id: str) -> Task | None: ...

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        """The stored tasks among `task_ids` (unknown ids are left out), in one read
        however many there are: a producer waiting for a whole batch."""
        ...

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        """Tasks matching the filters, newest (highest seq) first, at most `limit`."""
        ...

    async def unfinished(self) -> list[Task]:
        """Tasks not final, oldest first: what a restarted hub queues again. A task that
        was running shows its cut-off attempt (the last one, without `ended`)."""
        ...

    async def purge(self, finished_before: float) -> int:
        """Delete final tasks that finished before the given time; returns how many."""
        ...


class QueueStore(Protocol):
    """Queue configurations, set by an admin for polling workers."""

    async def configurations(self) -> dict[str, bytes]:
        """Every queue's stored configuration (a JSON object), by queue name."""
        ...

    async def configure(self, queue: str, configuration: bytes) -> None:
        """Store a queue's configuration durably (`ConfigureQueue`)."""
        ...


class PoolStore(Protocol):
    """Worker pools (Taskcluster's worker-manager), written with `SavePool`/`DeletePool`."""

    async def all(self) -> list[PoolRecord]:
        """Every stored pool, by id."""
        ...

    async def get(self, worker_pool_id: str) -> PoolRecord | None: ...


class OutboxStore(Protocol):
    """Events committed with the changes they report, until the relay has delivered them
    (and for the retention after, so a stream can replay them)."""

    async def read(self, after: int, limit: int) -> list[OutboxRow]:
        """Stored events with `seq` above `after`, in order, at most `limit`."""
        ...

    async def delivered(self) -> int:
        """The relay's cursor: every event up to this seq is delivered (0: none)."""
        ...

    async def purge(self, before: float) -> int:
        """Delete delivered events stored before the given time; returns how many."""
class StatBucket(NamedTuple):
    """The readings of one worker's metric variant in one time bucket: enough to pool
    buckets and variants exactly (avg = total / count)."""

    worker: str
    metric: str
    variant: str
    #: the bucket's start, ms since the epoch: `ts // interval * interval`
    start: int
    #: shadows tuple.count (mypy: an incompatible override); the field is public API, and
    #: mypy's maintainers say rename it or ignore (python/mypy#3950)
    count: int  # type: ignore[assignment]
    total: float
    low: float
    high: float


#: what a `StatSeries` can carry per bucket
AGGREGATIONS = ("avg", "min", "max")


class StatSeries(NamedTuple):
    """One series of buckets (a worker's metric, or one variant of it) with its arrays as
    JSON text, one element per bucket: built by the store, so that a long series costs
    no Python per point."""

    worker: str
    metric: str
    #: "" when the variants are pooled
    variant: str
    #: bucket starts, ms since the epoch, ascending
    dates: str
    avg: str
    low: str
    high: str


class ActivityBucket(NamedTuple):
    """Distinct workers that reported in one time bucket, and how many of them with a task."""

    start: int
    workers: int
    active: int


class StatsStore(Protocol):
    """Machine statistics: status reports and their readings, read back in epoch-aligned
    buckets. Times are integer milliseconds since the epoch; a range is `since <= ts <=
    until`; `interval` (ms, 1 or more) sizes the buckets."""

    async def record(self, report: RecordStats) -> None:
        """Store a report durably (`RecordStats`), in the next group commit."""
        ...

    async def buckets(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                      workers: Sequence[str] | None = None,
                      by_variant: bool = True) -> list[StatBucket]:
        """Per worker, metric (one of `metrics`), variant and bucket, in that order; only
        `workers` if given. With `by_variant` false, the variants of a metric are pooled
        into one row per bucket (its variant ""). Whole rollup spans (`_rollups.SPANS`)
        of the range are read from rollups, the rest from raw samples."""
        ...

    async def series(self, *, since: int, until: int, interval: int, metrics: Sequence[str],
                     workers: Sequence[str] | None = None, by_variant: bool = True,
                     aggregations: Collection[str] = AGGREGATIONS) -> list[StatSeries]:
        """The same buckets as `buckets`, one `StatSeries` per worker, metric and variant
        (or metric, with `by_variant` false), in that order. Only the arrays of
        `aggregations` (of "avg", "min", "max") are filled; the others are "[]"."""
        ...

    async def activity(self, *, since: int, until: int, interval: int) -> list[ActivityBucket]:
        """Per bucket with any report, oldest first."""
        ...

    async def metric_keys(self, workers: Sequence[str] | None = None) -> list[str]:
        """The metrics stored for `workers` (all if None), sorted."""
        ...

    async def purge(self, before: int, rollups_before: Mapping[int, int] | None = None) -> int:
        """Delete raw reports and readings older than `before` rounded down to the
        coarsest rollup span, and per rollup span in `rollups_before` its rollups that
        start before the given time; returns how many readings."""
        ...


class Store(Protocol):
    """A durable store: the aggregates, the writer actor, and the one way to write."""

    @property
    def tasks(self) -> TaskStore: ...

    @property
    def queues(self) -> QueueStore: ...

    @property
    def pools(self) -> PoolStore: ...

    @property
    def outbox(self) -> OutboxStore: ...

    @property
    def stats(self) -> StatsStore: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer actor: open (and migrate), serve writes until cancelled, flush, close."""

    async def commit(self, *changes: Change) -> list[Result]:
        """Apply `changes` atomically, in order; returns once they are durable, with one
        result per change. Raises `StoreError` (and keeps none of them) if any fails.
        Writes are applied in the order they were handed over, so `commit()` with no
        changes returns once everything handed over before it is durable."""
        ...

    def commit_soon(self, change: Change, then: Callable[[], None] | None = None) -> None:
        """Queue `change` for the next group commit without waiting; `then()` runs once it
        is durable, or once it has failed (the failure is logged)."""
