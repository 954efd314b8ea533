"""Scenarios for load runs: the simulator's files, its parser, and its figures.

A load run plays a simulator scenario (`workyard.sim` scenarios, or any TOML
file in that format) against a real hub. The runner first writes the
*effective* scenario — the original with the run's duration, drain and scale —
so that the load test and the simulator run exactly the same thing; then it
turns that into a locust plan, and later asks the simulator for its figures.
Runs in the runner's process only (it imports the simulator, hence trio).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from workyard.sim import Scenario, load_scenario

from .analysis import Figures
from .plan import Burst, Churn, Dist, Plan, Poll, Stream, SubscriptionSpec, WorkerGroup

__all__ = [
    "POLL_LIVENESS",
    "effective",
    "figures_of",
    "load_plan",
    "read_source",
    "simulate",
    "to_toml",
]

#: seconds a silent polling worker stays attached (the hub's `--poll-liveness`)
POLL_LIVENESS = 10.0
#: seconds the simulator may take for one scenario
SIM_TIMEOUT = 300.0


def read_source(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """A shipped scenario by name, or a TOML file by path: (name, raw TOML tables)."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        text, name = path.read_text(), path.stem
    else:
        entry = resources.files("workyard.sim").joinpath("scenarios", f"{name_or_path}.toml")
        load_scenario(name_or_path)  # a missing name fails here, listing the shipped ones
        text, name = entry.read_text(), name_or_path
    raw = tomllib.loads(text)
    return str(raw.get("name", name)), raw


def effective(raw: Mapping[str, Any], *, duration: float, drain: float,
              workers: int | None) -> dict[str, Any]:
    """The scenario with this run's duration and drain, scaled to about `workers` workers
    (workers and arrival rates alike, as the simulator's `Scenario.scaled` does)."""
    out = json.loads(json.dumps(raw))  # a deep copy of plain TOML data
    out["duration"], out["drain"] = duration, drain
    if workers is None:
        return out
    factor = workers / sum(g["count"] for g in out["fleet"])
    for group in out["fleet"]:
        group["count"] = max(1, round(group["count"] * factor))
    for stream in out["workload"]:
        rate = stream["rate"]
        stream["rate"] = ([[t, r * factor] for t, r in rate] if isinstance(rate, list)
                          else rate * factor)
        for burst in stream.get("bursts", []):
            burst["count"] = max(1, round(burst["count"] * factor))
    return out


def to_toml(raw: Mapping[str, Any]) -> str:
    """TOML for a scenario's tables: top-level values, then arrays of tables."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in raw.items() if not _is_tables(v)]
    for key, tables in raw.items():
        if _is_tables(tables):
            for table in tables:
                lines += ["", f"[[{_key(key)}]]"]
                lines += [f"{_key(k)} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


# --- scenario → plan -------------------------------------------------------------------


def _dist(d: Any) -> Dist:
    """The plan's copy of a simulator `Dist`."""
    return Dist(kind=d.kind, mean=d.mean, low=d.low, high=d.high, sigma=d.sigma)


def _weights(choice: Any) -> dict[str, float]:
    """`{value: weight}` of a simulator `Choice`."""
    cumulative = (0.0, *choice.cumulative)
    return {str(v): cumulative[i + 1] - cumulative[i] for i, v in enumerate(choice.values)}


def load_plan(scenario: Scenario, *, out: Path, producers: int) -> Plan:
    """The locust plan for a parsed scenario; each stream gets `producers` producer users."""
    fleet = []
    for g in scenario.fleet:
        if g.transport == "polling" and len({s.name for s in g.subscriptions}) != 1:
            raise ValueError(f"fleet group {g.name!r}: a polling worker polls one queue, so it "
                             "needs exactly one task name")
        fleet.append(WorkerGroup(
            name=g.name, count=g.count,
            subscriptions=[SubscriptionSpec(s.name, {k: sorted(v) for k, v in s.filter.items()})
                           for s in g.subscriptions],
            capacity=g.capacity, service=_dist(g.service), error_rate=g.error_rate,
            churn=None if g.churn is None else Churn(g.churn.mtbf, _dist(g.churn.reconnect)),
            transport=g.transport,  # type: ignore[arg-type]
            poll=Poll(g.poll.wait, g.poll.interval, g.poll.max)))
    workload = [Stream(
        name=s.name, rate=[(t, r) for t, r in s.rate], process=s.process,  # type: ignore[arg-type]
        bursts=[Burst(b.at, b.count) for b in s.bursts],
        attrs={k: _weights(c) for k, c in s.attrs}, priority=_weights(s.priority),
        timeout=s.timeout, retries=s.retries, producers=producers)
        for s in scenario.workload]
    return Plan(scenario=scenario.name, duration=scenario.duration, drain=scenario.drain,
                fleet=fleet, workload=workload, ids_dir=str(out / "ids"),
                drain_file=str(out / "drain.json"), seed=scenario.seed)


# --- the simulator's figures -------------------------------------------------------------


def simulate(scenario_file: Path, out: Path) -> tuple[Figures | None, str]:
    """Run the simulator on the same effective scenario; its figures, or why there are none."""
    cmd = [sys.executable, "-m", "workyard.sim", str(scenario_file), "--out", str(out),
           "--quiet"]
    out.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SIM_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired:
        return None, f"the simulator took longer than {SIM_TIMEOUT:g} s"
    (out / "sim.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"`{' '.join(cmd[1:])}` failed ({done.returncode}): {last}"
    try:
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        return None, f"the simulator wrote no readable metrics.json ({exc})"
    return figures_of(metrics), ""


def figures_of(metrics: Mapping[str, Any]) -> Figures:
    """The comparable figures in the simulator's metrics.json (its hub policy's run)."""
    e2e = metrics.get("e2e") or {}
    return Figures(
        throughput=metrics.get("throughput"), p50=e2e.get("p50"), p99=e2e.get("p99"),
        jain={name: g.get("jain") for name, g in (metrics.get("groups") or {}).items()},
        violations=metrics.get("violations"), lost=metrics.get("lost"),
        unfinished=metrics.get("unfinished"))
