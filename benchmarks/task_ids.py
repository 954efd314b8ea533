"""SQLite commits with random (UUID version 4) against time-ordered (version 7) task ids.

The hub's hot writes are, per task, an insert, a start and a finish, found through
the index on `tasks.id`. Each transaction here holds what a busy hub's commit holds:
the inserts of `batch` new tasks, the starts of the previous batch and the finishes
of the one before, on a table with `--prefill` finished tasks already in it (a day's
retention keeps many). Reported per id kind and batch size: WAL pages written per
commit (exact: counted by SQLite, the same on any machine) and CPU per task (the
row building in Python included, the same for both kinds).

    python benchmarks/task_ids.py
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import msgspec
from _common import machine, write_result

from workyard import Attempt, Task, TaskState
from workyard.protocol._tasks import new_task_id
from workyard.store._migrations import migrate
from workyard.store._sqlite import _execute_chunked, _insert_sql, _row, _save_row, _save_sql

KINDS: dict[str, Callable[[], str]] = {"uuid4": lambda: uuid.uuid4().hex,
                                       "uuid7": new_task_id}
#: commits between two counts of the WAL's pages (each count checkpoints it)
COUNT_EVERY = 20


def one(new_id: Callable[[], str], prefill: int, batch: int, commits: int,
        tmp: Path) -> dict[str, float]:
    path = tmp / f"ids-{uuid.uuid4().hex}.db"
    db = sqlite3.connect(path, isolation_level=None, cached_statements=512)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    migrate(db, str(path))
    seq = 0

    def new(n: int) -> list[Task]:
        nonlocal seq
        seq += n
        return [Task(id=new_id(), name="bench", data=msgspec.Raw(b'{"i":1}'), seq=seq - n + i,
                     created=time.time()) for i in range(n)]

    for _ in range(0, prefill, 1000):
        done = new(1000)
        for t in done:
            t.state, t.finished, t.result = TaskState.DONE, time.time(), msgspec.Raw(b"1")
        db.execute("BEGIN")
        _execute_chunked(db, _insert_sql, [_row(t) for t in done])
        db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    pages, cpu = 0, time.process_time()
    started: list[Task] = []
    inserted: list[Task] = []
    for i in range(commits):
        fresh = new(batch)
        db.execute("BEGIN IMMEDIATE")
        _execute_chunked(db, _insert_sql, [_row(t) for t in fresh])
        for t in inserted:
            t.state, t.attempts = TaskState.RUNNING, [Attempt(worker="w", started=1.0)]
        _execute_chunked(db, _save_sql, [_save_row(t) for t in inserted])
        for t in started:
            t.state, t.finished, t.result = TaskState.DONE, time.time(), msgspec.Raw(b"1")
        _execute_chunked(db, _save_sql, [_save_row(t) for t in started])
        db.execute("COMMIT")
        started, inserted = inserted, fresh
        if i % COUNT_EVERY == COUNT_EVERY - 1:
            _, wal_pages, _ = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            pages += wal_pages
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    cpu = time.process_time() - cpu
    db.close()
    counted = commits // COUNT_EVERY * COUNT_EVERY
    return {"wal_pages_per_commit": round(pages / counted, 1),
            "cpu_us_per_task": round(cpu / (commits * batch) * 1e6, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefill", type=int, default=50_000)
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 40, 400])
    parser.add_argument("--tasks", type=int, default=8000, help="per case")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/task_ids.json)")
    args = parser.parse_args(argv)
    started = machine()
    cases = []
    with tempfile.TemporaryDirectory(prefix="workyard-bench-") as tmp:
        for batch in args.batches:
            commits = max(COUNT_EVERY, args.tasks // batch // COUNT_EVERY * COUNT_EVERY)
            for kind, new_id in KINDS.items():  # alternated, so drift touches both alike
                case = {"ids": kind, "batch": batch,
                        **one(new_id, args.prefill, batch, commits, Path(tmp))}
                cases.append(case)
                print(f"{kind}  {batch:4d} tasks a commit: {case['wal_pages_per_commit']:6.1f} "
                      f"WAL pages per commit, {case['cpu_us_per_task']:6.1f} us CPU per task",
                      flush=True)
    result = {"benchmark": "task_ids", "machine": started, "settings": vars(args),
              "cases": cases}
    print(f"-> {write_result('task_ids', result, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
