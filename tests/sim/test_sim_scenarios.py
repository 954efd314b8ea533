"""Scenario files: the shipped ones parse, bad ones are refused with the field named."""

import random
import re
from pathlib import Path

import pytest

from workyard.sim import ScenarioError, load_scenario, shipped_scenarios


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


MINIMAL = """
duration = 60
[[fleet]]
name = "w"
count = 2
service = 1
subscriptions = [{ name = "work" }]
[[workload]]
name = "work"
rate = 1
"""


def test_the_shipped_scenarios():
    assert shipped_scenarios() == ["big", "churn", "heterogeneous", "partitioned", "specific",
                                   "uniform"]
    for name in shipped_scenarios():
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description
    big = load_scenario("big")
    assert big.worker_count == 10_000
    assert sum(r for _, r in big.workload[0].rate) * big.duration == 1_000_000
    assert load_scenario("uniform").worker_count == 100
    specific = load_scenario("specific")
    assert {s.specificity for g in specific.fleet for s in g.subscriptions} == {0, 1, 2}
    churn = load_scenario("churn")
    assert {g.transport for g in churn.fleet} == {"websocket", "polling"}
    assert any(g.churn for g in churn.fleet)
    partitioned = load_scenario("partitioned")
    assert len({s.name for s in partitioned.workload}) == 8  # names to spread over hubs
    assert any(len({s.name for s in g.subscriptions}) == 8 for g in partitioned.fleet)


def test_defaults_and_scaling(tmp_path):
    scenario = load_scenario(write(tmp_path, MINIMAL))
    assert scenario.name == "scenario"  # the file's stem
    group, stream = scenario.fleet[0], scenario.workload[0]
    assert (group.capacity, group.transport, group.churn, group.service.mean) == (
        1, "websocket", None, 1.0)
    assert (stream.timeout, stream.retries, stream.process) == (60.0, 3, "poisson")
    half = scenario.scaled(0.5)
    assert half.fleet[0].count == 1 and half.workload[0].rate == ((0.0, 0.5),)


def test_arrivals_follow_steps_and_bursts(tmp_path):
    scenario = load_scenario(write(tmp_path, MINIMAL.replace(
        "rate = 1", 'rate = [[0, 2], [10, 0], [20, 1]]\narrivals = "uniform"\n'
        "bursts = [{ at = 15, count = 3 }]")))
    times = list(scenario.workload[0].arrivals(random.Random(1), until=30))
    assert times == [0.5 * i for i in range(1, 20)] + [15.0] * 3 + [21.0 + i for i in range(9)]


@pytest.mark.parametrize(("change", "message"), [
    (("count = 2", "count = 0"), "fleet[0].count must be an integer >= 1"),
    (("service = 1", 'service = { dist = "gamma", mean = 1 }'), "fleet[0].service.dist"),
    (("service = 1", 'service = { dist = "exp" }'), "fleet[0].service.mean is required"),
    (('name = "w"', 'name = "w"\ncolour = "red"'), "unknown field(s) in fleet[0]: colour"),
    (("rate = 1", "rate = [[5, 1]]"), "workload[0].rate steps must start at time 0"),
    (("rate = 1", 'rate = 1\nattrs = { cloud = { aws = 0 } }'), "weights must be positive"),
    (('subscriptions = [{ name = "work" }]', "subscriptions = []"),
     "fleet[0].subscriptions needs at least one entry"),
])
def test_bad_scenarios_name_the_field(tmp_path, change, message):
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_scenario(write(tmp_path, MINIMAL.replace(*change)))


def test_unknown_scenario_lists_the_shipped_ones():
    with pytest.raises(ScenarioError, match="shipped ones: big, churn"):
        load_scenario("nosuch")
