"""End to end with the shipped demo workers: what a user sees on first try.

`workyard serve` with its SQLite store, `--workers` processes of `workyard worker
--task echo` (the Python SDK's WebSocket worker), and this process posting
`--tasks` tasks in batches of 1,000, then polling `GET /queues` until all are
processed. Tasks/s from the first POST to the last one processed, and the CPU the
worker processes spent meanwhile, in µs per task (what the SDK's worker costs).
`--worker-port` points the workers at the hub's lean worker port instead of the main
port. `WORKYARD_BENCH_WORKER=script.py` starts the workers from another entry point
taking `workyard`'s arguments, for before/after runs of the SDK's worker.

    python benchmarks/demo_fleet.py --runs 3 [--worker-port]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import httpx
from _common import (
    cpu_seconds,
    free_port,
    machine,
    median,
    run_hub,
    stop_process,
    write_result,
)


def one_run(tasks: int, workers: int, concurrency: int, worker_port: bool,
            db: str) -> dict[str, float]:
    """Tasks/s, and µs of CPU per task in the hub and in the worker processes."""
    lean = free_port()
    extra = ("--worker-port", str(lean)) if worker_port else ()
    with run_hub(db, *extra) as hub:
        url = f"ws://127.0.0.1:{lean}" if worker_port else f"http://127.0.0.1:{hub.port}"
        entry = os.environ.get("WORKYARD_BENCH_WORKER", "-m workyard.cli").split()
        procs = [subprocess.Popen([sys.executable, *entry, "worker", "--url", url,
                                   "--task", "echo", "--concurrency", str(concurrency),
                                   "--log-level", "WARNING"], stdin=subprocess.DEVNULL)
                 for _ in range(workers)]
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{hub.port}", timeout=30) as http:
                deadline = time.monotonic() + 30
                while http.get("/queues").json()["queues"].get("echo", {}).get(
                        "workers", 0) < workers:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the demo workers did not attach within 30 s")
                    time.sleep(0.05)
                pids = [p.pid for p in procs]
                cpu0 = {pid: cpu_seconds(pid) for pid in [hub.pid, *pids]}
                start = time.perf_counter()
                for first in range(0, tasks, 1000):
                    batch = [{"name": "echo", "data": {"i": i}}
                             for i in range(first, min(tasks, first + 1000))]
                    http.post("/tasks", json={"tasks": batch}).raise_for_status()
                deadline = time.monotonic() + 300
                while http.get("/queues").json()["queues"]["echo"]["processed"] < tasks:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the tasks were not all processed within 300 s")
                    time.sleep(0.02)
                elapsed = time.perf_counter() - start
                used = {pid: cpu_seconds(pid) - cpu0[pid] for pid in cpu0}
                workers_cpu = sum(used[pid] for pid in pids)
                return {"tasks_per_s": round(tasks / elapsed),
                        "worker_cpu_us_per_task": round(workers_cpu / tasks * 1e6),
                        "workers_cpu": round(workers_cpu / elapsed, 2),
                        "hub_cpu_us_per_task": round(used[hub.pid] / tasks * 1e6)}
        finally:
            for proc in procs:
                stop_process(proc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--worker-port", action="store_true")
    parser.add_argument("--out", help="where to write the JSON (default benchmarks/results/)")
    args = parser.parse_args(argv)
    started = machine()
    runs = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            figures = one_run(args.tasks, args.workers, args.concurrency, args.worker_port,
                              f"{tmp}/hub.db")
        runs.append(figures)
        print(f"run {run + 1}: {figures['tasks_per_s']:,} tasks/s, workers "
              f"{figures['worker_cpu_us_per_task']} us CPU per task, hub "
              f"{figures['hub_cpu_us_per_task']} us", flush=True)
    summary = {key: median([r[key] for r in runs]) for key in runs[0]}
    name = "demo_fleet_worker_port" if args.worker_port else "demo_fleet"
    path = write_result(name, {"benchmark": name, "machine": started,
                               "settings": vars(args), "summary": summary, "runs": runs},
                        args.out)
    print(f"median of {args.runs}: {summary['tasks_per_s']:,.0f} tasks/s, workers "
          f"{summary['worker_cpu_us_per_task']:.0f} us CPU per task -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
