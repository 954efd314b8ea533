"""The report of a load run: report.md for people, report.json for tools.

Latency as the producers saw it comes from locust's own statistics
(`locust.json`, whose per-row response-time histograms are merged here the
way locust merges them); everything else comes from the hub (`analysis.py`).
Locust is not imported: importing it would monkey-patch the runner.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .analysis import Figures, Summary
from .plan import Plan

__all__ = ["LocustRow", "checks", "merged", "read_locust", "write"]

LocustRow = dict[str, Any]


def read_locust(path: Path) -> list[LocustRow]:
    """Locust's stats entries (`--json-file`), or [] if locust wrote none."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return []


def merged(rows: Iterable[LocustRow], method: str) -> dict[str, Any] | None:
    """Figures over every locust row of request type `method`, in seconds: locust's
    per-row response-time histograms (milliseconds) merged, as locust merges them."""
    picked = [r for r in rows if r.get("method") == method]
    if not picked:
        return None
    histogram: Counter[int] = Counter()
    for r in picked:
        histogram.update({int(k): v for k, v in r["response_times"].items()})
    return {"name": "all", "count": sum(r["num_requests"] for r in picked),
            "fails": sum(r["num_failures"] for r in picked),
            **{f"p{q}": _percentile(histogram, q / 100) for q in (50, 95, 99)},
            "max": max(r["max_response_time"] for r in picked) / 1000}


def _percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """Locust's rule: the smallest bucket with at least `fraction` of requests at or below."""
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= fraction * total:
            return value / 1000
    return max(histogram) / 1000


def _row(r: LocustRow) -> dict[str, Any]:
    one = merged([r], r["method"])
    assert one is not None
    return {**one, "name": r["name"]}


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:,.1f}"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


#: how a check reads in report.md
_SHOWN = {"ok": "ok", "failed": "**FAILED**", "not run": "**NOT RUN**"}


def checks(summary: Summary, plan: Plan, drained_in: float | None) -> list[tuple[str, str, str]]:
    """(check, verdict, detail) with verdict "ok", "failed" or "not run". A run that
    submitted nothing proved nothing: its checks are "not run", never "ok"."""
    ran = summary.submitted > 0
    found = [("tasks submitted", "ok" if ran else "failed",
              f"{summary.submitted:,}" if ran else
              "none: the load never ran (see locust.log and hub.log)")]
    for name, ok, detail in [
        ("no task lost", summary.lost == 0, (f"{summary.lost:,} of {summary.submitted:,} "
          "submitted are neither final nor held by the hub")),
        ("every submitted task final after the drain", not summary.unfinished,
         _unfinished(summary.unfinished).removeprefix(": ")),
        ("most-specific violations", not summary.violations, f"{len(summary.violations):,}"),
        (f"hub drained within {plan.drain:g} s", drained_in is not None,
         "" if drained_in is None else f"in {drained_in:.2f} s"),
    ]:
        found.append((name, ("ok" if ok else "failed") if ran else "not run", detail))
    return found


def _check_row(name: str, verdict: str, detail: str) -> str:
    return f"| {name} | {_SHOWN[verdict]}{': ' + detail if detail else ''} |"


def _unfinished(count: int) -> str:
    if not count:
        return ""
    return (f": {count:,} still queued or running when the drain limit struck (a long "
            "service time's tail? raise --drain)")


def write(out: Path, plan: Plan, summary: Summary, *, drain: Mapping[str, Any] | None,
          locust_code: int, processes: int, queues: Mapping[str, Any],
          simulated: tuple[Figures | None, str]) -> Path:
    """Write report.md and report.json into `out`; returns the path of report.md."""
    rows = read_locust(out / "locust.json")
    e2e, dispatch = merged(rows, "e2e"), merged(rows, "dispatch")
    measured = Figures.of(summary)
    sim, sim_note = simulated
    drained_in = (None if not drain or drain.get("drained_at") is None
                  else drain["drained_at"] - drain["load_end"])
    workers = sum(g.count for g in plan.fleet)
    producers = sum(s.producers for s in plan.workload)
    verdicts = checks(summary, plan, drained_in)

    md: list[str] = [
        f"# Load test: {plan.scenario}", "",
        (f"{plan.duration:g} s of arrivals at {plan.rate:,.4g} tasks/s on average, then up to "
         f"{plan.drain:g} s to drain. {workers} workers and {producers} producer"
         f"{'s' if producers > 1 else ''} as {plan.users} locust users in {processes} locust "
         f"process{'es' if processes > 1 else ''}; one hub on loopback with a temporary "
         "SQLite database. The scenario as played is scenario.toml."), "",
        "## Checks", "", "| check | result |", "| --- | --- |",
        *[_check_row(*check) for check in verdicts], "",
        "## Measured beside simulated", ""]
    if sim is None:
        md += [f"No simulator figures: {sim_note}", ""]
    md += ["| figure | measured | simulated |", "| --- | ---: | ---: |",
           (f"| throughput (done tasks/s) | {_num(measured.throughput, 2)} | "
            f"{_num(sim.throughput if sim else None, 2)} |"),
           (f"| latency p50, submitted → done (ms) | {_ms(measured.p50)} | "
            f"{_ms(sim.p50 if sim else None)} |"),
           (f"| latency p99, submitted → done (ms) | {_ms(measured.p99)} | "
            f"{_ms(sim.p99 if sim else None)} |")]
    for group, value in measured.jain.items():
        other = sim.jain.get(group) if sim else None
        md.append(f"| Jain's index of assignments, {group} | {_num(value, 4)} | "
                  f"{_num(other, 4)} |")
    md += [(f"| most-specific violations | {measured.violations} | "
            f"{_num(sim.violations if sim else None)} |"),
           f"| lost tasks | {measured.lost} | {_num(sim.lost if sim else None)} |",
           (f"| unfinished at the drain limit | {measured.unfinished} | "
            f"{_num(sim.unfinished if sim else None)} |"), "",
           "Both sides use the simulator's definitions: throughput is done tasks per "
           "second from the first arrival instant to the last final state; latency is the "
           "hub's, from creation to done (the producers' view, which adds fetching the "
           "result, is under Latency). The simulator runs the same scenario.toml in "
           "virtual time; "
           + ("both submit the same tasks at the same instants, while service times, "
              "errors and churn are drawn independently." if producers == len(plan.workload)
              else "its arrivals are drawn independently of this run's, which split "
              "each stream among several producers."), ""]

    md += ["## Fairness by fleet group", "",
           ("Jain's index (Σx)²/(n·Σx²) over the workers of one group (equally specific, "
            "equally able): 1 is perfectly even, 1/n is one worker taking everything. "
            "Processed counts the tasks a worker answered; assigned counts every attempt "
            "it was given, including those lost to a churn drop."), "",
           ("| group | specificity | workers | processed | min | max | Jain, processed "
            "| assigned | Jain, assigned |"),
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for group, g in summary.groups.items():
        md.append(f"| {group} | {g['specificity']} | {g['workers']} | {g['processed']:,} | "
                  f"{g['min']:,} | {g['max']:,} | {_num(g['jain'], 4)} | {g['assigned']:,} | "
                  f"{_num(g['jain_assigned'], 4)} |")

    md += ["", "## Latency (ms)", "",
           "| what | count | failed | p50 | p95 | p99 | max |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table = [("producer: submit → result, all tasks", e2e),
             *[(f"producer: submit → result, {r['name']}", _row(r))
               for r in rows if r["method"] == "e2e" and len(plan.workload) > 1],
             ("worker: submit → received, all tasks", dispatch),
             ("hub: created → done", {**summary.e2e, "fails": None}),
             ("hub: created → first dispatch", {**summary.wait, "fails": None})]
    for label, row in table:
        if row is not None:
            md.append(f"| {label} | {_num(row['count'])} | {_num(row['fails'])} | "
                      f"{_ms(row['p50'])} | {_ms(row['p95'])} | {_ms(row['p99'])} | "
                      f"{_ms(row['max'])} |")
    md += ["", ("Producer and worker rows are locust's request types `e2e` and `dispatch` "
            "(its percentiles are rounded as locust rounds them; locust.html shows them "
            "over time). A failed `e2e` is a task that ended failed, e.g. by an injected "
            "error."), ""]

    md += ["## Outcome", "",
           f"- submitted: {summary.submitted:,}; final: "
           + ", ".join(f"{n:,} {state}" for state, n in sorted(summary.final.items()))
           + f"; dispatched more than once: {summary.retried:,}",
           f"- {summary.span:.1f} s from the first arrival instant to the last final state",
           f"- queues at the end: {json.dumps(dict(queues))}",
           f"- locust exited with {locust_code}", ""]
    if summary.violations:
        md += ["First violations:", ""]
        md += [f"- task {v.task} went to {v.worker} (specificity {v.specificity}) while "
               f"{v.better} (specificity {v.better_specificity}) was attached"
               for v in summary.violations[:10]]
        md.append("")
    md += ["## Files", "",
           "- locust.html: locust's report, with charts over time",
           ("- locust_stats.csv, locust_stats_history.csv, locust_failures.csv, "
            "locust_exceptions.csv, locust.json: locust's statistics"),
           ("- report.json: every figure above; scenario.toml: the scenario as played; "
            "plan.json: what each locust user did"),
           "- hub.log, locust.log: the processes' logs; drain.json: the drain watcher's view",
           "- sim/: the simulator's report on scenario.toml", ""]

    (out / "report.md").write_text("\n".join(md))
    (out / "report.json").write_text(json.dumps({
        "scenario": plan.scenario, "processes": processes, "locust_exit_code": locust_code,
        "drain": drain, "checks": {name: verdict for name, verdict, _ in verdicts},
        "summary": {**asdict(summary), "violations": len(summary.violations)},
        "first_violations": [asdict(v) for v in summary.violations[:100]],
        "locust": {"e2e": e2e, "dispatch": dispatch, "rows": [_row(r) for r in rows]},
        "measured": asdict(measured),
        "simulated": asdict(sim) if sim else None, "simulated_note": sim_note,
        "queues": queues,
    }, indent=1))
    return out / "report.md"
