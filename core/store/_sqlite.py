"""SQLite store (WAL) with group commit.

Concurrent requests do not each pay for a transaction: writes queue up while the
previous transaction commits, and the writer actor commits everything queued in
one transaction on a worker thread. Reads use their own connection, which WAL
lets run beside the writer.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import trio

from .._errors import Unavailable
from .._model import Attempt, Task, TaskState
from ._memory import OnCommit

__all__ = ["SQLiteStore"]

T = TypeVar("T")

log = logging.getLogger("workyard.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    attrs BLOB NOT NULL,
    data BLOB NOT NULL,
    priority INTEGER NOT NULL,
    timeout REAL NOT NULL,
    retries INTEGER NOT NULL,
    schedule_timeout REAL,
    key TEXT UNIQUE,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    result BLOB,
    error TEXT,
    attempts BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (seq) WHERE finished IS NULL;
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished) WHERE finished IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, seq);
CREATE TABLE IF NOT EXISTS queue_configurations (
    queue TEXT PRIMARY KEY,
    configuration BLOB NOT NULL
);
"""

COLUMNS = ("id, seq, name, attrs, data, priority, timeout, retries, schedule_timeout, key, "
           "state, created, finished, result, error, attempts")
INSERT = f"INSERT INTO tasks ({COLUMNS}) VALUES ({', '.join('?' * 16)})"
FINISH = "UPDATE tasks SET state = ?, finished = ?, result = ?, error = ?, attempts = ? WHERE id = ?"

#: Rows per statement. The writer thread runs one multi-row statement per chunk rather
#: than one per row (`executemany`): each statement releases and retakes the GIL, and
#: while the event loop is busy every retake waits up to the switch interval (5 ms),
#: which made commits many times slower than their SQLite work. 128 x 16 columns stays
#: far below SQLite's 32766 parameters.
CHUNK = 128


@functools.cache
def _insert_sql(rows: int) -> str:
    row = f"({', '.join('?' * 16)})"
    return f"INSERT INTO tasks ({COLUMNS}) VALUES {', '.join([row] * rows)}"


@functools.cache
def _finish_sql(rows: int) -> str:
    return ("UPDATE tasks SET state = v.column1, finished = v.column2, result = v.column3, "
            "error = v.column4, attempts = v.column5 FROM (VALUES "
            f"{', '.join(['(?, ?, ?, ?, ?, ?)'] * rows)}) AS v WHERE tasks.id = v.column6")


def _execute_chunked(db: sqlite3.Connection, sql: Callable[[int], str],
                     rows: list[tuple[object, ...]]) -> None:
    """Run `rows` through multi-row statements of at most CHUNK rows each."""
    for i in range(0, len(rows), CHUNK):
        part = rows[i:i + CHUNK]
        db.execute(sql(len(part)), [value for row in part for value in row])

_encode = msgspec.json.Encoder().encode
_attrs = msgspec.json.Decoder(dict[str, str])
_attempts = msgspec.json.Decoder(list[Attempt])


def _row(task: Task) -> tuple[object, ...]:
    return (
        task.id, task.seq, task.name, _encode(task.attrs), bytes(task.data), task.priority,
        task.timeout, task.retries, task.schedule_timeout, task.key, task.state.value,
        task.created, task.finished, None if task.result is None else bytes(task.result),
        task.error, _encode(task.attempts),
    )


def _task(row: tuple[Any, ...]) -> Task:
    (id_, seq, name, attrs, data, priority, timeout, retries, schedule_timeout, key, state,
     created, finished, result, error, attempts) = row
    return Task(
        id=id_, seq=seq, name=name, attrs=_attrs.decode(attrs), data=msgspec.Raw(data),
        priority=priority, timeout=timeout, retries=retries, schedule_timeout=schedule_timeout,
        key=key, state=TaskState(state), created=created, finished=finished,
        result=None if result is None else msgspec.Raw(result), error=error,
        attempts=_attempts.decode(attempts),
    )


@dataclass(slots=True)
class _Insert:
    tasks: list[Task]
    done: trio.Event = field(default_factory=trio.Event)
    ids: list[str] = field(default_factory=list)
    error: BaseException | None = None


@dataclass(slots=True)
class _Finish:
    row: tuple[object, ...]
    task: Task
    then: OnCommit


class SQLiteStore:
    """A `Store` in one SQLite file."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self._pending: list[_Insert | _Finish] = []
        self._wake = trio.Event()
        self._aside_db: sqlite3.Connection | None = None
        self._aside_limiter = trio.CapacityLimiter(1)
        self.commits = 0  # transactions committed: the group-commit ratio is writes / commits

    def _connect(self) -> sqlite3.Connection:
        # Room for the multi-row statements of every chunk size besides the others.
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             cached_statements=2 * CHUNK + 64)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {self.synchronous}")
        db.execute("PRAGMA busy_timeout = 5000")
        return db

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = await trio.to_thread.run_sync(self._connect)
        await trio.to_thread.run_sync(writer.executescript, SCHEMA)
        self._aside_db = await trio.to_thread.run_sync(self._connect)
        try:
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                batch, self._pending = self._pending, []
                # A batch taken off the queue is committed even if we are cancelled
                # meanwhile: otherwise neither this loop nor the flush below writes it.
                with trio.CancelScope(shield=True):
                    await self._commit(writer, batch)
        finally:
            # Cancelled: flush what callers already handed over, then close.
            with trio.CancelScope(shield=True):
                if self._pending:
                    await self._commit(writer, self._pending)
                writer.close()
                self._aside_db.close()

    async def _commit(self, db: sqlite3.Connection, batch: list[_Insert | _Finish]) -> None:
        try:
            await trio.to_thread.run_sync(self._write, db, batch)
        except sqlite3.Error as exc:  # disk full, corrupt file, ...: fail the waiters loudly
            log.exception("store write failed")
            for op in batch:
                if isinstance(op, _Insert):
                    op.error = exc
        self.commits += 1
        for op in batch:
            if isinstance(op, _Insert):
                op.done.set()
            else:
                op.then(op.task)

    @staticmethod
    def _write(db: sqlite3.Connection, batch: list[_Insert | _Finish]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            finals: list[tuple[object, ...]] = []
            for op in batch:
                if isinstance(op, _Finish):
                    finals.append(op.row)
                    continue
                if finals:  # keep order: a finish queued before this insert goes first
                    _execute_chunked(db, _finish_sql, finals)
                    finals = []
                keyed = [t for t in op.tasks if t.key is not None]
                existing: dict[str, str] = {}
                for t in keyed:
                    hit = db.execute("SELECT id FROM tasks WHERE key = ?", (t.key,)).fetchone()
                    if hit is not None:
                        existing[t.key] = hit[0]  # type: ignore[index]
                fresh = []
                for t in op.tasks:
                    if t.key is not None and t.key in existing:
                        op.ids.append(existing[t.key])
                    else:
                        if t.key is not None:
                            existing[t.key] = t.id  # a repeat within this batch
                        fresh.append(_row(t))
                        op.ids.append(t.id)
                _execute_chunked(db, _insert_sql, fresh)
            if finals:
                _execute_chunked(db, _finish_sql, finals)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            for op in batch:
                if isinstance(op, _Insert):
                    op.ids.clear()
            raise

    def _queue(self, op: _Insert | _Finish) -> None:
        self._pending.append(op)
        self._wake.set()

    async def insert(self, tasks: list[Task]) -> list[str]:
        op = _Insert(tasks)
        self._queue(op)
        await op.done.wait()
        if op.error is not None:
            raise Unavailable(f"the store could not save the tasks: {op.error}") from op.error
        return op.ids

    def finish(self, task: Task, then: OnCommit) -> None:
        row = (task.state.value, task.finished,
               None if task.result is None else bytes(task.result), task.error,
               _encode(task.attempts), task.id)
        self._queue(_Finish(row, task, then))

    async def _aside(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the second connection: reads, and the rare writes (purge, queue
        configuration) that need not wait for, or slow down, a group commit."""
        assert self._aside_db is not None, "the store is not running"
        return await trio.to_thread.run_sync(fn, self._aside_db, limiter=self._aside_limiter)

    async def get(self, task_id: str) -> Task | None:
        row = await self._aside(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE id = ?", (task_id,)).fetchone())
        return None if row is None else _task(row)

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        where, args = [], []
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if state is not None:
            where.append("state = ?")
            args.append(state.value)
        sql = f"SELECT {COLUMNS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        rows = await self._aside(lambda db: db.execute(sql, (*args, limit)).fetchall())
        return [_task(r) for r in rows]

    async def unfinished(self) -> list[Task]:
        rows = await self._aside(lambda db: db.execute(
            f"SELECT {COLUMNS} FROM tasks WHERE finished IS NULL ORDER BY seq").fetchall())
        return [_task(r) for r in rows]

    async def purge(self, finished_before: float) -> int:
        def delete(db: sqlite3.Connection) -> int:
            return db.execute("DELETE FROM tasks WHERE finished IS NOT NULL AND finished < ?",
                              (finished_before,)).rowcount
        return await self._aside(delete)

    async def configurations(self) -> dict[str, bytes]:
        rows = await self._aside(lambda db: db.execute(
            "SELECT queue, configuration FROM queue_configurations").fetchall())
        return {queue: bytes(configuration) for queue, configuration in rows}

    async def configure(self, queue: str, configuration: bytes) -> None:
        await self._aside(lambda db: db.execute(
            "INSERT INTO queue_configurations (queue, configuration) VALUES (?, ?) "
            "ON CONFLICT (queue) DO UPDATE SET configuration = excluded.configuration",
            (queue, configuration)))
