"""The runner: the real hub, simulated workers and producers, under trio's MockClock.

`Hub` runs as it does in the server — scheduler, queue actors, liveness watch,
purge actor — with an in-memory store. Around it, one driver actor plays every
simulated worker and producer from a calendar of timed events (arrivals, service
completions, disconnects, polls). A simulated WebSocket worker is the `Link` the
hub delivers to and talks back through the hub's worker API (`attach`, `answer`,
`detach`), as the WebSocket transport does; a simulated polling worker goes
through the real polling transport (`PollingFleet`: polls, leases, reports,
liveness), each poll an actor of its own, as an HTTP request would be. Every
decision is the hub's own.

Time moves in ticks (`Scenario.ticks_per_second`). The driver jumps the mock
clock to the next tick that has events, after letting every hub actor that is
runnable or due by then run first, and handles that tick's events in the order
they were scheduled. With the hub anchored at time 0, string hashing kept out
of every ordering and seeded generators for everything random, a scenario and
a seed always produce the same run. A run ends once arrivals are over, every
task is final and no worker is busy, or at `duration + drain`.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import math
import random
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import msgspec
import trio
import trio.testing

from workyard import Conflict, Hub, Policy, Task, TaskState
from workyard.protocol import Answer, Report
from workyard.store import OnCommit
from workyard.testing import MemoryStore
from workyard.transports import Poll, Poller, PollingFleet

from ._oracle import SpecificityOracle
from ._scenario import FleetGroup, Scenario, Stream

__all__ = ["RunResult", "WorkerStats", "simulate"]

# Event kinds; an event is (kind, worker, item, n) in its tick's list. Kinds from
# _OTHER on are a model's own (`_Simulation.other`).
_ARRIVE, _DONE, _DISCONNECT, _RECONNECT, _POLL, _POLL_END, _SAMPLE, _OTHER = range(8)

#: ignore float noise when converting a hub time to a tick
_EPSILON = 1e-7
_NAN = array("d", [math.nan])


@dataclass(slots=True)
class WorkerStats:
    id: str
    group: str
    capacity: int
    assignments: int
    completed: int
    #: slot-seconds spent executing (completed, aborted and unfinished executions)
    busy: float
    #: seconds attached to the hub
    attached: float

    @property
    def utilisation(self) -> float:
        return self.busy / (self.attached * self.capacity) if self.attached else 0.0


@dataclass(slots=True)
class RunResult:
    scenario: Scenario
    policy: Policy
    submitted: int
    done: int
    failed: int
    #: not final when the run stopped, but still queued or running on a live execution
    unfinished: int
    #: neither final nor anywhere that will finish them
    lost: int
    #: tasks given to a worker while a more specific matching worker was attached
    violations: int
    #: dispatches of a task after its first
    reschedules: int
    #: executions that ran to the end for a task another execution had already finished
    duplicates: int
    #: executions cut short by a disconnect
    aborted: int
    #: answers the hub ignored (the task was already final)
    ignored_answers: int
    events: int
    #: simulated seconds at the end of the run
    end: float
    #: wall-clock seconds the run took (never part of metrics.json)
    wall: float
    workers: list[WorkerStats]
    #: queued -> first assignment, sorted
    wait: list[float]
    #: submission -> done, sorted (tasks that ended done)
    e2e: list[float]
    #: (simulated time, queued, running)
    depth: list[tuple[float, int, int]]
    #: the partitioned model's own figures (`--hubs`), None for a plain run
    scale_out: dict[str, Any] | None = None


def simulate(scenario: Scenario, policy: Policy = Policy.EVEN, *,
             progress: bool = False, hubs: int | None = None,
             relay: float = 0.002, span: str = "relay") -> RunResult:
    """Run `scenario` once against a hub using `policy`.

    `hubs`: run the partitioned scale-out model instead (docs/scale-out.md): that many
    leader hubs, each owning the partitions of some task names, with `relay` seconds
    for every message between two hubs, and `span` how a worker whose names span
    several owners is served ("relay" through its home hub, or "connect" to each).
    With one hub it is the plain run, plus its `scale_out` figures.
    """
    sim: _Simulation
    if hubs is None:
        sim = _Simulation(scenario, Policy(policy), progress)
    else:
        from ._scaleout import PartitionedSimulation

        sim = PartitionedSimulation(scenario, Policy(policy), progress, hubs=hubs, relay=relay,
                                    span=span)
    started = time.perf_counter()
    with collector_paused():
        trio.run(sim.main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim.result(time.perf_counter() - started)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a run. A run makes next to no reference
    cycles (reference counting frees nearly everything), but the collector's passes over
    the live objects took an eighth of `big`'s time; what cycles there are, it collects
    once it is back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Worker:
    """One simulated worker. A WebSocket one is its own `Link`: the hub calls `deliver`
    on it; a polling one gets its tasks from the polls it makes."""

    __slots__ = (
        "assignments", "attached", "busy", "completed", "connected", "generation", "group", "id",
        "poll", "poll_scheduled", "poller", "polling", "running", "sim", "since",
    )

    def __init__(self, sim: _Simulation, group: FleetGroup, worker_id: str) -> None:
        self.sim = sim
        self.group = group
        self.id = worker_id
        self.polling = group.transport == "polling"
        self.connected = False
        self.generation = 0
        #: executions in progress on this connection: execution id -> (start time, task id)
        self.running: dict[int, tuple[float, str]] = {}
        # polling: the hub's poller for it, the poll in progress, or one on the calendar
        self.poller: Poller | None = None
        self.poll: Poll | None = None
        self.poll_scheduled = False
        self.assignments = 0
        self.completed = 0
        self.busy = 0.0
        self.attached = 0.0
        self.since = 0.0

    def deliver(self, task: Task) -> None:
        self.sim.delivered(self, task)

    def close(self, reason: str) -> None:
        """Never called: a simulated worker always detaches before it reconnects."""


class _Arrivals:
    """One workload stream's future arrivals, drawn lazily."""

    __slots__ = ("next_tick", "rng", "stream", "ticks")

    def __init__(self, stream: Stream, rng: random.Random, until: float,
                 ticks_per_second: int) -> None:
        self.stream = stream
        self.rng = rng
        self.ticks = (math.ceil(t * ticks_per_second - _EPSILON)
                      for t in stream.arrivals(rng, until))
        #: the tick of the next arrival, None once the stream has ended
        self.next_tick: int | None = next(self.ticks, None)

    def make(self, task_id: str, now: float) -> Task:
        s, rng = self.stream, self.rng
        return Task(
            id=task_id,
            name=s.name,
            attrs={key: choice.sample(rng) for key, choice in s.attrs},
            priority=s.priority.sample(rng),
            timeout=s.timeout,
            retries=s.retries,
            created=now,
        )


class _RecordingTasks:
    """The task aggregate of the simulator's store: it keeps nothing and reports every
    final state. Nothing in a run reads a task back from the store, so copying each
    task in on submit and again on every attempt (as `MemoryStore` does, to hold what
    was written) only cost time: a quarter of `big`'s."""

    def __init__(self, sim: _Simulation) -> None:
        self._sim = sim

    async def insert(self, tasks: Sequence[Task]) -> list[str]:
        return [task.id for task in tasks]  # simulated tasks carry no idempotency key

    def started(self, task: Task) -> None:
        pass

    def finish(self, task: Task, then: OnCommit) -> None:
        self._sim.finished(task)
        then(task)

    async def get(self, task_id: str) -> Task | None:
        return None

    async def get_many(self, task_ids: Sequence[str]) -> list[Task]:
        return []

    async def find(self, *, name: str | None, state: TaskState | None,
                   limit: int) -> list[Task]:
        return []

    async def unfinished(self) -> list[Task]:
        return []

    async def purge(self, finished_before: float) -> int:
        return 0


class _RecordingStore(MemoryStore):
    """An in-memory store (queues, pools, outbox as `MemoryStore` keeps them) whose
    tasks only report their final states to the simulation."""

    def __init__(self, sim: _Simulation) -> None:
        super().__init__()
        self.tasks = _RecordingTasks(sim)  # type: ignore[assignment]


class _Simulation:
    """One run: the hubs (one unless a model adds more), the calendar, the books."""

    #: how many hubs the run drives
    hub_count = 1

    def __init__(self, scenario: Scenario, policy: Policy, progress: bool) -> None:
        self.scenario = scenario
        self.policy = policy
        self.progress = progress
        self.tick = scenario.tick
        self.per_tick = scenario.ticks_per_second
        seed = scenario.seed
        self.service_rng = random.Random(f"{seed}:service")
        self.error_rng = random.Random(f"{seed}:errors")
        self.churn_rng = random.Random(f"{seed}:churn")
        self.streams = [_Arrivals(s, random.Random(f"{seed}:arrivals:{i}"), scenario.duration,
                                  self.per_tick) for i, s in enumerate(scenario.workload)]
        self.workers = [_Worker(self, g, wid) for g in scenario.fleet for wid in g.worker_ids()]
        self.oracle = SpecificityOracle()
        #: a calendar queue: tick -> events in the order they were scheduled, and a heap
        #: of the ticks that have some (cheaper than one heap entry per event)
        self.calendar: dict[int, list[tuple[int, Any, Any, int]]] = {}
        self.ticks: list[int] = []
        self.exec_ids = itertools.count(1)
        #: the current simulated time, and the first tick at or after it
        self.now = 0.0
        self.now_tick = 0
        # A simulated WebSocket answers every ping: its connection lasts until it drops.
        self.hubs = [Hub(_RecordingStore(self), policy=policy, wall_clock=lambda: 0.0,
                         seed=scenario.seed, ping_interval=math.inf)
                     for _ in range(self.hub_count)]
        self.fleets = [PollingFleet(hub) for hub in self.hubs]
        self.hub, self.fleet = self.hubs[0], self.fleets[0]
        # per task, indexed by arrival number
        self.created = array("d")
        self.assigned = array("d")
        self.finals = array("d")
        self.final_state = bytearray()
        #: completed executions of tasks dispatched more than once
        self.redelivered: dict[str, int] = {}
        self.open_streams = 0
        #: executions in progress over the whole fleet
        self.executing = 0
        self.submitted = self.done = self.failed = 0
        self.violations = self.reschedules = self.aborted = self.ignored = 0
        self.events = 0
        self.depth: list[tuple[float, int, int]] = []
        self.sample_every = scenario.sample_every or scenario.duration / 200
        self.unfinished = self.lost = 0

    # -- the driver -----------------------------------------------------------------

    async def main(self) -> None:
        async with trio.open_nursery() as nursery:
            for hub in self.hubs:
                await nursery.start(hub.run)
            self._start()
            await self._loop()
            self._stop()
            nursery.cancel_scope.cancel()

    def _start(self) -> None:
        for w in self.workers:
            self._connect(w)
        self.events += len(self.workers)  # later connects are calendar events
        for arrivals in self.streams:
            if arrivals.next_tick is not None:
                self.open_streams += 1
                self._push(arrivals.next_tick, _ARRIVE, None, arrivals)
        self._push(0, _SAMPLE)

    async def _loop(self) -> None:
        ticks, calendar, tick_len = self.ticks, self.calendar, self.tick
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, trio.testing.MockClock)
        sc = self.scenario
        stop_at = sc.duration + sc.drain
        bar = _progress(self.progress, stop_at, sc.name, self.policy)
        shown = 0
        finish, answer = self._finish_execution, self.answer  # the commonest event's
        try:
            while ticks:
                tick = ticks[0]
                when = tick * tick_len
                if when > self.now:
                    if when > stop_at or self._idle():
                        break
                    if await self._hub_first(clock, when):
                        continue  # hub actors ran and may have added earlier events
                    clock.jump(when - self.now)
                    if bar is not None and int(when) > shown:
                        bar.set_postfix_str(f"{self.done + self.failed:,} tasks final",
                                            refresh=False)
                        bar.update(int(when) - shown)
                        shown = int(when)
                self.now = now = when
                self.now_tick = tick
                heapq.heappop(ticks)
                events = calendar[tick]  # stays in place: events may still be added to it
                i = 0
                while i < len(events):
                    kind, w, item, n = events[i]
                    i += 1
                    if kind == _DONE:
                        if w.polling:
                            await self._report(w, item, n)
                        elif (reply := finish(w, item, n)) is not None:
                            answer(w, item, reply)
                    elif kind == _ARRIVE:
                        await self._arrive(item, tick)
                    elif kind == _POLL:
                        if n == w.generation:
                            self._poll(w)
                    elif kind == _POLL_END:
                        if item is w.poll:
                            self._poll_end(w)
                    elif kind == _DISCONNECT:
                        self._disconnect(w)
                    elif kind == _RECONNECT:
                        self._connect(w)
                    elif kind == _SAMPLE:
                        self._sample(now)
                    else:
                        await self.other(kind, w, item, n)
                del calendar[tick]
                self.events += i
        finally:
            if bar is not None:  # stays on screen: where the run ended, and how fast
                bar.total = max(shown, 1)  # a run that went idle early is complete too
                bar.set_postfix_str(f"{self.done + self.failed:,} tasks final, "
                                    f"{self.submitted - self.done - self.failed:,} not")
                bar.close()

    async def _hub_first(self, clock: trio.testing.MockClock, when: float) -> bool:
        """Let the hub's actors run if any is runnable or due by `when`.

        Jumping the mock clock straight to the next event, after asking trio
        whether any other actor's deadline comes first, is exact and about ten
        times cheaper than sleeping and letting autojump find it. Actors due at
        the same instant as our events go first, so ties resolve the same way
        on every run.
        """
        stats = trio.lowlevel.current_statistics()
        if not stats.tasks_runnable:
            gap = stats.seconds_to_next_deadline
            if self.now + gap > when:
                return False
            clock.jump(max(0.0, gap))
        self.now = clock.current_time()  # the clock stands still while they run
        self.now_tick = self._tick_of(self.now)
        await trio.testing.wait_all_tasks_blocked()
        return True

    def _idle(self) -> bool:
        """Nothing more to come: arrivals are over, every task is final, no worker is busy."""
        return (not self.open_streams and self.submitted == self.done + self.failed
                and not self.executing)

    def _push(self, tick: int, kind: int, worker: _Worker | None = None, item: Any = None,
              n: int = 0) -> None:
        events = self.calendar.get(tick)
        if events is None:
            events = self.calendar[tick] = []
            heapq.heappush(self.ticks, tick)
        events.append((kind, worker, item, n))

    def _tick_of(self, t: float) -> int:
        return math.ceil(t * self.per_tick - _EPSILON)

    def _after(self, seconds: float) -> int:
        """The tick `seconds` from now (at least the next one)."""
        return self.now_tick + max(1, round(seconds * self.per_tick))

    # -- producers --------------------------------------------------------------------

    async def _arrive(self, arrivals: _Arrivals, tick: int) -> None:
        """Submit, as one batch, every task of a stream that arrives in this tick."""
        now, batch, created = self.now, [], self.created
        make, ticks, next_tick = arrivals.make, arrivals.ticks, arrivals.next_tick
        while next_tick is not None and next_tick <= tick:
            batch.append(make(f"t{len(created):08d}", now))
            created.append(now)
            next_tick = next(ticks, None)
        arrivals.next_tick = next_tick
        count = len(batch)
        self.assigned.extend(_NAN * count)
        self.finals.extend(_NAN * count)
        self.final_state.extend(bytes(count))
        self.submitted += count
        self.events += count - 1
        if arrivals.next_tick is None:
            self.open_streams -= 1
        else:
            self._push(arrivals.next_tick, _ARRIVE, None, arrivals)
        await self.submit(arrivals.stream.name, batch)

    async def submit(self, name: str, batch: list[Task]) -> None:
        """A producer's batch of tasks called `name` reaches the hub."""
        await self.hub.submit(batch)

    def finished(self, task: Task) -> None:
        """The store saw a final state."""
        n = int(task.id[1:])
        self.finals[n] = task.finished if task.finished is not None else self.now
        if task.state is TaskState.DONE:
            self.done += 1
            self.final_state[n] = 1
        else:
            self.failed += 1
            self.final_state[n] = 2

    # -- workers: websocket and polling ---------------------------------------------------

    def delivered(self, w: _Worker, task: Task) -> None:
        """The hub dispatched `task` to `w` (or a poll of `w`'s brought it)."""
        self.events += 1
        w.assignments += 1
        if len(task.attempts) > 1:
            self.reschedules += 1
            self.redelivered.setdefault(task.id, 0)
        else:
            self.assigned[int(task.id[1:])] = self.now
        g = w.group
        if not self.oracle.allows(g.name, g.subscriptions, task.name, task.attrs):
            self.violations += 1
        # it executes at once, until a service time later (at least the next tick)
        exec_id = next(self.exec_ids)
        self.executing += 1
        w.running[exec_id] = (self.now, task.id)
        ticks = round(g.service.sample(self.service_rng) * self.per_tick)
        self._push(self.now_tick + max(1, ticks), _DONE, w, task, exec_id)

    def _finish_execution(self, w: _Worker, task: Task, exec_id: int) -> Answer | None:
        """End an execution; its answer, or None if a disconnect aborted it."""
        execution = w.running.pop(exec_id, None)
        if execution is None:
            return None
        self.executing -= 1
        w.busy += self.now - execution[0]
        w.completed += 1
        if task.id in self.redelivered:
            self.redelivered[task.id] += 1
        rate = w.group.error_rate
        if rate and self.error_rng.random() < rate:
            return Answer(task.id, "error", error="simulated failure")
        return Answer(task.id, "done")

    def answer(self, w: _Worker, task: Task, answer: Answer) -> None:
        """A WebSocket worker's answer reaches the hub that dispatched the task."""
        if self.hub.answer(w.id, answer) is not None:
            self.ignored += 1

    async def _report(self, w: _Worker, task: Task, exec_id: int) -> None:
        """A polling worker reports a finished task, as a request of its own."""
        answer = self._finish_execution(w, task, exec_id)
        if answer is None:
            return
        ok = answer.result == "done"
        report = (Report(task.id, "done") if ok else
                  Report(task.id, "failed", error=msgspec.Raw(b'"simulated failure"')))
        fleet = self.fleet_of(w)
        fleet.poller(w.id, w.group.subscriptions[0])  # the request proves it alive
        if await fleet.report(w.id, [report]):
            self.ignored += 1  # its lease had ended and the task is final: a late answer
        if not (w.poll or w.poll_scheduled):
            self._schedule_poll(w, 0.0)

    def _connect(self, w: _Worker) -> None:
        g = w.group
        w.connected = True
        w.since = self.now
        self.oracle.attach(g.subscriptions)  # before: the backlog may be delivered at once
        if w.polling:  # attached by its first poll
            self._schedule_poll(w, 0.0)
        else:
            self.attach(w)
        if g.churn is not None:
            uptime = self.churn_rng.expovariate(1.0 / g.churn.mtbf)
            self._push(self._after(uptime), _DISCONNECT, w)

    def _disconnect(self, w: _Worker) -> None:
        """The worker dies. A WebSocket's connection ends with it; a poller just stops
        polling, and the hub finds out when its liveness window runs out."""
        assert w.group.churn is not None
        now = self.now
        w.connected = False
        w.generation += 1
        w.attached += now - w.since
        for start, _ in w.running.values():
            w.busy += now - start
        self.aborted += len(w.running)
        self.executing -= len(w.running)
        w.running.clear()
        w.poll_scheduled = False
        if w.poll is not None:  # its request is cut off
            assert w.poller is not None
            self.fleet_of(w).close(w.poller, w.group.subscriptions[0].name, w.poll,
                                   cut_off=True)
            w.poll = None
        self.oracle.detach(w.group.subscriptions)
        if not w.polling:
            self.detach(w)
        self._push(self._after(w.group.churn.reconnect.sample(self.churn_rng)), _RECONNECT, w)

    def _schedule_poll(self, w: _Worker, delay: float) -> None:
        w.poll_scheduled = True
        tick = self.now_tick + round(delay * self.per_tick)
        self._push(tick, _POLL, w, None, w.generation)

    def _poll(self, w: _Worker) -> None:
        """Send a poll for as many tasks as the worker has free slots; it is answered as
        soon as a task is dispatched into it, or after `wait` with nothing."""
        w.poll_scheduled = False
        free = w.group.capacity - len(w.running)
        if free <= 0 or w.poll is not None:
            return  # a completion polls again
        poll = w.group.poll
        sub = w.group.subscriptions[0]
        fleet = self.fleet_of(w)
        w.poller = fleet.poller(w.id, sub)
        w.poll = fleet.open(w.poller, sub.name, min(free, poll.max or free))
        if w.poll.tasks:
            self._poll_end(w)
            return
        opened = w.poll
        # answered in this tick once something arrives (a repeat finds it answered)
        opened.notify = lambda: self._push(self.now_tick, _POLL_END, w, opened)
        self._push(self.now_tick + round(poll.wait * self.per_tick), _POLL_END, w, opened)

    def _poll_end(self, w: _Worker) -> None:
        """The poll answers: execute what it brought, then poll again."""
        assert w.poller is not None and w.poll is not None
        poll, w.poll = w.poll, None
        try:
            tasks = self.fleet_of(w).close(w.poller, w.group.subscriptions[0].name, poll)
        except Conflict:  # the hub dropped this poller meanwhile: poll again
            tasks = []
        for task in tasks:
            self.delivered(w, task)
        if w.group.capacity > len(w.running):
            self._schedule_poll(w, 0.0 if tasks else w.group.poll.interval)

    # -- what a model of several hubs overrides -------------------------------------------

    def attach(self, w: _Worker) -> None:
        """A WebSocket worker's connection reaches the hub."""
        g = w.group
        self.hub.attach(w.id, g.subscriptions, w, capacity=g.capacity, transport=g.transport)

    def detach(self, w: _Worker) -> None:
        self.hub.detach(w.id, w)

    def fleet_of(self, w: _Worker) -> PollingFleet:
        """The polling transport a polling worker's requests reach."""
        return self.fleet

    async def other(self, kind: int, w: Any, item: Any, n: int) -> None:
        """A model's own calendar event."""
        raise AssertionError(f"unknown event kind {kind}")

    def in_flight(self) -> set[tuple[str, str]]:
        """(worker, task) dispatched but still on their way to the worker."""
        return set()

    # -- measuring -----------------------------------------------------------------------

    def _sample(self, now: float) -> None:
        queues = [q for hub in self.hubs for q in hub.scheduler.queues.values()]
        self.depth.append((now, sum(q.queued for q in queues), sum(q.running for q in queues)))
        self._push(self._tick_of(now + self.sample_every), _SAMPLE)

    def _stop(self) -> None:
        """Close the books: attached time, executions still running, tasks left behind."""
        now = self.now
        for w in self.workers:
            if w.connected:
                w.attached += now - w.since
                for start, _ in w.running.values():
                    w.busy += now - start
        self._sample(now)
        live = {(w.id, task_id) for w in self.workers for _, task_id in w.running.values()}
        live |= self.in_flight()
        pollers = {w.id for w in self.workers if w.polling}
        tracked = [task for hub in self.hubs for task in hub.scheduler.tasks.values()]
        for task in tracked:
            if task.state is TaskState.QUEUED:
                self.unfinished += 1
                continue
            # a poller's lease that nobody works on runs out and the task is rescheduled
            if (task.worker, task.id) in live or task.worker in pollers:
                self.unfinished += 1
            else:
                self.lost += 1
        # anything neither final nor tracked by the hub vanished
        self.lost += self.submitted - self.done - self.failed - len(tracked)

    def result(self, wall: float) -> RunResult:
        created = self.created
        isnan = math.isnan  # never assigned
        wait = [a - c for a, c in zip(self.assigned, created) if not isnan(a)]
        e2e = [f - c for f, c, state in zip(self.finals, created, self.final_state) if state == 1]
        wait.sort()
        e2e.sort()
        return RunResult(
            scenario=self.scenario,
            policy=self.policy,
            submitted=self.submitted,
            done=self.done,
            failed=self.failed,
            unfinished=self.unfinished,
            lost=self.lost,
            violations=self.violations,
            reschedules=self.reschedules,
            duplicates=sum(max(0, c - 1) for c in self.redelivered.values()),
            aborted=self.aborted,
            ignored_answers=self.ignored,
            events=self.events,
            end=self.now,
            wall=wall,
            workers=[WorkerStats(w.id, w.group.name, w.group.capacity, w.assignments,
                                 w.completed, w.busy, w.attached) for w in self.workers],
            wait=wait,
            e2e=e2e,
            depth=self.depth,
            scale_out=self.scale_out(),
        )

    def scale_out(self) -> dict[str, Any] | None:
        """The partitioned model's figures (None: a plain run)."""
        return None


def _progress(enabled: bool, total: float, name: str, policy: Policy) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the `sim` extra is not installed: no bar
        return None

    return tqdm(total=int(total), unit="sim s", desc=f"{name} [{policy}]", leave=True,
                disable=None, dynamic_ncols=True)  # None: only on a terminal
