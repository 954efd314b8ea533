"""A worker pool and a simple provisioner in the simulator: the real hub's pendingTasks
drives the scaling (`workyard sim autoscale`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workyard.cli import main as workyard_main
from workyard.sim import ScenarioError
from workyard.sim._provisioning import is_provisioned, load_provisioned, simulate_provisioned

RUSH = """
name = "rush"
seed = 3
duration = 900
drain = 900
[pool]
id = "sim/linux"
capacity_per_worker = 2
subscriptions = [{ name = "build", filter = { os = ["linux"] } }]
[provisioner]
interval = 10
boot = 30
idle = 60
min_workers = 0
max_workers = 12
[[workload]]
name = "build"
attrs = { os = "linux" }
rate = [[0, 0.0], [100, 1.0], [500, 0.0]]
service = { dist = "exp", mean = 10 }
[[workload]]
name = "build"
attrs = { os = "mac" }
rate = 0.5
service = { dist = "exp", mean = 1.6 }   # 80 % load: a backlog forms now and then
[[static]]
count = 1
capacity = 1
subscriptions = [{ name = "build", filter = { os = ["mac"] } }]
"""


@pytest.fixture
def rush(tmp_path: Path) -> Path:
    path = tmp_path / "rush.toml"
    path.write_text(RUSH)
    return path


def test_the_pool_grows_with_its_pending_tasks_and_shrinks_when_they_are_gone(
        rush: Path) -> None:
    run = simulate_provisioned(load_provisioned(str(rush)))
    assert run.submitted > 600 and run.done == run.submitted and run.lost == 0
    assert run.peak_workers >= 4 and run.final_workers == 0
    # the mac backlog, which only the static worker takes, never counted as the pool's
    assert run.overcounted == 0
    quiet = [s for s in run.samples if s[0] < 100]
    assert quiet and all(s[1] == 0 and s[2] == 0 for s in quiet)  # no demand, no workers
    assert max(s[1] for s in run.samples) > 0


def test_the_command_runs_the_shipped_scenario_and_writes_its_report(tmp_path: Path) -> None:
    assert is_provisioned("autoscale") and not is_provisioned("uniform")
    code = workyard_main(["sim", "autoscale", "--duration", "600", "--out", str(tmp_path),
                          "-q"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["lost"] == 0 and metrics["done"] == metrics["submitted"] > 0
    assert "pendingTasks" in (tmp_path / "report.md").read_text()


def test_a_provisioning_scenario_without_its_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[provisioner]\ninterval = 5\n')
    with pytest.raises(ScenarioError, match=r"\[pool\] and \[provisioner\]"):
        load_provisioned(str(path))
