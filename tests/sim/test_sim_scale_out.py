"""The partitioned scale-out model (`--hubs`, docs/scale-out.md): several real hubs,
each the only scheduler of the task names it owns.

Runs use the shipped `partitioned` scenario scaled down and shortened (about 4,000
tasks each), so the file takes seconds.
"""

import dataclasses
import io
from contextlib import redirect_stderr

import pytest

from workyard import Hub
from workyard.scheduling import Dispatch
from workyard.sim import load_scenario, simulate, summarize
from workyard.sim._cli import main as sim_main
from workyard.sim._partition import Partitioning, capacity_shares


def small(duration: float = 120.0):
    scenario = load_scenario("partitioned").scaled(0.2)
    return dataclasses.replace(scenario, duration=duration)


def test_with_one_hub_the_partitioned_model_is_the_plain_run():
    scenario = small()
    plain = summarize(simulate(scenario))
    model = summarize(simulate(scenario, hubs=1))
    scale_out = model.pop("scale_out")
    assert "scale_out" not in plain
    assert model == plain
    assert scale_out["speedup"] == 1.0
    assert scale_out["spread_violations"] == scale_out["over_capacity"] == 0
    assert [h["relayed"] for h in scale_out["per_hub"]] == [0]


@pytest.mark.parametrize("hubs", [2, 4])
def test_no_task_is_dispatched_by_a_hub_that_does_not_own_its_name(hubs, monkeypatch):
    dispatched: dict[int, set[str]] = {}
    apply = Hub._apply

    def watching(hub, effects):
        for effect in effects:
            if type(effect) is Dispatch:
                dispatched.setdefault(id(hub), set()).add(effect.task.name)
        apply(hub, effects)

    monkeypatch.setattr(Hub, "_apply", watching)
    hub_ids: list[int] = []
    init = Hub.__init__

    def numbered(hub, *args, **kwargs):
        init(hub, *args, **kwargs)
        hub_ids.append(id(hub))

    monkeypatch.setattr(Hub, "__init__", numbered)
    scenario = small()
    run = summarize(simulate(scenario, hubs=hubs))
    partitioning = Partitioning(hubs)
    assert len(hub_ids) == hubs
    names = {s.name for s in scenario.workload}
    assert set().union(*dispatched.values()) == names
    for index, hub_id in enumerate(hub_ids):
        owned = {name for name in names if partitioning.owner(name) == index}
        assert dispatched.get(hub_id, set()) <= owned
        assert set(run["scale_out"]["per_hub"][index]["dispatched"]) <= owned
    assert len(dispatched) > 1  # the names really are spread over several hubs


@pytest.mark.parametrize("span", ["relay", "connect"])
def test_several_hubs_lose_nothing_and_keep_the_most_specific_rule(span):
    run = simulate(small(), hubs=4, span=span)
    assert run.lost == 0 and run.unfinished == 0
    assert run.done + run.failed == run.submitted > 3000
    assert run.violations == 0


def test_even_spread_holds_within_a_hub_but_not_across_hubs():
    one = simulate(small(), hubs=1).scale_out
    two = simulate(small(), hubs=2).scale_out
    assert one is not None and two is not None
    assert one["spread_violations"] == 0
    assert two["spread_violations"] > 0  # a general worker's load elsewhere is unseen


def test_relayed_dispatches_wait_for_the_relay_and_direct_connections_do_not():
    relayed = summarize(simulate(small(), hubs=2, relay=0.05))
    direct = summarize(simulate(small(), hubs=2, relay=0.05, span="connect"))
    hop = round(0.05 * 1024) / 1024  # the relay on the scenario's time grid
    # More than one task in twenty reaches its worker through a relay hop.
    assert relayed["wait"]["p95"] >= hop
    assert relayed["scale_out"]["per_hub"][0]["relayed"] > 0
    assert direct["wait"]["p95"] == 0  # most are taken at once: no hop in between
    assert all(h["relayed"] == 0 for h in direct["scale_out"]["per_hub"])


def test_the_model_repeats_exactly_for_the_same_seed():
    assert summarize(simulate(small(60), hubs=2)) == summarize(simulate(small(60), hubs=2))


def test_ownership_is_a_stable_hash_of_the_name():
    assert [Partitioning(4).owner(n) for n in ("build", "test", "scan", "index")] == [3, 0, 2, 1]
    assert {Partitioning(1).owner(n) for n in ("build", "test", "scan")} == {0}
    with pytest.raises(ValueError):
        Partitioning(0)


def test_a_worker_s_capacity_is_split_between_its_owners():
    assert capacity_shares(4, [8]) == [4]
    assert capacity_shares(4, [3, 5]) == [2, 2]
    assert capacity_shares(4, [2, 1, 1]) == [2, 1, 1]
    assert capacity_shares(1, [1, 1]) == [1, 1]  # over-committed: the model counts it


def test_the_command_refuses_fewer_than_one_hub():
    err = io.StringIO()
    with redirect_stderr(err):
        assert sim_main(["partitioned", "--hubs", "0", "-q", "--no-plots"]) == 2
    assert "--hubs must be at least 1" in err.getvalue()
