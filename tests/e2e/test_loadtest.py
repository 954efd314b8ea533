"""The load-test kit (loadtest/): its pure parts, and one real run of the runner.

The smoke test runs `python loadtest/run.py` on a tiny scenario: a real hub, real
locust users over real sockets, the simulator beside it; then checks the report.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from workyard import Attempt, Outcome, Task, TaskState
from workyard.sim._scenario import load_scenario

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from loadtest import scenario as load_scenarios
from loadtest.analysis import (
    Snapshot,
    attachments,
    counts_by_worker,
    latency,
    violations,
)
from loadtest.plan import Burst, Dist, Stream, group_of
from loadtest.report import merged

#: the smoke run's own bound: start-up, 3 s of load, drain, simulator, report (about 10 s
#: on a quiet machine; a loaded 2-core machine has taken 35 s)
SMOKE_TIMEOUT = 90.0

TINY = """
name = "tiny"
description = "generic, specific and polling workers sharing one task name"
duration = 60
drain = 600

[[fleet]]
name = "any"
count = 3
capacity = 2
service = { dist = "exp", mean = 0.005 }
subscriptions = [{ name = "echo" }]

[[fleet]]
name = "eu"
count = 2
capacity = 2
service = 0.005
error_rate = 0.1
subscriptions = [{ name = "echo", filter = { region = ["eu"] } }]

[[fleet]]
name = "poller"
count = 2
capacity = 2
service = 0.005
transport = "polling"
poll = { wait = 2, interval = 0.1 }
subscriptions = [{ name = "echo", filter = { region = ["us"] } }]

[[workload]]
name = "echo"
rate = 40
attrs = { region = { eu = 1, us = 1, ap = 1 } }
timeout = 10
"""


# --- figures ---------------------------------------------------------------------------


def test_latency_uses_the_simulators_interpolated_percentiles() -> None:
    figures = latency([0.4, 0.1, 0.3, 0.2])
    assert figures["count"] == 4 and figures["max"] == 0.4
    assert figures["p50"] == pytest.approx(0.25)
    assert latency([])["p99"] is None


def test_locust_rows_merge_by_histogram() -> None:
    rows = [{"method": "e2e", "name": "a", "num_requests": 3, "num_failures": 1,
             "max_response_time": 30.0, "response_times": {"10": 2, "30": 1}},
            {"method": "e2e", "name": "b", "num_requests": 1, "num_failures": 0,
             "max_response_time": 100.0, "response_times": {"100": 1}},
            {"method": "GET", "name": "x", "num_requests": 9, "num_failures": 0,
             "max_response_time": 1.0, "response_times": {"1": 9}}]
    both = merged(rows, "e2e")
    assert both is not None
    assert (both["count"], both["fails"], both["p50"], both["p99"], both["max"]) == (
        4, 1, 0.01, 0.1, 0.1)
    assert merged(rows, "dispatch") is None


def _task(task_id: str, attrs: dict[str, str], *attempts: tuple[str, float, Outcome]) -> Task:
    return Task(id=task_id, name="echo", attrs=attrs, state=TaskState.DONE,
                attempts=[Attempt(worker=w, started=t, ended=t + 0.1, outcome=o)
                          for w, t, o in attempts])


def _worker(worker_id: str, since: float, **filters: list[str]) -> dict[str, object]:
    return {"id": worker_id, "connected_since": since,
            "subscriptions": [{"name": "echo", "filter": filters}]}


def test_violation_only_while_a_more_specific_worker_was_seen_attached() -> None:
    generic, specific = _worker("any.1.1", 0.0), _worker("eu.1.2", 10.0, region=["eu"])
    snapshots = [Snapshot(5.0, [generic]), Snapshot(12.0, [generic, specific]),
                 Snapshot(20.0, [generic, specific]), Snapshot(30.0, [generic])]
    attached = attachments(snapshots)
    subs = {a.worker: a.subscriptions for a in attached}
    tasks = [
        _task("before", {"region": "eu"}, ("any.1.1", 8.0, Outcome.DONE)),   # eu not there yet
        _task("during", {"region": "eu"}, ("any.1.1", 15.0, Outcome.DONE)),  # a violation
        _task("other", {"region": "us"}, ("any.1.1", 15.0, Outcome.DONE)),   # eu doesn't match
        _task("right", {"region": "eu"}, ("eu.1.2", 16.0, Outcome.DONE)),
        _task("after", {"region": "eu"}, ("any.1.1", 25.0, Outcome.DONE)),   # not seen since 20
    ]
    found = violations(tasks, attached, subs)
    assert [(v.task, v.worker, v.better) for v in found] == [("during", "any.1.1", "eu.1.2")]


def test_a_reconnect_is_a_new_attachment_but_the_same_worker() -> None:
    snapshots = [Snapshot(1.0, [_worker("w.1.1", 0.5)]), Snapshot(2.0, [_worker("w.1.1", 0.5)]),
                 Snapshot(3.0, [_worker("w.1.1", 2.5)])]
    spans = sorted((a.since, a.until) for a in attachments(snapshots))
    assert spans == [(0.5, 2.0), (2.5, 3.0)]
    tasks = [_task("a", {}, ("w.1.1", 1.0, Outcome.WORKER_LOST), ("w.1.1", 2.6, Outcome.DONE)),
             _task("b", {}, ("w.1.1", 2.7, Outcome.ERROR))]
    processed, assigned = counts_by_worker(tasks)
    assert processed == {"w.1.1": 2} and assigned == {"w.1.1": 3}


def test_group_of_reads_websocket_and_polling_ids() -> None:
    assert group_of("gpu.eu.1234.7") == "gpu.eu"
    assert group_of("poller.1234.7@echo") == "poller"


# --- scenarios and plans --------------------------------------------------------------


def test_effective_scenario_round_trips_through_the_simulators_parser(tmp_path: Path) -> None:
    raw = {"name": "s", "duration": 3600, "drain": 600,
           "fleet": [{"name": "a", "count": 100, "subscriptions": [{"name": "x"}],
                      "service": {"dist": "exp", "mean": 2.0}},
                     {"name": "b", "count": 10, "service": 1, "subscriptions": [
                         {"name": "x", "filter": {"k": ["v w", "u"]}}]}],
           "workload": [{"name": "x", "rate": [[0, 10], [1800, 30]],
                         "attrs": {"k": {"v w": 3, "u": 1}}, "bursts": [{"at": 5, "count": 40}],
                         "priority": {"0": 9, "10": 1}}]}
    scaled = load_scenarios.effective(raw, duration=60, drain=20, workers=11)
    path = tmp_path / "s.toml"
    path.write_text(load_scenarios.to_toml(scaled))
    parsed = load_scenario(path)
    assert (parsed.duration, parsed.drain) == (60, 20)
    assert [g.count for g in parsed.fleet] == [10, 1]
    assert parsed.workload[0].rate == ((0, 1.0), (1800, 3.0))
    assert parsed.workload[0].bursts[0].count == 4
    plan = load_scenarios.load_plan(parsed, out=tmp_path, producers=2)
    stream = plan.workload[0]
    assert stream.attrs == {"k": {"v w": 3.0, "u": 1.0}}
    assert stream.priority == {"0": 9.0, "10": 1.0}
    assert plan.fleet[1].subscriptions[0].filter == {"k": ["u", "v w"]}
    assert plan.users == 11 + 2


def test_a_streams_only_producer_draws_the_simulators_tasks(tmp_path: Path) -> None:
    """Seeded alike, the plan draws what the simulator's producer draws, in its order:
    an arrival time, then each attr, then the priority (the smoke run checks the
    counts against the simulator itself)."""
    path = tmp_path / "s.toml"
    path.write_text(TINY.replace("timeout = 10", "priority = { \"0\" = 3, \"5\" = 1 }\n"
                                 "bursts = [{ at = 1.5, count = 7 }]"))
    scenario = load_scenario(path)
    stream = scenario.workload[0]
    plan = load_scenarios.load_plan(scenario, out=tmp_path, producers=1)
    ours = list(plan.workload[0].arrivals(random.Random("1:arrivals:0"), 5.0))
    rng = random.Random("1:arrivals:0")
    theirs = [(t, {key: choice.sample(rng) for key, choice in stream.attrs},
               stream.priority.sample(rng)) for t in stream.arrivals(rng, 5.0)]
    assert ours == theirs
    assert sum(1 for t, _, _ in ours if t == 1.5) == 7


def test_producers_share_a_stream_without_changing_its_rate() -> None:
    stream = Stream("x", rate=[(0.0, 200.0), (5.0, 0.0)], bursts=[Burst(2.0, 300)])
    rng = random.Random(7)
    counts = [sum(1 for _ in stream.arrivals(rng, 10.0, 1 / 4)) for _ in range(4)]
    expected = 200 * 5 + 300
    assert stream.mean_rate(10.0) == expected / 10
    assert abs(sum(counts) - expected) < 4 * expected**0.5


def test_service_times_follow_their_distribution() -> None:
    rng = random.Random(3)
    exp = [Dist("exp", mean=0.5).sample(rng) for _ in range(4000)]
    assert sum(exp) / len(exp) == pytest.approx(0.5, rel=0.08)
    assert Dist("const", mean=0.25).sample(rng) == 0.25
    assert 1.0 <= Dist("uniform", mean=1.5, low=1.0, high=2.0).sample(rng) <= 2.0


# --- the runner, for real ---------------------------------------------------------------


def test_runner_smoke(tmp_path: Path) -> None:
    """A 3 s run: every submitted task final, no violation, fairness figures present."""
    source = tmp_path / "tiny.toml"
    source.write_text(TINY)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(REPO / "loadtest" / "run.py"), str(source), "--duration", "3s",
         "--drain", "10s", "--out", str(out)],
        check=False, capture_output=True, text=True, timeout=SMOKE_TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    assert summary["submitted"] > 50
    assert summary["lost"] == 0 and summary["unfinished"] == 0 and summary["unknown_ids"] == 0
    assert sum(summary["final"].values()) == summary["submitted"]
    assert summary["violations"] == 0
    groups = summary["groups"]
    assert set(groups) == {"any", "eu", "poller"}
    for group in groups.values():
        assert group["workers"] == group["planned"]
        assert 0 < group["jain"] <= 1 and 0 < group["jain_assigned"] <= 1
    assert report["locust"]["e2e"]["count"] > 0 and report["locust"]["dispatch"]["count"] > 0
    simulated = report["simulated"]
    assert simulated is not None, report["simulated_note"]
    sim_metrics = json.loads((out / "sim" / "metrics.json").read_text())
    assert sim_metrics["submitted"] == summary["submitted"]  # the very same arrivals
    assert set(simulated["jain"]) == {"any", "eu", "poller"}
    for name in ("report.md", "locust.html", "locust_stats.csv", "scenario.toml"):
        assert (out / name).stat().st_size > 0


# --- refusing to run for nothing, and verdicts that never call nothing "ok" ---------------


def test_without_locust_the_runner_refuses_in_one_line_saying_how_to_install(
    tmp_path: Path
) -> None:
    hide_locust = ("import runpy, sys; sys.modules['locust'] = None; "
                   f"sys.argv = ['loadtest/run.py', 'uniform', '--out', {str(tmp_path / 'o')!r}]; "
                   f"runpy.run_path({str(REPO / 'loadtest' / 'run.py')!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", hide_locust], capture_output=True, text=True,
                          check=False, timeout=SMOKE_TIMEOUT, cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("loadtest/run.py: locust not installed for ")
    assert "pip install -e '.[load]'" in done.stderr
    assert not (tmp_path / "o").exists()  # nothing was prepared, let alone started


def test_missing_requirements_names_the_packages_to_install() -> None:
    from loadtest.run import missing_requirements

    absent = {"locust", "websocket"}
    found = missing_requirements(lambda module: None if module in absent else object())
    assert found == ["locust", "websocket-client"]
    assert missing_requirements(lambda module: object()) == []


def _summary(**fields: object) -> Any:
    from loadtest.analysis import Summary

    base: dict[str, Any] = {"submitted": 10, "final": {"done": 10}, "lost": 0, "unfinished": 0,
                            "unknown_ids": 0, "span": 1.0, "throughput": 10.0, "e2e": {},
                            "wait": {}, "groups": {}}
    return Summary(**{**base, **fields})


@pytest.fixture
def plan(tmp_path: Path) -> Any:
    source = tmp_path / "tiny.toml"
    source.write_text(TINY)
    return load_scenarios.load_plan(load_scenario(source), out=tmp_path, producers=1)


def test_a_run_that_submitted_nothing_is_never_ok(plan: Any) -> None:
    from loadtest.report import checks

    verdicts = checks(_summary(submitted=0, final={}), plan, drained_in=0.1)
    assert verdicts[0][:2] == ("tasks submitted", "failed")
    assert "never ran" in verdicts[0][2]
    assert {verdict for _, verdict, _ in verdicts[1:]} == {"not run"}


def test_a_clean_run_is_ok_and_a_lost_task_fails_its_check(plan: Any) -> None:
    from loadtest.report import checks

    assert {v for _, v, _ in checks(_summary(), plan, drained_in=0.5)} == {"ok"}
    lost = {name: v for name, v, _ in checks(_summary(lost=1), plan, drained_in=None)}
    assert lost["no task lost"] == "failed" and lost["tasks submitted"] == "ok"
    assert lost[f"hub drained within {plan.drain:g} s"] == "failed"
