"""SQLite store: write cost per task, with an idle and with a saturated event loop.

The store commits on a worker thread. Every SQLite statement releases the GIL and
takes it back; while the event loop keeps the GIL busy, each retake can wait up to
the interpreter's switch interval (5 ms). This compares, in one process and
alternating, the two ways to write a batch of rows:

* `executemany`: one statement per row;
* `chunked`: what `SQLiteStore` does, one multi-row statement per 128 rows.

The effect under a saturated loop varies a lot from one repeat to the next (the
thread scheduling decides how often a retake waits); the JSON keeps every repeat.

Each case inserts `--tasks` tasks in batches of `--batch` and then marks them done,
as the hub does, on a writer thread; the main thread is either idle or spinning
(pure Python, as a saturated event loop would). Reported: the writer's wall time
and CPU time per task (insert + finish), median over `--repeats`.

Then the whole write path through `SQLiteStore` (group commit, savepoints, the
writer actor): `--concurrency` trio tasks each insert a task, record it started
(or not: `started` off is the write load from before dispatches were recorded),
and finish it, waiting for the commit, with the loop idle or kept busy by a
spinning task. Reported: tasks per second, process CPU time per task (steadier on a
shared machine) and transactions per task. `--stores sqlite postgresql` runs that
part on `PostgresStore` too (a fresh schema on `WORKYARD_BENCH_POSTGRES`, default the
local server), interleaved with SQLite, with the same producers.

    python benchmarks/store.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import trio
from _common import machine, median, write_result

from workyard import Attempt, SQLiteStore, Task, TaskState
from workyard.store import Store
from workyard.store._migrations import migrate
from workyard.store._sqlite import (
    INSERT,
    SAVE,
    _execute_chunked,
    _insert_sql,
    _row,
    _save_sql,
)

_encode = msgspec.json.Encoder().encode
POSTGRES = os.environ.get("WORKYARD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
Writer = Callable[[sqlite3.Connection, list[tuple[Any, ...]], bool], None]


def executemany(db: sqlite3.Connection, rows: list[tuple[Any, ...]], finish: bool) -> None:
    db.executemany(SAVE if finish else INSERT, rows)


def chunked(db: sqlite3.Connection, rows: list[tuple[Any, ...]], finish: bool) -> None:
    _execute_chunked(db, _save_sql if finish else _insert_sql, rows)


def one(write: Writer, spin: bool, tasks: int, batch: int, tmp: Path) -> dict[str, float]:
    path = tmp / f"store-{uuid.uuid4().hex}.db"
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         cached_statements=512)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    migrate(db, str(path))
    todo = [Task(id=uuid.uuid4().hex, name="bench", data=msgspec.Raw(b'{"i":1}'), seq=i + 1,
                 created=time.time()) for i in range(tasks)]
    measured: dict[str, float] = {}

    def writer() -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        for k in range(0, tasks, batch):
            chunk = todo[k:k + batch]
            db.execute("BEGIN IMMEDIATE")
            write(db, [_row(t) for t in chunk], False)
            db.execute("COMMIT")
            rows = []
            for t in chunk:
                t.state, t.finished, t.result = TaskState.DONE, time.time(), msgspec.Raw(b"1")
                t.attempts = [Attempt(worker="w", started=1.0, ended=2.0)]
                rows.append((t.state.value, t.finished, bytes(t.result), t.error,
                             _encode(t.attempts), t.id))
            db.execute("BEGIN IMMEDIATE")
            write(db, rows, True)
            db.execute("COMMIT")
        measured["wall_us"] = (time.perf_counter() - wall) / tasks * 1e6
        measured["cpu_us"] = (time.thread_time() - cpu) / tasks * 1e6

    thread = threading.Thread(target=writer)
    thread.start()
    while spin and thread.is_alive():
        for _ in range(10_000):  # Python code holding the GIL, as a busy event loop does
            pass
    thread.join()
    (done,) = db.execute("SELECT count(*) FROM tasks WHERE state = 'done'").fetchone()
    assert done == tasks, done
    db.close()
    return measured


def _setter(event: trio.Event) -> Callable[[Task], None]:
    return lambda _: event.set()


@contextlib.contextmanager
def fresh_store(kind: str, tmp: Path) -> Iterator[SQLiteStore | Store]:
    """A new SQLiteStore file in `tmp`, or a PostgresStore in a new schema (dropped after)."""
    if kind == "sqlite":
        yield SQLiteStore(tmp / f"store-{uuid.uuid4().hex}.db")
        return
    import psycopg

    from workyard.store import PostgresStore

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield PostgresStore(POSTGRES, schema=schema)
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as db:
            db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


async def through_store(store: SQLiteStore | Store, tasks: int, concurrency: int,
                        started: bool, spin: bool) -> dict[str, float]:
    """Insert, (started,) finish `tasks` tasks through a running store."""
    numbers = iter(range(tasks))

    async def producer() -> None:
        for i in numbers:
            t = Task(id=uuid.uuid4().hex, name="bench", data=msgspec.Raw(b'{"i":1}'), seq=i + 1,
                     created=time.time())
            await store.tasks.insert([t])
            t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=time.time())]
            if started:
                store.tasks.started(t)
            await trio.lowlevel.checkpoint()  # the worker runs it
            t.state, t.finished, t.result = TaskState.DONE, time.time(), msgspec.Raw(b"1")
            t.attempts[-1].ended = time.time()
            done = trio.Event()
            store.tasks.finish(t, _setter(done))
            await done.wait()

    async def spinner() -> None:
        while True:
            for _ in range(10_000):  # a busy event loop
                pass
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        if spin:
            nursery.start_soon(spinner)
        commits0: int = getattr(store, "commits", 0)
        wall, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as producers:
            for _ in range(concurrency):
                producers.start_soon(producer)
        wall, commits = time.perf_counter() - wall, getattr(store, "commits", 0) - commits0
        cpu = time.process_time() - cpu
        nursery.cancel_scope.cancel()
    return {"tasks_per_s": tasks / wall, "commits_per_task": commits / tasks,
            "cpu_us_per_task": cpu / tasks * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000,
                        help="per case (one statement per row under a saturated loop is slow)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store-tasks", type=int, default=5000,
                        help="per case through SQLiteStore")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="producers through SQLiteStore at once")
    parser.add_argument("--stores", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite"], help="stores of the write-path part")
    parser.add_argument("--skip-statements", action="store_true",
                        help="skip the SQLite statement comparison (the first part)")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/store.json)")
    args = parser.parse_args(argv)
    started = machine()

    writers: dict[str, Writer] = {"executemany": executemany, "chunked": chunked}
    samples: dict[tuple[str, bool], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="workyard-bench-") as tmp:
        for _ in range(0 if args.skip_statements else args.repeats):  # alternate, so drift
            for spin in (False, True):  # touches every case alike
                for name, write in writers.items():
                    samples.setdefault((name, spin), []).append(
                        one(write, spin, args.tasks, args.batch, Path(tmp)))
    cases = []
    for (name, spin), runs in samples.items():
        case = {"writer": name, "event_loop": "saturated" if spin else "idle",
                "wall_us_per_task": round(median([r["wall_us"] for r in runs]), 1),
                "cpu_us_per_task": round(median([r["cpu_us"] for r in runs]), 1),
                "wall_us_runs": [round(r["wall_us"], 1) for r in runs]}
        cases.append(case)
        print(f"{name:12s} {case['event_loop']:9s} loop: {case['wall_us_per_task']:7.1f} us wall, "
              f"{case['cpu_us_per_task']:6.1f} us CPU per task (insert + finish)", flush=True)
    through: dict[tuple[str, bool, bool], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="workyard-bench-") as tmp:
        for _ in range(args.repeats):
            for spin in (False, True):
                for record_started in (False, True):
                    for kind in args.stores:
                        with fresh_store(kind, Path(tmp)) as store:
                            through.setdefault((kind, record_started, spin), []).append(
                                trio.run(through_store, store, args.store_tasks,
                                         args.concurrency, record_started, spin))
    store_cases = []
    for (kind, record_started, spin), runs in through.items():
        writes = "insert + started + finish" if record_started else "insert + finish"
        case = {"store": kind, "writes": writes, "event_loop": "saturated" if spin else "idle",
                "tasks_per_s": round(median([r["tasks_per_s"] for r in runs])),
                "commits_per_task": round(median([r["commits_per_task"] for r in runs]), 4),
                "cpu_us_per_task": round(median([r["cpu_us_per_task"] for r in runs]), 1),
                "tasks_per_s_runs": [round(r["tasks_per_s"]) for r in runs]}
        store_cases.append(case)
        print(f"{kind:11s}  {case['event_loop']:9s} loop: {case['tasks_per_s']:7d} tasks/s, "
              f"{case['cpu_us_per_task']:6.1f} us CPU (process), "
              f"{case['commits_per_task']:.3f} commits per task ({writes})", flush=True)
    result = {"benchmark": "store", "machine": started, "settings": vars(args), "cases": cases,
              "store_cases": store_cases}
    print(f"-> {write_result('store', result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
