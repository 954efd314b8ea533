"""The scheduling core: which worker gets which task, and what happens when one is lost.

Pure code with no I/O and no clock of its own: every call takes `now` and returns
the effects the caller must carry out (send a task to a worker, persist a state,
announce a final result). The server, the simulator and the benchmarks all
drive this one class.

Rules (seed 000, improved):

* A subscription matches a task when the names are equal and every filter key is
  in the task's attrs with an allowed value.
* Most specific wins: only workers whose matching filter has the most keys are
  candidates, however busy they are.
* Even spread: among candidates, the fewest outstanding tasks over all task
  names; ties go to the one assigned least recently.
* A worker at capacity (or a polling worker with no open poll for the task's
  name) is not a candidate; the task waits in the hub until one frees up.
* Waiting tasks go best first: higher priority, then FIFO. A lost worker's tasks
  are queued again in their old place and rescheduled in the same step.
* No call does unbounded work: one that would dispatch more than `drain_budget`
  waiting tasks stops there and leaves the rest `pending`; the caller continues
  with `drain()`. Meanwhile new tasks of that queue wait their turn behind the
  backlog.

Cost of a decision: routing a new task costs one dict lookup per distinct filter
shape of its name plus a heap peek per candidate class, whatever the fleet size;
a waiting task is dispatched from the heaps of the classes that free up (see
`_index` and `_backlog`), whatever the number of waiting groups.

Invariant after every call (unless a drain is pending): no waiting group has a
free worker at its top level.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import random
from collections.abc import Iterable, Mapping
from typing import Final, Literal

from .._model import Attempt, Outcome, Subscription, Task, TaskState
from ._backlog import Backlog, Group
from ._effects import Dispatch, Effect, Finished, Requeued
from ._index import FreeEntry, Policy, Roster, WorkerClass, WorkerState

__all__ = ["UNCHANGED", "Scheduler"]


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


#: `update(capacity=UNCHANGED)` keeps the capacity (None already means unlimited)
UNCHANGED: Final = _Unchanged.UNCHANGED


class _Queue:
    """Everything the scheduler knows about one task name."""

    __slots__ = ("backlog", "name", "queued", "roster", "running", "workers")

    def __init__(self, name: str) -> None:
        self.name = name
        self.roster = Roster()
        self.backlog = Backlog()
        self.workers: dict[str, WorkerState] = {}
        self.queued = 0
        self.running = 0


class Scheduler:
    """Matches tasks to workers. Not thread-safe; one owner drives it."""

    def __init__(self, policy: Policy = Policy.EVEN, *, seed: int | None = None,
                 drain_budget: int | None = 256) -> None:
        if drain_budget is not None and drain_budget < 1:
            raise ValueError("drain_budget must be at least 1 (or None: no limit)")
        self.policy = Policy(policy)
        #: most waiting tasks one call dispatches; None: no limit
        self.drain_budget = drain_budget
        self.workers: dict[str, WorkerState] = {}
        #: tasks not yet final
        self.tasks: dict[str, Task] = {}
        self.queues: dict[str, _Queue] = {}
        self._rng = random.Random(seed)
        self._attach_seq = itertools.count(1)
        self._assign_seq = itertools.count(1)
        self._versions = itertools.count(1)
        #: breaks ties between heap entries that would otherwise compare objects
        self._entry_seq = itertools.count()
        self._last_seq = 0
        self._deadline_seq = itertools.count()
        #: dispatches the current call may still make from waiting tasks
        self._budget: int | None = drain_budget
        #: queues with ready classes left to drain, in the order they got them
        self._dirty: dict[str, None] = {}

    # -- queries ----------------------------------------------------------------

    def queue(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = _Queue(name)
        return q

    def candidates(self, name: str, attrs: Mapping[str, str]) -> list[WorkerState]:
        """Every attached worker of the most specific matching level (free or not)."""
        q = self.queues.get(name)
        top = q.roster.top(attrs) if q is not None else None
        if top is None:
            return []
        seen: dict[str, WorkerState] = {}
        for c in top[1]:
            seen.update(c.members)
        return list(seen.values())

    def pick(self, name: str, attrs: Mapping[str, str]) -> WorkerState | None:
        """The worker that would get a task `name` with `attrs` now, if any."""
        q = self.queues.get(name)
        buckets = q.roster.top_buckets(attrs) if q is not None else None
        if buckets is None:
            return None  # only the most specific level counts
        if len(buckets) == 1 and len(buckets[0]) == 1 and self.policy is not Policy.RANDOM:
            for c in buckets[0].values():  # one class (the common case): its best free
                entry = c.best_free()
                return None if entry is None else entry[3]
        return self._best(buckets)

    def demand(self, offers: Mapping[str, Iterable[Subscription]]) -> dict[str, int]:
        """Waiting tasks per offer — the subscriptions a new worker would declare (a
        worker pool's) — that such a worker would be a candidate for while no other
        offer's would be, and that no attached worker can take now.

        A task counts for an offer when the offer's most specific matching
        subscription is at least as specific as any attached worker matching it (most
        specific wins: a less specific new worker would never get it), no other offer
        matches it as specifically (then it is no one's alone), and no attached worker
        at its top level is free. Costs one pass over the waiting tasks of the offered
        names, memoized per distinct attrs routing and the offers look at.
        """
        counts = dict.fromkeys(offers, 0)
        by_name: dict[str, list[tuple[str, Subscription]]] = {}
        for owner, subs in offers.items():
            for sub in subs:
                by_name.setdefault(sub.name, []).append((owner, sub))
        for name, offered in by_name.items():
            q = self.queues.get(name)
            if q is None or not q.queued:
                continue
            keys = tuple(sorted(set(q.roster.routing_keys).union(
                *(sub.shape for _, sub in offered))))
            memo: dict[tuple[str | None, ...], str | None] = {}
            for g in q.backlog.groups.values():
                for _, _, task in g.heap:
                    if task.state is not TaskState.QUEUED:
                        continue  # final while waiting: dropped lazily from the heap
                    key = tuple([task.attrs.get(k) for k in keys])
                    if key in memo:
                        sole = memo[key]
                    else:
                        sole = memo[key] = self._sole_offer(q, task.attrs, offered)
                    if sole is not None:
                        counts[sole] += 1
        return counts

    def _sole_offer(self, q: _Queue, attrs: Mapping[str, str],
                    offered: list[tuple[str, Subscription]]) -> str | None:
        """The one offer a waiting task with `attrs` would go to (see `demand`)."""
        top = q.roster.top(attrs)
        if top is not None and any(c.best_free() is not None for c in top[1]):
            return None  # an attached worker can take it now (a drain is pending)
        best, owners = -1, set()
        for owner, sub in offered:
            if sub.matches(q.name, attrs):
                if sub.specificity > best:
                    best, owners = sub.specificity, {owner}
                elif sub.specificity == best:
                    owners.add(owner)
        if len(owners) != 1 or (top is not None and top[0] > best):
            return None
        return owners.pop()

    def next_deadline(self, name: str) -> float | None:
        """The earliest deadline of queue `name` that can still fire.

        Deadlines of attempts that already ended are dropped here, so the queue's
        actor sleeps until a live one instead of waking once per finished task.
        """
        q = self.queues.get(name)
        if q is None:
            return None
        deadlines = q.backlog.deadlines
        first = deadlines.first()
        while first is not None and not self._can_fire(first):
            deadlines.pop()
            first = deadlines.first()
        return None if first is None else first[0]

    def deadline_floor(self, name: str) -> float | None:
        """No deadline of queue `name` comes before this one (None: it has none).

        The earliest set, even if its attempt has ended since: O(1), for a caller that
        only needs to know whether a new deadline came before what it waits for.
        """
        q = self.queues.get(name)
        first = None if q is None else q.backlog.deadlines.first()
        return None if first is None else first[0]

    @property
    def pending(self) -> bool:
        """Is a drain unfinished? Then call `drain()` (after a checkpoint) until it is not."""
        return bool(self._dirty)

    def drain(self, *, now: float) -> list[Effect]:
        """Continue the drains that ran out of budget, up to the budget again."""
        self._budget = self.drain_budget
        return self._finish_call(now, [])

    # -- fleet ------------------------------------------------------------------

    def attach(
        self,
        worker_id: str,
        subscriptions: Iterable[Subscription],
        *,
        now: float,
        capacity: int | None = None,
        polling: bool = False,
    ) -> list[Effect]:
        """Add a worker; the backlog it qualifies for is dispatched to it at once.

        A `polling` worker takes tasks only into polls it opens (`open_poll`).
        """
        self._budget = self.drain_budget
        if worker_id in self.workers:
            raise ValueError(f"worker {worker_id!r} is already attached")
        subs = _unique(subscriptions)
        _check_capacity(capacity)
        w = WorkerState(worker_id, subs, capacity=capacity, connected=now, polling=polling,
                        attach_seq=next(self._attach_seq))
        self.workers[worker_id] = w
        self._index(w)
        self._touch(w, freed=True)
        return self._finish_call(now, [])

    def update(
        self,
        worker_id: str,
        *,
        now: float,
        subscriptions: Iterable[Subscription] | None = None,
        capacity: int | None | Literal[_Unchanged.UNCHANGED] = UNCHANGED,
    ) -> list[Effect]:
        """Change a live worker's subscriptions (the full new list) and/or capacity.

        Its outstanding tasks stay with it; tasks it may now take are dispatched,
        and less specific workers may now be candidates for tasks it no longer takes.
        """
        self._budget = self.drain_budget
        w = self.workers[worker_id]
        subs = _unique(subscriptions) if subscriptions is not None else None
        if capacity is not UNCHANGED:
            _check_capacity(capacity)
            w.capacity = capacity
        if subs is not None and [s.key for s in subs] != [s.key for s in w.subscriptions]:
            self._unindex(w)
            w.subscriptions = subs
            w.names = tuple(dict.fromkeys(s.name for s in subs))
            self._index(w)
        self._touch(w, freed=True)
        return self._finish_call(now, [])

    def detach(self, worker_id: str, *, now: float) -> list[Effect]:
        """Remove a worker; everything outstanding on it is rescheduled in this step."""
        self._budget = self.drain_budget
        w = self.workers.pop(worker_id, None)
        if w is None:
            return []
        self._unindex(w)  # less specific workers may now be candidates for waiting tasks
        effects: list[Effect] = []
        lost, w.outstanding = list(w.outstanding.values()), {}
        for task in lost:
            self._lose(task, worker_id, Outcome.WORKER_LOST, now, effects)
        return self._finish_call(now, effects)

    def open_poll(self, worker_id: str, name: str, room: int, *, now: float) -> list[Effect]:
        """A polling worker may now take up to `room` tasks called `name`."""
        self._budget = self.drain_budget
        w = self.workers[worker_id]
        w.rooms[name] = room
        self._touch(w, freed=True)
        return self._finish_call(now, [])

    def close_poll(self, worker_id: str, name: str) -> None:
        w = self.workers.get(worker_id)
        if w is not None and w.rooms.pop(name, 0):
            self._touch(w, freed=False)

    # -- tasks ------------------------------------------------------------------

    def number_from(self, floor: int) -> None:
        """Number the next tasks above `floor` too (hubs sharing one database number
        on one line, e.g. wall-clock microseconds)."""
        self._last_seq = max(self._last_seq, floor)

    def number(self, task: Task) -> None:
        """Give a new task its place in line (FIFO within a priority)."""
        self._last_seq += 1
        task.seq = self._last_seq

    def submit(self, task: Task, *, now: float) -> list[Effect]:
        """Queue a new task (or one recovered from the store) and route it."""
        self._budget = self.drain_budget
        if task.id in self.tasks:
            raise ValueError(f"task {task.id!r} is already scheduled")
        task.state = TaskState.QUEUED
        if task.seq:  # numbered already (or recovered): keep its place
            self._last_seq = max(self._last_seq, task.seq)
        else:
            self.number(task)
        self.tasks[task.id] = task
        q = self.queues.get(task.name) or self.queue(task.name)
        if task.schedule_timeout is not None and not task.attempts:
            self._push_deadline(q, now + task.schedule_timeout, task.id, 0)
        effects: list[Effect] = []
        # Behind a pending drain it waits its turn: the backlog goes first.
        w = None if q.backlog.ready else self.pick(task.name, task.attrs)
        if w is not None:
            self._assign(q, task, w, now, effects)
            return effects
        self._enqueue(q, task)
        return self._finish_call(now, effects)

    def complete(
        self,
        worker_id: str,
        task_id: str,
        *,
        ok: bool,
        now: float,
        result: object = None,
        error: str | None = None,
    ) -> tuple[list[Effect], str | None]:
        """Take a worker's answer. Returns (effects, why it was ignored or None).

        The first valid answer wins: an answer from a worker that held an earlier
        attempt is accepted while the task is not final, and the current attempt
        (if any) is superseded. Answers for final or unknown tasks are ignored.
        """
        self._budget = self.drain_budget
        task = self.tasks.get(task_id)
        if task is None:
            return [], "unknown task, or already final"
        attempts = task.attempts
        current = attempts[-1] if attempts else None
        # the current attempt's worker answers most often
        mine = current is not None and current.worker == worker_id
        if not (mine or any(a.worker == worker_id for a in attempts)):
            return [], f"task was never assigned to worker {worker_id!r}"
        assert current is not None
        effects: list[Effect] = []
        q = self.queues[task.name]
        outcome = Outcome.DONE if ok else Outcome.ERROR
        waiting = task.state is TaskState.QUEUED
        if not waiting:
            holder = self.workers.get(current.worker)
            if holder is not None:
                self._release(holder, task)
            q.running -= 1
            current.ended = now
            current.outcome = outcome if mine else Outcome.SUPERSEDED
        else:  # queued again after this worker was lost: its late answer still wins
            q.queued -= 1
        if not mine:
            late = next(a for a in reversed(attempts) if a.worker == worker_id)
            late.outcome = outcome
        self._finish(task, TaskState.DONE if ok else TaskState.FAILED, worker_id, now, effects,
                     result=result, error=None if ok else (error or "worker reported an error"))
        if waiting:
            self._unqueue(q, task)
        return self._finish_call(now, effects), None

    def cancel(self, task_id: str, *, now: float) -> list[Effect]:
        self._budget = self.drain_budget
        task = self.tasks.get(task_id)
        if task is None:
            return []
        q = self.queues[task.name]
        effects: list[Effect] = []
        if task.state is TaskState.RUNNING:
            attempt = task.attempts[-1]
            attempt.ended, attempt.outcome = now, Outcome.CANCELLED
            q.running -= 1
            holder = self.workers.get(attempt.worker)
            self._finish(task, TaskState.CANCELLED, None, now, effects, error="cancelled")
            if holder is not None:
                self._release(holder, task)
        else:
            q.queued -= 1
            self._finish(task, TaskState.CANCELLED, None, now, effects, error="cancelled")
            self._unqueue(q, task)
        return self._finish_call(now, effects)

    def expire(self, name: str, *, now: float) -> list[Effect]:
        """Apply every deadline of queue `name` that is due at `now`."""
        self._budget = self.drain_budget
        q = self.queues.get(name)
        effects: list[Effect] = []
        if q is None:
            return effects
        deadlines = q.backlog.deadlines
        while (first := deadlines.first()) is not None and first[0] <= now:
            entry = deadlines.pop()
            if not self._can_fire(entry):
                continue
            task = self.tasks[entry[2]]
            if entry[3] == 0:  # schedule_timeout
                q.queued -= 1
                self._finish(
                    task, TaskState.FAILED, None, now, effects,
                    error=f"no worker took the task within its schedule_timeout "
                    f"of {task.schedule_timeout:g} s",
                )
                self._unqueue(q, task)
            else:
                attempt = task.attempts[-1]
                w = self.workers.get(attempt.worker)
                if w is not None:
                    self._release(w, task)
                self._lose(task, attempt.worker, Outcome.TIMEOUT, now, effects)
        return self._finish_call(now, effects)

    # -- internals: the fleet index -----------------------------------------------

    def _index(self, w: WorkerState) -> None:
        for sub in w.subscriptions:
            q = self.queue(sub.name)
            q.workers[w.id] = w
            c = q.roster.classes.get(sub.key)
            if c is None:
                c = self._add_class(q, sub)
            c.members[w.id] = w
            w.classes.append(c)

    def _unindex(self, w: WorkerState) -> None:
        w.version = next(self._versions)  # its heap entries are stale now
        for c in w.classes:
            del c.members[w.id]
            if not c.members:
                self._remove_class(self.queues[c.name], c)
        for name in w.names:
            q = self.queues[name]
            q.workers.pop(w.id, None)
            self._forget_if_idle(q)
        w.classes = []

    def _forget_if_idle(self, q: _Queue) -> None:
        """Drop a queue with no worker, no task and nothing pending: any worker may
        declare any name, so what it declared must not outlive it."""
        if (q.workers or q.queued or q.running or q.backlog.groups or q.backlog.deadlines
                or q.roster.classes or q.name in self._dirty):
            return
        del self.queues[q.name]

    def _add_class(self, q: _Queue, sub: Subscription) -> WorkerClass:
        """A new class may raise the top level of the groups it matches."""
        c = WorkerClass(sub)
        new_shape, new_keys = q.roster.add(c)
        if new_keys:  # groups must look at more attrs now: regroup everything
            self._regroup(q)
            return c
        if new_shape:
            q.backlog.add_shape(c.shape)
        for g in q.backlog.matching(c):
            if g.top is None or c.specificity > g.top:
                g.top, g.classes = c.specificity, [c]
            elif c.specificity == g.top:
                g.classes.append(c)
            else:
                continue
            self._register(q, g, (c,))
        return c

    def _remove_class(self, q: _Queue, c: WorkerClass) -> None:
        """Its groups may fall to a less specific level: offer them there."""
        if q.roster.remove(c):
            del q.backlog.projection[c.shape]
        spec = c.specificity
        affected = {id(g): g for *_, g in c.groups if g.alive and g.top == spec}
        c.groups = []
        for g in affected.values():
            self._retop(q, g)

    def _touch(self, w: WorkerState, *, freed: bool) -> None:
        """Re-index a worker after its load or freedom changed.

        `freed`: it may take more than before, so the classes it is free in are
        drained for their waiting groups.
        """
        w.version = next(self._versions)
        if w.capacity is not None and len(w.outstanding) >= w.capacity:
            return  # full: free in no class
        entry = self._entry(w)
        polling = w.polling
        for c in w.classes:
            if polling and w.rooms.get(c.name, 0) <= 0:
                continue  # no open poll for this name (`free_for`, capacity checked above)
            heap = c.free
            heapq.heappush(heap, entry)
            if len(heap) > 4 * len(c.members) + 64:  # mostly stale entries: rebuild
                c.free = [self._entry(m) for m in c.members.values() if m.free_for(c.name)]
                heapq.heapify(c.free)
            if freed and c.groups:
                head = c.groups[0]  # no later than its best valid head
                self._ready(self.queues[c.name], head[0], head[1], c)

    def _entry(self, w: WorkerState) -> FreeEntry:
        """A free worker's place in a class heap: fewest outstanding, then the tie-break."""
        tie = w.attach_seq if self.policy is Policy.ATTACH_ORDER else w.last_assigned
        return (len(w.outstanding), tie, w.version, w)

    def _best(self, buckets: list[dict[object, WorkerClass]]) -> WorkerState | None:
        return self._best_of([c for bucket in buckets for c in bucket.values()])

    def _best_of(self, classes: Iterable[WorkerClass]) -> WorkerState | None:
        """The free worker among `classes` that gets the next task, if any."""
        if self.policy is Policy.RANDOM:
            free = {wid: w for c in classes for wid, w in c.members.items()
                    if w.free_for(c.name)}
            return self._rng.choice(list(free.values())) if free else None
        best: FreeEntry | None = None
        for c in classes:
            entry = c.best_free()
            if entry is not None and (best is None or entry < best):
                best = entry
        return None if best is None else best[3]

    # -- internals: the backlog -------------------------------------------------

    def _group(self, q: _Queue, attrs: Mapping[str, str]) -> Group:
        """The group of waiting tasks with these attrs (as far as routing looks at them)."""
        b, routing_keys = q.backlog, q.roster.routing_keys
        key = b.key_of(attrs, routing_keys)
        g = b.groups.get(key)
        if g is None:
            g = b.new_group(key, routing_keys)
            top = q.roster.top(g.attrs)
            if top is not None:
                g.top, g.classes = top
        return g

    def _enqueue(self, q: _Queue, task: Task) -> None:
        q.queued += 1
        g = self._group(q, task.attrs)
        entry = (-task.priority, task.seq, task)
        heapq.heappush(g.heap, entry)
        if g.heap[0] is entry:
            self._register(q, g, g.classes)

    def _unqueue(self, q: _Queue, task: Task) -> None:
        """A waiting task became final: if it led its group, offer the next one."""
        g = q.backlog.groups.get(q.backlog.key_of(task.attrs, q.roster.routing_keys))
        if g is None or g.heap[0][2] is not task:
            return  # not a head: dropped lazily when it comes up
        if g.head() is None:
            q.backlog.drop(g)
        else:
            self._register(q, g, g.classes)

    def _register(self, q: _Queue, g: Group, classes: Iterable[WorkerClass], *,
                  ready: bool = True) -> None:
        """Offer the group's head to `classes`; `ready`: drain those with a free member."""
        head = g.heap[0][2]
        entry = (-head.priority, head.seq, next(self._entry_seq), g)
        for c in classes:
            heap = c.groups
            heapq.heappush(heap, entry)
            if len(heap) > 2 * len(q.backlog.groups) + 64:  # mostly stale entries: rebuild
                c.groups = [e for e in heap if self._valid(c, e[3], e[0], e[1])]
                heapq.heapify(c.groups)
            if ready and c.best_free() is not None:
                self._ready(q, entry[0], entry[1], c)

    def _retop(self, q: _Queue, g: Group) -> None:
        top = q.roster.top(g.attrs)
        if top is None:
            g.top, g.classes = None, []
            return
        g.top, g.classes = top
        self._register(q, g, g.classes)

    def _regroup(self, q: _Queue) -> None:
        b = q.backlog
        waiting = [entry for g in b.groups.values() for entry in g.heap
                   if entry[2].state is TaskState.QUEUED]
        for g in b.groups.values():
            g.alive = False
        b.groups.clear()
        b.projection = {shape: {} for shape in q.roster.buckets}
        b.ready.clear()
        for c in q.roster.classes.values():
            c.groups = []
        for entry in waiting:
            self._group(q, entry[2].attrs).heap.append(entry)
        for g in b.groups.values():
            heapq.heapify(g.heap)
            if g.classes:
                self._register(q, g, g.classes)

    @staticmethod
    def _valid(c: WorkerClass, g: Group, neg_priority: int, seq: int) -> bool:
        """Is this registration current: the group's head, and `c` at its top level?"""
        if not g.alive or g.top != c.specificity:
            return False
        head = g.heap[0]
        return head[1] == seq and head[0] == neg_priority

    def _best_group(self, c: WorkerClass) -> Group | None:
        heap = c.groups
        while heap:
            neg_priority, seq, _, g = heap[0]
            if self._valid(c, g, neg_priority, seq):
                return g
            heapq.heappop(heap)
        return None

    def _ready(self, q: _Queue, neg_priority: int, seq: int, c: WorkerClass) -> None:
        heapq.heappush(q.backlog.ready, (neg_priority, seq, next(self._entry_seq), c))
        self._dirty[q.name] = None

    def _finish_call(self, now: float, effects: list[Effect]) -> list[Effect]:
        """Drain the queues with ready classes, within the call's budget."""
        if not self._dirty:
            return effects
        for name in list(self._dirty):
            if not self._drain(self.queues[name], now, effects):
                break  # out of budget: the rest is the next `drain()`'s
            del self._dirty[name]
        return effects

    def _drain(self, q: _Queue, now: float, effects: list[Effect]) -> bool:
        """Dispatch waiting tasks, best first, while a ready class has a free member.

        Returns False if the budget ran out first.
        """
        ready = q.backlog.ready
        while ready:
            neg_priority, seq, _, c = ready[0]
            if c.dead or c.best_free() is None:
                heapq.heappop(ready)
                continue
            g = self._best_group(c)
            if g is None:
                heapq.heappop(ready)
                continue
            head = g.heap[0]
            if head[0] != neg_priority or head[1] != seq:  # its best moved on: requeue it
                heapq.heapreplace(ready, (head[0], head[1], next(self._entry_seq), c))
                continue
            if self._budget == 0:
                return False
            w = self._best_of(g.classes)
            assert w is not None  # c is among them and has a free member
            task = heapq.heappop(g.heap)[2]
            q.queued -= 1
            if self._budget is not None:
                self._budget -= 1
            self._assign(q, task, w, now, effects)
            if g.head() is None:
                q.backlog.drop(g)
            else:  # a later head: no class of it can have become ready
                self._register(q, g, g.classes, ready=False)
        return True

    def _assign(self, q: _Queue, task: Task, w: WorkerState, now: float,
                effects: list[Effect]) -> None:
        task.state = TaskState.RUNNING
        task.attempts.append(Attempt(worker=w.id, started=now))
        q.running += 1
        w.outstanding[task.id] = task
        w.last_assigned = next(self._assign_seq)
        if w.polling:
            w.rooms[q.name] -= 1
        self._touch(w, freed=False)
        self._push_deadline(q, now + task.timeout, task.id, len(task.attempts))
        effects.append(Dispatch(w.id, task))

    # -- internals: endings -----------------------------------------------------

    def _release(self, w: WorkerState, task: Task) -> None:
        if w.outstanding.pop(task.id, None) is not None:
            self._touch(w, freed=True)

    def _lose(self, task: Task, worker_id: str, outcome: Outcome, now: float,
              effects: list[Effect]) -> None:
        """The current attempt failed through no answer: retry or fail the task."""
        q = self.queues[task.name]
        q.running -= 1
        attempt = task.attempts[-1]
        attempt.ended, attempt.outcome = now, outcome
        lost = task.lost_attempts()
        if lost > task.retries:
            why = "timed out" if outcome is Outcome.TIMEOUT else "lost its worker"
            self._finish(
                task, TaskState.FAILED, worker_id, now, effects,
                error=f"attempt {len(task.attempts)} {why} ({worker_id}); "
                f"{lost} attempts failed this way and retries={task.retries} are exhausted",
            )
            return
        task.state = TaskState.QUEUED
        effects.append(Requeued(task, worker_id, outcome))
        self._enqueue(q, task)  # in its old place in line; the call's drain dispatches it

    def _finish(self, task: Task, state: TaskState, worker: str | None, now: float,
                effects: list[Effect], *, result: object = None,
                error: str | None = None) -> None:
        task.state = state
        task.finished = now
        task.result = result  # type: ignore[assignment]
        task.error = error
        del self.tasks[task.id]
        effects.append(Finished(task, worker))

    def _can_fire(self, deadline: tuple[float, int, str, int]) -> bool:
        """Can this deadline still fire: is its task still waiting, or running that attempt?"""
        task = self.tasks.get(deadline[2])
        if task is None:
            return False
        if deadline[3] == 0:  # schedule_timeout: only before the first dispatch
            return task.state is TaskState.QUEUED and not task.attempts
        return task.state is TaskState.RUNNING and len(task.attempts) == deadline[3]

    def _push_deadline(self, q: _Queue, when: float, task_id: str, attempt_no: int) -> None:
        q.backlog.deadlines.push((when, next(self._deadline_seq), task_id, attempt_no))


def _unique(subscriptions: Iterable[Subscription]) -> tuple[Subscription, ...]:
    subs = tuple({sub.key: sub for sub in subscriptions}.values())
    if not subs:
        raise ValueError("a worker must declare at least one task")
    return subs


def _check_capacity(capacity: int | None) -> None:
    if capacity is not None and capacity < 1:
        raise ValueError("capacity must be at least 1")
