"""What the dashboard and /metrics know beyond the read models, learnt from the hub's
event stream by one actor.

The read models (`worker_views`, `queue_views`, `hub.queue_stats`, sessions) answer
"how is it now"; this answers "how did it get here": reschedules by reason, dispatch
and end-to-end latency per queue, a per-second series of every queue, which workers
each queue's tasks went to, each worker's recent tasks and the last events.

It costs the dispatch path nothing but the stream's own append: the actor drains its
bounded buffer in batches and does a few dict operations per event. A `missed` event
(it fell behind) loses some samples, never a counter that the read models hold.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import msgspec
import trio

from .._model import TaskState
from ..hub import (
    Event,
    Hub,
    Missed,
    TaskCancelled,
    TaskDispatched,
    TaskFinished,
    TaskRequeued,
    TaskSubmitted,
    WorkerDetached,
)

__all__ = ["LATENCY_BUCKETS", "Histogram", "HistoryEntry", "Observer", "Point", "jain", "quantile"]

#: upper bounds (seconds) of the latency histograms' buckets; +Inf is implied
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0, 3600.0)
#: upper bounds of the store's transaction sizes (units of work per commit)
BATCH_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
#: seconds of per-second queue samples kept (ten minutes)
SERIES_POINTS = 600
#: recent tasks kept per worker, and workers kept
WORKER_HISTORY = 50
WORKERS_KEPT = 1000
#: events kept for the live feed
RECENT_EVENTS = 500
#: latencies kept per queue for the dashboard's percentiles
RECENT_LATENCIES = 1000


class Histogram:
    """Cumulative-on-read bucket counts, a sum and a count: what a Prometheus histogram
    exposes, at the cost of one bisect per observation."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it), +Inf last."""
        out, running = [], 0
        for bound, n in zip((*map(_bound, self.bounds), "+Inf"), self.counts):
            running += n
            out.append((bound, running))
        return out


def _bound(value: float) -> str:
    return repr(float(value))


def jain(values: list[int] | list[float]) -> float | None:
    """Jain's fairness index, (Σx)² / (n·Σx²): 1 when even, 1/n when one gets all."""
    square = sum(v * v for v in values)
    if not values or square == 0:
        return None
    return sum(values) ** 2 / (len(values) * square)


class Point(msgspec.Struct, array_like=True):
    """One second of a queue: what the queue page plots."""

    at: float
    queued: int
    running: int
    #: answers per second over this second
    done: float
    failed: float
    #: seconds from submission to first dispatch / to a final state, for the tasks
    #: dispatched / finished in this second (None: there were none)
    dispatch_p50: float | None
    dispatch_p99: float | None
    end_to_end_p50: float | None
    end_to_end_p99: float | None


class HistoryEntry(msgspec.Struct):
    """One attempt on a worker: what the worker page lists."""

    task: str
    name: str
    started: float
    ended: float | None = None
    #: done, failed, cancelled, or a reschedule reason (timeout, worker_lost, ...)
    outcome: str | None = None


@dataclass(slots=True)
class QueueWatch:
    reschedules: dict[str, int] = field(default_factory=dict)
    submitted: int = 0
    cancelled: int = 0
    dispatch: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    end_to_end: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    #: tasks dispatched to each worker (attached ones; dropped when a worker detaches)
    spread: dict[str, int] = field(default_factory=dict)
    series: deque[Point] = field(default_factory=lambda: deque(maxlen=SERIES_POINTS))
    recent_dispatch: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_LATENCIES))
    recent_end_to_end: deque[float] = field(
        default_factory=lambda: deque(maxlen=RECENT_LATENCIES))
    # this second's latencies, and the counters at the previous sample
    _second_dispatch: list[float] = field(default_factory=list)
    _second_end_to_end: list[float] = field(default_factory=list)
    _last: tuple[float, int, int] | None = None


@dataclass(slots=True)
class CommitWatch:
    """The store's transactions, as the store reports them (`SQLiteStore.on_commit`)."""

    seconds: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS))
    units: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))


class Observer:
    """The one subscriber behind the dashboard and /metrics."""

    def __init__(self, hub: Hub, *, buffer: int = 10_000, sample_every: float = 1.0) -> None:
        self.hub = hub
        self.buffer = buffer
        self.sample_every = sample_every
        self.queues: dict[str, QueueWatch] = {}
        self.workers: OrderedDict[str, deque[HistoryEntry]] = OrderedDict()
        self.recent: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.commits = CommitWatch()
        #: events this subscriber lost by falling behind
        self.missed = 0
        self._submitted: dict[str, float] = {}
        self._running: dict[str, HistoryEntry] = {}
        hook = getattr(hub.store, "on_commit", False)
        if hook is None:  # a store that reports its transactions, not yet watched
            hub.store.on_commit = self.commits_done  # type: ignore[attr-defined]

    def queue(self, name: str) -> QueueWatch:
        watch = self.queues.get(name)
        if watch is None:
            watch = self.queues[name] = QueueWatch()
        return watch

    def commits_done(self, units: int, seconds: float) -> None:
        self.commits.units.observe(units)
        self.commits.seconds.observe(seconds)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Follow the stream and sample every queue each `sample_every` seconds."""
        async with trio.open_nursery() as nursery:
            with self.hub.events.subscribe_batches(self.buffer) as batches:
                nursery.start_soon(self._sample_loop)
                task_status.started()
                async for batch in batches:
                    for event in batch:
                        self.apply(event)

    def apply(self, event: Event) -> None:
        kind = type(event)
        if kind is not Missed:
            self.recent.append(event)
        if kind is TaskSubmitted:
            assert isinstance(event, TaskSubmitted)
            self.queue(event.name).submitted += 1
            self._submitted[event.task] = event.at
        elif kind is TaskDispatched:
            assert isinstance(event, TaskDispatched)
            watch = self.queue(event.name)
            watch.spread[event.worker] = watch.spread.get(event.worker, 0) + 1
            if event.attempt == 1:
                submitted = self._submitted.get(event.task)
                if submitted is not None:
                    latency = max(0.0, event.at - submitted)
                    watch.dispatch.observe(latency)
                    watch.recent_dispatch.append(latency)
                    watch._second_dispatch.append(latency)
            entry = HistoryEntry(event.task, event.name, event.at)
            self._running[event.task] = entry
            self._history(event.worker).append(entry)
        elif kind is TaskRequeued:
            assert isinstance(event, TaskRequeued)
            reasons = self.queue(event.name).reschedules
            reasons[event.reason] = reasons.get(event.reason, 0) + 1
            self._end(event.task, event.at, event.reason.value)
        elif kind is TaskFinished:
            assert isinstance(event, TaskFinished)
            self._end(event.task, event.at, event.state.value)
            submitted = self._submitted.pop(event.task, None)
            if submitted is not None and event.state in (TaskState.DONE, TaskState.FAILED):
                watch = self.queue(event.name)
                latency = max(0.0, event.at - submitted)
                watch.end_to_end.observe(latency)
                watch.recent_end_to_end.append(latency)
                watch._second_end_to_end.append(latency)
        elif kind is TaskCancelled:
            assert isinstance(event, TaskCancelled)
            self.queue(event.name).cancelled += 1
            self._submitted.pop(event.task, None)
            self._end(event.task, event.at, "cancelled")
        elif kind is WorkerDetached:
            assert isinstance(event, WorkerDetached)
            for watch in self.queues.values():
                watch.spread.pop(event.worker, None)
        elif kind is Missed:
            assert isinstance(event, Missed)
            self.missed += event.count
            live = self.hub.scheduler.tasks
            self._submitted = {t: at for t, at in self._submitted.items() if t in live}
            self._running = {t: e for t, e in self._running.items() if t in live}

    def _history(self, worker: str) -> deque[HistoryEntry]:
        history = self.workers.get(worker)
        if history is None:
            history = self.workers[worker] = deque(maxlen=WORKER_HISTORY)
            while len(self.workers) > WORKERS_KEPT:
                self.workers.popitem(last=False)
        else:
            self.workers.move_to_end(worker)
        return history

    def _end(self, task: str, at: float, outcome: str) -> None:
        entry = self._running.pop(task, None)
        if entry is not None:
            entry.ended, entry.outcome = at, outcome

    async def _sample_loop(self) -> None:
        while True:
            await trio.sleep(self.sample_every)
            self.sample()

    def sample(self) -> None:
        """Append this second's point to every queue's series."""
        now = self.hub.now()
        queues = self.hub.scheduler.queues
        for name in set(queues) | set(self.hub.queue_stats) | set(self.queues):
            watch = self.queue(name)
            q = queues.get(name)
            stats = self.hub.queue_stats.get(name)
            processed = stats.processed if stats else 0
            failed = stats.failed if stats else 0
            done_rate = failed_rate = 0.0
            if watch._last is not None:
                then, was_processed, was_failed = watch._last
                elapsed = max(now - then, 1e-9)
                done_rate = (processed - was_processed) / elapsed
                failed_rate = (failed - was_failed) / elapsed
            watch._last = (now, processed, failed)
            dispatch, end_to_end = watch._second_dispatch, watch._second_end_to_end
            watch.series.append(Point(
                now, q.queued if q else 0, q.running if q else 0, done_rate, failed_rate,
                quantile(dispatch, 0.5), quantile(dispatch, 0.99),
                quantile(end_to_end, 0.5), quantile(end_to_end, 0.99)))
            watch._second_dispatch, watch._second_end_to_end = [], []


def quantile(values: list[float] | deque[float], q: float) -> float | None:
    """The `q` quantile (nearest rank) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]
