"""Submit-to-poll-response latency with a waiting long poll, and a lone submit's round trip.

A `workyard serve` process (SQLite file by default, as users run it) and one
polling worker: for each of N rounds, the worker parks a long poll (wait=60,
reporting the previous task in the same request), the producer submits one task
once the poll has had `--settle` ms to park, and we time from just before the
POST /tasks to the moment the poll's response has arrived. Client and hub are
separate processes on the same machine. Then `--submits` single-task POST /tasks,
one after the other on one keep-alive connection of a plain blocking socket (so the
client costs little beside the hub), time each round trip.

Targets (issue 13): submit → poll response p50 < 3 ms and p99 < 10 ms; a lone
submit's round trip p50 < 2 ms.

    .venv/bin/python benchmarks/poll_latency.py --rounds 1000
    .venv/bin/python benchmarks/poll_latency.py --rounds 1000 --db :memory:
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    MISSED,
    cpu_seconds,
    machine,
    median,
    percentile,
    run_hub,
    target,
    write_result,
)

#: issue 13's targets, in ms
POLL_P50, POLL_P99, SUBMIT_P50 = 3.0, 10.0, 2.0


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


def lone_submits(port: int, n: int) -> list[float]:
    """Round trips of `n` single-task POST /tasks, one at a time on one connection."""
    body = b'{"name": "lone", "data": 1}'
    request = (b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    times: list[float] = []
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for _ in range(n):
            start = time.perf_counter()
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += _receive(sock)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(rest) < length:
                rest += _receive(sock)
            times.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 201"):
                raise RuntimeError(f"POST /tasks answered {head.splitlines()[0]!r}")
            if b"connection: close" in head.lower():
                sock.close()
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.close()
    return times


def _receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise RuntimeError("the hub closed the connection mid-answer")
    return chunk


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {"p50_ms": round(median(ms), 3), "p90_ms": round(percentile(ms, 90), 3),
            "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms), 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=5.0, metavar="MS",
                        help="ms between sending the long poll and submitting (default 5)")
    parser.add_argument("--submits", type=int, default=2000,
                        help="lone POST /tasks round trips to time (default 2000)")
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
            lone_cpu = cpu_seconds(hub.pid)
            lone = lone_submits(hub.port, args.submits)
            lone_cpu = cpu_seconds(hub.pid) - lone_cpu
    result = {
        "benchmark": "poll_latency",
        "store": "memory" if db == ":memory:" else "sqlite",
        "rounds": args.rounds,
        "submit_to_poll_response": summary(samples["latency"]),
        "submit_round_trip": summary(samples["submit_rtt"]),
        "submits": args.submits,
        "lone_submit": summary(lone),
        "hub_cpu_us_per_lone_submit": round(lone_cpu * 1e6 / args.submits, 1),
        # CPU per round (one long poll with its report, one submit): what the latency
        # would cost on an idle machine, whatever else shares the cores
        "hub_cpu_ms_per_round": round(hub_cpu * 1000 / args.rounds, 3),
        "client_cpu_ms_per_round": round(client_cpu * 1000 / args.rounds, 3),
        "machine": machine(),
    }
    latency, lone_rtt = result["submit_to_poll_response"], result["lone_submit"]
    verdicts = [target(latency["p50_ms"], "<=", POLL_P50), target(latency["p99_ms"], "<=", POLL_P99),
                target(lone_rtt["p50_ms"], "<=", SUBMIT_P50)]
    result["targets_met"] = all(met for met, _ in verdicts)
    path = write_result("poll_latency", result, args.out) if args.out else None
    print(f"{args.rounds} rounds ({result['store']} store): submit -> poll response p50 "
          f"{latency['p50_ms']} ms {verdicts[0][1]}, p99 {latency['p99_ms']} ms {verdicts[1][1]}; "
          f"lone submit round trip p50 {lone_rtt['p50_ms']} ms {verdicts[2][1]}, p99 "
          f"{lone_rtt['p99_ms']} ms ({result['hub_cpu_us_per_lone_submit']} µs hub CPU each); "
          f"hub CPU {result['hub_cpu_ms_per_round']} ms per poll round"
          + (f" -> {path}" if path else " (--out FILE keeps the JSON)"))
    return 0 if result["targets_met"] else MISSED


if __name__ == "__main__":
    sys.exit(main())
