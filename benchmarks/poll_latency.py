"""Submit-to-poll-response latency with a waiting long poll.

A `workyard serve` process (SQLite file by default, as users run it) and one
polling worker: for each of N rounds, the worker parks a long poll (wait=60,
reporting the previous task in the same request), the producer submits one task
once the poll has had `--settle` ms to park, and we time from just before the
POST /tasks to the moment the poll's response has arrived. Client and hub are
separate processes on the same machine.

    .venv/bin/python benchmarks/poll_latency.py --rounds 1000
    .venv/bin/python benchmarks/poll_latency.py --rounds 1000 --db :memory:
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_seconds, machine, median, percentile, run_hub, write_result  # noqa: E402


async def measure(url: str, rounds: int, settle: float) -> dict[str, list[float]]:
    latency: list[float] = []
    submit_rtt: list[float] = []
    limits = httpx.Limits(max_connections=4)
    async with httpx.AsyncClient(base_url=url, timeout=90, limits=limits) as worker, \
            httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as producer:
        report: list[dict[str, Any]] = []
        for _ in range(rounds):
            got: dict[str, Any] = {}

            async def long_poll(body: dict[str, Any]) -> None:
                response = await worker.post("/v1/queue/bench", json=body)
                got["at"] = time.perf_counter()
                got["tasks"] = response.json()["tasks"] if response.status_code == 200 else []

            async with trio.open_nursery() as nursery:
                nursery.start_soon(long_poll, {"worker_id": "bench", "wait": 60, "tasks": report})
                await trio.sleep(settle)  # let the poll park (its reports applied first)
                start = time.perf_counter()
                response = await producer.post("/tasks", json={"name": "bench", "data": 1})
                submit_rtt.append(time.perf_counter() - start)
                response.raise_for_status()
            if len(got["tasks"]) != 1:
                raise RuntimeError(f"expected one task in the poll, got {got['tasks']!r}")
            latency.append(got["at"] - start)
            report = [{"_id": got["tasks"][0]["_id"], "status": "done"}]
        await worker.post("/v1/queue/bench", json={"worker_id": "bench", "max": 0,
                                                    "tasks": report})
    return {"latency": latency, "submit_rtt": submit_rtt}


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50_ms": round(median(ms), 3), "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=5.0, metavar="MS",
                        help="ms between sending the long poll and submitting (default 5)")
    parser.add_argument("--db", help="the hub's SQLite file (default: a temp file; "
                        "':memory:' for no store)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or str(Path(tmp) / "hub.db")
        os.chdir(tmp)  # run_hub logs to "{db}.log": keep a ':memory:.log' out of the checkout
        with run_hub(db) as hub:
            hub_cpu, client_cpu = cpu_seconds(hub.pid), cpu_seconds(os.getpid())
            samples = trio.run(measure, hub.url, args.rounds, args.settle / 1000)
            hub_cpu = cpu_seconds(hub.pid) - hub_cpu
            client_cpu = cpu_seconds(os.getpid()) - client_cpu
    result = {
        "benchmark": "poll_latency",
        "store": "memory" if db == ":memory:" else "sqlite",
        "rounds": args.rounds,
        "submit_to_poll_response": summary(samples["latency"]),
        "submit_round_trip": summary(samples["submit_rtt"]),
        # CPU per round (one long poll with its report, one submit): what the latency
        # would cost on an idle machine, whatever else shares the cores
        "hub_cpu_ms_per_round": round(hub_cpu * 1000 / args.rounds, 3),
        "client_cpu_ms_per_round": round(client_cpu * 1000 / args.rounds, 3),
        "machine": machine(),
    }
    path = write_result("poll_latency", result, args.out) if args.out else None
    latency, rtt = result["submit_to_poll_response"], result["submit_round_trip"]
    print(f"{args.rounds} rounds ({result['store']} store): submit -> poll response p50 "
          f"{latency['p50_ms']} ms, p99 {latency['p99_ms']} ms; submit round trip p50 "
          f"{rtt['p50_ms']} ms; hub CPU {result['hub_cpu_ms_per_round']} ms per round"
          + (f" -> {path}" if path else " (--out FILE keeps the JSON)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
