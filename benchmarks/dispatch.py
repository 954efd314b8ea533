"""End-to-end dispatch over WebSocket workers, against the ceiling of a bare echo server.

Each run, in this order:

1. ceiling: a bare trio-websocket echo server in its own process; the same client
   processes and connections as the workers below keep `--window` messages (the
   size of a task frame) in flight per connection; round trips per second. The
   same is measured against quart-trio on hypercorn (which served the main port's
   WebSocket workers before its front door) and the leanest trio server (wsproto,
   replies of one read in one write, as the hub's lean server does), which shows
   what a message costs on each stack (`_echo.py`).
2. for each worker mode (`--modes`):
   * `seed000`: workers as seed 000 clients are: one task per frame from the hub,
     one answer per frame back;
   * `batched`: workers ask for up to `--max` tasks per frame (`?max=`) and answer
     everything one read brought in one JSON array frame (workyard extensions);
   * `worker_port`: the `seed000` workers on the optional worker port (`workyard
     serve --worker-port`: the main port's lean WebSocket server on a port of its
     own) instead of the main port;

   `workyard serve` in its own process with its SQLite store (a file in a temporary
   directory, synchronous=NORMAL), `--workers` workers in `--procs` client processes
   answering every task at once, and this process as the producer (see
   `_producer.py`): peak tasks/s from first submit to last stored result, then
   latency at half that rate. With `--stores sqlite postgresql` each mode runs on
   both stores, one after the other in the same run (PostgreSQL: a fresh schema on
   `WORKYARD_BENCH_POSTGRES`, default the local server), and the summary gives
   PostgreSQL's tasks/s over SQLite's, the median of the per-run ratios.
3. the latency-vs-rate curve: per mode, more steady phases at `--curve` shares of its
   peak (default 10, 25, 50, 75 and 90 %; `--curve-seconds` each). Every latency phase
   reports where the time went: POST sent → dispatched (the attempt's start in the
   store), dispatched → answered, the POST's round trip, the store's commits meanwhile
   (per second, mean duration, units each) and the cores the hub used (near 1.0: the
   hub was saturated, and latency is queueing).

Targets (issue 13): seed 000 workers ≥ 5,000 tasks/s and ≥ 0.8 of the echo ceiling
(on either port), `?max=` arrays ≥ 9,000 tasks/s; at half of each mode's peak,
dispatch latency p50 < 5 ms and p99 < 50 ms, submit → stored result (read back by the
producer) p99 < 100 ms.

The clients are lean (`_netclient.py`: plain sockets, one epoll loop per process) and
their CPU use is reported beside the hub's, so the hub, not the clients, is measured.

    python benchmarks/dispatch.py --runs 3
"""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from _clients import ClientGroup
from _common import (
    MISSED,
    cpu_seconds,
    end_to_end_summary,
    free_port,
    machine,
    median_of,
    stop_process,
    target,
    wait_for_port,
    write_result,
)
from _producer import STORES, end_to_end

ECHO_SERVER = Path(__file__).with_name("_echo.py")
#: the ceiling is trio-websocket; quart is the hub's own stack, wsproto the leanest
CEILING = "trio-websocket"
ECHO_STACKS = [CEILING, "quart", "wsproto"]
MODES = ("seed000", "batched", "worker_port")
#: per mode: (tasks/s, share of the echo ceiling)
RATE_TARGETS = {"seed000": (5000, 0.8), "worker_port": (5000, 0.8), "batched": (9000, None)}
#: at half the peak: dispatch p50, dispatch p99, submit -> stored result p99 (ms, below)
LATENCY_TARGETS = {"dispatch_p50_ms": 5, "dispatch_p99_ms": 50, "stored_p99_ms": 100}
CURVE = [0.1, 0.25, 0.5, 0.75, 0.9]
#: what the curve keeps of each phase (medians over runs)
CURVE_FIGURES = ("rate", "p50_ms", "p99_ms", "dispatch_p50_ms", "dispatch_p99_ms",
                 "sampled_stored_p99_ms", "hub_cpu", "hub_runqueue_wait", "commit_mean_ms")


def measure_echo(args: argparse.Namespace, stack: str) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ECHO_SERVER), str(port), stack],
                              stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        per_conn = math.ceil(args.tasks / args.workers)
        group = ClientGroup("echo", "127.0.0.1", port, ["/"] * args.workers, args.procs,
                            per_conn, args.window)
        try:
            group.wait_ready()
            cpu0 = {pid: cpu_seconds(pid) for pid in [server.pid, *group.pids]}
            group.send("go")
            reports = group.reports()
            cpu1 = {pid: cpu_seconds(pid) for pid in cpu0}
            group.send("stop")
        finally:
            group.close()
    finally:
        stop_process(server, sig=signal.SIGTERM)  # nothing to shut down gracefully
    start = min(r["start"] for r in reports)
    elapsed = max(r["end"] for r in reports) - start
    trips = sum(r["round_trips"] for r in reports)
    server_cpu = cpu1[server.pid] - cpu0[server.pid]
    return {
        "round_trips": trips,
        "seconds": round(elapsed, 3),
        "round_trips_per_s": round(trips / elapsed),
        "server_cpu": round(server_cpu / elapsed, 2),
        "server_cpu_us_per_round_trip": round(server_cpu / trips * 1e6),
        "clients_cpu": round(sum(cpu1[p] - cpu0[p] for p in group.pids) / elapsed, 2),
    }


def key(mode: str, store: str) -> str:
    """Where a mode's figures are kept: SQLite's under the mode (as before stores were
    a choice), PostgreSQL's under "mode@postgresql"."""
    return mode if store == "sqlite" else f"{mode}@{store}"


def measure_hub(args: argparse.Namespace, mode: str, store: str) -> dict[str, Any]:
    batched = mode == "batched"
    extra = f"&max={args.max}" if batched else ""
    paths = [f"/work/queue?task=bench&worker_id=bench-{i}{extra}" for i in range(args.workers)]
    worker_port = free_port() if mode == "worker_port" else None
    hub_args = args.hub_arg + ([] if worker_port is None else ["--worker-port", str(worker_port)])

    def workers(port: int) -> ClientGroup:
        return ClientGroup("workers", "127.0.0.1", worker_port or port, paths, args.procs,
                           batched)

    return end_to_end(workers, tasks=args.tasks, batch=args.batch, inflight=args.inflight,
                      latency_seconds=args.latency_seconds, sample_every=args.sample_every,
                      hub_args=hub_args, profile=args.profile,
                      latency_rate=args.latency_rate, store=store, curve_shares=args.curve,
                      curve_seconds=args.curve_seconds)


def summarize(runs: list[dict[str, Any]], modes: list[str], stores: list[str]) -> dict[str, Any]:
    med = median_of
    stacks = sorted({stack for r in runs for stack in r["echo"]})
    summary: dict[str, Any] = {
        "echo_round_trips_per_s": med([r["echo"].get(CEILING, {}).get("round_trips_per_s")
                                       for r in runs]),
        "echo": {stack: {key: med([r["echo"][stack][key] for r in runs if stack in r["echo"]])
                         for key in ("round_trips_per_s", "server_cpu_us_per_round_trip")}
                 for stack in stacks},
        "targets": {"rate": RATE_TARGETS, "latency_at_half_peak": LATENCY_TARGETS},
    }
    for mode in modes:
        for store in stores:
            hubs = [r[key(mode, store)] for r in runs]
            curves = [{p["share"]: p for p in h.get("curve") or []} for h in hubs]
            shares = sorted({share for c in curves for share in c})
            summary[key(mode, store)] = {
                **end_to_end_summary(hubs), "vs_echo": med([h.get("vs_echo") for h in hubs]),
                "curve": [{"share": share, **{f: med([c[share].get(f) for c in curves
                                                       if share in c])
                                             for f in CURVE_FIGURES}} for share in shares]}
        if "sqlite" in stores and "postgresql" in stores:
            summary.setdefault("postgresql_vs_sqlite", {})[mode] = med([
                round(r[key(mode, "postgresql")]["peak"]["tasks_per_s"]
                      / r[mode]["peak"]["tasks_per_s"], 3) for r in runs])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--stores", nargs="+", choices=STORES, default=["sqlite"],
                        help="the hub's store; several: each mode on each, in the same run")
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2, help="worker client processes")
    parser.add_argument("--batch", type=int, default=500, help="tasks per POST /tasks")
    parser.add_argument("--inflight", type=int, default=4, help="POSTs in flight at once")
    parser.add_argument("--max", type=int, default=32,
                        help="tasks per frame asked for in the batched mode")
    parser.add_argument("--window", type=int, default=32,
                        help="echo messages in flight per connection (the hub's default capacity)")
    parser.add_argument("--latency-seconds", type=float, default=6.0)
    parser.add_argument("--curve", nargs="*", type=float, default=CURVE,
                        help="shares of the peak rate for the latency-vs-rate curve "
                             "(none: no curve)")
    parser.add_argument("--curve-seconds", type=float, default=3.0,
                        help="seconds of each curve phase but the half-peak one")
    parser.add_argument("--sample-every", type=int, default=5)
    parser.add_argument("--latency-rate", type=float,
                        help="tasks/s of the latency phase (default: half the peak just measured)")
    parser.add_argument("--hub-arg", action="append", default=[],
                        help="extra `workyard serve` argument (repeatable)")
    parser.add_argument("--echo-stacks", nargs="*", choices=ECHO_STACKS, default=ECHO_STACKS,
                        help=f"echo servers to measure ({CEILING} is the ceiling)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the hub under py-spy; collapsed stacks go to FILE")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/dispatch.json)")
    args = parser.parse_args(argv)
    started = machine()

    runs = []
    for run in range(args.runs):
        echoes = {stack: measure_echo(args, stack) for stack in args.echo_stacks}
        record: dict[str, Any] = {"echo": echoes}
        line = f"run {run + 1}: echo " + ", ".join(
            f"{stack} {e['round_trips_per_s']} round trips/s "
            f"({e['server_cpu_us_per_round_trip']} us server CPU each)"
            for stack, e in echoes.items())
        ceiling = echoes.get(CEILING)
        for mode, store in ((m, st) for m in args.modes for st in args.stores):
            hub = measure_hub(args, mode, store)
            if ceiling:
                hub["vs_echo"] = round(hub["peak"]["tasks_per_s"] / ceiling["round_trips_per_s"],
                                       3)
            record[key(mode, store)] = hub
            peak, lat = hub["peak"], hub["latency"] or {}
            line += (f"; {key(mode, store)} {peak['tasks_per_s']} tasks/s "
                     f"({hub.get('vs_echo')} of echo, "
                     f"hub {peak['hub_cpu_us_per_task']} us CPU/task, clients "
                     f"{peak['clients_cpu']} cores), p50/p99 {lat.get('p50_ms')}/"
                     f"{lat.get('p99_ms')} ms at {lat.get('rate')}/s (dispatch "
                     f"{lat.get('dispatch_p50_ms')}/{lat.get('dispatch_p99_ms')} ms, hub "
                     f"{lat.get('hub_cpu')} cores)")
            for point in hub["curve"]:
                line += (f"\n    {round(point['share'] * 100)} % of peak ({point['rate']}/s): "
                         f"p50/p99 {point['p50_ms']}/{point['p99_ms']} ms, dispatch "
                         f"{point['dispatch_p50_ms']}/{point['dispatch_p99_ms']} ms, stored "
                         f"p99 {point['sampled_stored_p99_ms']} ms, hub {point['hub_cpu']} "
                         f"cores (+{point['hub_runqueue_wait']} waiting for one), commits "
                         f"{point['commit_mean_ms']} ms")
        runs.append(record)
        print(line, flush=True)

    summary = summarize(runs, args.modes, args.stores)
    result = {"benchmark": "dispatch", "machine": started,
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "summary": summary, "runs": runs}
    path = write_result("dispatch", result, args.out)
    parts, met = [], True
    for mode, store in ((m, st) for m in args.modes for st in args.stores):
        m = summary[key(mode, store)]
        rate_floor, share_floor = RATE_TARGETS[mode]
        checks = [(f"{m['tasks_per_s']} tasks/s", target(m["tasks_per_s"], ">=", rate_floor))]
        if share_floor is not None:
            checks.append((f"{m['vs_echo']} of echo", target(m["vs_echo"], ">=", share_floor)))
        if args.latency_seconds > 0 and not args.latency_rate:
            checks += [(f"{name.removesuffix('_ms')} {m[name]} ms", target(m[name], "<=", limit))
                       for name, limit in LATENCY_TARGETS.items()]
        met = met and all(ok for _, (ok, _) in checks)
        parts.append(f"{key(mode, store)} " + ", ".join(f"{what} {verdict}"
                                                        for what, (_, verdict) in checks))
    print(f"median of {len(runs)}: " + "; ".join(parts)
          + "".join(f"; postgresql/sqlite {m} {r}"
                    for m, r in summary.get("postgresql_vs_sqlite", {}).items())
          + f" -> {path}")
    return 0 if met else MISSED


if __name__ == "__main__":
    sys.exit(main())
