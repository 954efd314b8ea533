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
* No call does unbounded work: one that would dispatch more than `drain_budget`
  waiting tasks stops there and leaves the rest `pending`; the caller continues
  with `drain()`. Meanwhile new tasks of that queue wait their turn behind the
  backlog (FIFO within a priority holds).

Cost of a decision: workers are indexed by (task name, filter shape, filter
values), so routing a task costs one dict lookup per distinct filter shape of its
name plus a heap peek, whatever the fleet size.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from .._model import Attempt, Outcome, Subscription, Task, TaskState

__all__ = [
    "UNCHANGED",
    "Dispatch",
    "Effect",
    "Finished",
    "Policy",
    "Requeued",
    "Scheduler",
    "WorkerState",
]


class _Unchanged(enum.Enum):
    UNCHANGED = "unchanged"


#: `update(capacity=UNCHANGED)` keeps the capacity (None already means unlimited)
UNCHANGED: Final = _Unchanged.UNCHANGED


class Policy(enum.StrEnum):
    """How to choose among equally specific candidates."""

    #: fewest outstanding, ties to the least recently assigned (the hub's policy)
    EVEN = "even"
    #: fewest outstanding, ties to the earliest attached (the anchor's behaviour)
    ATTACH_ORDER = "attach-order"
    #: uniformly random among free candidates
    RANDOM = "random"


# --- effects -------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Send `task` to `worker`; its state is now running."""

    worker: str
    task: Task


@dataclass(slots=True, frozen=True)
class Finished:
    """`task` reached a final state: persist it, then announce it.

    `worker` is the one whose answer (done or error) or loss (retries exhausted)
    ended it, so the caller can count per worker; None for a cancel of a queued
    task or a schedule_timeout.
    """

    task: Task
    worker: str | None


@dataclass(slots=True, frozen=True)
class Requeued:
    """`task` lost its worker (`outcome`) and is queued again (or already re-dispatched)."""

    task: Task
    worker: str
    outcome: Outcome


Effect = Dispatch | Finished | Requeued


# --- fleet state ---------------------------------------------------------------


@dataclass(slots=True, eq=False)
class WorkerState:
    id: str
    subscriptions: tuple[Subscription, ...]
    capacity: int | None = None
    connected: float = 0.0
    #: takes tasks only into open polls (`rooms`), never unasked
    polling: bool = False
    #: polling workers: per task name, tasks the open poll may still take
    rooms: dict[str, int] = field(default_factory=dict)
    outstanding: dict[str, Task] = field(default_factory=dict)
    attach_seq: int = 0
    last_assigned: int = 0
    version: int = 0
    buckets: list[_Bucket] = field(default_factory=list)
    #: task names in declaration order (not a set: drain order must not depend on hashing)
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(dict.fromkeys(s.name for s in self.subscriptions))

    def free_for(self, name: str) -> bool:
        """Can it take one more task called `name` now?"""
        return (self.capacity is None or len(self.outstanding) < self.capacity) and (
            not self.polling or self.rooms.get(name, 0) > 0
        )


class _Bucket:
    """Workers of one task name with one filter shape that allow one value tuple.

    `heap` holds (load, tie, version, worker id) entries for free members; an
    entry is stale once the worker's version moves on, and is dropped lazily.
    """

    __slots__ = ("heap", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: dict[str, WorkerState] = {}
        self.heap: list[tuple[int, int, int, str]] = []


class _Group:
    """Queued tasks of one name that share the attrs the routing looks at."""

    __slots__ = ("attrs", "heap")

    def __init__(self, attrs: dict[str, str]) -> None:
        self.attrs = attrs
        self.heap: list[tuple[int, int, Task]] = []  # (-priority, seq, task)

    def head(self) -> Task | None:
        heap = self.heap
        while heap and heap[0][2].state is not TaskState.QUEUED:
            heapq.heappop(heap)
        return heap[0][2] if heap else None


class _Queue:
    """Everything the scheduler knows about one task name."""

    __slots__ = (
        "buckets",
        "deadlines",
        "groups",
        "levels",
        "name",
        "queued",
        "routing_keys",
        "running",
        "shape_refs",
        "workers",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.buckets: dict[tuple[str, ...], dict[tuple[str, ...], _Bucket]] = {}
        self.shape_refs: dict[tuple[str, ...], int] = {}
        #: shapes grouped by specificity, most specific first
        self.levels: list[list[tuple[str, ...]]] = []
        #: every attr key any filter of this name looks at (only grows)
        self.routing_keys: tuple[str, ...] = ()
        self.groups: dict[tuple[str | None, ...], _Group] = {}
        self.deadlines: list[tuple[float, int, str, int]] = []  # (when, seq, task id, attempt no)
        self.workers: dict[str, WorkerState] = {}
        self.queued = 0
        self.running = 0

    def group_for(self, attrs: Mapping[str, str]) -> _Group:
        """The group of waiting tasks with these attrs (as far as routing looks at them)."""
        key = tuple(attrs.get(k) for k in self.routing_keys)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = _Group(
                {k: v for k, v in zip(self.routing_keys, key) if v is not None})
        return group


# --- the scheduler -------------------------------------------------------------


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
        self._last_seq = 0
        self._deadline_seq = itertools.count()
        #: dispatches the current call may still make from waiting tasks
        self._budget: int | None = drain_budget
        #: queues whose drain ran out of budget, in the order they did
        self._unfinished: dict[str, None] = {}

    # -- queries ----------------------------------------------------------------

    def queue(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            q = self.queues[name] = _Queue(name)
        return q

    def candidates(self, name: str, attrs: Mapping[str, str]) -> list[WorkerState]:
        """Every attached worker of the most specific matching level (free or not)."""
        q = self.queues.get(name)
        if q is None:
            return []
        for buckets in self._levels(q, attrs):
            seen: dict[str, WorkerState] = {}
            for b in buckets:
                seen.update(b.members)
            return list(seen.values())
        return []

    def pick(self, name: str, attrs: Mapping[str, str]) -> WorkerState | None:
        """The worker that would get a task `name` with `attrs` now, if any."""
        q = self.queues.get(name)
        if q is None:
            return None
        for buckets in self._levels(q, attrs):
            return self._best(buckets)  # only the most specific level counts
        return None

    def next_deadline(self, name: str) -> float | None:
        """The earliest deadline of queue `name` that can still fire.

        Deadlines of attempts that already ended are dropped here, so the queue's
        actor sleeps until a live one instead of waking once per finished task.
        """
        q = self.queues.get(name)
        if q is None:
            return None
        heap = q.deadlines
        while heap and not self._pending(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    @property
    def pending(self) -> bool:
        """Is a drain unfinished? Then call `drain()` (after a checkpoint) until it is not."""
        return bool(self._unfinished)

    def drain(self, *, now: float) -> list[Effect]:
        """Continue the drains that ran out of budget, up to the budget again."""
        self._start_call()
        effects: list[Effect] = []
        for name in list(self._unfinished):
            if self._budget == 0:
                break
            del self._unfinished[name]
            q = self.queues.get(name)
            if q is not None and q.queued:
                self._drain(q, now, effects)
        return effects

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
        self._start_call()
        if worker_id in self.workers:
            raise ValueError(f"worker {worker_id!r} is already attached")
        subs = _unique(subscriptions)
        _check_capacity(capacity)
        w = WorkerState(
            worker_id,
            subs,
            capacity=capacity,
            connected=now,
            polling=polling,
            attach_seq=next(self._attach_seq),
        )
        self.workers[worker_id] = w
        self._index(w)
        self._touch(w)
        effects: list[Effect] = []
        self._drain_names(w.names, now, effects)
        return effects

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
        self._start_call()
        w = self.workers[worker_id]
        subs = _unique(subscriptions) if subscriptions is not None else None
        if capacity is not UNCHANGED:
            _check_capacity(capacity)
            w.capacity = capacity
        names = w.names
        if subs is not None:
            self._unindex(w)
            w.subscriptions = subs
            w.names = tuple(dict.fromkeys(s.name for s in subs))
            self._index(w)
            names = tuple(dict.fromkeys(names + w.names))
        self._touch(w)
        effects: list[Effect] = []
        self._drain_names(names, now, effects)
        return effects

    def _index(self, w: WorkerState) -> None:
        worker_id = w.id
        for sub in w.subscriptions:
            q = self.queue(sub.name)
            q.workers[worker_id] = w
            shape = sub.shape
            if shape not in q.shape_refs:
                self._add_shape(q, shape)
            q.shape_refs[shape] += 1
            by_values = q.buckets[shape]
            for values in sub.value_keys():
                b = by_values.get(values)
                if b is None:
                    b = by_values[values] = _Bucket(sub.name)
                if worker_id not in b.members:
                    b.members[worker_id] = w
                    w.buckets.append(b)

    def detach(self, worker_id: str, *, now: float) -> list[Effect]:
        """Remove a worker; everything outstanding on it is rescheduled in this step."""
        self._start_call()
        w = self.workers.pop(worker_id, None)
        if w is None:
            return []
        self._unindex(w)
        effects: list[Effect] = []
        for task in list(w.outstanding.values()):
            self._release(w, task)
            self._lose(task, worker_id, Outcome.WORKER_LOST, now, effects)
        # Less specific workers may now be candidates for waiting tasks.
        self._drain_names(w.names, now, effects)
        return effects

    def _unindex(self, w: WorkerState) -> None:
        worker_id = w.id
        w.version += 1  # invalidates its heap entries
        for b in w.buckets:
            b.members.pop(worker_id, None)
        for sub in w.subscriptions:
            q = self.queues[sub.name]
            q.workers.pop(worker_id, None)
            shape = sub.shape
            q.shape_refs[shape] -= 1
            if q.shape_refs[shape] == 0:
                self._remove_shape(q, shape)
            else:
                by_values = q.buckets[shape]
                for values in sub.value_keys():
                    emptied = by_values.get(values)
                    if emptied is not None and not emptied.members:
                        del by_values[values]
        w.buckets.clear()

    def open_poll(self, worker_id: str, name: str, room: int, *, now: float) -> list[Effect]:
        """A polling worker may now take up to `room` tasks called `name`."""
        self._start_call()
        w = self.workers[worker_id]
        w.rooms[name] = room
        self._touch(w)
        effects: list[Effect] = []
        self._drain_names((name,), now, effects)
        return effects

    def close_poll(self, worker_id: str, name: str) -> None:
        w = self.workers.get(worker_id)
        if w is not None and w.rooms.pop(name, 0):
            self._touch(w)

    # -- tasks ------------------------------------------------------------------

    def number(self, task: Task) -> None:
        """Give a new task its place in line (FIFO within a priority)."""
        self._last_seq += 1
        task.seq = self._last_seq

    def submit(self, task: Task, *, now: float) -> list[Effect]:
        """Queue a new task (or one recovered from the store) and route it."""
        self._start_call()
        if task.id in self.tasks:
            raise ValueError(f"task {task.id!r} is already scheduled")
        task.state = TaskState.QUEUED
        if task.seq:  # numbered already (or recovered): keep its place
            self._last_seq = max(self._last_seq, task.seq)
        else:
            self.number(task)
        self.tasks[task.id] = task
        q = self.queue(task.name)
        if task.schedule_timeout is not None and not task.attempts:
            self._push_deadline(q, now + task.schedule_timeout, task.id, 0)
        effects: list[Effect] = []
        self._route(q, task, now, effects)
        return effects

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
        self._start_call()
        task = self.tasks.get(task_id)
        if task is None:
            return [], "unknown task, or already final"
        if not any(a.worker == worker_id for a in task.attempts):
            return [], f"task was never assigned to worker {worker_id!r}"
        effects: list[Effect] = []
        q = self.queues[task.name]
        outcome = Outcome.DONE if ok else Outcome.ERROR
        holder: WorkerState | None = None
        if task.state is TaskState.RUNNING:
            current = task.attempts[-1]
            holder = self.workers.get(current.worker)
            if holder is not None:
                self._release(holder, task)
            q.running -= 1
            current.ended = now
            current.outcome = outcome if current.worker == worker_id else Outcome.SUPERSEDED
        else:  # queued again after this worker was lost: its late answer still wins
            q.queued -= 1
        if task.attempts[-1].worker != worker_id:
            late = next(a for a in reversed(task.attempts) if a.worker == worker_id)
            late.outcome = outcome
        self._finish(task, TaskState.DONE if ok else TaskState.FAILED, worker_id, now, effects,
                     result=result, error=None if ok else (error or "worker reported an error"))
        if holder is not None:
            self._drain_names(holder.names, now, effects)
        return effects, None

    def cancel(self, task_id: str, *, now: float) -> list[Effect]:
        self._start_call()
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
                self._drain_names(holder.names, now, effects)
        else:
            q.queued -= 1
            self._finish(task, TaskState.CANCELLED, None, now, effects, error="cancelled")
        return effects

    def expire(self, name: str, *, now: float) -> list[Effect]:
        """Apply every deadline of queue `name` that is due at `now`."""
        self._start_call()
        q = self.queues.get(name)
        effects: list[Effect] = []
        if q is None:
            return effects
        heap = q.deadlines
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if not self._pending(entry):
                continue
            task = self.tasks[entry[2]]
            if entry[3] == 0:  # schedule_timeout
                q.queued -= 1
                self._finish(
                    task, TaskState.FAILED, None, now, effects,
                    error=f"no worker took the task within its schedule_timeout "
                    f"of {task.schedule_timeout:g} s",
                )
            else:
                attempt = task.attempts[-1]
                w = self.workers.get(attempt.worker)
                if w is not None:
                    self._release(w, task)
                self._lose(task, attempt.worker, Outcome.TIMEOUT, now, effects)
                if w is not None:
                    self._drain_names(w.names, now, effects)
        return effects

    # -- internals: routing -----------------------------------------------------

    def _levels(self, q: _Queue, attrs: Mapping[str, str]) -> Iterable[list[_Bucket]]:
        """Non-empty matching buckets, one list per specificity level, most specific first."""
        for shapes in q.levels:
            found = []
            for shape in shapes:
                try:
                    values = tuple([attrs[k] for k in shape])
                except KeyError:
                    continue
                b = q.buckets[shape].get(values)
                if b is not None and b.members:
                    found.append(b)
            if found:
                yield found

    def _best(self, buckets: list[_Bucket]) -> WorkerState | None:
        if self.policy is Policy.RANDOM:
            free = {wid: w for b in buckets for wid, w in b.members.items()
                    if w.free_for(b.name)}
            return self._rng.choice(list(free.values())) if free else None
        best: tuple[int, int, int, str] | None = None
        workers = self.workers
        for b in buckets:
            heap = b.heap
            while heap:
                entry = heap[0]
                w = workers.get(entry[3])
                if w is not None and w.version == entry[2]:
                    break
                heapq.heappop(heap)
            else:
                continue
            if best is None or entry < best:
                best = entry
        return workers[best[3]] if best is not None else None

    def _touch(self, w: WorkerState) -> None:
        """Re-index a worker after its load or freedom changed."""
        w.version += 1
        if self.policy is Policy.RANDOM:
            return
        entry = self._entry(w)
        for b in w.buckets:
            if not w.free_for(b.name):
                continue
            heap = b.heap
            heapq.heappush(heap, entry)
            if len(heap) > 4 * len(b.members) + 64:  # mostly stale entries: rebuild
                b.heap = [self._entry(m) for m in b.members.values() if m.free_for(b.name)]
                heapq.heapify(b.heap)

    def _entry(self, w: WorkerState) -> tuple[int, int, int, str]:
        """A free worker's place in a bucket heap: fewest outstanding, then the tie-break."""
        tie = w.attach_seq if self.policy is Policy.ATTACH_ORDER else w.last_assigned
        return (len(w.outstanding), tie, w.version, w.id)

    def _route(self, q: _Queue, task: Task, now: float, effects: list[Effect]) -> None:
        # Behind a pending drain it waits its turn: the backlog goes first.
        w = None if q.name in self._unfinished else self.pick(task.name, task.attrs)
        if w is not None:
            self._assign(q, task, w, now, effects)
            return
        q.queued += 1
        heapq.heappush(q.group_for(task.attrs).heap, (-task.priority, task.seq, task))

    def _assign(self, q: _Queue, task: Task, w: WorkerState, now: float,
                effects: list[Effect]) -> None:
        task.state = TaskState.RUNNING
        task.attempts.append(Attempt(worker=w.id, started=now))
        q.running += 1
        w.outstanding[task.id] = task
        w.last_assigned = next(self._assign_seq)
        if w.polling:
            w.rooms[q.name] -= 1
        self._touch(w)
        self._push_deadline(q, now + task.timeout, task.id, len(task.attempts))
        effects.append(Dispatch(w.id, task))

    def _start_call(self) -> None:
        self._budget = self.drain_budget

    def _drain_names(self, names: Iterable[str], now: float, effects: list[Effect]) -> None:
        for name in names:
            q = self.queues.get(name)
            if q is not None and q.queued:
                self._drain(q, now, effects)

    def _drain(self, q: _Queue, now: float, effects: list[Effect]) -> None:
        """Dispatch waiting tasks while some group has a free candidate, best task first."""
        while q.queued:
            if self._budget == 0:  # the rest is the next `drain()`'s
                self._unfinished[q.name] = None
                return
            best: tuple[Task, _Group, WorkerState] | None = None
            for key, group in list(q.groups.items()):
                head = group.head()
                if head is None:
                    del q.groups[key]
                    continue
                if best is not None and (-head.priority, head.seq) > (
                    -best[0].priority, best[0].seq
                ):
                    continue
                w = self.pick(q.name, group.attrs)
                if w is not None:
                    best = (head, group, w)
            if best is None:
                return
            task, group, w = best
            heapq.heappop(group.heap)
            q.queued -= 1
            if self._budget is not None:
                self._budget -= 1
            self._assign(q, task, w, now, effects)

    def _add_shape(self, q: _Queue, shape: tuple[str, ...]) -> None:
        q.shape_refs[shape] = 0
        q.buckets[shape] = {}
        self._relevel(q)
        if not set(shape) <= set(q.routing_keys):
            q.routing_keys = tuple(sorted(set(q.routing_keys) | set(shape)))
            waiting = [entry for g in q.groups.values() for entry in g.heap
                       if entry[2].state is TaskState.QUEUED]
            q.groups.clear()
            for entry in waiting:
                q.group_for(entry[2].attrs).heap.append(entry)
            for g in q.groups.values():
                heapq.heapify(g.heap)

    def _remove_shape(self, q: _Queue, shape: tuple[str, ...]) -> None:
        del q.shape_refs[shape]
        del q.buckets[shape]
        self._relevel(q)

    @staticmethod
    def _relevel(q: _Queue) -> None:
        by_level: dict[int, list[tuple[str, ...]]] = {}
        for shape in q.buckets:
            by_level.setdefault(len(shape), []).append(shape)
        q.levels = [by_level[n] for n in sorted(by_level, reverse=True)]

    # -- internals: endings -----------------------------------------------------

    def _release(self, w: WorkerState, task: Task) -> None:
        if w.outstanding.pop(task.id, None) is not None:
            self._touch(w)

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
        self._route(q, task, now, effects)

    def _finish(self, task: Task, state: TaskState, worker: str | None, now: float,
                effects: list[Effect], *, result: object = None,
                error: str | None = None) -> None:
        task.state = state
        task.finished = now
        task.result = result  # type: ignore[assignment]
        task.error = error
        del self.tasks[task.id]
        effects.append(Finished(task, worker))

    def _pending(self, deadline: tuple[float, int, str, int]) -> bool:
        """Can this deadline still fire: is its task still waiting, or running that attempt?"""
        task = self.tasks.get(deadline[2])
        if task is None:
            return False
        if deadline[3] == 0:  # schedule_timeout: only before the first dispatch
            return task.state is TaskState.QUEUED and not task.attempts
        return task.state is TaskState.RUNNING and len(task.attempts) == deadline[3]

    def _push_deadline(self, q: _Queue, when: float, task_id: str, attempt_no: int) -> None:
        heapq.heappush(q.deadlines, (when, next(self._deadline_seq), task_id, attempt_no))


def _unique(subscriptions: Iterable[Subscription]) -> tuple[Subscription, ...]:
    subs = tuple({sub.key: sub for sub in subscriptions}.values())
    if not subs:
        raise ValueError("a worker must declare at least one task")
    return subs


def _check_capacity(capacity: int | None) -> None:
    if capacity is not None and capacity < 1:
        raise ValueError("capacity must be at least 1")
