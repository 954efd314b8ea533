"""The partitioned scale-out model (docs/scale-out.md): several leader hubs, each the
only scheduler of the task names whose partitions it owns.

Every hub is a real `Hub` with its own scheduler, all in the one trio run. A
producer's batch goes to the owner of its name. A worker whose names span several
owners is served one of two ways (`span`):

* `relay`: its connection lands on its home hub (the owner of most of its names);
  the home relays its attach to every other owner, and their dispatches and its
  answers travel through the home, `relay` seconds per message between hubs;
* `connect`: it opens a connection to each owner itself, with no relay.

Either way a worker's capacity is split between its owners (`capacity_shares`).
Figures the model adds, under `scale_out` in metrics.json:

* per hub: names owned, worker connections, tasks submitted to it, dispatched by it
  (by name), answers it took from WebSocket workers, messages it relayed to or from
  another hub;
* over-capacity dispatches: the worker already held its full capacity over all hubs;
* even-spread violations: when an owner handed a task over, a candidate it saw as
  free held fewer tasks over all hubs than the one it chose;
* Jain's index of busy time per fleet group;
* the speed-up the hubs' work would allow: one hub's work over the busiest hub's.

A worker "holds" what the hubs count as outstanding on it, summed over its owners
(a task on its way through a relay included), so with one hub both counts are 0 by
construction, and what they count is what partitioning costs.
"""

from __future__ import annotations

from typing import Any

from workyard import Policy, Subscription, Task
from workyard.protocol import Answer
from workyard.transports import PollingFleet

from ._metrics import jain_index
from ._partition import Partitioning, capacity_shares
from ._runner import _OTHER, _Simulation, _Worker
from ._scenario import Scenario

__all__ = ["SPANS", "PartitionedSimulation"]

#: how a worker whose names span several owners is served
SPANS = ("relay", "connect")

# The model's own calendar events: a message between two hubs arrives.
_R_DELIVER, _R_ANSWER, _R_ATTACH, _R_DETACH = range(_OTHER, _OTHER + 4)

#: (hub index, the subscriptions it owns, the capacity share it gets)
_Part = tuple[int, tuple[Subscription, ...], int]


class _RemoteLink:
    """A worker as an owner other than its home sees it: each delivery is relayed."""

    __slots__ = ("hub", "sim", "worker")

    def __init__(self, sim: PartitionedSimulation, worker: _Worker, hub: int) -> None:
        self.sim, self.worker, self.hub = sim, worker, hub

    def deliver(self, task: Task) -> None:
        self.sim.relay_delivery(self, task)

    def close(self, reason: str) -> None:
        """Never called: the home detaches the worker before it reconnects."""


class _HubBooks:
    __slots__ = ("answered", "connections", "dispatched", "names", "relayed", "submitted")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.connections = 0
        self.submitted = 0
        self.dispatched: dict[str, int] = {}
        self.answered = 0
        self.relayed = 0

    @property
    def work(self) -> int:
        """Messages handled: what a hub's CPU goes on, one unit each."""
        return self.submitted + sum(self.dispatched.values()) + self.answered + self.relayed


class PartitionedSimulation(_Simulation):
    def __init__(self, scenario: Scenario, policy: Policy, progress: bool, *, hubs: int,
                 relay: float, span: str = "relay") -> None:
        if relay < 0:
            raise ValueError("the relay latency cannot be negative")
        if span not in SPANS:
            raise ValueError(f"span must be one of {', '.join(SPANS)}")
        self.hub_count = hubs
        self.partitioning = Partitioning(hubs)
        self.relay = relay
        self.span = span
        super().__init__(scenario, policy, progress)
        self.relay_ticks = max(1, round(relay * self.per_tick))
        names = sorted({s.name for s in scenario.workload}
                       | {sub.name for g in scenario.fleet for sub in g.subscriptions})
        self.owners = {name: self.partitioning.owner(name) for name in names}
        self.books = [_HubBooks() for _ in self.hubs]
        for name in names:
            self.books[self.owners[name]].names.append(name)
        self.plans: dict[str, list[_Part]] = {}
        for g in scenario.fleet:
            parts = self.partitioning.split(g.subscriptions)
            shares = capacity_shares(g.capacity, [len(subs) for subs in parts.values()])
            self.plans[g.name] = [(hub, subs, share)
                                  for (hub, subs), share in zip(parts.items(), shares)]
            for hub in list(parts)[:1] if span == "relay" else parts:
                self.books[hub].connections += g.count
        #: the hubs each group's workers are attached at
        self.owners_of = {name: [hub for hub, _, _ in plan] for name, plan in self.plans.items()}
        self.group_of = {w.id: w.group.name for w in self.workers}
        #: (worker, task) -> deliveries on their way
        self.flying: dict[tuple[str, str], int] = {}
        self.links: dict[tuple[str, int], _RemoteLink] = {}
        self.over_capacity = self.spread_violations = 0

    def _home(self, w: _Worker) -> int:
        return self.plans[w.group.name][0][0]

    # -- producers: straight to the owner (the SDK knows the partition map) -------------

    async def submit(self, name: str, batch: list[Task]) -> None:
        owner = self.owners[name]
        self.books[owner].submitted += len(batch)
        await self.hubs[owner].submit(batch)

    # -- workers ---------------------------------------------------------------------------

    def attach(self, w: _Worker) -> None:
        (home, subs, share), *remote = self.plans[w.group.name]
        self.hubs[home].attach(w.id, subs, w, capacity=share, transport=w.group.transport)
        for part in remote:
            self._relay(home, part[0], _R_ATTACH, w, part, w.generation)

    def detach(self, w: _Worker) -> None:
        (home, _, _), *remote = self.plans[w.group.name]
        self.hubs[home].detach(w.id, w)
        for hub, _, _ in remote:
            link = self.links.pop((w.id, hub), None)
            if link is not None:  # else its attach is still on the way, and will be refused
                self._relay(home, hub, _R_DETACH, w, link)

    def fleet_of(self, w: _Worker) -> PollingFleet:
        return self.fleets[self._home(w)]  # one subscription: its home owns it

    def delivered(self, w: _Worker, task: Task) -> None:
        """The home hub (the owner) dispatched `task` to `w` directly."""
        self._handed_over(w, self._home(w), task)
        super().delivered(w, task)

    def relay_delivery(self, link: _RemoteLink, task: Task) -> None:
        """Another owner dispatched `task` to `w`: it reaches `w` through its home."""
        w = link.worker
        self._handed_over(w, link.hub, task)
        key = (w.id, task.id)
        self.flying[key] = self.flying.get(key, 0) + 1
        self._relay(link.hub, self._home(w), _R_DELIVER, w, task, w.generation)

    def answer(self, w: _Worker, task: Task, answer: Answer) -> None:
        owner, home = self.owners[task.name], self._home(w)
        if owner == home:
            self._answer(owner, w, answer)
        else:
            self._relay(home, owner, _R_ANSWER, w, answer, owner)

    async def other(self, kind: int, w: Any, item: Any, n: int) -> None:
        self._message(kind, w, item, n)

    def _message(self, kind: int, w: Any, item: Any, n: int) -> None:
        """A message between two hubs arrives (or, with `span="connect"`, goes straight
        between the worker and its owner)."""
        if kind == _R_DELIVER:
            key = (w.id, item.id)
            self.flying[key] -= 1
            if not self.flying[key]:
                del self.flying[key]
            if w.connected and n == w.generation:
                super().delivered(w, item)
            # else the connection it was for is gone, and its owner's detach requeues it
        elif kind == _R_ANSWER:
            self._answer(n, w, item)
        elif kind == _R_ATTACH:
            if w.connected and n == w.generation:  # not for a connection that is gone
                hub, subs, share = item
                link = self.links[(w.id, hub)] = _RemoteLink(self, w, hub)
                self.hubs[hub].attach(w.id, subs, link, capacity=share,
                                      transport=w.group.transport)
        elif kind == _R_DETACH:
            self.hubs[item.hub].detach(w.id, item)
        else:
            raise AssertionError(f"unknown event kind {kind}")

    def _relay(self, source: int, target: int, kind: int, w: _Worker, item: Any,
               n: int = 0) -> None:
        if self.span == "connect":
            self._message(kind, w, item, n)
            return
        self.books[source].relayed += 1
        self.books[target].relayed += 1
        self._push(self.now_tick + self.relay_ticks, kind, w, item, n)

    def _answer(self, hub: int, w: _Worker, answer: Answer) -> None:
        self.books[hub].answered += 1
        if self.hubs[hub].answer(w.id, answer) is not None:
            self.ignored += 1

    def _held(self, worker_id: str) -> int:
        """Tasks the hubs count as outstanding on a worker, summed over its owners."""
        held = 0
        for hub in self.owners_of[self.group_of[worker_id]]:
            state = self.hubs[hub].scheduler.workers.get(worker_id)
            if state is not None:
                held += len(state.outstanding)
        return held

    def _handed_over(self, w: _Worker, hub: int, task: Task) -> None:
        """Book a dispatch at the moment its hub decided it (the task counts as
        outstanding on `w` already)."""
        books = self.books[hub]
        books.dispatched[task.name] = books.dispatched.get(task.name, 0) + 1
        scheduler = self.hubs[hub].scheduler
        seen = len(scheduler.workers[w.id].outstanding) - 1
        held = self._held(w.id) - 1
        if held >= w.group.capacity:
            self.over_capacity += 1
        # Only a worker holding tasks this hub cannot see may be the wrong choice: with
        # one hub the scheduler's own count is the whole truth.
        if held > seen and any(
                c.id != w.id and c.free_for(task.name) and self._held(c.id) < held
                for c in scheduler.candidates(task.name, task.attrs)):
            self.spread_violations += 1

    def in_flight(self) -> set[tuple[str, str]]:
        return set(self.flying)

    def scale_out(self) -> dict[str, Any]:
        busy: dict[str, list[float]] = {}
        for w in self.workers:
            busy.setdefault(w.group.name, []).append(w.busy)
        single = sum(b.submitted + sum(b.dispatched.values()) + b.answered for b in self.books)
        busiest = max(b.work for b in self.books)
        return {
            "hubs": len(self.hubs),
            "span": self.span,
            "relay": self.relay,
            "partitions": self.partitioning.partitions,
            "over_capacity": self.over_capacity,
            "spread_violations": self.spread_violations,
            "busy_jain": {name: round(jain_index(values), 6) for name, values in busy.items()},
            "speedup": round(single / busiest, 6) if busiest else None,
            "per_hub": [{"names": b.names, "connections": b.connections,
                         "submitted": b.submitted,
                         "dispatched": dict(sorted(b.dispatched.items())),
                         "answered": b.answered, "relayed": b.relayed, "work": b.work}
                        for b in self.books],
        }
