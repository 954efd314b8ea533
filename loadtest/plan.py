"""The load plan: a scenario resolved for locust, in the simulator's vocabulary.

The runner builds it from a simulator scenario (fleet groups and workload
streams, with the same field names), adds what only a load test needs (how
many producer users, how they batch), writes it as JSON and names it in
`WORKYARD_LOAD_PLAN`; each locust process reads it at import. Pure data
(msgspec) so locust processes never import the simulator or trio.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec

__all__ = [
    "ATTACH_LIMIT",
    "PLAN_ENV",
    "Burst",
    "Churn",
    "Dist",
    "Plan",
    "Poll",
    "Stream",
    "SubscriptionSpec",
    "WorkerGroup",
    "group_of",
    "pick",
]

PLAN_ENV = "WORKYARD_LOAD_PLAN"
#: seconds the fleet may take to attach before arrivals start anyway
ATTACH_LIMIT = 15.0


class Dist(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Seconds, drawn as the simulator draws them: const, exp, uniform or lognormal."""

    kind: Literal["const", "exp", "uniform", "lognormal"] = "const"
    mean: float = 0.0
    low: float = 0.0
    high: float = 0.0
    sigma: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.mean) if self.mean > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(self.mean) - self.sigma**2 / 2, self.sigma)
        return self.mean


def pick(weights: dict[str, float], rng: random.Random) -> str:
    """A value from `{value: weight}`, drawn as the simulator's `Choice` draws it."""
    if len(weights) == 1:
        return next(iter(weights))
    values = list(weights)
    cumulative = list(itertools.accumulate(weights.values()))
    return values[bisect.bisect_right(cumulative, rng.random() * cumulative[-1])]


class SubscriptionSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One declaration, as a worker sends it: `{"name", "filter": {key: [values]}}`."""

    name: str
    filter: dict[str, list[str]] = {}


class Churn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Connections drop after exponential uptimes (mean `mtbf` s), back after `reconnect`."""

    mtbf: float
    reconnect: Dist = Dist()


class Poll(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Polling: a poll is held open `wait` s; after an empty one, pause `interval` s."""

    wait: float = 20.0
    interval: float = 1.0
    #: tasks one poll may take (None: every free slot)
    max: int | None = None


class WorkerGroup(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`count` identical workers: same subscriptions, capacity, speed, transport and churn."""

    name: str
    count: int
    subscriptions: list[SubscriptionSpec]
    capacity: int = 1
    service: Dist = Dist()
    error_rate: float = 0.0
    churn: Churn | None = None
    transport: Literal["websocket", "polling"] = "websocket"
    poll: Poll = Poll()

    def worker_id(self, process: int, n: int) -> str:
        """Unique across locust processes; `group_of` reads the group back."""
        return f"{self.name}.{process}.{n}"


def group_of(worker_id: str) -> str:
    """The group of a worker id made by `WorkerGroup.worker_id`, also as a poller
    (`{worker_id}@{queue}`)."""
    return worker_id.rsplit("@", 1)[0].rsplit(".", 2)[0]


class Burst(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: float
    count: int


class Stream(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Tasks of one name arriving over time, split among `producers` locust users."""

    name: str
    #: piecewise-constant rate: [from time, tasks per second], sorted by time
    rate: list[tuple[float, float]]
    process: Literal["poisson", "uniform"] = "poisson"
    bursts: list[Burst] = []
    #: attr → {value: weight}
    attrs: dict[str, dict[str, float]] = {}
    #: priority → weight
    priority: dict[str, float] = msgspec.field(default_factory=lambda: {"0": 1.0})
    timeout: float = 60.0
    retries: int = 3
    producers: int = 1
    #: seconds between a producer's submissions: everything that arrived meanwhile
    #: goes in one batched POST
    window: float = 0.05

    def arrivals(self, rng: random.Random, until: float, share: float = 1.0,
                 ) -> Iterator[tuple[float, dict[str, str], int]]:
        """(arrival time in [0, until), attrs, priority) for a producer carrying `share`
        of the stream.

        With the whole stream (`share` 1) the draws are the simulator's, in its order,
        so a generator seeded as the simulator seeds it yields the very same tasks.
        A share thins Poisson arrivals exactly, spreads uniform ones with a random
        phase, and gives each burst task to this producer with probability `share`.
        """
        whole = share >= 1.0
        bursts = (b.at for b in self.bursts for _ in range(b.count)
                  if b.at < until and (whole or rng.random() < share))
        for t in heapq.merge(self._steady(rng, until, share), bursts):
            attrs = {key: pick(weights, rng) for key, weights in self.attrs.items()}
            yield t, attrs, int(pick(self.priority, rng))

    def _steady(self, rng: random.Random, until: float, share: float) -> Iterator[float]:
        for i, (start, rate) in enumerate(self.rate):
            end = min(self.rate[i + 1][0] if i + 1 < len(self.rate) else until, until)
            rate *= min(share, 1.0)
            if rate <= 0 or start >= end:
                continue
            t = start
            if self.process == "uniform" and share < 1.0:
                t += rng.uniform(0, 1.0 / rate)
            while True:
                t += rng.expovariate(rate) if self.process == "poisson" else 1.0 / rate
                if t >= end:
                    break
                yield t

    def mean_rate(self, duration: float) -> float:
        """Tasks per second over [0, duration), bursts included."""
        total = sum(b.count for b in self.bursts if b.at < duration)
        for i, (start, rate) in enumerate(self.rate):
            end = min(self.rate[i + 1][0] if i + 1 < len(self.rate) else duration, duration)
            total += rate * max(0.0, end - start)
        return total / duration


class Plan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    scenario: str
    #: seconds producers submit for; workers keep going while the hub drains
    duration: float
    #: seconds the hub gets after `duration` to finish every task
    drain: float
    fleet: list[WorkerGroup]
    workload: list[Stream]
    #: producers append the ids the hub accepted to files in this folder
    ids_dir: str = ""
    #: the drain watcher writes what it saw here
    drain_file: str = ""
    #: the scenario's seed: a stream with one producer draws the simulator's arrivals
    seed: int = 1

    @property
    def users(self) -> int:
        return sum(g.count for g in self.fleet) + sum(s.producers for s in self.workload)

    @property
    def rate(self) -> float:
        """Tasks per second offered, on average."""
        return sum(s.mean_rate(self.duration) for s in self.workload)

    def dump(self, path: Path) -> None:
        path.write_bytes(msgspec.json.format(msgspec.json.encode(self)))

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return msgspec.json.decode(Path(path).read_bytes(), type=cls)
