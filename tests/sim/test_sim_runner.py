"""The simulator end to end: the shipped scenarios hold the hub's promises, runs repeat exactly.

Each run drives the real hub under trio's MockClock; the shipped scenarios are
shortened (and `big` scaled down) to keep the file to seconds.
"""

import dataclasses
import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workyard import Policy, Scheduler
from workyard.cli import main as workyard_main
from workyard.sim import load_scenario, shipped_scenarios, simulate, summarize
from workyard.sim._report import metrics_document


def shortened(name: str, duration: float = 600.0):
    scenario = load_scenario(name)
    if name == "big":
        scenario = scenario.scaled(0.01)  # 100 workers, ~3,000 tasks in 600 s
    return dataclasses.replace(scenario, duration=min(duration, scenario.duration))


def scenario_file(tmp_path: Path, text: str):
    path = tmp_path / "case.toml"
    path.write_text(text)
    return load_scenario(path)


@pytest.mark.parametrize("name", shipped_scenarios())
def test_no_violations_and_nothing_lost(name):
    run = simulate(shortened(name))
    assert run.submitted > 1000
    assert run.violations == 0
    assert run.lost == 0 and run.unfinished == 0
    assert run.done + run.failed == run.submitted


def test_uniform_is_fair_under_the_hub_policy_and_not_under_attach_order():
    scenario = load_scenario("uniform")
    even = summarize(simulate(scenario, Policy.EVEN))
    attach = summarize(simulate(dataclasses.replace(scenario, duration=600),
                                Policy.ATTACH_ORDER))
    assert even["groups"]["worker"]["jain"] >= 0.99
    assert attach["groups"]["worker"]["jain"] < 0.5  # the first workers take everything
    assert even["violations"] == attach["violations"] == 0


def test_specificity_holds_under_every_policy():
    for policy in Policy:
        assert simulate(shortened("specific", 300), policy).violations == 0


def test_the_oracle_catches_a_scheduler_that_ignores_specificity(monkeypatch):
    def least_specific(self, name, attrs):
        q = self.queues.get(name)
        for shapes in reversed(q.roster.levels if q is not None else []):
            matching = (q.roster.buckets[shape].get(tuple(attrs[k] for k in shape))
                        for shape in shapes if all(k in attrs for k in shape))
            buckets = [bucket for bucket in matching if bucket]
            if buckets:
                return self._best(buckets)
        return None

    monkeypatch.setattr(Scheduler, "pick", least_specific)
    assert simulate(shortened("specific", 120)).violations > 100


def test_a_late_answer_wins_and_the_retry_is_a_duplicate(tmp_path):
    """Service 3 s, timeout 2 s: at 2 s the task moves to the other worker; at 3 s the
    first worker's late answer finishes it; the second execution's answer is ignored."""
    run = simulate(scenario_file(tmp_path, """
        duration = 10
        [[fleet]]
        name = "w"
        count = 2
        service = 3
        subscriptions = [{ name = "slow" }]
        [[workload]]
        name = "slow"
        rate = 0
        bursts = [{ at = 0, count = 1 }]
        timeout = 2
        retries = 1
    """))
    assert (run.submitted, run.done, run.reschedules, run.duplicates, run.ignored_answers) == (
        1, 1, 1, 1, 1)
    assert run.e2e == [3.0] and run.wait == [0.0]
    assert [w.assignments for w in run.workers] == [1, 1]


def test_a_short_polling_worker_takes_tasks_at_its_next_poll(tmp_path):
    """Polls at 0 s and 1 s (no waiting, 1 s apart): a task arriving at 0.5 s waits 0.5 s."""
    run = simulate(scenario_file(tmp_path, """
        duration = 5
        [[fleet]]
        name = "poller"
        count = 1
        service = 0.25
        transport = "polling"
        poll = { wait = 0, interval = 1 }
        subscriptions = [{ name = "job" }]
        [[workload]]
        name = "job"
        rate = 0
        bursts = [{ at = 0.5, count = 1 }]
    """))
    assert run.wait == [0.5] and run.e2e == [0.75]


def test_churn_reschedules_without_losing_anything():
    run = simulate(shortened("churn"))
    assert run.reschedules > 0 and run.aborted > 0
    assert run.lost == 0 and run.done + run.failed == run.submitted
    groups = summarize(run)["groups"]
    assert groups["steady"]["jain_per_attached_hour"] == groups["steady"]["jain"]


def test_same_seed_same_metrics_and_another_seed_differs():
    scenario = shortened("churn", 300)
    first, again = (json.dumps(metrics_document([simulate(scenario)], scale=1)) for _ in "12")
    assert first == again
    other = json.dumps(metrics_document([simulate(dataclasses.replace(scenario, seed=2))],
                                        scale=1))
    assert other != first


def test_a_run_pauses_the_garbage_collector_and_leaves_it_as_it_was(monkeypatch):
    from workyard.sim import _runner

    during = []
    real_run = _runner.trio.run

    def run(*args, **kwargs):
        during.append(gc.isenabled())
        return real_run(*args, **kwargs)

    monkeypatch.setattr(_runner.trio, "run", run)
    simulate(shortened("uniform", 60))
    assert during == [False] and gc.isenabled()
    gc.disable()
    try:
        simulate(shortened("uniform", 60))
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_workyard_sim_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = workyard_main(["sim", "specific", "--duration", "120", "--compare", "-q",
                          "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "assignments.png", "latency.png", "metrics.json", "queue_depth.png", "report.md"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["policy"] == "even" and set(metrics["compare"]) == {"attach-order", "random"}
    assert metrics["violations"] == 0 and metrics["lost"] == 0
    report = (out / "report.md").read_text()
    assert "| **most-specific violations** (must be 0) | **0** | **0** | **0** |" in report
    assert "events/s" in report and "wall" not in json.dumps(metrics)


def test_python_m_is_reproducible_across_processes(tmp_path):
    """Two processes with different string hashing write byte-identical metrics.json."""
    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        done = subprocess.run(
            [sys.executable, "-m", "workyard.sim", "specific", "--duration", "200", "--no-plots",
             "-q", "--out", str(out)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
            timeout=120, check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append((out / "metrics.json").read_bytes())
    assert outputs[0] == outputs[1]


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal, so the progress bar draws into it."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_stays_on_screen_with_where_the_run_ended(monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run = simulate(load_scenario("uniform").scaled(0.02), Policy.EVEN, progress=True)
    last = terminal.getvalue().split("\r")[-1]
    assert last.endswith("\n")  # left in place, not erased
    assert "uniform [even]: 100%" in last
    assert f"{run.done + run.failed:,} tasks final, 0 not" in last
