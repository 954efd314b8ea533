"""The plots show what the simulator compares: zeros that a log axis cannot draw
become a CDF's starting height, identical lines are drawn once under every policy's
name, and every run writes its three PNGs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from workyard import Policy
from workyard.sim import load_scenario, simulate
from workyard.sim._plots import _cdf, _same, write_plots

pytest.importorskip("matplotlib")


def test_a_cdf_starts_at_the_share_of_zeros_and_ends_at_one() -> None:
    zero, xs, ys = _cdf([0.0, 0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0])
    assert zero == 3 / 8
    assert xs[0] == 1.0 and xs[-1] == 8.0 and all(x > 0 for x in xs)
    assert ys[0] == 4 / 8 and ys[-1] == 1.0


def test_a_cdf_of_nothing_but_zeros_has_no_points_to_draw() -> None:
    assert _cdf([0.0, 0.0]) == (1.0, [], [])
    assert _cdf([]) == (0.0, [], [])


def test_identical_series_are_grouped_in_first_seen_order() -> None:
    assert _same(["a", "b", "a", "c"], lambda x: x) == [[0, 2], [1], [3]]  # type: ignore[arg-type]


def test_a_compared_run_writes_its_three_plots(tmp_path: Path) -> None:
    scenario = dataclasses.replace(load_scenario("specific"), duration=60.0)
    runs = [simulate(scenario, policy) for policy in (Policy.EVEN, Policy.ATTACH_ORDER)]
    written = write_plots(runs, tmp_path)
    assert [p.name for p in written] == ["assignments.png", "latency.png", "queue_depth.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
