"""Scenarios: a fleet and a workload, read from TOML and checked before anything runs.

A scenario says who attaches (fleet groups of identical workers) and what
arrives (task streams). Everything random about it is drawn from generators
seeded by the scenario's seed, so a scenario and a seed fix the whole run.
See `scenarios/uniform.toml` for a commented example of every field.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
import random
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, TypeVar

from workyard import Subscription

__all__ = [
    "Burst",
    "Choice",
    "Churn",
    "Dist",
    "FleetGroup",
    "Poll",
    "Scenario",
    "ScenarioError",
    "Stream",
    "load_scenario",
    "shipped_scenarios",
]

T = TypeVar("T")


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the offending field."""


# --- random building blocks ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dist:
    """A distribution of durations in seconds.

    TOML: a number (constant), or `{dist = "const", value}`, `{dist = "exp", mean}`,
    `{dist = "uniform", low, high}`, `{dist = "lognormal", mean, sigma}`.
    """

    kind: str
    mean: float
    low: float = 0.0
    high: float = 0.0
    sigma: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return -self.mean * math.log(1.0 - rng.random())
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "lognormal":  # mean of the distribution, sigma of the log
            return rng.lognormvariate(math.log(self.mean) - self.sigma**2 / 2, self.sigma)
        return self.mean

    def describe(self) -> str:
        if self.kind == "exp":
            return f"exp(mean {self.mean:g} s)"
        if self.kind == "uniform":
            return f"uniform({self.low:g}–{self.high:g} s)"
        if self.kind == "lognormal":
            return f"lognormal(mean {self.mean:g} s, σ {self.sigma:g})"
        return f"{self.mean:g} s"


@dataclass(frozen=True, slots=True)
class Choice(Generic[T]):
    """A categorical distribution. TOML: a fixed value, or `{value = weight, ...}`."""

    values: tuple[T, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def fixed(cls, value: T) -> Choice[T]:
        return cls((value,), (1.0,))

    def sample(self, rng: random.Random) -> T:
        if len(self.values) == 1:
            return self.values[0]
        return self.values[bisect.bisect_right(self.cumulative, rng.random() * self.cumulative[-1])]

    def describe(self) -> str:
        if len(self.values) == 1:
            return str(self.values[0])
        total, prev, parts = self.cumulative[-1], 0.0, []
        for value, cum in zip(self.values, self.cumulative):
            parts.append(f"{value} {100 * (cum - prev) / total:.0f}%")
            prev = cum
        return ", ".join(parts)


# --- the scenario --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Churn:
    """Workers drop after exponentially distributed uptimes and come back after `reconnect`."""

    mtbf: float
    reconnect: Dist


@dataclass(frozen=True, slots=True)
class Poll:
    """HTTP polling: a poll is held open `wait` s; after an empty one, pause `interval` s."""

    wait: float = 20.0
    interval: float = 1.0
    #: tasks one poll may take (None: every free slot)
    max: int | None = None


@dataclass(frozen=True, slots=True)
class FleetGroup:
    """`count` identical workers: same subscriptions, capacity, speed, transport and churn."""

    name: str
    count: int
    subscriptions: tuple[Subscription, ...]
    capacity: int
    service: Dist
    error_rate: float = 0.0
    churn: Churn | None = None
    transport: str = "websocket"
    poll: Poll = Poll()

    def worker_ids(self) -> list[str]:
        width = len(str(self.count - 1))
        return [f"{self.name}-{i:0{width}d}" for i in range(self.count)]


@dataclass(frozen=True, slots=True)
class Burst:
    """`count` tasks submitted at once at time `at`."""

    at: float
    count: int


@dataclass(frozen=True, slots=True)
class Stream:
    """Tasks of one name arriving over time."""

    name: str
    #: piecewise-constant rate: (from time, tasks per second), sorted by time
    rate: tuple[tuple[float, float], ...]
    #: "poisson" (exponential gaps) or "uniform" (evenly spaced)
    process: str = "poisson"
    bursts: tuple[Burst, ...] = ()
    attrs: tuple[tuple[str, Choice[str]], ...] = ()
    priority: Choice[int] = Choice.fixed(0)
    timeout: float = 60.0
    retries: int = 3

    def arrivals(self, rng: random.Random, until: float) -> Iterator[float]:
        """Arrival times in [0, until), in order: the rate schedule merged with the bursts."""
        if not self.bursts:
            return self._steady(rng, until)
        bursts = (b.at for b in self.bursts for _ in range(b.count) if b.at < until)
        return heapq.merge(self._steady(rng, until), bursts)

    def _steady(self, rng: random.Random, until: float) -> Iterator[float]:
        for i, (start, rate) in enumerate(self.rate):
            end = self.rate[i + 1][0] if i + 1 < len(self.rate) else until
            end = min(end, until)
            if rate <= 0 or start >= end:
                continue
            t = start
            while True:  # a Poisson process restarts cleanly at a rate change (memoryless)
                t += rng.expovariate(rate) if self.process == "poisson" else 1.0 / rate
                if t >= end:
                    break
                yield t


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    fleet: tuple[FleetGroup, ...]
    workload: tuple[Stream, ...]
    #: seconds during which tasks arrive
    duration: float
    #: at most this long afterwards for the backlog to finish
    drain: float = 600.0
    seed: int = 1
    #: the simulator's time step; a power of two keeps hub deadlines on the grid
    ticks_per_second: int = 1024
    #: seconds between queue-depth samples (default: duration / 200)
    sample_every: float | None = None

    @property
    def tick(self) -> float:
        return 1.0 / self.ticks_per_second

    @property
    def worker_count(self) -> int:
        return sum(g.count for g in self.fleet)

    def scaled(self, factor: float) -> Scenario:
        """The same scenario with `factor` times the workers and the arrival rates."""
        if factor == 1:
            return self
        if not factor > 0:
            raise ScenarioError("scale must be greater than 0")
        fleet = tuple(dataclasses.replace(g, count=max(1, round(g.count * factor)))
                      for g in self.fleet)
        workload = tuple(
            dataclasses.replace(
                s,
                rate=tuple((t, r * factor) for t, r in s.rate),
                bursts=tuple(Burst(b.at, max(1, round(b.count * factor))) for b in s.bursts),
            )
            for s in self.workload
        )
        return dataclasses.replace(self, fleet=fleet, workload=workload)


# --- loading -----------------------------------------------------------------------


def shipped_scenarios() -> list[str]:
    """Names of the scenarios that ship in `workyard/sim/scenarios/`."""
    folder = resources.files(__package__).joinpath("scenarios")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (`uniform`), or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        try:
            text = path.read_text()
        except OSError as exc:
            raise ScenarioError(f"cannot read {path}: {exc.strerror}") from None
        default_name = path.stem
    else:
        entry = resources.files(__package__).joinpath("scenarios", f"{name_or_path}.toml")
        if not entry.is_file():
            raise ScenarioError(f"no scenario {str(name_or_path)!r}; shipped ones: "
                                f"{', '.join(shipped_scenarios())} (or give a .toml path)")
        text = entry.read_text()
        default_name = str(name_or_path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{name_or_path}: {exc}") from None
    return parse_scenario(raw, default_name)


def parse_scenario(raw: Mapping[str, Any], default_name: str = "scenario") -> Scenario:
    top = _Fields(raw, "")
    scenario = Scenario(
        name=top.text("name", default_name),
        description=top.text("description", ""),
        duration=top.number("duration", positive=True),
        drain=top.number("drain", 600.0),
        seed=top.integer("seed", 1),
        ticks_per_second=top.integer("ticks_per_second", 1024, minimum=1),
        sample_every=top.number("sample_every", None, positive=True),
        fleet=tuple(_group(f, f"fleet[{i}]") for i, f in enumerate(top.tables("fleet"))),
        workload=tuple(_stream(s, f"workload[{i}]") for i, s in enumerate(top.tables("workload"))),
    )
    top.done()
    names = [g.name for g in scenario.fleet]
    if len(set(names)) != len(names):
        raise ScenarioError("fleet group names must be unique")
    if not scenario.fleet or not scenario.workload:
        raise ScenarioError("a scenario needs at least one [[fleet]] group and one [[workload]]")
    return scenario


def _group(raw: Any, where: str) -> FleetGroup:
    f = _Fields(raw, where)
    subs = []
    for i, entry in enumerate(f.tables("subscriptions")):
        s = _Fields(entry, f"{where}.subscriptions[{i}]")
        try:
            subs.append(Subscription.of(s.text("name"), s.table("filter", {})))
        except ValueError as exc:
            raise ScenarioError(f"{s.where}: {exc}") from None
        s.done()
    if not subs:
        raise ScenarioError(f"{where}.subscriptions needs at least one entry")
    churn = None
    if "churn" in f.raw:
        c = _Fields(f.raw["churn"], f"{where}.churn")
        churn = Churn(c.number("mtbf", positive=True), _dist(c.raw.get("reconnect", 0.0),
                                                             f"{c.where}.reconnect"))
        c.raw.pop("reconnect", None)
        c.done()
        f.raw.pop("churn")
    transport = f.text("transport", "websocket")
    if transport not in ("websocket", "polling"):
        raise ScenarioError(f"{where}.transport must be websocket or polling")
    if transport == "polling" and len(subs) != 1:
        raise ScenarioError(f"{where}: a polling worker polls one queue with one filter, so "
                            "it needs exactly one subscription")
    poll = Poll()
    if "poll" in f.raw:
        p = _Fields(f.raw.pop("poll"), f"{where}.poll")
        poll = Poll(wait=p.number("wait", 20.0), interval=p.number("interval", 1.0),
                    max=p.integer("max", None, minimum=1))
        p.done()
    error_rate = f.number("error_rate", 0.0)
    if not 0 <= error_rate <= 1:
        raise ScenarioError(f"{where}.error_rate must be between 0 and 1")
    group = FleetGroup(
        name=f.text("name"),
        count=f.integer("count", minimum=1),
        subscriptions=tuple(subs),
        capacity=f.integer("capacity", 1, minimum=1),
        service=_dist(f.raw.pop("service", None), f"{where}.service"),
        error_rate=error_rate,
        churn=churn,
        transport=transport,
        poll=poll,
    )
    f.done()
    return group


def _stream(raw: Any, where: str) -> Stream:
    f = _Fields(raw, where)
    rate_raw = f.raw.pop("rate", None)
    if isinstance(rate_raw, (int, float)) and not isinstance(rate_raw, bool):
        rate: tuple[tuple[float, float], ...] = ((0.0, float(rate_raw)),)
    elif isinstance(rate_raw, list) and rate_raw and all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, (int, float)) for x in p)
        for p in rate_raw
    ):
        rate = tuple((float(t), float(r)) for t, r in rate_raw)
        if list(rate) != sorted(rate) or rate[0][0] != 0:
            raise ScenarioError(f"{where}.rate steps must start at time 0 and be in order")
    else:
        raise ScenarioError(f"{where}.rate must be tasks per second, or [[from time, rate], ...]")
    if any(r < 0 for _, r in rate):
        raise ScenarioError(f"{where}.rate must not be negative")
    bursts = []
    for i, entry in enumerate(f.tables("bursts", required=False)):
        b = _Fields(entry, f"{where}.bursts[{i}]")
        bursts.append(Burst(b.number("at"), b.integer("count", minimum=1)))
        b.done()
    attrs = tuple((key, _choice(value, f"{where}.attrs.{key}", str))
                  for key, value in f.table("attrs", {}).items())
    process = f.text("arrivals", "poisson")
    if process not in ("poisson", "uniform"):
        raise ScenarioError(f"{where}.arrivals must be poisson or uniform")
    stream = Stream(
        name=f.text("name"),
        rate=rate,
        process=process,
        bursts=tuple(sorted(bursts, key=lambda b: b.at)),
        attrs=attrs,
        priority=_choice(f.raw.pop("priority", 0), f"{where}.priority", int),
        timeout=f.number("timeout", 60.0, positive=True),
        retries=f.integer("retries", 3, minimum=0),
    )
    f.done()
    return stream


def _dist(raw: Any, where: str) -> Dist:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw >= 0:
        return Dist("const", float(raw))
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where} must be seconds or a table like {{dist = \"exp\", mean = 2}}")
    f = _Fields(raw, where)
    kind = f.text("dist")
    if kind == "const":
        dist = Dist("const", f.number("value"))
    elif kind == "exp":
        dist = Dist("exp", f.number("mean", positive=True))
    elif kind == "uniform":
        low, high = f.number("low"), f.number("high")
        if not 0 <= low <= high:
            raise ScenarioError(f"{where} needs 0 <= low <= high")
        dist = Dist("uniform", (low + high) / 2, low=low, high=high)
    elif kind == "lognormal":
        dist = Dist("lognormal", f.number("mean", positive=True), sigma=f.number("sigma"))
    else:
        raise ScenarioError(f"{where}.dist must be const, exp, uniform or lognormal")
    f.done()
    return dist


def _choice(raw: Any, where: str, kind: type[T]) -> Choice[T]:
    def convert(value: Any) -> T:
        try:
            return kind(value)  # type: ignore[call-arg]
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: {value!r} is not a valid {kind.__name__}") from None

    if not isinstance(raw, dict):
        return Choice.fixed(convert(raw))
    if not raw:
        raise ScenarioError(f"{where} needs at least one value")
    values, cumulative, total = [], [], 0.0
    for value, weight in raw.items():
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise ScenarioError(f"{where}.{value}: weights must be positive numbers")
        total += weight
        values.append(convert(value))
        cumulative.append(total)
    return Choice(tuple(values), tuple(cumulative))


class _Fields:
    """Reads one TOML table, naming the path in errors and refusing unknown keys."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise ScenarioError(f"{where or 'the scenario'} must be a table")
        self.raw = dict(raw)
        self.where = where

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    _MISSING: Any = object()

    def _get(self, key: str, default: Any) -> Any:
        if key in self.raw:
            return self.raw.pop(key)
        if default is self._MISSING:
            raise ScenarioError(f"{self._path(key)} is required")
        return default

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, str) or (default is self._MISSING and not value):
            raise ScenarioError(f"{self._path(key)} must be a non-empty string")
        return value

    def number(self, key: str, default: Any = _MISSING, *, positive: bool = False) -> Any:
        value = self._get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (
            positive and value == 0
        ):
            kind = "positive" if positive else "non-negative"
            raise ScenarioError(f"{self._path(key)} must be a {kind} number")
        return float(value)

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int = 0) -> Any:
        value = self._get(key, default)
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ScenarioError(f"{self._path(key)} must be an integer >= {minimum}")
        return value

    def table(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise ScenarioError(f"{self._path(key)} must be a table")
        return value

    def tables(self, key: str, *, required: bool = True) -> Any:
        value = self._get(key, self._MISSING if required else [])
        if not isinstance(value, list):
            raise ScenarioError(f"{self._path(key)} must be an array of tables ([[{key}]])")
        return value

    def done(self) -> None:
        if self.raw:
            raise ScenarioError(f"unknown field(s) in {self.where or 'the scenario'}: "
                                f"{', '.join(sorted(self.raw))}")
