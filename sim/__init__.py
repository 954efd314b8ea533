"""The fleet simulator: the real hub against simulated workers, in simulated time.

`workyard sim SCENARIO` (or `python -m workyard.sim`) runs the hub's own
scheduler and actors with an in-memory store under trio's MockClock, so hours
of a fleet's life take seconds, and reports fairness, most-specific
violations, latency, reschedules and lost tasks. Scenarios are TOML files;
six ship in `scenarios/`. Same scenario and seed, same metrics.json.

    from workyard.sim import load_scenario, simulate, summarize
    run = simulate(load_scenario("uniform"))
    summarize(run)["groups"]["worker"]["jain"]
"""

from ._metrics import (
    coefficient_of_variation,
    fairness,
    jain_index,
    max_min_ratio,
    percentile,
    summarize,
)
from ._oracle import SpecificityOracle
from ._report import write_outputs
from ._runner import RunResult, WorkerStats, simulate
from ._scenario import Scenario, ScenarioError, load_scenario, shipped_scenarios

__all__ = [
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SpecificityOracle",
    "WorkerStats",
    "coefficient_of_variation",
    "fairness",
    "jain_index",
    "load_scenario",
    "max_min_ratio",
    "percentile",
    "shipped_scenarios",
    "simulate",
    "summarize",
    "write_outputs",
]
