"""The producer side of the end-to-end benchmarks: submit over HTTP, read results from the store.

Peak: submit `tasks` tasks in batches, `inflight` POSTs at a time; tasks/s = tasks /
(last result stored - first POST sent). The end comes from the store: the largest
`finished` time among the run's tasks, all of which must be stored `done`.

The store is a SQLite file, or a fresh schema in PostgreSQL (`store="postgresql"`,
the server `WORKYARD_BENCH_POSTGRES`, default the local one), dropped afterwards.

Latency: submit at a fixed rate, one batch every 10 ms. Per task: from its POST
being sent to its final state in the store (`finished`); and for a sample (one task
every `sample_every` batches) to the moment `GET /tasks/{id}?wait` hands the
durable result back to the producer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgspec
import trio
from _clients import ClientGroup
from _common import cpu_seconds, percentile, run_hub, runqueue_wait, thread_cpu_seconds

__all__ = ["Producer", "end_to_end", "latency_phase", "peak_phase", "wait_for_workers"]

_encode = msgspec.json.Encoder().encode
MS = 1000.0
#: the PostgreSQL server of `store="postgresql"` runs
POSTGRES = os.environ.get("WORKYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ("sqlite", "postgresql")


@contextlib.contextmanager
def bench_db(store: str, tmp: Path) -> Iterator[str]:
    """The hub's `--db` for one run: a SQLite file in `tmp`, or a new PostgreSQL schema
    (the URL selects it through libpq's `options`), dropped afterwards."""
    if store == "sqlite":
        yield str(tmp / "bench.db")
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[arg-type]


def _done_rows(db: str, name: str, columns: str = "id, finished") -> list[tuple[Any, ...]]:
    """`columns` (default id, finished) of the tasks called `name` stored `done`."""
    query = f"SELECT {columns} FROM tasks WHERE name = {{}} AND state = 'done'"
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db) as conn:
            return conn.execute(query.format("%s"), (name,)).fetchall()  # type: ignore[arg-type]
    with sqlite3.connect(db) as conn:
        return conn.execute(query.format("?"), (name,)).fetchall()


class Producer:
    """Submits batches over HTTP and reads the store afterwards (read-only, after the fact)."""

    def __init__(self, url: str, db: str, name: str) -> None:
        self.url = url
        self.db = db
        self.name = name
        self.sent_at: dict[str, float] = {}
        self.post_seconds: list[float] = []
        self._next = 0

    async def submit(self, client: httpx.AsyncClient, n: int) -> list[str]:
        first, self._next = self._next, self._next + n
        body = _encode({"tasks": [{"name": self.name, "data": {"i": i}}
                                  for i in range(first, first + n)]})
        sent = time.time()
        response = await client.post("/tasks", content=body,
                                     headers={"content-type": "application/json"})
        response.raise_for_status()
        self.post_seconds.append(time.time() - sent)
        ids: list[str] = response.json()["ids"]
        for task_id in ids:
            self.sent_at[task_id] = sent
        return ids

    async def wait_idle(self, client: httpx.AsyncClient, timeout: float) -> None:
        """Until the hub holds no unfinished task (polled every 50 ms: a busy hub
        draining a backlog should not spend much of itself on answering this)."""
        with trio.fail_after(timeout):
            while (await client.get("/health")).json()["unfinished"]:
                await trio.sleep(0.05)

    def stored(self, ids: set[str], timeout: float = 10.0) -> dict[str, float]:
        """The `finished` time of each of `ids`, once every one of them is stored `done`."""
        deadline = time.monotonic() + timeout
        while True:
            done = {task_id: finished for task_id, finished in _done_rows(self.db, self.name)
                    if task_id in ids}
            if len(done) == len(ids):
                return done
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(done)} of {len(ids)} tasks stored done")
            time.sleep(0.05)

    def attempts(self, ids: set[str]) -> dict[str, tuple[float, float]]:
        """(started, ended) of the last attempt of each of `ids` (hub times, stored)."""
        out = {}
        for task_id, raw in _done_rows(self.db, self.name, "id, attempts"):
            if task_id in ids:
                last = msgspec.json.decode(raw)[-1]
                out[task_id] = (last["started"], last["ended"])
        return out


async def peak_phase(producer: Producer, tasks: int, batch: int, inflight: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=inflight)
    ids: set[str] = set()
    producer.post_seconds.clear()
    async with httpx.AsyncClient(base_url=producer.url, limits=limits, timeout=60) as client:
        sizes = iter([min(batch, tasks - first) for first in range(0, tasks, batch)])
        start = time.time()

        async def sender() -> None:
            for n in sizes:  # shared: each sender takes the next batch
                ids.update(await producer.submit(client, n))

        async with trio.open_nursery() as nursery:
            for _ in range(inflight):
                nursery.start_soon(sender)
        submitted = time.time()
        await producer.wait_idle(client, timeout=300)
    end = max(producer.stored(ids).values())
    return {
        "tasks": len(ids),
        "seconds": round(end - start, 3),
        "submit_seconds": round(submitted - start, 3),
        "tasks_per_s": round(len(ids) / (end - start)),
        "post_p50_ms": round(percentile(producer.post_seconds, 50) * MS, 1),
        "post_max_ms": round(max(producer.post_seconds) * MS, 1),
        "_window": (start, end),
    }


async def latency_phase(producer: Producer, rate: float, seconds: float,
                        sample_every: int) -> dict[str, Any]:
    """Submit at `rate` tasks/s in 10 ms batches; per-task and sampled end-to-end latency."""
    per_batch = max(1, round(rate / 100))
    batches = max(1, round(seconds * 100))
    samples: list[float] = []
    ids: set[str] = set()
    producer.post_seconds.clear()
    async with httpx.AsyncClient(base_url=producer.url, timeout=60,
                                 limits=httpx.Limits(max_connections=64)) as client:

        async def one(k: int) -> None:
            sent = time.time()
            got = await producer.submit(client, per_batch)
            ids.update(got)
            if k % sample_every == 0:
                response = await client.get(f"/tasks/{got[0]}", params={"wait": 30})
                assert response.json()["state"] == "done", response.text
                samples.append(time.time() - sent)

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for k in range(batches):
                await trio.sleep_until(start + k / 100)
                nursery.start_soon(one, k)
        await producer.wait_idle(client, timeout=120)
    stored = producer.stored(ids)
    latencies = [finished - producer.sent_at[task_id] for task_id, finished in stored.items()]
    attempts = producer.attempts(ids)
    # where the time went: POST sent -> dispatched (the hub's attempt start: the insert's
    # commit, the 201's path and the scheduler), dispatched -> answered (frame out, the
    # worker's answer, frame in), and the POST's own round trip (the insert's commit)
    dispatch = [started - producer.sent_at[t] for t, (started, _) in attempts.items()]
    answered = [ended - started for started, ended in attempts.values()]
    posts = producer.post_seconds
    return {
        "rate": round(per_batch * 100),
        "per_post": per_batch,
        "tasks": len(ids),
        "p50_ms": round(percentile(latencies, 50) * MS, 2),
        "p99_ms": round(percentile(latencies, 99) * MS, 2),
        "max_ms": round(max(latencies) * MS, 2),
        "dispatch_p50_ms": round(percentile(dispatch, 50) * MS, 2),
        "dispatch_p99_ms": round(percentile(dispatch, 99) * MS, 2),
        "answer_p50_ms": round(percentile(answered, 50) * MS, 2),
        "answer_p99_ms": round(percentile(answered, 99) * MS, 2),
        "post_p50_ms": round(percentile(posts, 50) * MS, 2),
        "post_p99_ms": round(percentile(posts, 99) * MS, 2),
        "sampled": len(samples),
        "sampled_stored_p50_ms": round(percentile(samples, 50) * MS, 2),
        "sampled_stored_p99_ms": round(percentile(samples, 99) * MS, 2),
    }


def wait_for_workers(url: str, n: int, timeout: float = 300.0) -> None:
    """Until the hub lists `n` attached workers (pollers attach with their first poll)."""
    deadline = time.monotonic() + timeout
    while (seen := httpx.get(f"{url}/health").json()["workers"]) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen} of {n} workers attached after {timeout} s")
        time.sleep(0.1)


def _commit_totals(url: str) -> dict[str, float]:
    """The store's commit counters from /metrics: transactions, their seconds, their units."""
    wanted = {"workyard_store_commit_seconds_count": "commits",
              "workyard_store_commit_seconds_sum": "seconds",
              "workyard_store_commit_units_sum": "units"}
    out = dict.fromkeys(wanted.values(), 0.0)
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in wanted:
            out[wanted[name]] = float(value)
    return out


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def end_to_end(make_workers: Callable[[int], ClientGroup], *, tasks: int, batch: int,
               inflight: int, latency_seconds: float, sample_every: int,
               hub_args: list[str], profile: str | None = None,
               latency_rate: float | None = None, store: str = "sqlite",
               curve_shares: Sequence[float] = (),
               curve_seconds: float | None = None) -> dict[str, Any]:
    """A hub process with its store (`bench_db`), workers from `make_workers(port)`, then the
    peak phase and (if `latency_seconds`) the latency phase at `latency_rate` (default:
    half the peak rate just measured), then one more latency phase at each of
    `curve_shares` of the peak rate, `curve_seconds` each (default `latency_seconds`):
    the latency-vs-rate curve (0.5 reuses the half-peak phase).

    CPU use of the hub, the worker processes and this producer process is reported
    per peak phase, so a reader can check that the hub, not a client, is the limit.
    """
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="workyard-bench-")))
        db = stack.enter_context(bench_db(store, tmp))
        with run_hub(db, *hub_args, profile=profile, log=tmp / "hub.log") as hub:
            group = make_workers(hub.port)
            try:
                attached = group.wait_ready()
                wait_for_workers(hub.url, attached)
                producer = Producer(hub.url, db, "bench")
                pids = [hub.pid, *group.pids]
                cpu0 = {pid: cpu_seconds(pid) for pid in pids}
                loop0 = thread_cpu_seconds(hub.pid)
                own0 = _own_cpu()
                peak = trio.run(peak_phase, producer, tasks, batch, inflight)
                own1 = _own_cpu()
                cpu1 = {pid: cpu_seconds(pid) for pid in pids}
                loop_cpu = thread_cpu_seconds(hub.pid) - loop0
                start, end = peak.pop("_window")
                elapsed = end - start
                hub_cpu = cpu1[hub.pid] - cpu0[hub.pid]
                peak["hub_cpu"] = round(hub_cpu / elapsed, 2)
                peak["hub_cpu_us_per_task"] = round(hub_cpu / peak["tasks"] * 1e6)
                # the event loop's share alone: without the store's writer threads
                peak["hub_loop_cpu_us_per_task"] = round(loop_cpu / peak["tasks"] * 1e6)
                peak["clients_cpu"] = round(
                    sum(cpu1[p] - cpu0[p] for p in group.pids) / elapsed, 2)
                peak["producer_cpu"] = round((own1 - own0) / elapsed, 2)
                latency = None
                curve: list[dict[str, Any]] = []

                def at(rate: float, seconds: float = latency_seconds) -> dict[str, Any]:
                    commits = _commit_totals(hub.url)
                    cpu, own, began = cpu_seconds(hub.pid), _own_cpu(), time.time()
                    waited = runqueue_wait(hub.pid)
                    phase = trio.run(latency_phase, producer, rate, seconds, sample_every)
                    took = time.time() - began
                    after = _commit_totals(hub.url)
                    n = after["commits"] - commits["commits"]
                    # the store's transactions meanwhile: how long one took, how much it held
                    phase["commits_per_s"] = round(n / took)
                    phase["commit_mean_ms"] = round(
                        (after["seconds"] - commits["seconds"]) / max(n, 1) * MS, 2)
                    phase["units_per_commit"] = round(
                        (after["units"] - commits["units"]) / max(n, 1), 1)
                    # cores used meanwhile: a hub near 1.0 was saturated
                    used = cpu_seconds(hub.pid) - cpu
                    phase["hub_cpu"] = round(used / took, 2)
                    # ...and the cores it was ready to use but did not get (a loaded machine)
                    phase["hub_runqueue_wait"] = round((runqueue_wait(hub.pid) - waited) / took,
                                                       2)
                    phase["hub_cpu_us_per_task"] = round(used / phase["tasks"] * 1e6)
                    phase["producer_cpu"] = round((_own_cpu() - own) / took, 2)
                    return phase

                if latency_seconds > 0:
                    latency = at(latency_rate or peak["tasks_per_s"] / 2)
                    for share in curve_shares:
                        point = (latency if share == 0.5 and not latency_rate
                                 else at(peak["tasks_per_s"] * share,
                                         curve_seconds or latency_seconds))
                        curve.append({"share": share, **point})
                group.send("stop")
                answered = sum(r["answered"] for r in group.reports())
            finally:
                group.close()
    return {"store": store, "workers": attached, "answered": answered, "peak": peak,
            "latency": latency, "curve": curve}
