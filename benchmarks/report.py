"""Render the latest benchmark JSON files into the table of benchmarks/RESULTS.md.

Only the part between the `results:start` and `results:end` markers is replaced;
the analysis around it is written by hand.

    python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR

RESULTS_MD = Path(__file__).with_name("RESULTS.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ok(met: bool) -> str:
    return "met" if met else "**missed**"


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def rows() -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    lines = ["| # | benchmark | measured (median of runs) | target | verdict |",
             "|---|---|---|---|---|"]
    machines = []
    d = _load("dispatch")
    if d:
        machines.append(("dispatch", d["machine"]))
        s, n = d["summary"], len(d["runs"])
        lines.append(f"| 1 | dispatch: echo ceiling (bare trio-websocket, same clients) | "
                     f"{_fmt(s['echo_round_trips_per_s'])} round trips/s | - | ({n} runs) |")
        targets = s.get("targets", {})
        rate_targets = targets.get("rate", {})
        lat_targets = targets.get("latency_at_half_peak", {})
        for mode, label in (("seed000", "seed 000 workers (1 task per frame)"),
                            ("worker_port", "seed 000 workers on `--worker-port`"),
                            ("batched", "`?max=32` workers (task arrays)")):
            m = s.get(mode)
            if not m:
                continue
            floor, share = rate_targets.get(mode, (4000, 0.5))
            lines.append(
                f"| 1 | dispatch, {label}: tasks/s submit → stored | "
                f"{_fmt(m['tasks_per_s'])} tasks/s ({_fmt(m['hub_cpu_us_per_task'])} µs hub CPU "
                f"per task) | ≥ {floor:,} | {_ok((m['tasks_per_s'] or 0) >= floor)} |")
            if share is not None:
                lines.append(f"| 1 | dispatch, {label}: vs echo ceiling (same run) | "
                             f"{_fmt(m['vs_echo'])} | ≥ {share} | "
                             f"{_ok((m['vs_echo'] or 0) >= share)} |")
            lines += _latency_rows(label, m, lat_targets)
    for name, label in (("demo_fleet", "main port"), ("demo_fleet_worker_port", "worker port")):
        f = _load(name)
        if f and isinstance(f["summary"], dict) and "worker_cpu_us_per_task" in f["summary"]:
            machines.append((name, f["machine"]))
            fs, w = f["summary"], f["settings"]
            lines.append(f"| 5 | SDK workers (`workyard worker` × {w['workers']}, {label}): "
                         f"tasks/s, µs CPU per task in the worker processes | "
                         f"{_fmt(fs['tasks_per_s'])} tasks/s, {_fmt(fs['worker_cpu_us_per_task'])} "
                         f"µs (hub {_fmt(fs['hub_cpu_us_per_task'])} µs) | reported | - |")
    p = _load("polling")
    if p:
        machines.append(("polling", p["machine"]))
        s = p["summary"]
        w = p["settings"]
        lines.append(f"| 2 | polling, {w['workers']} long-polling workers, ≤ {w['max']} tasks "
                     f"per poll | {_fmt(s['tasks_per_s'])} tasks/s "
                     f"({_fmt(s['hub_cpu_us_per_task'])} µs hub CPU per task) | ≥ 2,000 | "
                     f"{_ok((s['tasks_per_s'] or 0) >= 2000)} |")
        lines.append(f"| 2 | polling: latency at half peak ({_fmt(s['latency_rate'])}/s) | "
                     f"p50 {_fmt(s['latency_p50_ms'])} ms, p99 {_fmt(s['latency_p99_ms'])} ms | "
                     f"reported | - |")
    pl = _load("poll_latency")
    if pl:
        machines.append(("poll_latency", pl["machine"]))
        r = pl["submit_to_poll_response"]
        lines.append(f"| 2 | polling: submit → response of a parked long poll "
                     f"({pl['rounds']:,} rounds, `poll_latency.py`) | p50 {r['p50_ms']} ms, "
                     f"p99 {r['p99_ms']} ms | p50 < 3 ms, p99 < 10 ms | "
                     f"{_ok(r['p50_ms'] <= 3 and r['p99_ms'] <= 10)} |")
        lone = pl.get("lone_submit")
        if lone:
            lines.append(f"| 3 | producers: a lone single-task POST /tasks round trip "
                         f"({pl['submits']:,} in a row, `poll_latency.py`) | p50 "
                         f"{lone['p50_ms']} ms, p99 {lone['p99_ms']} ms "
                         f"({pl['hub_cpu_us_per_lone_submit']} µs hub CPU each) | p50 < 2 ms | "
                         f"{_ok(lone['p50_ms'] <= 2)} |")
    pc = _load("peer_celery")
    if pc:
        machines.append(("peer_celery", pc["machine"]))
        t = pc["throughput"]
        wy, ce = t["workyard"], t["celery"]
        lines.append(
            f"| 4 | peer: {pc['settings']['tasks']:,} no-op tasks, 4 workers each, to the last "
            f"result read (`peer_celery.py`): workyard / Celery 5.7 + Redis | {t['ratio']}× "
            f"({_fmt(wy['tasks_per_s'])} vs {_fmt(ce['tasks_per_s'])} tasks/s; µs CPU per task: "
            f"hub {wy['hub_cpu_us_per_task']}, workers {wy['workers_cpu_us_per_task']} vs "
            f"{ce['workers_cpu_us_per_task']}, producer {wy['producer_cpu_us_per_task']} vs "
            f"{ce['producer_cpu_us_per_task']}) | ≥ 10× | {_ok(t['ratio'] >= 10)} |")
        for name, label in (("workyard", "workyard"), ("celery_default", "Celery, defaults"),
                            ("celery_tuned", "Celery, prefetch 1 + acks_late")):
            m = pc["mixed"][name]
            lines.append(
                f"| 4 | peer, mixed durations ({pc['settings']['mixed']} tasks, 1 in 10 of 1 s, "
                f"4 workers of concurrency 1): {label} | makespan {m['makespan_s']} s "
                f"({m['vs_ideal']}× the ideal {m['ideal_s']} s), Jain's index of busy time "
                f"{m['jain_busy']} | reported | - |")
    sc = _load("scheduler")
    if sc:
        machines.append(("scheduler", sc["machine"]))
        cells = {(c["filters"], c["workers"]): c for c in sc["cells"]}
        small, large = sc["summary"]["fleet"]
        for filters, ratio in sc["summary"]["ratio_largest_to_smallest"].items():
            a, b = cells[(int(filters), small)], cells[(int(filters), large)]
            lines.append(
                f"| 3 | scheduler, {filters} distinct filter(s): cost at {large:,} workers / "
                f"at {small} | {ratio} ({b['step_us']} µs vs {a['step_us']} µs CPU per "
                f"dispatch) | ≤ 1.5 | {_ok(ratio <= 1.5)} |")
        summ = sc["summary"]
        if "drain_ratio" in summ:
            drain = {r["groups"]: r for r in sc["drain"]}
            few, most = summ["drain_groups"]
            lines.append(
                f"| 3 | scheduler, backlog drain: cost per dispatch at {most:,} groups / at {few} "
                f"| {summ['drain_ratio']} ({drain[most]['dispatch_us']} µs vs "
                f"{drain[few]['dispatch_us']} µs CPU) | ≤ 2 | {_ok(summ['drain_ratio'] <= 2)} |")
            wide = {r["values"]: r for r in sc["wide"]}
            n = summ["wide_values"]
            lines.append(
                f"| 3 | scheduler, one-value drain: workers listing {n:,} values / 1 value "
                f"| {summ['wide_ratio']} ({wide[n]['tasks_per_s']:,} vs {wide[1]['tasks_per_s']:,}"
                f" tasks/s) | ≤ 1 (within noise) | {_ok(summ['wide_ratio'] <= 1.1)} |")
            lines.append(
                f"| 3 | scheduler, longest call while an unlimited worker takes a backlog "
                f"| {summ['longest_call_ms']} ms (unbudgeted: {summ['unbudgeted_call_ms']} ms) "
                f"| ≤ 50 ms | {_ok(summ['longest_call_ms'] <= 50)} |")
    sb = _load("sim_big")
    if sb:
        machines.append(("sim_big", sb["machine"]))
        s, scale = sb["summary"], sb["settings"]["scale"]
        sha = s["metrics_sha256"]
        sha = sha[:16] + "…" if isinstance(sha, str) else "differs between runs"
        full = scale == 1
        lines.append(
            f"| 6 | simulator, `big` (10,000 workers, ~1 M tasks, seed {sb['settings']['seed']}"
            f"{'' if full else f', scale {scale:g}'}): wall (CPU) seconds, `sim_big.py` "
            f"| {s['wall_s']} s ({s['cpu_s']} s CPU); metrics.json sha256 {sha} "
            f"| < {s['target_wall_s']:g} s wall "
            f"| {_ok(s['wall_s'] < s['target_wall_s']) if full else '(scaled run)'} |")
    c = _load("connections")
    if c:
        machines.append(("connections", c["machine"]))
        s = c["summary"]
        n = c["settings"]["connections"]
        lines.append(f"| 4 | connections: hub RSS growth per idle WebSocket worker ({n:,}) | "
                     f"{_fmt(s['kib_per_connection'])} KiB | ≤ 64 KiB | "
                     f"{_ok(s['kib_per_connection'] <= 64)} |")
    fo = _load("failover")
    if fo:
        machines.append(("failover", fo["machine"]))
        s, w, n = fo["summary"], fo["settings"], len(fo["runs"])
        fleet = f"{w['hubs']} hubs, {w['workers']} workers, {_fmt(w['rate'])} tasks/s"
        gap = s["dispatch_after_kill_s"]
        lines.append(
            f"| 5 | failover ({fleet}): kill -9 the leader → the new leader dispatches "
            f"| {_fmt(gap, ' s')} (max {_fmt(s['dispatch_after_kill_max_s'], ' s')} of {n} "
            f"runs; {_fmt(s['hub_cpu_us_per_task'])} µs CPU per task, all hubs, relays and "
            f"takeover included) | < 5 s | "
            f"{_ok(gap is not None and gap < 5)} |")
        lines.append(
            f"| 5 | failover: acknowledged tasks not final afterwards | {s['lost']} of "
            f"{s['acknowledged']:,} | 0 | {_ok(s['lost'] == 0)} |")
        lines.append(
            f"| 5 | failover: tasks run twice not explained by a cut-off attempt | "
            f"{s['run_twice_unexplained']} ({s['run_twice']} ran twice: "
            f"{s['cut_off_attempts']} attempts the kills cut off, recorded as worker_lost, and "
            f"{s.get('run_twice_cut_off_unrecorded', 0)} cut off before their dispatch was "
            f"recorded) | 0 | "
            f"{_ok(s['run_twice_unexplained'] == 0)} |")
        o = fo.get("outage")
        if o:
            lines.append(
                f"| 5 | PostgreSQL cut off {_fmt(o['outage_s'], ' s')} under load (TCP proxy): "
                f"submissions | {o['refused_during']:,} refused with 503, "
                f"{o['accepted_during']} accepted during the cut | 503 | "
                f"{_ok(o['accepted_during'] == 0)} |")
            lines.append(
                f"| 5 | outage: acknowledged tasks lost; run twice unexplained | "
                f"{o['lost']} of {o['acknowledged']:,}; {o['run_twice_unexplained']} | 0; 0 | "
                f"{_ok(o['lost'] == 0 and o['run_twice_unexplained'] == 0)} |")
            lines.append(
                f"| 5 | outage: after the restore, accepting / dispatching again | "
                f"{_fmt(o['accepting_again_after_s'], ' s')} / "
                f"{_fmt(o['dispatch_after_restore_s'], ' s')} (by themselves) | reported | - |")
    cm = _load("clearml")
    if cm:
        machines.append(("clearml", cm["machine"]))
        s, w = cm["summary"], cm["settings"]
        if s.get("reports_per_s") is not None:
            ok = (s["reports_per_s"] or 0) >= 3000 and (s["ingest_p99_ms"] or 1e9) < 50
            runs = f", {_fmt(w['seconds'])} s runs" if "seconds" in w else ""
            lines.append(
                f"| 10 | clearml: status_report over HTTP, {w['workers']:,} workers, 14 metrics"
                f"{runs} | {_fmt(s['reports_per_s'])} reports/s, p99 {_fmt(s['ingest_p99_ms'])} ms "
                f"({_fmt(s.get('hub_cpu_us_per_report'))} µs hub CPU per report) | ≥ 3,000/s, "
                f"p99 < 50 ms | {_ok(ok)} |")
        if s.get("inprocess_reports_per_s") is not None:
            lines.append(
                f"| 10 | clearml: status_report through `ClearML.handle` in-process (no HTTP) "
                f"| {_fmt(s['inprocess_reports_per_s'])} reports/s, p99 "
                f"{_fmt(s['inprocess_p99_ms'])} ms ({_fmt(s['inprocess_cpu_us_per_report'])} µs "
                f"CPU per report) | reported | - |")
        for key, what, limit in (
                ("get_stats", "24 h at 300 s, 3 metrics", 100),
                ("get_stats_month", f"{_fmt(w['days'])} days at 3,600 s (hourly rollups)", 200)):
            p50 = s.get(f"{key}_p50_ms")
            if p50 is None:
                continue
            cpu = s.get(f"{key}_hub_cpu_ms")
            lines.append(
                f"| 10 | clearml: get_stats, {w['stats_workers']} workers × {what} | p50 "
                f"{_fmt(p50)} ms{'' if cpu is None else f' ({_fmt(cpu)} ms hub CPU)'} | "
                f"< {limit} ms | {_ok(p50 < limit)} |")
    st = _load("store")
    if st:
        machines.append(("store", st["machine"]))
        by = {(c["writer"], c["event_loop"]): c for c in st["cases"]}
        for loop in ("idle", "saturated"):
            a, b = by.get(("executemany", loop)), by.get(("chunked", loop))
            if a and b:
                lines.append(f"| - | store writes with the event loop {loop}: µs wall per task, "
                             f"one statement per row → per 128 rows | {a['wall_us_per_task']} → "
                             f"{b['wall_us_per_task']} | - | - |")
    ev = _load("events")
    if ev:
        machines.append(("events", ev["machine"]))
        s, n = ev["summary"], len(ev["runs"])
        if s:
            lines.append(f"| 5 | pool events: outbox → RabbitMQ with publisher confirms | "
                         f"{_fmt(s['events_per_s'])} events/s ({_fmt(s['cpu_us_per_event'])} µs "
                         f"CPU per event; {n} runs) | ≥ 5,000 | "
                         f"{_ok(s['events_per_s'] >= 5000)} |")
            lines.append(f"| 5 | pool events: committed change → RabbitMQ consumer at "
                         f"{_fmt(ev['settings']['rate'])} events/s | p50 "
                         f"{_fmt(s['latency_p50_ms'])} ms, p99 {_fmt(s['latency_p99_ms'])} ms | "
                         f"p99 < 20 ms | {_ok(s['latency_p99_ms'] < 20)} |")
        c = ev.get("cycles")
        if c:
            met = (not c["missing"] and c["in_order_per_pool"] and not c["rolled_back_events"]
                   and not c["strangers"])
            lines.append(
                f"| 5 | pool events: {c['cycles']:,} worker attach/detach cycles in "
                f"{c['pools']} pools, broker restarted in the middle | {c['delivered']:,} of "
                f"{c['outbox_events']:,} events delivered ({c['repeats']} repeats), in order "
                f"per pool: {'yes' if c['in_order_per_pool'] else 'no'}; "
                f"{c['rolled_back_events']} events of {c['rolled_back']} rolled-back updates | "
                f"all, in order, none rolled back | {_ok(met)} |")
    return lines, machines


def _latency_rows(label: str, m: dict[str, Any], targets: dict[str, float]) -> list[str]:
    """Half-peak latency against its targets (when the run has them), and the curve."""
    at = f"dispatch, {label}: latency at half peak ({_fmt(m['latency_rate'])}/s"
    hub = m.get("latency_hub_cpu")
    at += f", hub {_fmt(hub)} cores)" if hub is not None else ")"
    if not targets or m.get("dispatch_p50_ms") is None:
        return [(f"| 1 | {at} | p50 {_fmt(m['latency_p50_ms'])} ms, p99 "
                 f"{_fmt(m['latency_p99_ms'])} ms (to the producer: p50 "
                 f"{_fmt(m['stored_p50_ms'])}, p99 {_fmt(m['stored_p99_ms'])} ms) "
                 "| reported | - |")]
    p50, p99, stored = (targets[k] for k in ("dispatch_p50_ms", "dispatch_p99_ms",
                                             "stored_p99_ms"))
    met = ((m["dispatch_p50_ms"] or 1e9) < p50 and (m["dispatch_p99_ms"] or 1e9) < p99)
    rows = [(f"| 1 | {at}: POST → dispatched | p50 {_fmt(m['dispatch_p50_ms'])} ms, p99 "
             f"{_fmt(m['dispatch_p99_ms'])} ms | p50 < {p50} ms, p99 < {p99} ms | {_ok(met)} |"),
            (f"| 1 | {at}: POST → stored result read back (sampled `GET ?wait`) | p99 "
             f"{_fmt(m['stored_p99_ms'])} ms (answered: p50 {_fmt(m['latency_p50_ms'])}, p99 "
             f"{_fmt(m['latency_p99_ms'])} ms) | p99 < {stored} ms | "
             f"{_ok((m['stored_p99_ms'] or 1e9) < stored)} |")]
    curve = m.get("curve") or []
    if curve:
        points = "; ".join(
            f"{round(c['share'] * 100)} % ({_fmt(c['rate'])}/s): {_fmt(c['dispatch_p50_ms'])} / "
            f"{_fmt(c['dispatch_p99_ms'])} ms, hub {_fmt(c['hub_cpu'])}" for c in curve)
        rows.append(f"| 1 | dispatch, {label}: latency vs rate, POST → dispatched p50 / p99 "
                    f"(% of peak) | {points} | reported | - |")
    return rows


def render() -> str:
    lines, machines = rows()
    out = [START, ""]
    if machines:
        m = machines[0][1]
        loads = "; ".join(f"{name} {x['load_avg_start'][0]} → {x['load_avg_end'][0]} "
                          f"({x['when']})" for name, x in machines)
        out.append(f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, "
                   f"Linux {m['kernel']}, commit {m['commit']}. Load average (1 min) at the "
                   f"start and end of each benchmark: {loads}.")
        out.append("")
    out += lines
    out += ["", END]
    return "\n".join(out)


def main() -> int:
    empty = f"# Benchmark results\n\n{START}\n{END}\n"
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else empty
    if START not in text or END not in text:
        text += f"\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    RESULTS_MD.write_text(head + render() + tail)
    print(f"updated {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
