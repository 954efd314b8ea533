"""`workyard sim` and `python -m workyard.sim`: run a scenario, write its report."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from workyard import Policy

__all__ = ["add_commands", "main"]

_POLICIES = [p.value for p in Policy]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add the `sim` subcommand to the `workyard` command."""
    parser = sub.add_parser("sim", help="simulate a fleet against the real hub",
                            description=_DESCRIPTION)
    _configure(parser)


_DESCRIPTION = """Run the real hub (scheduler, queue actors) against simulated workers and
producers under trio's mock clock, then write report.md, metrics.json and plots."""


def _configure(parser: argparse.ArgumentParser) -> None:
    from ._scenario import shipped_scenarios

    parser.add_argument("scenario", help="a shipped scenario (" + ", ".join(shipped_scenarios())
                        + "; with a worker pool and its provisioner: autoscale) or the path "
                        "of a TOML file")
    parser.add_argument("--seed", type=int, help="override the scenario's seed")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to write the report (default: out/sim/SCENARIO)")
    parser.add_argument("--compare", action="store_true",
                        help="also run attach-order and random choice, side by side")
    parser.add_argument("--policy", action="append", choices=_POLICIES, metavar="POLICY",
                        help="policy to run (repeatable; default even, the hub's): "
                        + ", ".join(_POLICIES))
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply worker counts and arrival rates (e.g. 0.01 for a quick run)")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="override how long tasks arrive (simulated seconds)")
    parser.add_argument("--hubs", type=int, metavar="N",
                        help="run the partitioned scale-out model: N leader hubs, each owning "
                        "the partitions of some task names (docs/scale-out.md)")
    parser.add_argument("--relay", type=float, default=0.002, metavar="S",
                        help="with --hubs: seconds for a message between two hubs "
                        "(default 0.002)")
    parser.add_argument("--span", choices=["relay", "connect"], default="relay",
                        help="with --hubs: a worker whose task names span several hubs is "
                        "relayed by its home hub (default) or connects to each owner")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ._provisioning import is_provisioned, run_provisioned
    from ._scenario import ScenarioError, load_scenario

    if is_provisioned(args.scenario):  # a worker pool and its provisioner
        try:
            return run_provisioned(args.scenario, seed=args.seed, duration=args.duration,
                                   out=args.out, quiet=args.quiet)
        except ScenarioError as exc:
            print(f"workyard sim: {exc}", file=sys.stderr)
            return 2
    from ._report import metrics_document, results_table, write_outputs
    from ._runner import simulate

    try:
        scenario = load_scenario(args.scenario).scaled(args.scale)
    except ScenarioError as exc:
        print(f"workyard sim: {exc}", file=sys.stderr)
        return 2
    if args.seed is not None:
        scenario = dataclasses.replace(scenario, seed=args.seed)
    if args.duration is not None:
        scenario = dataclasses.replace(scenario, duration=args.duration)
    policies = list(dict.fromkeys(args.policy or [Policy.EVEN.value]))
    if args.compare:
        policies += [p for p in _POLICIES if p not in policies]
    if args.hubs is not None and args.hubs < 1:
        print("workyard sim: --hubs must be at least 1", file=sys.stderr)
        return 2
    if args.relay < 0:
        print("workyard sim: --relay must not be negative", file=sys.stderr)
        return 2
    runs = [simulate(scenario, Policy(p), progress=not args.quiet, hubs=args.hubs,
                     relay=args.relay, span=args.span) for p in policies]
    out = args.out or Path("out") / "sim" / scenario.name
    written = write_outputs(runs, out, scale=args.scale, plots=not args.no_plots)
    if not args.quiet:
        print("\n".join(results_table(metrics_document(runs, scale=args.scale))))
        for r in runs:
            print(f"{r.policy}: {r.end:,.0f} simulated s, {r.events:,} events in {r.wall:.1f} s "
                  f"wall ({r.events / r.wall:,.0f} events/s)")
        print("wrote " + ", ".join(str(p) for p in written))
    bad = [r for r in runs if r.lost or r.violations]
    return 1 if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workyard.sim", description=_DESCRIPTION)
    _configure(parser)
    args = parser.parse_args(argv)
    return int(args.run(args))
