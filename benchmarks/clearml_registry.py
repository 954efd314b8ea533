"""ClearML registry (seed 001): status_report ingest and get_stats latency.

Ingest: `workyard serve` in its own process on its SQLite file; `--procs` client
processes with `--conns` keep-alive connections each send `workers.status_report`
back to back for `--workers` distinct workers, each report carrying clearml-agent's
14 metrics (4-element GPU lists: 26 readings). A report is answered once durable
(group commit). Reports/s = answers / seconds; latency per report from send to
answer; the stored report count is checked in the file afterwards.

get_stats: a file prefilled with `--stats-workers` workers x 24 h of 30 s reports
(the same 14 metrics), then `workers.get_stats` for all of them, 3 metrics, interval
300 s, `--queries` times one after another: p50 / p99 of the answer time.

Both also in-process: ingest through `ClearML.handle` on a SQLite hub with no HTTP
(what the handler and the group commit cost alone), and get_stats for a month at
3,600 s over hourly rollups prefilled before the 24 h of raw samples.

    python benchmarks/clearml_registry.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import (
    MISSED,
    cpu_seconds,
    machine,
    median,
    percentile,
    run_hub,
    system_cpu_seconds,
    target,
    thread_cpu_seconds,
    write_result,
)
from _netclient import HttpConn, connect_http, run_loop

SCALARS = ("memory_used", "memory_free", "disk_free_home", "disk_free_temp", "disk_read",
           "disk_write", "network_tx", "network_rx")
SINGLE = ("cpu_usage", "cpu_temperature")
GPU = ("gpu_usage", "gpu_temperature", "gpu_memory_used", "gpu_memory_free")


def machine_stats(i: int) -> dict[str, Any]:
    stats: dict[str, Any] = {name: float(i % 97) for name in SCALARS}
    stats.update({name: [float(i % 89)] for name in SINGLE})
    stats.update({name: [float((i + k) % 83) for k in range(4)] for name in GPU})
    return stats


def report_ms(worker: str, last: dict[str, int]) -> int:
    """Now in ms, but after `worker`'s previous report: two in the same ms would be a
    repeat, which replaces the first (and is not what this measures)."""
    ms = last[worker] = max(int(time.time() * 1000), last.get(worker, 0) + 1)
    return ms


def _client(port: int, workers: list[str], conns: int, seconds: float,
            queue: multiprocessing.Queue[Any]) -> None:
    """One client process: `conns` connections, one report in flight on each."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    sent_at: dict[HttpConn, float] = {}
    counter = [0, 0]  # reports answered, errors
    pending = [0]  # reports in flight
    next_worker = [0]
    last: dict[str, int] = {}

    def send(conn: HttpConn) -> None:
        i = next_worker[0]
        next_worker[0] += 1
        worker = workers[i % len(workers)]
        body = json.dumps({"worker": worker, "timestamp": report_ms(worker, last),
                           "task": None if i % 3 else f"task-{i}", "queues": ["q"],
                           "machine_stats": machine_stats(i)}).encode()
        conn.request("POST", "/workers.status_report", body)
        sent_at[conn] = time.monotonic()
        pending[0] += 1

    def answered(conn: HttpConn, status: int, body: bytes) -> None:
        now = time.monotonic()
        pending[0] -= 1
        latencies.append(now - sent_at[conn])
        counter[0 if status == 200 else 1] += 1
        if now < deadline:
            send(conn)

    pool = [connect_http("127.0.0.1", port) for _ in range(conns)]
    for conn in pool:
        conn.on_response = answered
        send(conn)
    started = time.monotonic()
    def done() -> bool:
        now = time.monotonic()
        return now > deadline + 10 or (now > deadline and pending[0] == 0)

    run_loop(pool, done)
    queue.put({"answered": counter[0], "errors": counter[1], "latencies": latencies,
               "seconds": time.monotonic() - started})


def ingest(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "ingest.db")
        workers = [f"agent-{i:04d}" for i in range(args.workers)]
        with run_hub(db, profile=args.profile) as hub:
            queue: multiprocessing.Queue[Any] = multiprocessing.Queue()
            share = [workers[p::args.procs] for p in range(args.procs)]
            cpu0, t0 = cpu_seconds(hub.pid), time.monotonic()
            sys0, loop0 = system_cpu_seconds(hub.pid), thread_cpu_seconds(hub.pid)
            procs = [multiprocessing.Process(target=_client, args=(
                hub.port, share[p], args.conns, args.seconds, queue)) for p in range(args.procs)]
            for p in procs:
                p.start()
            results = [queue.get() for _ in procs]
            for p in procs:
                p.join()
            elapsed, cpu = time.monotonic() - t0, cpu_seconds(hub.pid) - cpu0
            system = system_cpu_seconds(hub.pid) - sys0
            loop = thread_cpu_seconds(hub.pid) - loop0
            commits = _commits(hub.url)
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM stat_reports").fetchone()[0]
    answered = sum(r["answered"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    seconds = max(r["seconds"] for r in results)
    return {
        "reports_per_s": round(answered / seconds),
        "answered": answered, "errors": sum(r["errors"] for r in results),
        "stored_reports": stored,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "hub_cpu": round(cpu / elapsed, 2),
        "hub_cpu_us_per_report": round(cpu / max(answered, 1) * 1e6),
        "hub_system_us_per_report": round(system / max(answered, 1) * 1e6),
        "hub_loop_us_per_report": round(loop / max(answered, 1) * 1e6),
        **commits,
    }


def _commits(url: str) -> dict[str, Any]:
    """The hub's group commits so far, from /metrics: how many, and units per commit
    (a report is one unit), which tells spread-out arrivals from batched ones."""
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("workyard_store_commit_units_sum", "workyard_store_commit_units_count",
                    "workyard_store_commit_seconds_sum"):
            values[name] = float(value)
    count = values.get("workyard_store_commit_units_count", 0.0)
    return {"commits": int(count),
            "units_per_commit": round(values.get("workyard_store_commit_units_sum", 0.0)
                                      / max(count, 1), 1),
            "ms_per_commit": round(values.get("workyard_store_commit_seconds_sum", 0.0)
                                   / max(count, 1) * 1000, 2)}


#: the metrics each get_stats asks for (6 series per worker: GPU lists have 4 variants)
ITEMS = [{"key": "cpu_usage", "aggregation": "avg"}, {"key": "memory_used", "aggregation": "max"},
         {"key": "gpu_usage", "aggregation": "avg"}]
HOUR_MS = 3_600_000


def _series() -> list[tuple[str, list[str]]]:
    return ([(m, ["total"]) for m in SCALARS] + [(m, ["0"]) for m in SINGLE]
            + [(m, ["0", "1", "2", "3"]) for m in GPU])


def ingest_inprocess(args: argparse.Namespace) -> dict[str, Any]:
    """status_report through `ClearML.handle` in this process, no HTTP: `--conns` x
    `--procs` concurrent senders, the hub on a SQLite file (or `--inprocess-db`'s
    PostgreSQL); what the handler and the store's group commit cost on their own."""
    import trio

    from workyard import Hub, Settings, SQLiteStore
    from workyard.compat import ClearML
    from workyard.store import PostgresStore

    workers = [f"agent-{i:04d}" for i in range(args.workers)]
    senders = args.conns * args.procs
    latencies: list[float] = []
    counter = [0, 0]
    last: dict[str, int] = {}

    postgres = args.inprocess_db

    async def main(db: str) -> tuple[float, float]:
        store = SQLiteStore(db) if postgres is None else PostgresStore(postgres, schema=schema)
        async with trio.open_nursery() as nursery:
            hub = Hub(store=store)  # it runs its store
            await nursery.start(hub.run)
            clearml = ClearML(hub, Settings(db=db))
            deadline = time.monotonic() + args.seconds
            t0, cpu0 = time.monotonic(), time.process_time()

            async def sender(k: int) -> None:
                i = k
                while time.monotonic() < deadline:
                    worker = workers[i % len(workers)]
                    body = json.dumps({"worker": worker, "timestamp": report_ms(worker, last),
                                       "task": None if i % 3 else f"task-{i}", "queues": ["q"],
                                       "machine_stats": machine_stats(i)}).encode()
                    i += senders
                    sent = time.monotonic()
                    status, _ = await clearml.handle("workers", "status_report", None, {},
                                                     body, {}, "127.0.0.1")
                    latencies.append(time.monotonic() - sent)
                    counter[0 if status == 200 else 1] += 1

            async with trio.open_nursery() as inner:
                for k in range(senders):
                    inner.start_soon(sender, k)
            elapsed, cpu = time.monotonic() - t0, time.process_time() - cpu0
            nursery.cancel_scope.cancel()
        return elapsed, cpu

    schema = f"bench_clearml_{os.getpid()}"  # PostgreSQL: a schema of its own, dropped
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "inprocess.db")
        elapsed, cpu = trio.run(main, db)
        if postgres is None:
            with sqlite3.connect(db) as conn:
                stored = conn.execute("SELECT count(*) FROM stat_reports").fetchone()[0]
        else:
            import psycopg

            with psycopg.connect(postgres, autocommit=True) as conn:
                row = conn.execute(f"SELECT count(*) FROM {schema}.stat_reports").fetchone()
                stored = 0 if row is None else row[0]
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return {"reports_per_s": round(counter[0] / elapsed), "answered": counter[0],
            "errors": counter[1], "stored_reports": stored,
            "p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "cpu_us_per_report": round(cpu / max(counter[0], 1) * 1e6)}


def prefill(db: str, workers: int, hours: float, every: int, days: float) -> tuple[int, int]:
    """Write `workers` x `hours` of reports every `every` s straight into a migrated file,
    rolled up with the store's own statements; before them, hourly rollups only (raw
    readings and 5-minute rollups past their retention) back to `days` days. Returns
    (readings, rollup rows)."""
    from workyard.store._migrations import migrate
    from workyard.store._rollups import SPANS
    from workyard.store._sqlite import ACTIVITY_AGAIN, POOL_AGAIN, ROLL_UP_AGAIN

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    migrate(conn, db)
    end = int(time.time()) // every * every
    start = end - int(hours * 3600)
    stamps = range(start * 1000, end * 1000, every * 1000)
    first_hour = (end - int(days * 24 * 3600)) * 1000 // HOUR_MS * HOUR_MS
    hours_before = range(first_hour, start * 1000 // HOUR_MS * HOUR_MS, HOUR_MS)
    per_hour = 3600 // every
    readings = 0
    conn.execute("BEGIN")
    for w in range(workers):
        worker = f"agent-{w:04d}"
        conn.executemany("INSERT INTO stat_activity (span, start, worker, active) "
                         "VALUES (?, ?, ?, 0)", [(HOUR_MS, h, worker) for h in hours_before])
        ids: list[tuple[int, int]] = []  # (series, variant index)
        for metric, variants in _series():
            listed = variants != ["total"]
            for k, variant in enumerate([*variants, ""] if listed else variants):
                (series,) = conn.execute(
                    "INSERT INTO stat_series (worker, metric, variant) VALUES (?, ?, ?) "
                    "RETURNING id", (worker, metric, variant)).fetchone()
                if variant:
                    ids.append((series, k))
                conn.executemany(
                    "INSERT INTO stat_rollups (span, series, start, count, total, low, high) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(HOUR_MS, series, h, per_hour * (len(variants) if not variant else 1),
                      per_hour * 50.0 * (len(variants) if not variant else 1), 0.0, 100.0)
                     for h in hours_before])
        conn.executemany(
            "INSERT INTO stat_reports (ts, worker, task, readings) VALUES (?, ?, NULL, ?)",
            [(ts, worker, json.dumps({s: float((ts // 1000 + k + w) % 101) for s, k in ids}))
             for ts in stamps])
        readings += len(stamps) * len(ids)
    # the raw readings rolled up as the store rolls up spans left pending
    for span in SPANS:
        for first in range(start * 1000 // span * span, end * 1000, span):
            for statement in (ROLL_UP_AGAIN, POOL_AGAIN, ACTIVITY_AGAIN):
                conn.execute(statement, (span, first, None))
    conn.execute("COMMIT")
    (rollups,) = conn.execute("SELECT count(*) FROM stat_rollups").fetchone()
    conn.close()
    return readings, rollups


def stored_readings(conn: sqlite3.Connection) -> int:
    """The readings in a file: one ':' each in a report's JSON object."""
    (n,) = conn.execute("SELECT coalesce(sum(length(readings) - length(replace(readings, "
                        "':', ''))), 0) FROM stat_reports").fetchone()
    return int(n)


def get_stats(args: argparse.Namespace, db: str) -> dict[str, Any]:
    """p50/p99 of get_stats over HTTP: the last 24 h at 300 s, and the last `--days`
    at 3,600 s (from the hourly rollups), all `--stats-workers` workers, 3 metrics; and
    the hub's CPU per query (threads included), which a loaded machine barely moves."""
    import httpx

    now = int(time.time())
    workers = [f"agent-{w:04d}" for w in range(args.stats_workers)]
    cases = {"day": {"from_date": now - 24 * 3600, "to_date": now, "interval": 300},
             "month": {"from_date": now - int(args.days * 24 * 3600), "to_date": now,
                       "interval": 3600}}
    result: dict[str, Any] = {}
    with run_hub(db, "--stats-retention", str(int(args.hours * 3600) + 7200),
                 profile=args.stats_profile) as hub, \
            httpx.Client(base_url=hub.url, timeout=60) as client:
        for name in args.cases.split(","):
            case = cases[name]
            body = {**case, "worker_ids": workers, "items": ITEMS}
            first = client.post("/workers.get_stats", json=body)
            assert first.status_code == 200, first.text[:300]
            times = []
            cpu0 = cpu_seconds(hub.pid)
            for _ in range(args.queries):
                t0 = time.perf_counter()
                response = client.post("/workers.get_stats", json=body)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200, response.text[:300]
            cpu = cpu_seconds(hub.pid) - cpu0
            data = first.json()["data"]
            points = sum(len(m["dates"]) for w in data["workers"] for m in w["metrics"])
            result[name] = {"p50_ms": round(percentile(times, 50) * 1000, 1),
                            "p99_ms": round(percentile(times, 99) * 1000, 1),
                            "hub_cpu_ms_per_query": round(cpu / args.queries * 1000, 1),
                            "workers": len(data["workers"]), "points": points,
                            "bytes": len(first.content)}
    return result


def _median_of(stats: list[dict[str, Any]], case: str, key: str) -> float | None:
    """The median of `key` over the get_stats runs of `case` (None if it did not run)."""
    values = [s[case][key] for s in stats if case in s]
    return median(values) if values else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--conns", type=int, default=16, help="connections per process")
    parser.add_argument("--seconds", type=float, default=30.0, help="ingest seconds per run")
    parser.add_argument("--stats-workers", type=int, default=100)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--days", type=float, default=30.0,
                        help="history of the month case (hourly rollups before --hours)")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--no-ingest", action="store_true", help="measure get_stats only")
    parser.add_argument("--no-stats", action="store_true", help="measure ingest only")
    parser.add_argument("--inprocess-db", metavar="POSTGRESQL_URL",
                        help="run the in-process ingest on this PostgreSQL database (in a "
                        "schema of its own) instead of a SQLite file")
    parser.add_argument("--stats-db", help="the get_stats file: prefilled unless it exists "
                        "(then reused as it is, e.g. for several runs of one commit)")
    parser.add_argument("--profile", help="py-spy collapsed stacks of the ingest hub (a file)")
    parser.add_argument("--stats-profile", help="py-spy collapsed stacks of the get_stats hub "
                        "(a file; its CPU figures are then py-spy's own)")
    parser.add_argument("--cases", default="day,month", help="the get_stats cases to run")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/clearml.json)")
    args = parser.parse_args(argv)
    started = machine()
    runs = []
    inprocess = []
    for run in range(0 if args.no_ingest else args.runs):
        result = ingest(args)
        runs.append(result)
        print(f"ingest run {run + 1}: {result}", flush=True)
        local = ingest_inprocess(args)
        inprocess.append(local)
        print(f"ingest in-process run {run + 1}: {local}", flush=True)
    stats: list[dict[str, Any]] = []
    samples = rollups = 0
    if not args.no_stats:
        with tempfile.TemporaryDirectory() as tmp:
            db = args.stats_db or str(Path(tmp) / "stats.db")
            t0 = time.monotonic()
            if args.stats_db and Path(db).exists():
                with sqlite3.connect(db) as conn:
                    samples = stored_readings(conn)
                    (rollups,) = conn.execute("SELECT count(*) FROM stat_rollups").fetchone()
                print(f"reusing {db}", flush=True)
            else:
                samples, rollups = prefill(db, args.stats_workers, args.hours, 30, args.days)
            print(f"{samples:,} samples and {rollups:,} rollup rows, "
                  f"{time.monotonic() - t0:.1f} s", flush=True)
            stats = [get_stats(args, db) for _ in range(args.runs)]
    for s in stats:
        print(f"get_stats: {s}", flush=True)
    summary = {
        "reports_per_s": median([r["reports_per_s"] for r in runs]) if runs else None,
        "ingest_p99_ms": median([r["p99_ms"] for r in runs]) if runs else None,
        "hub_cpu_us_per_report": (median([r["hub_cpu_us_per_report"] for r in runs])
                                  if runs else None),
        "inprocess_reports_per_s": (median([r["reports_per_s"] for r in inprocess])
                                    if inprocess else None),
        "inprocess_p99_ms": median([r["p99_ms"] for r in inprocess]) if inprocess else None,
        "inprocess_cpu_us_per_report": (median([r["cpu_us_per_report"] for r in inprocess])
                                        if inprocess else None),
        "get_stats_p50_ms": _median_of(stats, "day", "p50_ms"),
        "get_stats_month_p50_ms": _median_of(stats, "month", "p50_ms"),
        "get_stats_hub_cpu_ms": _median_of(stats, "day", "hub_cpu_ms_per_query"),
        "get_stats_month_hub_cpu_ms": _median_of(stats, "month", "hub_cpu_ms_per_query"),
        "prefilled_samples": samples, "prefilled_rollups": rollups,
        "targets": {"reports_per_s": 3000, "ingest_p99_ms": 50, "get_stats_p50_ms": 100,
                    "get_stats_month_p50_ms": 200},
    }
    result = {"benchmark": "clearml", "machine": started,
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "summary": summary, "ingest_runs": runs, "ingest_inprocess_runs": inprocess,
              "get_stats_runs": stats}
    path = write_result("clearml", result, args.out)
    print(f"median: {summary} -> {path}")
    verdicts = []
    if runs:
        verdicts += [("ingest reports/s", target(summary["reports_per_s"], ">=", 3000)),
                     ("ingest p99", target(summary["ingest_p99_ms"], "<=", 50))]
    for name, key, limit in (("get_stats 24 h p50", "get_stats_p50_ms", 100),
                             ("get_stats month p50", "get_stats_month_p50_ms", 200)):
        if summary[key] is not None:
            verdicts.append((name, target(summary[key], "<=", limit)))
    for name, (_, verdict) in verdicts:
        print(f"{name}: {verdict}")
    return 0 if all(met for _, (met, _) in verdicts) else MISSED


if __name__ == "__main__":
    sys.exit(main())
