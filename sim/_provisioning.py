"""A worker pool and a simple provisioner that scales it on the hub's `pendingTasks`.

The real hub runs under trio's MockClock with an in-memory store, as in the other
scenarios; the pool is created through `hub.pools` with a `config` declaring its
workers' subscriptions, and the provisioner reads `Hub.pending_tasks()` — the figure
`GET /api/queue/v1/pending/<pool>` serves — every `interval` seconds. It asks for
`ceil(pending / capacity_per_worker)` workers beyond those still booting, within
`max_workers`; a requested worker attaches to the pool `boot` seconds later, and a
pool worker idle for `idle` seconds stops itself while the pool has more than
`min_workers` (a worker's idle timeout, as Taskcluster's generic-worker has).
Static workers outside the pool may take other tasks: the pool's demand must never
count those.

The scenario is a TOML file with a `[provisioner]` table; `pools/autoscale.toml`
ships as `autoscale`. Every worker is an actor and trio orders ties among actors as
it likes, so repeated runs may differ slightly (unlike the other scenarios).
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import trio
import trio.testing

from workyard import Hub, Subscription, Task, TaskState
from workyard.protocol import Answer
from workyard.store import PoolRecord
from workyard.testing import MemoryStore

from ._metrics import percentile
from ._runner import collector_paused
from ._scenario import Dist, ScenarioError, _dist

__all__ = ["ProvisionedRun", "ProvisionedScenario", "is_provisioned", "load_provisioned",
           "run_provisioned", "simulate_provisioned"]

SHIPPED = ("autoscale",)


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    attrs: dict[str, str]
    #: (from simulated second, tasks per second) steps
    rate: tuple[tuple[float, float], ...]
    service: Dist

    def rate_at(self, t: float) -> tuple[float, float]:
        """The rate at `t`, and when it next changes (inf: never)."""
        current, until = 0.0, math.inf
        for start, rate in self.rate:
            if start <= t:
                current = rate
            else:
                until = start
                break
        return current, until


@dataclass(frozen=True, slots=True)
class Static:
    count: int
    capacity: int
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class ProvisionedScenario:
    name: str
    seed: int
    duration: float
    drain: float
    pool_id: str
    subscriptions: tuple[Subscription, ...]
    capacity_per_worker: int
    interval: float
    boot: float
    idle: float
    min_workers: int
    max_workers: int
    workload: tuple[Stream, ...]
    static: tuple[Static, ...] = ()
    sample_every: float = 10.0

    @property
    def config(self) -> dict[str, Any]:
        """The pool's `config`, as a provisioner would create it."""
        return {"subscriptions": [s.to_json() for s in self.subscriptions],
                "capacityPerWorker": self.capacity_per_worker,
                "minCapacity": self.min_workers * self.capacity_per_worker,
                "maxCapacity": self.max_workers * self.capacity_per_worker}


@dataclass(slots=True)
class ProvisionedRun:
    scenario: ProvisionedScenario
    submitted: int = 0
    done: int = 0
    #: neither final nor waiting nor running when the run ended
    lost: int = 0
    #: workers the provisioner requested, and how many attached
    requested: int = 0
    peak_workers: int = 0
    final_workers: int = 0
    #: attached pool-worker seconds (what the pool cost)
    worker_seconds: float = 0.0
    #: per stream: queued -> dispatched, sorted
    waits: dict[str, list[float]] = field(default_factory=dict)
    #: (t, pendingTasks, pool workers attached, booting, queued tasks the pool's
    #: subscriptions match)
    samples: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    #: samples where pendingTasks exceeded the queued tasks the pool could take
    overcounted: int = 0
    end: float = 0.0
    wall: float = 0.0

    def summary(self) -> dict[str, Any]:
        waits = {name: {"tasks": len(w), "p50_s": _round(percentile(w, 50)),
                        "p99_s": _round(percentile(w, 99))} for name, w in self.waits.items()}
        return {"scenario": self.scenario.name, "seed": self.scenario.seed,
                "submitted": self.submitted, "done": self.done, "lost": self.lost,
                "requested_workers": self.requested, "peak_workers": self.peak_workers,
                "final_workers": self.final_workers,
                "pool_worker_hours": round(self.worker_seconds / 3600, 2),
                "peak_pending": max((s[1] for s in self.samples), default=0),
                "overcounted_samples": self.overcounted, "wait": waits,
                "end_s": round(self.end, 1)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- loading -----------------------------------------------------------------------------


def is_provisioned(name_or_path: str) -> bool:
    """A shipped provisioning scenario, or a TOML file with a `[provisioner]` table."""
    if name_or_path in SHIPPED:
        return True
    path = Path(name_or_path)
    if path.suffix != ".toml" or not path.is_file():
        return False
    try:
        return "provisioner" in tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False


def load_provisioned(name_or_path: str) -> ProvisionedScenario:
    if name_or_path in SHIPPED:
        entry = resources.files(__package__).joinpath("scenarios", "pools",
                                                      f"{name_or_path}.toml")
        text, default = entry.read_text(), name_or_path
    else:
        path = Path(name_or_path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
        default = path.stem
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}") from None
    return _parse(raw, default)


def _parse(raw: dict[str, Any], default_name: str) -> ProvisionedScenario:
    def number(table: dict[str, Any], key: str, where: str, *, default: float | None = None,
               whole: bool = False) -> float:
        value = table.get(key, default)
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0
                or (whole and value != int(value))):
            raise ScenarioError(f"{where}.{key} must be a {'whole ' if whole else ''}number "
                                ">= 0")
        return int(value) if whole else float(value)

    def subscriptions(entries: Any, where: str) -> tuple[Subscription, ...]:
        if not isinstance(entries, list) or not entries:
            raise ScenarioError(f"{where}.subscriptions must be a non-empty array")
        try:
            return tuple(Subscription.of(e["name"], e.get("filter")) for e in entries)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ScenarioError(f"{where}.subscriptions: {exc}") from None

    pool, prov = raw.get("pool"), raw.get("provisioner")
    if not isinstance(pool, dict) or not isinstance(prov, dict):
        raise ScenarioError("a provisioning scenario needs [pool] and [provisioner] tables")
    streams = []
    for i, s in enumerate(raw.get("workload", [])):
        where = f"workload[{i}]"
        steps = s.get("rate")
        if isinstance(steps, (int, float)):
            steps = [[0, steps]]
        if not isinstance(steps, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in steps):
            raise ScenarioError(f"{where}.rate must be tasks/s or [[from_s, tasks_per_s], ...]")
        streams.append(Stream(str(s.get("name", "")), {str(k): str(v) for k, v in
                                                        s.get("attrs", {}).items()},
                              tuple((float(a), float(b)) for a, b in steps),
                              _dist(s.get("service", 1.0), f"{where}.service")))
    if not streams:
        raise ScenarioError("a provisioning scenario needs at least one [[workload]]")
    static = tuple(Static(number(g, "count", f"static[{i}]", whole=True),  # type: ignore[arg-type]
                          number(g, "capacity", f"static[{i}]", default=1, whole=True),  # type: ignore[arg-type]
                          subscriptions(g.get("subscriptions"), f"static[{i}]"))
                   for i, g in enumerate(raw.get("static", [])))
    scenario = ProvisionedScenario(
        name=str(raw.get("name", default_name)), seed=int(raw.get("seed", 1)),
        duration=number(raw, "duration", "scenario"),
        drain=number(raw, "drain", "scenario", default=600.0),
        pool_id=str(pool.get("id", "sim/pool")),
        subscriptions=subscriptions(pool.get("subscriptions"), "pool"),
        capacity_per_worker=number(pool, "capacity_per_worker", "pool", default=1,  # type: ignore[arg-type]
                                   whole=True),
        interval=number(prov, "interval", "provisioner", default=15.0),
        boot=number(prov, "boot", "provisioner", default=60.0),
        idle=number(prov, "idle", "provisioner", default=120.0),
        min_workers=number(prov, "min_workers", "provisioner", default=0, whole=True),  # type: ignore[arg-type]
        max_workers=number(prov, "max_workers", "provisioner", default=10, whole=True),  # type: ignore[arg-type]
        workload=tuple(streams), static=static,
        sample_every=number(raw, "sample_every", "scenario", default=10.0))
    if scenario.capacity_per_worker < 1 or scenario.interval <= 0:
        raise ScenarioError("pool.capacity_per_worker and provisioner.interval must be > 0")
    return scenario


# -- the run -----------------------------------------------------------------------------


class _Worker:
    """A simulated worker: the `Link` the hub delivers to; it runs each task for its
    stream's service time and answers through the hub's worker API."""

    def __init__(self, sim: _Sim, worker_id: str, pool: bool) -> None:
        self.sim, self.id, self.pool = sim, worker_id, pool
        self.running = 0
        #: set when a task comes or goes
        self.changed = trio.Event()
        self.attached_at = 0.0

    def deliver(self, task: Task) -> None:
        self.running += 1
        self.changed.set()
        self.sim.dispatched(task)
        self.sim.nursery.start_soon(self._execute, task)

    def close(self, reason: str) -> None:
        """The hub never closes a simulated worker (it answers every ping)."""

    async def _execute(self, task: Task) -> None:
        await trio.sleep(self.sim.service[task.id])
        self.running -= 1
        self.changed.set()
        self.sim.hub.answer(self.id, Answer(task.id, "done"))


class _Sim:
    def __init__(self, scenario: ProvisionedScenario) -> None:
        self.sc = scenario
        self.hub = Hub(MemoryStore(), wall_clock=lambda: 0.0, seed=scenario.seed,
                       ping_interval=math.inf)
        self.rng = random.Random(f"{scenario.seed}:provisioned")
        self.run = ProvisionedRun(scenario)
        self.service: dict[str, float] = {}
        self.queued_at: dict[str, tuple[str, float]] = {}
        self.pool_workers: dict[str, _Worker] = {}
        self.booting = 0
        self.ids = 0
        self.open_streams = len(scenario.workload)
        self.nursery: trio.Nursery

    async def main(self) -> None:
        sc = self.sc
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await nursery.start(self.hub.run)
            await self.hub.pools.create(PoolRecord(
                sc.pool_id, "sim", "simulated pool", json.dumps(sc.config).encode(),
                "sim@example.com", False, 0.0, 0.0))
            for g in sc.static:
                for _ in range(g.count):
                    self.ids += 1
                    w = _Worker(self, f"static-{self.ids}", pool=False)
                    self.hub.attach(w.id, g.subscriptions, w, capacity=g.capacity)
            for i, stream in enumerate(sc.workload):
                nursery.start_soon(self._produce, i, stream)
            nursery.start_soon(self._provision)
            nursery.start_soon(self._sample)
            stop_at = sc.duration + sc.drain
            while trio.current_time() < stop_at and not self._over():
                await trio.sleep(sc.interval)
            self._close_books()
            nursery.cancel_scope.cancel()

    def _over(self) -> bool:
        return (not self.open_streams and not self.hub.scheduler.tasks
                and len(self.pool_workers) <= self.sc.min_workers and not self.booting)

    async def _produce(self, i: int, stream: Stream) -> None:
        rng = random.Random(f"{self.sc.seed}:arrivals:{i}")
        now = trio.current_time()
        while now < self.sc.duration:
            rate, until = stream.rate_at(now)
            gap = rng.expovariate(rate) if rate > 0 else math.inf
            if now + gap >= min(until, self.sc.duration):
                now = min(until, self.sc.duration)  # memoryless: draw again from there
                await trio.sleep_until(now)
                continue
            now += gap
            await trio.sleep_until(now)
            self.ids += 1
            task = Task(id=f"t{self.ids:08d}", name=stream.name, attrs=dict(stream.attrs),
                        created=now)
            self.service[task.id] = stream.service.sample(rng)
            self.queued_at[task.id] = (f"{stream.name} {json.dumps(stream.attrs)}", now)
            self.run.submitted += 1
            await self.hub.submit([task])
        self.open_streams -= 1

    def dispatched(self, task: Task) -> None:
        if len(task.attempts) == 1:
            stream, at = self.queued_at[task.id]
            self.run.waits.setdefault(stream, []).append(trio.current_time() - at)

    async def _provision(self) -> None:
        """Every `interval`: as many workers as the pending tasks need, within the cap."""
        sc = self.sc
        while True:
            pending = self.hub.pending_tasks()[sc.pool_id]
            have = len(self.pool_workers) + self.booting
            want = max(math.ceil(pending / sc.capacity_per_worker) - self.booting,
                       sc.min_workers - have)
            for _ in range(max(0, min(want, sc.max_workers - have))):
                self.booting += 1
                self.run.requested += 1
                self.nursery.start_soon(self._pool_worker)
            await trio.sleep(sc.interval)

    async def _pool_worker(self) -> None:
        sc = self.sc
        await trio.sleep(sc.boot)
        self.booting -= 1
        self.ids += 1
        w = _Worker(self, f"pool-{self.ids}", pool=True)
        w.attached_at = trio.current_time()
        self.pool_workers[w.id] = w
        self.run.peak_workers = max(self.run.peak_workers, len(self.pool_workers))
        self.hub.attach(w.id, sc.subscriptions, w, capacity=sc.capacity_per_worker,
                        worker_pool=sc.pool_id, worker_group="sim")
        while True:  # stop once idle for `idle` seconds, keeping min_workers
            w.changed = trio.Event()
            if w.running:
                await w.changed.wait()
                continue
            with trio.move_on_after(sc.idle) as idle:
                await w.changed.wait()
            if idle.cancelled_caught and len(self.pool_workers) > sc.min_workers:
                break
        del self.pool_workers[w.id]
        self.run.worker_seconds += trio.current_time() - w.attached_at
        self.hub.detach(w.id, w)

    async def _sample(self) -> None:
        sc = self.sc
        while True:
            pending = self.hub.pending_tasks()[sc.pool_id]
            could = sum(1 for t in self.hub.scheduler.tasks.values()
                        if t.state is TaskState.QUEUED
                        and any(s.matches(t.name, t.attrs) for s in sc.subscriptions))
            if pending > could:
                self.run.overcounted += 1
            self.run.samples.append((round(trio.current_time(), 3), pending,
                                     len(self.pool_workers), self.booting, could))
            await trio.sleep(sc.sample_every)

    def _close_books(self) -> None:
        run, now = self.run, trio.current_time()
        run.end = now
        for w in self.pool_workers.values():
            run.worker_seconds += now - w.attached_at
        run.final_workers = len(self.pool_workers)
        live = self.hub.scheduler.tasks
        run.done = run.submitted - len(live)
        attached = self.hub.sessions.attached
        run.lost = sum(1 for t in live.values() if not (
            t.state is TaskState.QUEUED
            or (t.state is TaskState.RUNNING and t.attempts[-1].worker in attached)))
        for waits in run.waits.values():
            waits.sort()


def simulate_provisioned(scenario: ProvisionedScenario) -> ProvisionedRun:
    sim = _Sim(scenario)
    started = time.perf_counter()
    with collector_paused():
        trio.run(sim.main, clock=trio.testing.MockClock(autojump_threshold=0))
    sim.run.wall = time.perf_counter() - started
    return sim.run


# -- the command -------------------------------------------------------------------------


def report_lines(run: ProvisionedRun) -> list[str]:
    s, sc = run.summary(), run.scenario
    lines = [f"# {sc.name}: pool {sc.pool_id} scaled on pendingTasks", "",
             (f"Provisioner: every {sc.interval:g} s, {sc.min_workers}–{sc.max_workers} "
              f"workers of capacity {sc.capacity_per_worker}, boot {sc.boot:g} s, idle stop "
              f"after {sc.idle:g} s; seed {sc.seed}."), "",
             "| measured | value |", "| --- | ---: |"]
    for key in ("submitted", "done", "lost", "requested_workers", "peak_workers",
                "final_workers", "pool_worker_hours", "peak_pending", "overcounted_samples"):
        lines.append(f"| {key.replace('_', ' ')} | {s[key]:,} |")
    lines += ["", "| stream | tasks | wait p50 (s) | wait p99 (s) |", "| --- | ---: | ---: | ---: |"]
    for name, w in s["wait"].items():
        lines.append(f"| `{name}` | {w['tasks']:,} | {w['p50_s']} | {w['p99_s']} |")
    return lines


def run_provisioned(name_or_path: str, *, seed: int | None = None,
                    duration: float | None = None, out: Path | None = None,
                    quiet: bool = False) -> int:
    """`workyard sim autoscale`: run, write report.md and metrics.json, print the table.
    Exits 1 if a task was lost or the pool's demand counted tasks it could not take."""
    scenario = load_provisioned(name_or_path)
    if seed is not None:
        scenario = dataclasses.replace(scenario, seed=seed)
    if duration is not None:
        scenario = dataclasses.replace(scenario, duration=duration)
    run = simulate_provisioned(scenario)
    folder = out or Path("out") / "sim" / scenario.name
    folder.mkdir(parents=True, exist_ok=True)
    lines = report_lines(run)
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    (folder / "metrics.json").write_text(json.dumps(
        {**run.summary(), "samples": run.samples}, indent=1) + "\n")
    if not quiet:
        print("\n".join(lines[4:]))
        print(f"{run.end:,.0f} simulated s in {run.wall:.1f} s wall; wrote {folder}")
    return 1 if run.lost or run.overcounted else 0
