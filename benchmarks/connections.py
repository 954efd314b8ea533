"""Hub memory per idle WebSocket worker.

Each run starts `workyard serve` (SQLite store in a temporary directory), attaches
`--warmup` workers so that everything a first connection loads lazily is loaded,
reads the hub's RSS, attaches `--connections` more idle workers from `--procs`
client processes (they only answer pings), waits until the hub lists them all
and reads its RSS again. Per connection = RSS growth / connections. Also reported:
the hub CPU time each attach cost.

The open-file limit is raised for this process and its children (the hard limit
must allow it: `ulimit -Hn`). All traffic stays on 127.0.0.1.

    python benchmarks/connections.py --runs 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _clients import ClientGroup
from _common import (
    MISSED,
    cpu_seconds,
    machine,
    median,
    raise_fd_limit,
    rss_bytes,
    run_hub,
    target,
    write_result,
)
from _producer import wait_for_workers

KIB = 1024


def paths(first: int, n: int) -> list[str]:
    return [f"/work/queue?task=idle&worker_id=idle-{i}" for i in range(first, first + n)]


def one_run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="workyard-bench-") as tmp, \
            run_hub(str(Path(tmp) / "bench.db"), profile=args.profile,
                    stop_timeout=120) as hub:  # detaching 10,000 workers takes a while
        warm = ClientGroup("idle", "127.0.0.1", hub.port, paths(0, args.warmup), 1)
        idle = None
        try:
            warm.wait_ready()
            wait_for_workers(hub.url, args.warmup, 30)
            time.sleep(args.settle)
            before = rss_bytes(hub.pid)
            cpu0 = cpu_seconds(hub.pid)
            t0 = time.monotonic()
            idle = ClientGroup("idle", "127.0.0.1", hub.port,
                               paths(args.warmup, args.connections), args.procs)
            idle.wait_ready(timeout=args.timeout)
            wait_for_workers(hub.url, args.warmup + args.connections, args.timeout)
            attach_seconds = time.monotonic() - t0
            cpu1 = cpu_seconds(hub.pid)
            time.sleep(args.settle)
            after = rss_bytes(hub.pid)
            idle.send("stop")
            still_open = sum(r["open"] for r in idle.reports())
        finally:
            for group in (idle, warm):
                if group is not None:
                    group.close()
    growth = after - before
    return {
        "connections": args.connections,
        "still_open": still_open,
        "rss_before_mib": round(before / KIB / KIB, 1),
        "rss_after_mib": round(after / KIB / KIB, 1),
        "kib_per_connection": round(growth / args.connections / KIB, 2),
        "attach_seconds": round(attach_seconds, 2),
        "hub_cpu_ms_per_attach": round((cpu1 - cpu0) / args.connections * 1000, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds to let the hub settle before reading its RSS")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--profile", metavar="FILE",
                        help="run the hub under py-spy; collapsed stacks go to FILE")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/connections.json)")
    args = parser.parse_args(argv)
    started = machine()

    need = args.connections + args.warmup + 1024
    limit = raise_fd_limit(need)
    if limit < need:
        parser.error(f"the open-file limit is {limit}; {need} are needed (raise `ulimit -Hn`)")

    runs = []
    for run in range(args.runs):
        r = one_run(args)
        runs.append(r)
        print(f"run {run + 1}: {r['kib_per_connection']} KiB per connection "
              f"(RSS {r['rss_before_mib']} -> {r['rss_after_mib']} MiB), "
              f"{r['connections']} attached in {r['attach_seconds']} s, "
              f"{r['hub_cpu_ms_per_attach']} ms hub CPU each", flush=True)
    summary = {
        "kib_per_connection": median([r["kib_per_connection"] for r in runs]),
        "hub_cpu_ms_per_attach": median([r["hub_cpu_ms_per_attach"] for r in runs]),
        "target_kib": 64,
    }
    result = {"benchmark": "connections", "machine": started, "settings": vars(args),
              "summary": summary, "runs": runs}
    path = write_result("connections", result, args.out)
    met, verdict = target(summary["kib_per_connection"], "<=", summary["target_kib"])
    print(f"median of {len(runs)}: {summary['kib_per_connection']} KiB per connection "
          f"{verdict} -> {path}")
    return 0 if met else MISSED


if __name__ == "__main__":
    sys.exit(main())
