"""The hub: the imperative shell around the scheduler.

It owns the actors of a running hub, all children of one trio nursery:

* the store's writer (group commit),
* one actor per queue (task name) that keeps its deadlines — task timeouts and
  schedule timeouts — and applies them on time,
* a drain actor that carries on a large dispatch in budgeted steps, so a worker
  taking a big backlog never holds the event loop for long,
* the liveness watch, which detaches workers that fell silent,
* a purge actor that drops old final tasks,
* the pools' ledger, which commits pool changes and worker events with their outbox
  events, in order (`_pools.py`).

Worker connections are actors too (see `transports`): each attaches through
`attach()`, which opens (or resumes) the worker's `Session`, and when it ends for
any reason its `finally` calls `detach()`, which reschedules everything it held in
the same step.

Every scheduler call returns effects; `_apply` carries them out — deliver a task
to its worker's link, record the attempt, persist a final state, announce it once
it is durable — and publishes each as an event on `events`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
import trio.lowlevel

from .._errors import Unavailable
from .._model import Attempt, Outcome, Subscription, Task, TaskState
from ..outbox import Feed
from ..protocol import Answer, check_declaration
from ..scheduling import UNCHANGED, Dispatch, Effect, Finished, Policy, Requeued, Scheduler
from ..store import MemoryStore, Store
from ._events import (
    EventStream,
    TaskCancelled,
    TaskDispatched,
    TaskFinished,
    TaskRequeued,
    TaskSubmitted,
    WorkerAttached,
    WorkerCapacityChanged,
    WorkerDetached,
)
from ._pools import Pools
from ._sessions import Link, Liveness, LivenessWatch, Session, Sessions

if TYPE_CHECKING:
    from ..cluster import Election, Term

__all__ = ["Hub", "QueueStats"]

log = logging.getLogger("workyard.hub")

REPLACED = "replaced by a new connection with the same worker_id"


@dataclass(slots=True, eq=False)
class _Waiter:
    """Someone waiting for tasks to be final and durable: woken once `needed` are."""

    needed: int = 1
    event: trio.Event = field(default_factory=trio.Event)
    #: the tasks it waits for that are final and durable, as they became so
    tasks: list[Task] = field(default_factory=list)

    def final(self, task: Task) -> None:
        self.tasks.append(task)
        if len(self.tasks) >= self.needed:
            self.event.set()


@dataclass(slots=True)
class QueueStats:
    """Answers per task name since the hub started."""

    processed: int = 0
    failed: int = 0


class Hub:
    def __init__(
        self,
        store: Store | None = None,
        *,
        policy: Policy = Policy.EVEN,
        default_capacity: int = 32,
        retention: float = 24 * 3600.0,
        purge_interval: float = 600.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 10.0,
        poll_liveness: float = 60.0,
        heartbeat_liveness: float = 600.0,
        drain_budget: int | None = 256,
        wall_clock: Callable[[], float] = time.time,
        seed: int | None = None,
        election: Election | None = None,
    ) -> None:
        self.store: Store = store if store is not None else MemoryStore()
        # seed: Policy.RANDOM's choices
        self._scheduling = (policy, seed, drain_budget)
        self.scheduler = Scheduler(policy, seed=seed, drain_budget=drain_budget)
        #: with several hubs on one database: this hub schedules only while elected
        #: (`leading`); meanwhile it stores submissions for the leader and reads from
        #: the store
        self.election = election
        self.leading = election is None
        self.default_capacity = default_capacity
        self.retention = retention
        self.purge_interval = purge_interval
        #: seconds between the pings WebSocket transports send to prove a worker alive
        self.ping_interval = ping_interval
        self.events = EventStream(self.now)
        self.sessions = Sessions()
        self._windows = {Liveness.CONNECTION: ping_interval + ping_timeout,
                         Liveness.POLL: poll_liveness, Liveness.HEARTBEAT: heartbeat_liveness}
        self.liveness = LivenessWatch(dict(self._windows), self.now, self._expire)
        self.queue_stats: dict[str, QueueStats] = {}
        #: committed outbox events, live (the embedded stream, the relay's wake-up)
        self.feed = Feed()
        self.pools = Pools(self.store, self.feed, self.now)
        #: what `now()` reads at start; the simulator passes `lambda: 0.0` so hub time
        #: equals trio's mock time exactly and runs are reproducible
        self._wall_clock = wall_clock
        self._waiters: dict[str, list[_Waiter]] = {}
        #: final in the scheduler, not yet durable
        self._finishing: dict[str, Task] = {}
        self._queue_wake: dict[str, trio.Event] = {}
        self._queue_until: dict[str, float] = {}
        self._drain_wake = trio.Event()
        #: the leader's actors (None while following)
        self._nursery: trio.Nursery | None = None
        #: the actors of the hub's whole run
        self._lifetime: trio.Nursery | None = None
        self._offset = 0.0
        #: `ws://host:port/work/queue` of the lean worker port, set by `serve` if it runs one
        self.worker_url: str | None = None
        #: the outbox relay `serve` runs (an `events.Relay`)
        self.relay: Any = None

    # -- lifecycle --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the hub's actors until cancelled. Started once the store is recovered
        (with an election: once this hub leads, or knows it follows)."""
        self._offset = self._wall_clock() - trio.current_time()
        async with trio.open_nursery() as nursery:
            self._lifetime = nursery
            await nursery.start(self.store.run)
            if self.election is None:
                await self._lead(task_status)
            else:
                await nursery.start(self.election.run)
                await self._take_turns(self.election, task_status)

    async def _lead(self, task_status: trio.TaskStatus[Hub] = trio.TASK_STATUS_IGNORED) -> None:
        """Schedule until cancelled: the leader's actors, and what was unfinished."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self.pools.load()
                await nursery.start(self.pools.run)
                nursery.start_soon(self._drain_actor)
                self.leading = True
                await self._recover()
                nursery.start_soon(self.liveness.run, self._trio_time)
                nursery.start_soon(self._purge_actor)
                if self.election is not None:
                    nursery.start_soon(self._take_announcements, self.election)
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                if self.election is not None:
                    self.leading = False
                self._nursery = None

    async def _take_turns(self, election: Election,
                          task_status: trio.TaskStatus[Hub]) -> None:
        """Follow until elected, lead until the term is lost, step down; again."""
        if election.term is None:
            task_status.started(self)  # a follower serves producers at once
            task_status = trio.TASK_STATUS_IGNORED
        while True:
            term = await election.elected()
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_cancel_when_lost, term, scope)
                        await nursery.start(self._lead)
                        task_status.started(self)
                        task_status = trio.TASK_STATUS_IGNORED
            except* Unavailable as failed:  # the store failed while taking over
                term.end(f"could not take over: {failed.exceptions[0]}")
            self._step_down(term)

    def _step_down(self, term: Term) -> None:
        """The term is lost: stop scheduling at once. Every worker is let go (its
        transport closes; it reconnects, through this hub's relay, to the new leader),
        and the scheduler starts empty: the next leader loads the tasks from the store."""
        log.warning("stopped scheduling: no longer the leader (%s)", term.reason)
        self.store.fence = None  # type: ignore[attr-defined]  # an Election's store has one
        reason = f"this hub is no longer the leader ({term.reason}); reconnect"
        for session in list(self.sessions.attached.values()):
            if session.link is not None:
                session.link.close(reason)
        policy, seed, budget = self._scheduling
        self.scheduler = Scheduler(policy, seed=seed, drain_budget=budget)
        self.sessions = Sessions()
        self.liveness = LivenessWatch(dict(self._windows), self.now, self._expire)
        self.pools = Pools(self.store, self.feed, self.now)
        self._queue_wake.clear()
        self._queue_until.clear()
        self._drain_wake = trio.Event()
        self._finishing.clear()
        for waiters in self._waiters.values():
            for waiter in waiters:  # they read the task from the store instead
                waiter.event.set()
        self._waiters.clear()

    async def _take_announcements(self, election: Election) -> None:
        """Schedule the tasks other hubs stored and announced (unknown ones only: the
        load at election already had those committed before it)."""
        async for ids in election.notices:
            fresh = [i for i in dict.fromkeys(ids) if i not in self.scheduler.tasks
                     and i not in self._finishing]
            if not fresh:
                continue
            tasks = await self.store.tasks.unfinished_of(fresh)  # type: ignore[attr-defined]
            now = self.now()
            for task in tasks:
                if task.id not in self.scheduler.tasks and task.id not in self._finishing:
                    self.events.publish(TaskSubmitted(task=task.id, name=task.name,
                                                      attrs=task.attrs, priority=task.priority))
                    self._submit(task, now)

    async def _recover(self) -> None:
        """Queue again what was not final when the hub last stopped. An attempt that was
        running then was cut off with its worker: it counts as a lost-worker attempt."""
        recovered = await self.store.tasks.unfinished()
        now = self.now()
        for task in recovered:
            if task.id in self.scheduler.tasks:  # submitted here since the election
                continue
            if task.state is TaskState.RUNNING and task.attempts:
                cut = task.attempts[-1]
                cut.ended, cut.outcome = now, Outcome.WORKER_LOST
                self.events.publish(TaskRequeued(task=task.id, name=task.name,
                                                 worker=cut.worker, reason=cut.outcome))
                if task.lost_attempts() > task.retries:
                    task.state, task.finished = TaskState.FAILED, now
                    task.error = (f"attempt {len(task.attempts)} was cut off by a hub restart "
                                  f"or failover ({cut.worker}); retries={task.retries} are "
                                  "exhausted")
                    self._apply([Finished(task, cut.worker)])
                    continue
            self._submit(task, now)
        if recovered:
            log.info("recovered %d unfinished tasks from the store", len(recovered))

    def start_soon(self, fn: Any, *args: Any) -> None:
        """Run another actor (e.g. a registry's sampler) for as long as the hub runs,
        leading or not."""
        if self._lifetime is None:
            raise RuntimeError("the hub is not running")
        self._lifetime.start_soon(fn, *args)

    def now(self) -> float:
        """Wall-clock seconds, advancing with trio's clock (virtual under MockClock)."""
        return trio.current_time() + self._offset

    def _trio_time(self, hub_time: float) -> float:
        return hub_time - self._offset

    # -- producers --------------------------------------------------------------

    async def submit(self, tasks: list[Task]) -> list[str]:
        """Store tasks durably, then schedule them. Returns ids (existing ones for known keys).
        A follower only stores them: the store announces them to the leader."""
        if self.election is not None:  # hubs number on one line: wall-clock microseconds
            self.scheduler.number_from(int(self._wall_clock() * 1e6))
        for task in tasks:
            self.scheduler.number(task)
        ids = await self.store.tasks.insert(tasks)
        if not self.leading:
            return ids
        now = self.now()
        events, live = self.events, self.scheduler.tasks
        for task, task_id in zip(tasks, ids):
            if task.id == task_id and task.id not in live:
                if events.watched:
                    events.publish(TaskSubmitted(task=task.id, name=task.name,
                                                 attrs=task.attrs, priority=task.priority))
                else:
                    events.skip()
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
        if not self.leading and self.election is not None:
            return await self._wait_in_store(task_id, timeout)
        if task_id not in self.scheduler.tasks and task_id not in self._finishing:
            return await self.store.tasks.get(task_id)
        waiter = self._wait_for([task_id], 1)
        try:
            with trio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            self._stop_waiting(waiter, [task_id])
        return (next(iter(waiter.tasks), None) or self.scheduler.tasks.get(task_id)
                or await self.store.tasks.get(task_id))

    async def wait_many(self, task_ids: list[str], timeout: float, at_least: int
                        ) -> tuple[list[Task], list[str], list[str]]:
        """Wait up to `timeout` seconds until `at_least` of `task_ids` (distinct) are
        final and durable; returns (those final by then, the ids not final yet, the
        unknown ids), each in the order of `task_ids`."""
        if not self.leading and self.election is not None:
            return await self._wait_many_in_store(task_ids, timeout, at_least)
        live = [i for i in task_ids if i in self.scheduler.tasks or i in self._finishing]
        known = set(live)
        # waiting before the read below, so that nothing that ends meanwhile is missed;
        # how many it needs is known after it
        waiter = self._wait_for(live, len(live) + 1)
        try:
            stored = await self.store.tasks.get_many([i for i in task_ids if i not in known])
            final = sum(t.state.final for t in stored)
            # only the live ones can still end here (unknown ids never will)
            waiter.needed = min(at_least, final + len(live)) - final
            if len(waiter.tasks) < waiter.needed and timeout > 0:
                with trio.move_on_after(timeout):
                    await waiter.event.wait()
        finally:
            self._stop_waiting(waiter, live)
        return _partition(task_ids, [*stored, *waiter.tasks], known)

    async def _wait_many_in_store(self, task_ids: list[str], timeout: float, at_least: int
                                  ) -> tuple[list[Task], list[str], list[str]]:
        """A follower's `wait_many`: read the store until enough are final (as
        `_wait_in_store`)."""
        deadline = trio.current_time() + timeout
        pause = 0.05
        while True:
            stored = await self.store.tasks.get_many(task_ids)
            left = deadline - trio.current_time()
            if self.leading:
                return await self.wait_many(task_ids, max(left, 0), at_least)
            # unknown ids never end: enough is at most the stored ones
            if sum(t.state.final for t in stored) >= min(at_least, len(stored)) or left <= 0:
                return _partition(task_ids, stored, set())
            await trio.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    def _wait_for(self, task_ids: list[str], needed: int) -> _Waiter:
        waiter = _Waiter(needed)
        for task_id in task_ids:
            self._waiters.setdefault(task_id, []).append(waiter)
        return waiter

    def _stop_waiting(self, waiter: _Waiter, task_ids: list[str]) -> None:
        for task_id in task_ids:
            waiters = self._waiters.get(task_id)
            if waiters is not None and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[task_id]

    async def _wait_in_store(self, task_id: str, timeout: float) -> Task | None:
        """A follower's long poll: the leader finishes the task, so read the store until
        it is final (every 50 ms at first, then less often, at most every second)."""
        deadline = trio.current_time() + timeout
        pause = 0.05
        while True:
            task = await self.store.tasks.get(task_id)
            left = deadline - trio.current_time()
            if task is None or task.state.final or left <= 0 or self.leading:
                return task if not self.leading else await self.wait(task_id, max(left, 0))
            await trio.sleep(min(pause, left))
            pause = min(pause * 2, 1.0)

    async def find(self, *, name: str | None, state: TaskState | None,
                   limit: int) -> list[Task]:
        """Tasks newest first, as they stand now (only the scheduler knows who runs what)."""
        live = self.scheduler.tasks
        if state is not None and not state.final:
            matching = (t for t in live.values()
                        if t.state is state and (name is None or t.name == name))
            return sorted(matching, key=lambda t: -t.seq)[:limit]
        stored = await self.store.tasks.find(name=name, state=state, limit=limit)
        return [live.get(t.id, t) for t in stored]

    async def cancel(self, task_id: str) -> Task | None:
        """Cancel a task that is not final; returns it as stored (None if unknown)."""
        if task_id in self.scheduler.tasks:
            self._apply(self.scheduler.cancel(task_id, now=self.now()))
        return await self.get(task_id)

    def pending_tasks(self) -> dict[str, int]:
        """Per worker pool, the waiting tasks only a new worker of that pool would take
        and no attached worker can take now (0 for a pool whose `config` declares no
        subscriptions, or that is being drained): what a provisioner scales on."""
        counts = dict.fromkeys(self.pools.pools, 0)
        counts.update(self.scheduler.demand(self.pools.offers()))
        return counts

    @property
    def unfinished(self) -> int:
        return len(self.scheduler.tasks)

    # -- workers ----------------------------------------------------------------

    def attach(
        self,
        worker_id: str,
        subscriptions: Iterable[Subscription],
        link: Link,
        *,
        capacity: int | None = None,
        transport: str = "websocket",
        liveness: Liveness = Liveness.CONNECTION,
        anonymous: bool = False,
        worker_pool: str | None = None,
        worker_group: str | None = None,
        window: float | None = None,
    ) -> Session:
        """Attach a worker and open (or resume) its session; a previous connection with
        the same id is closed and detached. Raises ValueError for a bad declaration
        (InvalidInput beyond the declaration limits, checked before anything changes).

        `capacity`: tasks in flight at once; None for the hub's default, 0 for no limit.
        Polling workers (`liveness=POLL`) take tasks only into polls they open.
        `worker_pool`/`worker_group`: the worker-manager pool it belongs to (which must
        exist and not be draining).
        A `HEARTBEAT` worker (a registry daemon, e.g. a ClearML agent) takes no tasks:
        it has no subscriptions and is not attached to the scheduler; it lives while
        it reports (`alive`), for `window` seconds if given (its registration timeout)
        instead of its kind's.
        """
        if not self.leading:
            raise Unavailable("this hub is not the leader: connect to the leader, or "
                              "through a hub that relays to it")
        subscriptions = check_declaration(subscriptions)
        worker_group = self.pools.admit(worker_pool, worker_group, worker_id)
        old = self.sessions.attached.get(worker_id)
        if old is not None and old.link is not None:
            log.info("worker %s reconnected; closing its previous connection", worker_id)
            old_link = old.link
            old_link.close(REPLACED)
            self.detach(worker_id, old_link, REPLACED)
        if capacity is None:
            capacity = self.default_capacity
        now = self.now()
        effects: list[Effect] = []
        subs: tuple[Subscription, ...] = ()
        if liveness is Liveness.HEARTBEAT:  # registry only: not the scheduler's
            if tuple(subscriptions):
                raise ValueError("a heartbeat worker takes no tasks: it has no subscriptions")
            capacity = 0
        else:
            effects = self.scheduler.attach(worker_id, subscriptions, now=now,
                                            capacity=capacity or None,  # 0: unlimited
                                            polling=liveness is Liveness.POLL)
            state = self.scheduler.workers[worker_id]
            subs, capacity = state.subscriptions, state.capacity
        session = self.sessions.get(worker_id)
        if session is None:
            session = Session(worker_id, transport, liveness, subs, capacity or None,
                              since=now, connected=now, last_seen=now,
                              anonymous=anonymous, window=window)
        else:  # the same worker again: its counters carry on
            session.transport, session.liveness = transport, liveness
            session.subscriptions, session.capacity = subs, capacity or None
            session.connected = session.last_seen = now
            session.holds = 0
        session.window = window
        session.link = link
        session.generation += 1
        session.worker_pool, session.worker_group = worker_pool, worker_group
        self.sessions.attach(session)
        self.liveness.watch(session)
        self.events.publish(WorkerAttached(
            worker=worker_id, transport=transport, capacity=session.capacity,
            subscriptions=[s.to_json() for s in subs]))
        if not anonymous:
            log.info("worker %s attached (%s): %s", worker_id, transport,
                     ", ".join(_describe(s) for s in subs) or "no tasks")
        self.pools.joined(session)
        self._apply(effects)
        return session

    def detach(self, worker_id: str, link: Link, reason: str = "connection closed", *,
               lost: bool = False) -> None:
        """Detach a worker if `link` is still its connection; its tasks are rescheduled.
        `lost`: it vanished (no proof of life) rather than leaving."""
        session = self.sessions.attached.get(worker_id)
        if session is None or session.link is not link:
            return
        effects = self.scheduler.detach(worker_id, now=self.now())
        self.sessions.detach(session)
        requeued = sum(type(e) is Requeued for e in effects)
        self.events.publish(WorkerDetached(worker=worker_id, reason=reason, requeued=requeued))
        self.pools.left(session, reason, lost=lost)
        if not session.anonymous or requeued:
            log.info("worker %s detached (%s); %d outstanding tasks rescheduled", worker_id,
                     reason, requeued)
        self._apply(effects)

    def update(self, worker_id: str, *, subscriptions: Iterable[Subscription] | None = None,
               capacity: Any = UNCHANGED) -> None:
        """Change an attached worker's subscriptions and/or capacity (0: unlimited) in
        place: it keeps its outstanding tasks and its session."""
        session = self.sessions.attached[worker_id]
        if subscriptions is not None:
            subscriptions = check_declaration(subscriptions)
        if capacity is not UNCHANGED and capacity is not None:
            capacity = capacity or None
        effects = self.scheduler.update(worker_id, now=self.now(), subscriptions=subscriptions,
                                        capacity=capacity)
        state = self.scheduler.workers[worker_id]
        session.subscriptions = state.subscriptions
        if state.capacity != session.capacity:
            session.capacity = state.capacity
            self.events.publish(WorkerCapacityChanged(worker=worker_id,
                                                      capacity=state.capacity))
        self._apply(effects)

    def alive(self, session: Session) -> None:
        """Proof of life from the worker's transport (a pong, a frame, a poll)."""
        session.last_seen = self.now()

    def answer(self, worker_id: str, answer: Answer) -> str | None:
        """Apply a worker's answer. Returns why it was ignored, or None."""
        ok = answer.result == "done"
        now = self.now()
        session = self.sessions.attached.get(worker_id)
        if session is not None:
            session.last_seen = now
        error = answer.error
        if error is not None and "\x00" in error:  # PostgreSQL's text cannot hold it
            error = error.replace("\x00", "\ufffd")
        effects, ignored = self.scheduler.complete(
            worker_id, answer.task_id, ok=ok, now=now,
            result=answer.data if ok else None, error=error,
        )
        if ignored is not None:
            log.info("ignored answer from %s for task %.200r: %s", worker_id, answer.task_id,
                     ignored)
        self._apply(effects)
        return ignored

    def open_poll(self, worker_id: str, name: str, room: int) -> None:
        """A polling worker may now take up to `room` tasks called `name`."""
        self._apply(self.scheduler.open_poll(worker_id, name, room, now=self.now()))

    def close_poll(self, worker_id: str, name: str) -> None:
        self.scheduler.close_poll(worker_id, name)

    def _expire(self, session: Session, reason: str) -> None:
        """The liveness watch found `session` silent: drop it, reschedule its tasks."""
        link = session.link
        if link is None:
            return
        log.info("worker %s is gone: %s", session.id, reason)
        link.close(reason)
        self.detach(session.id, link, reason, lost=True)

    # -- effects ----------------------------------------------------------------

    def _apply(self, effects: list[Effect]) -> None:
        events = self.events
        publish = events.publish
        for effect in effects:
            if type(effect) is Dispatch:
                task = effect.task
                link = self.sessions.attached[effect.worker].link
                assert link is not None
                link.deliver(task)
                self.store.tasks.started(task)
                self._watch(task.name)
                if events.watched:
                    publish(TaskDispatched(task=task.id, name=task.name, worker=effect.worker,
                                           attempt=len(task.attempts)))
                else:
                    events.skip()
            elif type(effect) is Finished:
                task = effect.task
                if effect.worker is not None:
                    self._count(task, effect.worker)
                self._finishing[task.id] = task
                self.store.tasks.finish(task, self._announce)
            elif type(effect) is Requeued:
                task = effect.task
                lost = self.sessions.get(effect.worker)
                if lost is not None:
                    lost.lost += 1
                publish(TaskRequeued(task=task.id, name=task.name, worker=effect.worker,
                                     reason=effect.outcome))
                log.info("task %s lost worker %s (%s); rescheduled", task.id, effect.worker,
                         effect.outcome)
        if self.scheduler.pending:
            self._drain_wake.set()

    def _count(self, task: Task, worker_id: str) -> None:
        """Credit the answer (or the loss) that ended `task` to its worker and queue."""
        attempt = _attempt_of(task, worker_id)
        session = self.sessions.get(worker_id)
        outcome = attempt.outcome if attempt is not None else None
        if outcome is Outcome.DONE or outcome is Outcome.ERROR:
            stats = self.queue_stats.get(task.name)
            if stats is None:
                stats = self.queue_stats[task.name] = QueueStats()
            if outcome is Outcome.DONE:
                stats.processed += 1
            else:
                stats.failed += 1
            if session is not None:
                if outcome is Outcome.DONE:
                    session.processed += 1
                else:
                    session.failed += 1
        elif session is not None and outcome is not None:  # retries exhausted by a loss
            session.lost += 1

    def _announce(self, task: Task) -> None:
        """A final state is durable: show it."""
        self._finishing.pop(task.id, None)
        if task.state is TaskState.CANCELLED:
            last = task.attempts[-1] if task.attempts else None
            holder = last.worker if last is not None and last.outcome is Outcome.CANCELLED \
                else None
            self.events.publish(TaskCancelled(task=task.id, name=task.name, worker=holder))
        elif self.events.watched:
            self.events.publish(TaskFinished(task=task.id, name=task.name, state=task.state,
                                             worker=_ended_by(task), error=task.error))
        else:
            self.events.skip()
        if task.state is TaskState.FAILED:
            log.info("task %s (%s) failed: %s", task.id, task.name, task.error)
        for waiter in self._waiters.pop(task.id, ()):
            waiter.final(task)

    # -- actors -----------------------------------------------------------------

    def _watch(self, name: str) -> None:
        """Make sure queue `name`'s actor wakes for its earliest deadline."""
        if name not in self._queue_wake:
            if self._nursery is None:
                return
            self._queue_wake[name] = trio.Event()
            self._queue_until[name] = math.inf
            self._nursery.start_soon(self._queue_actor, name)
        # Only the actor drops ended deadlines, so after it picked the earliest live one
        # the earliest set can fall below that only by a deadline set since.
        deadline = self.scheduler.deadline_floor(name)
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
                with trio.move_on_at(self._trio_time(deadline)) as scope:
                    await wake.wait()
                if scope.cancelled_caught:  # due: don't let float rounding leave it pending
                    self._apply(self.scheduler.expire(name, now=max(self.now(), deadline)))
                    continue
            self._apply(self.scheduler.expire(name, now=self.now()))

    async def _drain_actor(self) -> None:
        """Carries on dispatches the scheduler deferred at its budget, one step at a
        time with a checkpoint between, so workers, producers and pings keep being served."""
        while True:
            await self._drain_wake.wait()
            self._drain_wake = trio.Event()
            while self.scheduler.pending:
                self._apply(self.scheduler.drain(now=self.now()))
                await trio.lowlevel.checkpoint()

    async def _purge_actor(self) -> None:
        while True:
            await trio.sleep(self.purge_interval)
            purged = await self.store.tasks.purge(self.now() - self.retention)
            if purged:
                log.info("purged %d final tasks older than %g s", purged, self.retention)


async def _cancel_when_lost(term: Term, scope: trio.CancelScope) -> None:
    await term.lost.wait()
    scope.cancel()


_ANSWERED = (Outcome.DONE, Outcome.ERROR)


def _attempt_of(task: Task, worker_id: str) -> Attempt | None:
    """`worker_id`'s attempt that ended `task`: its answer, else its last one."""
    last = task.attempts[-1] if task.attempts else None
    if last is not None and last.worker == worker_id and last.outcome in _ANSWERED:
        return last  # the common case: the current attempt's worker answered
    mine = [a for a in task.attempts if a.worker == worker_id]
    return next((a for a in reversed(mine) if a.outcome in _ANSWERED),
                mine[-1] if mine else None)


def _ended_by(task: Task) -> str | None:
    """The worker whose answer or loss made `task` final; None for a schedule timeout."""
    for attempt in reversed(task.attempts):
        if attempt.outcome in (Outcome.DONE, Outcome.ERROR):
            return attempt.worker
    return task.attempts[-1].worker if task.attempts else None


def _partition(task_ids: list[str], seen: list[Task], live: set[str]
               ) -> tuple[list[Task], list[str], list[str]]:
    """`wait_many`'s answer: the final tasks of `seen`, the ids of the others (those
    seen, and the `live` ones not seen final), the ids of no task; in `task_ids` order."""
    final = {t.id: t for t in seen if t.state.final}
    known = live | {t.id for t in seen}
    return ([final[i] for i in task_ids if i in final],
            [i for i in task_ids if i in known and i not in final],
            [i for i in task_ids if i not in known])


def _describe(sub: Subscription) -> str:
    if not sub.filter:
        return sub.name
    return sub.name + "(" + " ".join(f"{k}={','.join(sorted(v))}" for k, v in
                                     sorted(sub.filter.items())) + ")"
