"""Submit-to-poll-response latency with a waiting long poll, and a lone submit's round trip.

A `workyard serve` process (SQLite file by default, as users run it) and one
polling worker: for each of N rounds, the worker parks a long poll (wait=60,
reporting the previous task in the same request), the producer submits one task
once the poll has had `--settle` ms to park, and we time from just before the
POST /tasks to the moment the poll's response has arrived. Client and hub are
separate processes on the same machine; the client is plain blocking sockets, so it
costs little beside the hub (with httpx as the client, its own CPU was ~3 ms a round
and most of the measured latency). Then `--submits` single-task POST /tasks, one
after the other on one keep-alive connection, time each round trip.

Targets (issue 13): submit → poll response p50 < 3 ms and p99 < 10 ms; a lone
submit's round trip p50 < 2 ms.

    .venv/bin/python benchmarks/poll_latency.py --rounds 1000
    .venv/bin/python benchmarks/poll_latency.py --rounds 1000 --db :memory:
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
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


def measure(port: int, rounds: int, settle: float) -> dict[str, list[float]]:
    """`rounds` of: park a long poll (reporting the previous round's task), submit one
    task `settle` s later, time both answers from just before the submit."""
    latency: list[float] = []
    submit_rtt: list[float] = []
    worker, producer = _connect(port), _connect(port)
    report: list[dict[str, Any]] = []
    try:
        for _ in range(rounds):
            worker.sendall(_request("/v1/queue/bench", json.dumps(
                {"worker_id": "bench", "wait": 60, "tasks": report}).encode()))
            time.sleep(settle)  # let the poll park (its reports applied first)
            start = time.perf_counter()
            producer.sendall(_request("/tasks", b'{"name": "bench", "data": 1}'))
            answered: dict[socket.socket, tuple[float, bytes, bytes]] = {}
            while len(answered) < 2:
                ready, _, _ = select.select([s for s in (worker, producer)
                                             if s not in answered], [], [], 90)
                if not ready:
                    raise RuntimeError("no answer within 90 s")
                for sock in ready:  # an answer's first bytes came: read it whole
                    head, body = _response(sock)
                    answered[sock] = (time.perf_counter(), head, body)
            (polled_at, poll_head, poll_body), (submitted_at, submit_head, _) = \
                answered[worker], answered[producer]
            if not submit_head.startswith(b"HTTP/1.1 201"):
                raise RuntimeError(f"POST /tasks answered {submit_head.splitlines()[0]!r}")
            tasks = json.loads(poll_body)["tasks"] if poll_head.startswith(b"HTTP/1.1 200") \
                else []
            if len(tasks) != 1:
                raise RuntimeError(f"expected one task in the poll, got {poll_head!r} {tasks!r}")
            latency.append(polled_at - start)
            submit_rtt.append(submitted_at - start)
            report = [{"_id": tasks[0]["_id"], "status": "done"}]
        worker.sendall(_request("/v1/queue/bench", json.dumps(
            {"worker_id": "bench", "max": 0, "tasks": report}).encode()))
        _response(worker)
    finally:
        worker.close()
        producer.close()
    return {"latency": latency, "submit_rtt": submit_rtt}


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=90)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _request(path: str, body: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body))


def _response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One whole answer (head, body) off a keep-alive connection (its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _receive(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        rest += _receive(sock)
    return head, rest[:length]


def lone_submits(port: int, n: int) -> list[float]:
    """Round trips of `n` single-task POST /tasks, one at a time on one connection."""
    request = _request("/tasks", b'{"name": "lone", "data": 1}')
    times: list[float] = []
    sock = _connect(port)
    try:
        for _ in range(n):
            start = time.perf_counter()
            sock.sendall(request)
            head, _ = _response(sock)
            times.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 201"):
                raise RuntimeError(f"POST /tasks answered {head.splitlines()[0]!r}")
            if b"connection: close" in head.lower():
                sock.close()
                sock = _connect(port)
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
            samples = measure(hub.port, args.rounds, args.settle / 1000)
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
