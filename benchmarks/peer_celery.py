"""workyard beside Celery 5.7 + Redis, the same work in the same run.

Throughput: 4 worker processes each — `workyard worker --mode echo` against `workyard
serve` (SQLite, as users run it), and Celery's own worker (`--pool=solo`, results in
Redis) — and `--tasks` no-op tasks submitted through each system's own producer API:
workyard's SDK as its README shows (`AsyncProducer.submit_many`, 1000 tasks per
request, then `results(ids)`, which reads them back through `POST /tasks/wait`, 1000
ids per request), Celery's `group(...).apply_async()` per 500 then each group's `get()`. Timed from the first submit to the last result the producer has read.
Target (issue 13): workyard ≥ 10× Celery.

Mixed durations: 4 workers of concurrency 1 each, `--mixed` tasks of which one in ten
sleeps 1 s and the rest 10 ms, all submitted at once: makespan (first submit to last
result) and Jain's index of each worker's busy time, for workyard (`workyard worker
--mode sleep --concurrency 1`), Celery with its defaults (prefetch multiplier 4,
early acks) and Celery tuned for it (prefetch 1, `acks_late`). Reported, no target.

CPU seconds of the hub, the workers and the producer are recorded for each side, so a
bottleneck in workyard's own SDK shows. Needs the `bench` extra (`pip install -e
'.[bench]'`) and Redis (`--redis`, default redis://127.0.0.1:6379/0); each run uses a
queue of its own and touches no other key.

    .venv/bin/python benchmarks/peer_celery.py [--tasks 10000] [--mixed 200]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio
from _common import MISSED, cpu_seconds, machine, run_hub, stop_process, target, write_result
from _producer import wait_for_workers

from workyard.client import AsyncProducer
from workyard.http._observe import jain

HERE = Path(__file__).resolve().parent
WORKERS = 4
#: Celery's `group` size per apply_async, as in the issue
GROUP = 500
RATIO_TARGET = 10.0
LONG, SHORT = 1.0, 0.01


def durations(n: int) -> list[float]:
    """One in ten 1 s, the rest 10 ms, spread evenly through the submission order."""
    return [LONG if i % 10 == 9 else SHORT for i in range(n)]


# --- workyard -------------------------------------------------------------------------


@contextmanager
def workyard_fleet(extra: list[str]) -> Iterator[tuple[str, list[int]]]:
    """`workyard serve` and WORKERS `workyard worker` processes: (hub URL, all pids)."""
    with tempfile.TemporaryDirectory() as tmp, run_hub(f"{tmp}/hub.db") as hub:
        procs = [subprocess.Popen([sys.executable, "-m", "workyard.cli", "worker", "--url",
                                   hub.url, "--log-level", "WARNING", "--worker-id",
                                   f"wy-{i}", *extra], stdin=subprocess.DEVNULL)
                 for i in range(WORKERS)]
        try:
            wait_for_workers(hub.url, WORKERS, timeout=60)
            yield hub.url, [hub.pid, *(p.pid for p in procs)]
        finally:
            for proc in procs:
                stop_process(proc)


async def _submit_and_read(url: str, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    async with AsyncProducer(url, timeout=120) as producer:
        start = time.perf_counter()
        ids = await producer.submit_many(tasks)
        submitted = time.perf_counter()
        results = await producer.results(ids, wait=120)
        end = time.perf_counter()
    return {"results": results, "seconds": end - start, "submit_seconds": submitted - start}


def _cpu(pids: list[int]) -> list[float]:
    return [cpu_seconds(p) for p in pids] + [cpu_seconds(os.getpid())]


def _cpu_split(before: list[float], after: list[float], n: int, *,
               hub: bool) -> dict[str, float]:
    """µs of CPU per task: the hub (the first pid, if `hub`), the workers together, the
    producer (this process, last)."""
    d = [b - a for a, b in zip(before, after)]
    out = {"hub_cpu_us_per_task": round(d.pop(0) * 1e6 / n, 1)} if hub else {}
    return {**out, "workers_cpu_us_per_task": round(sum(d[:-1]) * 1e6 / n, 1),
            "producer_cpu_us_per_task": round(d[-1] * 1e6 / n, 1)}


def workyard_throughput(n: int) -> dict[str, Any]:
    with workyard_fleet(["--task", "noop", "--mode", "echo"]) as (url, pids):
        before = _cpu(pids)
        run = trio.run(_submit_and_read, url, [{"name": "noop", "data": i} for i in range(n)])
        after = _cpu(pids)
    done = sum(r["state"] == "done" for r in run["results"])
    if done != n:
        raise RuntimeError(f"workyard: {done} of {n} tasks done")
    return {"tasks_per_s": round(n / run["seconds"]), "seconds": round(run["seconds"], 3),
            "submit_seconds": round(run["submit_seconds"], 3),
            **_cpu_split(before, after, n, hub=True)}


def workyard_mixed(work: list[float]) -> dict[str, Any]:
    with workyard_fleet(["--task", "busy", "--mode", "sleep", "--concurrency", "1"]) as (url, _):
        run = trio.run(_submit_and_read, url,
                       [{"name": "busy", "data": {"sleep": s}} for s in work])
    busy: dict[str, float] = {f"wy-{i}": 0.0 for i in range(WORKERS)}
    for task in run["results"]:
        attempt = task["attempts"][-1]
        busy[attempt["worker"]] += attempt["ended"] - attempt["started"]
    return _mixed_summary(run["seconds"], busy, work)


def _mixed_summary(seconds: float, busy: dict[str, float], work: list[float]) -> dict[str, Any]:
    ideal = max(sum(work) / WORKERS, max(work))
    return {"makespan_s": round(seconds, 3), "ideal_s": round(ideal, 3),
            "vs_ideal": round(seconds / ideal, 3), "jain_busy": round(jain(list(busy.values()))
                                                                      or 0.0, 4),
            "busy_s": {k: round(v, 3) for k, v in sorted(busy.items())}}


# --- Celery ---------------------------------------------------------------------------


@contextmanager
def celery_fleet(redis: str, *, prefetch: int = 4, acks_late: bool = False
                 ) -> Iterator[tuple[Any, list[int]]]:
    """WORKERS `celery worker --pool=solo` processes on a queue of their own: (the app,
    the pids). The app is imported here, configured by the same environment."""
    queue = f"workyard-peer-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PEER_REDIS": redis, "PEER_QUEUE": queue,
           "PEER_PREFETCH": str(prefetch), "PEER_ACKS_LATE": "1" if acks_late else "0"}
    os.environ.update({k: env[k] for k in ("PEER_REDIS", "PEER_QUEUE", "PEER_PREFETCH",
                                           "PEER_ACKS_LATE")})
    sys.modules.pop("_celery_app", None)  # a fresh app for this configuration
    import _celery_app

    log = Path(tempfile.gettempdir()) / f"{queue}.log"
    with log.open("wb") as log_file:
        procs = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "_celery_app",
                                   "worker", "--pool=solo", "-n", f"peer{i}@%h", "-Q", queue,
                                   "--loglevel", "WARNING"],
                                  cwd=HERE, env={**env, "PEER_WORKER": f"celery-{i}"},
                                  stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file)
                 for i in range(WORKERS)]
    app = _celery_app.app
    try:
        deadline = time.monotonic() + 60
        while len(app.control.ping(timeout=0.5) or []) < WORKERS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Celery workers did not answer a ping within 60 s "
                                   f"(their log: {log})")
        yield _celery_app, [p.pid for p in procs]
    finally:
        for proc in procs:
            stop_process(proc, sig=15)  # SIGTERM: Celery's warm shutdown
        app.control.purge()
        app.close()
    log.unlink(missing_ok=True)


def celery_throughput(redis: str, n: int) -> dict[str, Any]:
    from celery import group

    with celery_fleet(redis) as (tasks, pids):
        before = _cpu(pids)  # no hub: Redis is a server of this machine, not measured
        start = time.perf_counter()
        groups = [group(tasks.noop.s(i) for i in range(first, min(n, first + GROUP)))
                  .apply_async() for first in range(0, n, GROUP)]
        submitted = time.perf_counter()
        got = sum(len(g.get(timeout=300)) for g in groups)
        seconds = time.perf_counter() - start
        after = _cpu(pids)
    if got != n:
        raise RuntimeError(f"celery: {got} of {n} results")
    return {"tasks_per_s": round(n / seconds), "seconds": round(seconds, 3),
            "submit_seconds": round(submitted - start, 3),
            **_cpu_split(before, after, n, hub=False)}


def celery_mixed(redis: str, work: list[float], *, tuned: bool) -> dict[str, Any]:
    from celery import group

    with celery_fleet(redis, prefetch=1 if tuned else 4, acks_late=tuned) as (tasks, _):
        start = time.perf_counter()
        result = group(tasks.busy.s(s) for s in work).apply_async()
        answers = result.get(timeout=300)
        seconds = time.perf_counter() - start
    busy: dict[str, float] = {f"celery-{i}": 0.0 for i in range(WORKERS)}
    for worker, took in answers:
        busy[worker] += took
    return _mixed_summary(seconds, busy, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--mixed", type=int, default=200, help="tasks of the mixed scenario")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out", help="where to write the JSON (default benchmarks/results/)")
    args = parser.parse_args(argv)
    started = machine()
    wy = workyard_throughput(args.tasks)
    print(f"workyard: {wy['tasks_per_s']:,} tasks/s {wy}", flush=True)
    ce = celery_throughput(args.redis, args.tasks)
    print(f"celery:   {ce['tasks_per_s']:,} tasks/s {ce}", flush=True)
    ratio = round(wy["tasks_per_s"] / ce["tasks_per_s"], 2)
    work = durations(args.mixed)
    mixed = {"workyard": workyard_mixed(work),
             "celery_default": celery_mixed(args.redis, work, tuned=False),
             "celery_tuned": celery_mixed(args.redis, work, tuned=True)}
    for name, m in mixed.items():
        print(f"mixed, {name}: makespan {m['makespan_s']} s ({m['vs_ideal']}× the ideal "
              f"{m['ideal_s']} s), Jain's index of busy time {m['jain_busy']}", flush=True)
    met, verdict = target(ratio, ">=", RATIO_TARGET)
    result = {"benchmark": "peer_celery", "machine": started, "settings": vars(args),
              "throughput": {"workyard": wy, "celery": ce, "ratio": ratio},
              "mixed": mixed, "targets_met": met}
    path = write_result("peer_celery", result, args.out)
    print(f"workyard / celery: {ratio}× {verdict} -> {path}")
    return 0 if met else MISSED


if __name__ == "__main__":
    sys.exit(main())
