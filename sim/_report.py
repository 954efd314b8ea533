"""Outputs: metrics.json (reproducible), report.md (tables, wall time) and the plots.

metrics.json holds the first policy's metrics at the top level (the hub's
policy unless told otherwise) and the other policies under `compare`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workyard import Subscription

from ._metrics import summarize
from ._runner import RunResult
from ._scenario import Scenario

__all__ = ["metrics_document", "render_report", "results_table", "write_outputs"]


def metrics_document(runs: Sequence[RunResult], *, scale: float) -> dict[str, Any]:
    first, *others = runs
    sc = first.scenario
    doc: dict[str, Any] = {
        "scenario": sc.name,
        "seed": sc.seed,
        "scale": scale,
        "workers": sc.worker_count,
        "duration": sc.duration,
        **summarize(first),
    }
    if others:
        doc["compare"] = {str(run.policy): summarize(run) for run in others}
    return doc


def write_outputs(runs: Sequence[RunResult], out: Path, *, scale: float,
                  plots: bool = True) -> list[Path]:
    """Write metrics.json, report.md and (unless `plots` is false) the PNGs into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    doc = metrics_document(runs, scale=scale)
    metrics = out / "metrics.json"
    metrics.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    written = [metrics]
    if plots:
        try:
            from ._plots import write_plots

            written += write_plots(runs, out)
        except ImportError as exc:  # matplotlib comes with the `sim` extra
            print(f"no plots ({exc}); pip install 'workyard[sim]' for them", file=sys.stderr)
    report = out / "report.md"
    report.write_text(render_report(runs, doc, [p.name for p in written if p.suffix == ".png"]))
    return [report, *written]


# --- report.md ---------------------------------------------------------------------------


def _policy_name(policy: str) -> str:
    return "hub (even)" if policy == "even" else policy


def _runs_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc, *doc.get("compare", {}).values()]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _percentiles(latency: dict[str, float | None]) -> str:
    return " / ".join(_ms(latency[p]) for p in ("p50", "p95", "p99"))


def _describe(sub: Subscription) -> str:
    if not sub.filter:
        return sub.name
    return sub.name + "(" + " ".join(f"{k}={','.join(sorted(v))}"
                                     for k, v in sorted(sub.filter.items())) + ")"


def results_table(doc: dict[str, Any]) -> list[str]:
    """The side-by-side table of every policy's headline figures (markdown lines)."""
    runs = _runs_of(doc)
    rows: list[tuple[str, Any]] = [
        ("tasks submitted", lambda m: _n(m["submitted"])),
        ("done / failed", lambda m: f"{m['done']:,} / {m['failed']:,}"),
        ("**lost** (must be 0)", lambda m: f"**{m['lost']}**"),
        ("unfinished when the run stopped", lambda m: _n(m["unfinished"])),
        ("**most-specific violations** (must be 0)", lambda m: f"**{m['violations']}**"),
        ("reschedules", lambda m: _n(m["reschedules"])),
        ("duplicate executions", lambda m: _n(m["duplicates"])),
        ("executions cut by disconnects", lambda m: _n(m["aborted"])),
        ("throughput (tasks/s)", lambda m: _n(m["throughput"], 2)),
        ("wait p50 / p95 / p99", lambda m: _percentiles(m["wait"])),
        ("end-to-end p50 / p95 / p99", lambda m: _percentiles(m["e2e"])),
        ("max queue depth (sampled)", lambda m: _n(m["queue_depth"]["max"])),
        ("worst Jain's index of a group",
         lambda m: _n(min(g["jain"] for g in m["groups"].values()), 4)),
    ]
    lines = ["| | " + " | ".join(_policy_name(m["policy"]) for m in runs) + " |",
             "| --- |" + " ---: |" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cell(m) for m in runs) + " |" for label, cell in rows]
    return lines


def _fairness_table(doc: dict[str, Any]) -> list[str]:
    lines = [("| group | workers | policy | assignments min / mean / max | Jain | max/min | CV "
              "| Jain per attached hour | utilisation |"),
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    runs = _runs_of(doc)
    for name in doc["groups"]:
        for m in runs:
            g = m["groups"][name]
            a = g["assignments"]
            ratio = "∞" if g["max_min"] is None else f"{g['max_min']:.2f}"
            lines.append(
                f"| {name} | {g['workers']:,} | {_policy_name(m['policy'])} "
                f"| {a['min']:,} / {a['mean']:,.1f} / {a['max']:,} | {g['jain']:.4f} | {ratio} "
                f"| {g['cv']:.3f} | {_n(g['jain_per_attached_hour'], 4)} "
                f"| {100 * g['utilisation']:.0f} % |")
    return lines


def _scale_out_table(doc: dict[str, Any]) -> list[str]:
    """The partitioned model's figures, if the run was one (`--hubs`)."""
    so = doc.get("scale_out")
    if so is None:
        return []
    lines = [
        f"## Scale-out: {so['hubs']} hub(s), workers spanning owners served by "
        f"{so['span']}" + (f" ({1000 * so['relay']:g} ms per hop)" if so["span"] == "relay"
                           else ""),
        "",
        f"Over-capacity dispatches {so['over_capacity']:,}; even-spread violations "
        f"{so['spread_violations']:,}; speed-up the hubs' work allows "
        f"{_n(so['speedup'], 2)}×. Jain's index of busy time: "
        + ", ".join(f"{name} {jain:.4f}" for name, jain in so["busy_jain"].items()) + ".",
        "",
        ("| hub | names owned | connections | submitted | dispatched | answered | relayed "
         "| work |"),
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, h in enumerate(so["per_hub"]):
        lines.append(f"| {i} | {', '.join(h['names']) or '–'} | {h['connections']:,} "
                     f"| {h['submitted']:,} | {sum(h['dispatched'].values()):,} "
                     f"| {h['answered']:,} | {h['relayed']:,} | {h['work']:,} |")
    return [*lines, ""]


def _scenario_tables(sc: Scenario) -> list[str]:
    lines = [("| fleet group | workers | subscriptions | capacity | service time | errors "
              "| transport | churn |"),
             "| --- | ---: | --- | ---: | --- | ---: | --- | --- |"]
    for g in sc.fleet:
        subs = "; ".join(_describe(s) for s in g.subscriptions)
        transport = g.transport
        if transport == "polling":
            transport += f" (wait {g.poll.wait:g} s, pause {g.poll.interval:g} s, " \
                         f"max {g.poll.max or 'free slots'})"
        churn = (f"every {g.churn.mtbf:g} s on average, back after {g.churn.reconnect.describe()}"
                 if g.churn else "–")
        lines.append(f"| {g.name} | {g.count:,} | {subs} | {g.capacity} | {g.service.describe()} "
                     f"| {100 * g.error_rate:g} % | {transport} | {churn} |")
    lines += ["", ("| task stream | rate (tasks/s from time) | arrivals | bursts | attrs "
               "| priority | timeout | retries |"),
              "| --- | --- | --- | --- | --- | --- | ---: | ---: |"]
    for s in sc.workload:
        rate = ", ".join(f"{r:g} from {t:g} s" for t, r in s.rate)
        bursts = ", ".join(f"{b.count:,} at {b.at:g} s" for b in s.bursts) or "–"
        attrs = "; ".join(f"{k}: {c.describe()}" for k, c in s.attrs) or "–"
        lines.append(f"| {s.name} | {rate} | {s.process} | {bursts} | {attrs} "
                     f"| {s.priority.describe()} | {s.timeout:g} s | {s.retries} |")
    return lines


def render_report(runs: Sequence[RunResult], doc: dict[str, Any], pngs: Sequence[str]) -> str:
    sc = runs[0].scenario
    lines = [
        f"# Simulation: {sc.name}",
        "",
        *(f"> {line}" for line in sc.description.splitlines() if sc.description),
        "",
        (f"Seed {sc.seed}, scale {doc['scale']:g}: {sc.worker_count:,} workers in "
         f"{len(sc.fleet)} group(s); tasks arrive for {sc.duration:g} simulated seconds, then "
         f"the run drains for at most {sc.drain:g} s. Time step 1/{sc.ticks_per_second} s."),
        "",
        "## Results",
        "",
        *results_table(doc),
        "",
        ("Wait is queued → first assignment; end to end is submitted → done. A violation is a "
         "task given to a worker while a more specific matching worker was attached, counted by "
         "an independent check over the attached workers' subscriptions. Lost means neither final "
         "nor queued nor running anywhere."),
        "",
        "## Fairness within groups of equally specific, equally able workers",
        "",
        *_fairness_table(doc),
        "",
    ]
    lines += _scale_out_table(doc)
    if pngs:
        lines += ["## Plots", ""] + [f"![{name.removesuffix('.png')}]({name})" for name in pngs]
        lines.append("")
    lines += [
        "## Run",
        "",
        "| policy | simulated seconds | events | wall time | events/s |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(f"| {_policy_name(str(r.policy))} | {r.end:,.0f} | {r.events:,} | {r.wall:,.1f} s "
          f"| {r.events / r.wall:,.0f} |" for r in runs),
        "",
        ("Events are arrivals, dispatches, completions, polls, connects and disconnects. Wall "
         "time depends on the machine and is left out of metrics.json, which is byte-identical "
         "for the same scenario and seed."),
        "",
        "## Scenario",
        "",
        *_scenario_tables(sc),
        "",
    ]
    return "\n".join(lines)
