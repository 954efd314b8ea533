"""The hub: the imperative shell around the scheduler.

It owns the actors of a running hub, all children of one trio nursery:

* the store's writer (group commit),
* one actor per queue (task name) that keeps its deadlines — task timeouts and
  schedule timeouts — and applies them on time,
* a purge actor that drops old final tasks.

Worker connections are actors too (see `_ws.py` and `_polling.py`): each
attaches through `attach()` and, when it ends for any reason, its `finally`
calls `detach()`, which reschedules everything it held in the same step.

Every scheduler call returns effects; `_apply` carries them out: deliver a task
to its worker's link, persist a final state, announce it once it is durable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from .._model import Outcome, Subscription, Task, TaskState
from ..protocol import Answer
from ..scheduling import Dispatch, Effect, Finished, Policy, Requeued, Scheduler, WorkerState
from ..store import MemoryStore, Store

__all__ = ["Counts", "Hub", "Link"]

log = logging.getLogger("workyard.hub")


class Link(Protocol):
    """How the hub reaches one attached worker."""

    def deliver(self, task: Task) -> None:
        """Hand `task` to the worker's transport. Must not block."""

    def close(self, reason: str) -> None:
        """End the connection (another connection took over its worker id)."""


@dataclass(slots=True)
class Counts:
    """Answers and losses of one attached worker, or of one queue, counted from effects."""

    processed: int = 0
    failed: int = 0
    lost: int = 0


@dataclass(slots=True)
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    task: Task | None = None


class Hub:
    def __init__(
        self,
        store: Store | None = None,
        *,
        policy: Policy = Policy.EVEN,
        default_capacity: int = 32,
        retention: float = 24 * 3600.0,
        purge_interval: float = 600.0,
        wall_clock: Callable[[], float] = time.time,
        seed: int | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        self.scheduler = Scheduler(policy, seed=seed)  # seed: Policy.RANDOM's choices
        self.default_capacity = default_capacity
        self.retention = retention
        self.purge_interval = purge_interval
        #: what `now()` reads at start; the simulator passes `lambda: 0.0` so hub time
        #: equals trio's mock time exactly and runs are reproducible
        self._wall_clock = wall_clock
        self._links: dict[str, Link] = {}
        #: by attached worker id: "websocket" or "polling"
        self.transports: dict[str, str] = {}
        #: by attached worker id, since it attached
        self.worker_counts: dict[str, Counts] = {}
        #: by queue (task name), since the hub started
        self.queue_counts: dict[str, Counts] = {}
        self._draining = False
        self._waiters: dict[str, list[_Waiter]] = {}
        #: final in the scheduler, not yet durable
        self._finishing: dict[str, Task] = {}
        self._queue_wake: dict[str, trio.Event] = {}
        self._queue_until: dict[str, float] = {}
        self._nursery: trio.Nursery | None = None
        self._offset = 0.0
        #: `ws://host:port/work/queue` of the lean worker port, set by `serve` if it runs one
        self.worker_url: str | None = None

    # -- lifecycle --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the hub's actors until cancelled. Started once the store is recovered."""
        self._offset = self._wall_clock() - trio.current_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.store.run)
            self._nursery = nursery
            recovered = await self.store.tasks.unfinished()
            now = self.now()
            for task in recovered:
                self._submit(task, now)
            if recovered:
                log.info("recovered %d unfinished tasks from the store", len(recovered))
            nursery.start_soon(self._purge_actor)
            task_status.started(self)
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def start_soon(self, fn: Any, *args: Any) -> None:
        """Run another actor (e.g. a transport's liveness check) in the hub's nursery."""
        if self._nursery is None:
            raise RuntimeError("the hub is not running")
        self._nursery.start_soon(fn, *args)

    def now(self) -> float:
        """Wall-clock seconds, advancing with trio's clock (virtual under MockClock)."""
        return trio.current_time() + self._offset

    # -- producers --------------------------------------------------------------

    async def submit(self, tasks: list[Task]) -> list[str]:
        """Store tasks durably, then schedule them. Returns ids (existing ones for known keys)."""
        for task in tasks:
            self.scheduler.number(task)
        ids = await self.store.tasks.insert(tasks)
        now = self.now()
        for task, task_id in zip(tasks, ids):
            if task.id == task_id:
                self._submit(task, now)
        return ids

    def _submit(self, task: Task, now: float) -> None:
        self._apply(self.scheduler.submit(task, now=now))
        if task.schedule_timeout is not None:  # a dispatch watches its own deadline
            self._watch(task.name)

    async def get(self, task_id: str) -> Task | None:
        task = self.scheduler.tasks.get(task_id)
        if task is not None:
            return task
        if task_id in self._finishing:  # final but not yet durable: wait the few ms
            return await self.wait(task_id, math.inf)
        return await self.store.tasks.get(task_id)

    async def wait(self, task_id: str, timeout: float) -> Task | None:
        """The task once final, or as it stands after `timeout` seconds."""
        if task_id not in self.scheduler.tasks and task_id not in self._finishing:
            return await self.store.tasks.get(task_id)
        waiter = _Waiter()
        self._waiters.setdefault(task_id, []).append(waiter)
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[task_id]
        return waiter.task or self.scheduler.tasks.get(task_id) or await self.store.tasks.get(task_id)

    async def cancel(self, task_id: str) -> Task | None:
        """Cancel a task that is not final; returns it as stored (None if unknown)."""
        if task_id in self.scheduler.tasks:
            self._apply(self.scheduler.cancel(task_id, now=self.now()))
        return await self.get(task_id)

    # -- workers ----------------------------------------------------------------

    def attach(
        self,
        worker_id: str,
        subscriptions: Iterable[Subscription],
        link: Link,
        *,
        capacity: int | None = None,
        transport: str = "websocket",
    ) -> WorkerState:
        """Attach a worker; a previous connection with the same id is closed and detached.

        `capacity`: tasks in flight at once; None for the hub's default, 0 for no limit.
        """
        old = self._links.get(worker_id)
        if old is not None:
            log.info("worker %s reconnected; closing its previous connection", worker_id)
            old.close("replaced by a new connection with the same worker_id")
            self.detach(worker_id, old)
        if capacity is None:
            capacity = self.default_capacity
        effects = self.scheduler.attach(
            worker_id, subscriptions, now=self.now(), polling=transport == "polling",
            capacity=capacity or None,  # 0: unlimited
        )
        self._links[worker_id] = link
        self.transports[worker_id] = transport
        self.worker_counts[worker_id] = Counts()
        worker = self.scheduler.workers[worker_id]
        log.info("worker %s attached (%s): %s", worker_id, transport,
                 ", ".join(_describe(s) for s in worker.subscriptions))
        self._apply(effects)
        return worker

    def detach(self, worker_id: str, link: Link) -> None:
        """Detach a worker if `link` is still its connection; its tasks are rescheduled."""
        if self._links.get(worker_id) is not link:
            return
        del self._links[worker_id]
        del self.transports[worker_id]
        del self.worker_counts[worker_id]
        effects = self.scheduler.detach(worker_id, now=self.now())
        log.info("worker %s detached; %d outstanding tasks rescheduled", worker_id,
                 sum(isinstance(e, Requeued) for e in effects))
        self._apply(effects)

    def answer(self, worker_id: str, answer: Answer) -> str | None:
        """Apply a worker's answer. Returns why it was ignored, or None."""
        ok = answer.result == "done"
        effects, ignored = self.scheduler.complete(
            worker_id, answer.task_id, ok=ok, now=self.now(),
            result=answer.data if ok else None, error=answer.error,
        )
        if ignored is not None:
            log.info("ignored answer from %s for task %s: %s", worker_id, answer.task_id, ignored)
        self._apply(effects)
        return ignored

    def open_poll(self, worker_id: str, name: str, room: int) -> None:
        self._apply(self.scheduler.open_poll(worker_id, name, room, now=self.now()))

    def close_poll(self, worker_id: str, name: str) -> None:
        self.scheduler.close_poll(worker_id, name)

    # -- views ------------------------------------------------------------------

    def workers(self) -> list[dict[str, Any]]:
        views = []
        for w in self.scheduler.workers.values():
            counts = self.worker_counts.get(w.id, Counts())
            views.append({
                "id": w.id,
                "transport": self.transports.get(w.id, "websocket"),
                "subscriptions": [s.to_json() for s in w.subscriptions],
                "capacity": w.capacity,
                "outstanding": len(w.outstanding),
                "processed": counts.processed,
                "failed": counts.failed,
                "lost": counts.lost,
                "connected_since": w.connected,
            })
        return views

    def queues(self) -> dict[str, dict[str, int]]:
        views = {}
        for name, q in sorted(self.scheduler.queues.items()):
            counts = self.queue_counts.get(name, Counts())
            views[name] = {
                "queued": q.queued,
                "running": q.running,
                "workers": len(q.workers),
                "processed": counts.processed,
                "failed": counts.failed,
            }
        return views

    # -- effects ----------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if type(effect) is Dispatch:
                self._links[effect.worker].deliver(effect.task)
                self.store.tasks.started(effect.task)
                self._watch(effect.task.name)
            elif type(effect) is Finished:
                task = effect.task
                if effect.worker is not None:
                    self._count(task, effect.worker)
                self._finishing[task.id] = task
                self.store.tasks.finish(task, self._announce)
            elif type(effect) is Requeued:
                counts = self.worker_counts.get(effect.worker)
                if counts is not None:
                    counts.lost += 1
                log.info("task %s lost worker %s (%s); rescheduled", effect.task.id,
                         effect.worker, effect.outcome)
        if self.scheduler.pending and not self._draining:
            self._continue_drain()

    def _count(self, task: Task, worker: str) -> None:
        """Count the answer or the loss of `worker` that ended `task`."""
        outcome = next(a.outcome for a in reversed(task.attempts) if a.worker == worker)
        counts = self.worker_counts.get(worker)
        if outcome is Outcome.DONE or outcome is Outcome.ERROR:
            queue = self.queue_counts.setdefault(task.name, Counts())
            if outcome is Outcome.DONE:
                queue.processed += 1
            else:
                queue.failed += 1
            if counts is not None:
                if outcome is Outcome.DONE:
                    counts.processed += 1
                else:
                    counts.failed += 1
        elif counts is not None:  # lost, retries exhausted
            counts.lost += 1

    def _continue_drain(self) -> None:
        """The scheduler left a drain pending: finish it in steps, checkpointing between."""
        if self._nursery is None:  # not running: nobody else to let in
            while self.scheduler.pending:
                self._apply(self.scheduler.drain(now=self.now()))
            return
        self._draining = True
        self._nursery.start_soon(self._drain_actor)

    async def _drain_actor(self) -> None:
        try:
            while self.scheduler.pending:
                await trio.lowlevel.checkpoint()
                self._apply(self.scheduler.drain(now=self.now()))
        finally:
            self._draining = False

    def _announce(self, task: Task) -> None:
        """A final state is durable: show it."""
        self._finishing.pop(task.id, None)
        if task.state is TaskState.FAILED:
            log.info("task %s (%s) failed: %s", task.id, task.name, task.error)
        for waiter in self._waiters.pop(task.id, ()):
            waiter.task = task
            waiter.event.set()

    # -- actors -----------------------------------------------------------------

    def _watch(self, name: str) -> None:
        """Make sure queue `name`'s actor wakes for its earliest deadline."""
        if name not in self._queue_wake:
            if self._nursery is None:
                return
            self._queue_wake[name] = trio.Event()
            self._queue_until[name] = math.inf
            self._nursery.start_soon(self._queue_actor, name)
        deadline = self.scheduler.next_deadline(name)
        if deadline is not None and deadline < self._queue_until[name]:
            self._queue_wake[name].set()

    async def _queue_actor(self, name: str) -> None:
        """Keeps queue `name`'s deadlines: times out attempts, fails unscheduled tasks."""
        while True:
            deadline = self.scheduler.next_deadline(name)
            self._queue_until[name] = math.inf if deadline is None else deadline
            wake = self._queue_wake[name] = trio.Event()
            if deadline is None:
                await wake.wait()
            else:
                with trio.move_on_at(deadline - self._offset) as scope:
                    await wake.wait()
                if scope.cancelled_caught:  # due: don't let float rounding leave it pending
                    self._apply(self.scheduler.expire(name, now=max(self.now(), deadline)))
                    continue
            self._apply(self.scheduler.expire(name, now=self.now()))

    async def _purge_actor(self) -> None:
        while True:
            await trio.sleep(self.purge_interval)
            purged = await self.store.tasks.purge(self.now() - self.retention)
            if purged:
                log.info("purged %d final tasks older than %g s", purged, self.retention)


def _describe(sub: Subscription) -> str:
    if not sub.filter:
        return sub.name
    return sub.name + "(" + " ".join(f"{k}={','.join(sorted(v))}" for k, v in
                                     sorted(sub.filter.items())) + ")"
