"""End-to-end dispatch over HTTP long-polling workers (seed 002 plus workyard's extensions).

Each run: `workyard serve` in its own process with its SQLite store; `--workers`
polling workers in `--procs` client processes, each on one keep-alive connection,
long-polling `POST /v1/queue/bench?worker_id=..&max=--max&wait=--wait` and
reporting every task it got as done in its next poll; this process as the
producer (see `_producer.py`): peak tasks/s from first submit to last stored
result, then latency at half that rate.

    python benchmarks/polling.py --runs 3
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from _clients import ClientGroup
from _common import MISSED, end_to_end_summary, machine, target, write_result
from _producer import end_to_end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--procs", type=int, default=2, help="poller client processes")
    parser.add_argument("--max", type=int, default=10, help="tasks per poll")
    parser.add_argument("--wait", type=float, default=30.0, help="long-poll seconds")
    parser.add_argument("--batch", type=int, default=500, help="tasks per POST /tasks")
    parser.add_argument("--inflight", type=int, default=4, help="POSTs in flight at once")
    parser.add_argument("--latency-seconds", type=float, default=6.0)
    parser.add_argument("--sample-every", type=int, default=5)
    parser.add_argument("--latency-rate", type=float,
                        help="tasks/s of the latency phase (default: half the peak just measured)")
    parser.add_argument("--hub-arg", action="append", default=[],
                        help="extra `workyard serve` argument (repeatable)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the hub under py-spy; collapsed stacks go to FILE")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/polling.json)")
    args = parser.parse_args(argv)
    started = machine()

    ids = [f"poller-{i}" for i in range(args.workers)]

    def pollers(port: int) -> ClientGroup:
        return ClientGroup("pollers", "127.0.0.1", port, ids, args.procs, "bench", args.max,
                           args.wait)

    runs: list[dict[str, Any]] = []
    for run in range(args.runs):
        hub = end_to_end(pollers, tasks=args.tasks, batch=args.batch, inflight=args.inflight,
                         latency_seconds=args.latency_seconds, sample_every=args.sample_every,
                         hub_args=args.hub_arg, profile=args.profile,
                      latency_rate=args.latency_rate)
        runs.append(hub)
        peak, lat = hub["peak"], hub["latency"] or {}
        print(f"run {run + 1}: {peak['tasks_per_s']} tasks/s (hub {peak['hub_cpu_us_per_task']} "
              f"us CPU/task, clients {peak['clients_cpu']} cores), p50/p99 {lat.get('p50_ms')}/"
              f"{lat.get('p99_ms')} ms at {lat.get('rate')}/s", flush=True)

    summary = {**end_to_end_summary(runs), "targets": {"tasks_per_s": 2000}}
    result = {"benchmark": "polling", "machine": started,
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "summary": summary, "runs": runs}
    path = write_result("polling", result, args.out)
    met, verdict = target(summary["tasks_per_s"], ">=", summary["targets"]["tasks_per_s"])
    print(f"median of {len(runs)}: {summary['tasks_per_s']} tasks/s {verdict} -> {path}")
    return 0 if met else MISSED


if __name__ == "__main__":
    sys.exit(main())
