"""PostgreSQL store with group commit and units of work that fail alone.

The same semantics as `SQLiteStore`, on psycopg 3's synchronous connections run on
worker threads (psycopg's async API needs asyncio; the hub runs on trio):

* **One writer.** The writer actor owns one connection. Units of work (one `commit`
  call, or one `commit_soon` change) queue up while the previous transaction commits,
  and the actor applies everything queued in one transaction on a worker thread, so
  durability (PostgreSQL's synchronous commit) is paid once per batch, not per write.
  A lost connection fails the batch it was in (`StoreError`) and is opened again for
  the next one: the writer never dies.
* **Few round trips, little Python.** A transaction's task rows go out as one `INSERT
  ... SELECT FROM json_to_recordset(...)` and one `UPDATE ... FROM json_to_recordset`
  however its inserts, starts and finishes interleave (`_Statements`), all of it
  pipelined: BEGIN, the statements and COMMIT reach the server in one flush. Each
  round trip releases and retakes the GIL, which a busy event loop makes slow (see
  `_sqlite.CHUNK`). Each row is encoded once, by msgspec, when its change is handed
  over; a statement's parameter is their JSON array (psycopg's own adaptation of
  lists costs ~20x more CPU per row).
* **Failing alone.** If anything in the batch fails, the whole transaction is rolled
  back (nothing of it was kept) and the batch is replayed in a new one, one SAVEPOINT
  per unit, dropping the units that fail. The happy path pays no savepoint at all.
* **Reads beside the writer.** Reads, and purging, use a `psycopg_pool.ConnectionPool`
  of autocommit connections, so they neither wait for nor slow down a group commit.

The schema is versioned (`_postgres_migrations.py`) and brought up to date when `run`
starts. `schema=` puts the store's tables in a schema of their own (created if
missing), e.g. one per test.

To add an aggregate: its change types get a `_prepare` entry (what to snapshot when
the change is handed over) and a `_Statements` method (how to write it); its reads go
through `_read`.
"""

from __future__ import annotations

import logging
import re
import select
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import psycopg
import trio
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from .._model import Attempt, Task, TaskState
from ._interface import (
    Change,
    ConfigureQueue,
    FinishTask,
    InsertTasks,
    OnCommit,
    Result,
    StartAttempt,
    StoreError,
)
from ._postgres_migrations import migrate, refuse_newer

__all__ = ["PostgresStore"]

T = TypeVar("T")

log = logging.getLogger("workyard.store")

COLUMNS = ("id, seq, name, attrs, data, priority, timeout, retries, schedule_timeout, key, "
           "state, created, finished, result, error, attempts")
#: What reads select: the json columns as text, for msgspec to decode.
SELECT = ("SELECT id, seq, name, attrs::text, data, priority, timeout, retries, "
          "schedule_timeout, key, state, created, finished, result, error, attempts::text "
          "FROM tasks")
#: Any number of new rows in one statement: a JSON array of `_NewRow`s, which msgspec
#: encodes in C (psycopg adapts a Python list element by element, ~20x slower).
INSERT = (f"INSERT INTO tasks ({COLUMNS}) "
          "SELECT id, seq, name, attrs, decode(data, 'base64'), priority, timeout, retries, "
          "schedule_timeout, key, state, created, finished, decode(result, 'base64'), error, "
          "attempts FROM json_to_recordset(%s::json) AS v(id text, seq bigint, name text, "
          "attrs json, data text, priority bigint, timeout float8, retries bigint, "
          "schedule_timeout float8, key text, state text, created float8, finished float8, "
          "result text, error text, attempts json)")
#: Any number of tasks' changing columns (`StartAttempt`, `FinishTask`) in one statement,
#: a JSON array of `_SavedRow`s.
SAVE = ("UPDATE tasks SET state = v.state, finished = v.finished, "
        "result = decode(v.result, 'base64'), error = v.error, attempts = v.attempts "
        "FROM json_to_recordset(%s::json) AS v(id text, state text, finished float8, "
        "result text, error text, attempts json) WHERE tasks.id = v.id")
KEYS = "SELECT key, id FROM tasks WHERE key = ANY(%s::text[])"
CONFIGURE = ("INSERT INTO queue_configurations (queue, configuration) VALUES (%s, %s) "
             "ON CONFLICT (queue) DO UPDATE SET configuration = excluded.configuration")

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_encode = msgspec.json.Encoder().encode
_attrs = msgspec.json.Decoder(dict[str, str])
_attempts = msgspec.json.Decoder(list[Attempt])


class _NewRow(msgspec.Struct, gc=False):
    """A task row as INSERT reads it; bytes go as base64 (msgspec's bytes encoding)."""

    id: str
    seq: int
    name: str
    attrs: dict[str, str]
    data: bytes
    priority: int
    timeout: float
    retries: int
    schedule_timeout: float | None
    key: str | None
    state: str
    created: float
    finished: float | None
    result: bytes | None
    error: str | None
    attempts: list[Attempt]


class _SavedRow(msgspec.Struct, gc=False):
    """A task's changing columns as SAVE reads them."""

    id: str
    state: str
    finished: float | None
    result: bytes | None
    error: str | None
    attempts: list[Attempt]


def _new_row(task: Task) -> bytes:
    """A new task's row as JSON, encoded when the change is handed over (so it is what
    was handed over, and a task that cannot be encoded fails alone, there)."""
    return _encode(_NewRow(
        task.id, task.seq, task.name, task.attrs, bytes(task.data), task.priority,
        task.timeout, task.retries, task.schedule_timeout, task.key, task.state.value,
        task.created, task.finished, None if task.result is None else bytes(task.result),
        task.error, task.attempts))


def _saved_row(task: Task) -> bytes:
    """A task's changing columns as JSON, encoded when the change is handed over."""
    return _encode(_SavedRow(
        task.id, task.state.value, task.finished,
        None if task.result is None else bytes(task.result), task.error, task.attempts))


def _json_array(rows: Iterable[bytes]) -> str:
    return (b"[" + b",".join(rows) + b"]").decode()


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


# -- changes as the writer thread applies them --------------------------------------


@dataclass(frozen=True, slots=True)
class _NewTasks:
    """An `InsertTasks`: its rows (`_new_row`), ids and keys."""

    rows: list[bytes]
    ids: list[str]
    keys: list[str | None]


@dataclass(frozen=True, slots=True)
class _Save:
    """A `StartAttempt` or `FinishTask`: the task's changing columns (`_saved_row`)."""

    task_id: str
    row: bytes


_Op = _NewTasks | _Save | ConfigureQueue


def _new_tasks(change: InsertTasks) -> _NewTasks:
    return _NewTasks([_new_row(t) for t in change.tasks], [t.id for t in change.tasks],
                     [t.key for t in change.tasks])


def _save(change: StartAttempt | FinishTask) -> _Save:
    return _Save(change.task.id, _saved_row(change.task))


#: Per change type: what to snapshot when it is handed over.
_PREPARE: dict[type, Callable[[Any], _Op]] = {
    InsertTasks: _new_tasks,
    StartAttempt: _save,
    FinishTask: _save,
    ConfigureQueue: lambda change: change,
}


@dataclass(slots=True, eq=False)
class _Unit:
    """One unit of work: applied, or rolled back, as a whole."""

    changes: Sequence[Change]
    ops: list[_Op] = field(default_factory=list)
    #: set once the unit is committed or has failed, for a `commit` awaiting it
    done: trio.Event | None = None
    #: called once the unit is committed or has failed, for `commit_soon`
    then: Callable[[], None] | None = None
    results: list[Result] = field(default_factory=list)
    error: BaseException | None = None


def _describe(changes: Sequence[Change]) -> str:
    return " + ".join(type(c).__name__ for c in changes)


class _Statements:
    """The writes of one transaction, held back to go out in as few statements as the
    order allows: new task rows in one INSERT, saved columns in one UPDATE, each with
    one array per column (however many rows).

    Rows of different tasks do not depend on each other, so they need not go out in
    the order they came; rows of one task do. A save for a task whose insert is held
    back sends the inserts first, an insert of a task with a save held back sends the
    saves first, and a task saved twice keeps its last save (both are whole snapshots).
    One method per kind of write; `apply` picks it.
    """

    def __init__(self, db: psycopg.Connection) -> None:
        self.db = db
        self.inserts: dict[str, bytes] = {}
        self.saves: dict[str, bytes] = {}
        #: idempotency key -> id, for the rows this transaction inserted
        self.keys: dict[str, str] = {}
        #: ids in `inserts` twice: the second INSERT must fail, as it would alone
        self.repeats: list[bytes] = []

    def apply(self, op: _Op) -> Result:
        if type(op) is _Save:
            self.save_task(op)
            return None
        if type(op) is _NewTasks:
            return self.insert_tasks(op)
        if type(op) is ConfigureQueue:
            self.configure_queue(op)
            return None
        raise TypeError(f"unknown change {op!r}")

    def save_task(self, op: _Save) -> None:
        if op.task_id in self.inserts:
            self._flush_inserts()
        self.saves.pop(op.task_id, None)
        self.saves[op.task_id] = op.row

    def insert_tasks(self, op: _NewTasks) -> list[str]:
        """Hold back the rows, but not those whose key is stored or repeated; returns
        the ids."""
        known = self._stored_keys([k for k in op.keys if k is not None and k not in self.keys])
        ids = []
        for row, task_id, key in zip(op.rows, op.ids, op.keys, strict=True):
            if key is not None:
                existing = self.keys.get(key) or known.get(key)
                if existing is not None:
                    ids.append(existing)
                    continue
                self.keys[key] = task_id
            if task_id in self.saves:
                self._flush_saves()
            if task_id in self.inserts:
                self.repeats.append(row)
            else:
                self.inserts[task_id] = row
            ids.append(task_id)
        return ids

    def configure_queue(self, op: ConfigureQueue) -> None:
        self.db.execute(CONFIGURE, (op.queue, bytes(op.configuration)))

    def flush(self) -> None:
        self._flush_inserts()
        self._flush_saves()

    def _stored_keys(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        return dict(self.db.execute(KEYS, (keys,)).fetchall())

    def _flush_inserts(self) -> None:
        if self.inserts or self.repeats:
            self.db.execute(INSERT, (_json_array([*self.inserts.values(), *self.repeats]),))
            self.inserts.clear()
            self.repeats.clear()

    def _flush_saves(self) -> None:
        if self.saves:
            self.db.execute(SAVE, (_json_array(self.saves.values()),))
            self.saves.clear()


# -- the aggregates' reads and sugar ----------------------------------------------


class _Tasks:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def insert(self, tasks: Sequence[Task]) -> list[str]:
        (ids,) = await self._store.commit(InsertTasks(tasks))
        assert ids is not None
        return ids

    def started(self, task: Task) -> None:
        self._store.commit_soon(StartAttempt(task))

    def finish(self, task: Task, then: OnCommit) -> None:
        self._store.commit_soon(FinishTask(task), lambda: then(task))

    async def get(self, task_id: str) -> Task | None:
        row = await self._store._read(lambda db: db.execute(
            f"{SELECT} WHERE id = %s", (task_id,)).fetchone())
        return None if row is None else _task(row)

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        where, args = [], []
        if name is not None:
            where.append("name = %s")
            args.append(name)
        if state is not None:
            where.append("state = %s")
            args.append(state.value)
        query = SELECT
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY seq DESC LIMIT %s"
        rows = await self._store._read(
            lambda db: db.execute(query, (*args, limit)).fetchall())  # type: ignore[arg-type]
        return [_task(r) for r in rows]

    async def unfinished(self) -> list[Task]:
        rows = await self._store._read(lambda db: db.execute(
            f"{SELECT} WHERE finished IS NULL ORDER BY seq").fetchall())
        return [_task(r) for r in rows]

    async def purge(self, finished_before: float) -> int:
        # On a pool connection, outside group commit: a large delete must not hold up
        # the hot path, and nothing else commits with it.
        def delete(db: psycopg.Connection) -> int:
            return db.execute("DELETE FROM tasks WHERE finished IS NOT NULL AND finished < %s",
                              (finished_before,)).rowcount
        return await self._store._read(delete)


class _Queues:
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def configurations(self) -> dict[str, bytes]:
        rows = await self._store._read(lambda db: db.execute(
            "SELECT queue, configuration FROM queue_configurations").fetchall())
        return {queue: bytes(configuration) for queue, configuration in rows}

    async def configure(self, queue: str, configuration: bytes) -> None:
        await self._store.commit(ConfigureQueue(queue, configuration))


# -- the store --------------------------------------------------------------------


def _readable(db: psycopg.Connection) -> bool:
    """Whether the server sent anything on `db`, without waiting."""
    readable, _, _ = select.select([db.fileno()], [], [], 0)
    return bool(readable)


def describe_url(url: str, schema: str | None = None) -> str:
    """`url` without its password (for messages and logs), and the schema if any."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable URL)"
    where = (f"postgresql://{params.get('user', '')}@{params.get('host', '')}"
             f"{':' + str(params['port']) if 'port' in params else ''}/"
             f"{params.get('dbname', '')}")
    return where if schema is None else f"{where} (schema {schema})"


class PostgresStore:
    """A `Store` in a PostgreSQL database (its tables in `schema`, else in the search_path)."""

    def __init__(self, url: str, *, schema: str | None = None, readers: int = 4) -> None:
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must be a lower-case identifier, not {schema!r}")
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.url = url
        self.schema = schema
        self.readers = readers
        self.where = describe_url(url, schema)
        self._connect_args: dict[str, Any] = {"connect_timeout": 10,
                                              "application_name": "workyard"}
        if schema is not None:
            self._connect_args["options"] = f"-c search_path={schema}"
        self._pending: list[_Unit] = []
        self._wake = trio.Event()
        self._closed = False
        self._writer: psycopg.Connection | None = None
        self._pool: ConnectionPool | None = None
        self._read_limiter = trio.CapacityLimiter(readers)
        self._tasks = _Tasks(self)
        self._queues = _Queues(self)
        self.commits = 0  # transactions committed: the group-commit ratio is writes / commits

    @property
    def tasks(self) -> _Tasks:
        return self._tasks

    @property
    def queues(self) -> _Queues:
        return self._queues

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, **self._connect_args)

    def _open_writer(self) -> psycopg.Connection:
        """The writer's connection, the schema created and migrated."""
        db = self._connect()
        try:
            if self.schema is not None:
                with db.transaction():  # concurrent CREATE SCHEMA IF NOT EXISTS can clash
                    db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.schema,))
                    db.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(self.schema)))
            refuse_newer(db, self.where)  # before anything writes to a schema we do not know
            migrate(db, self.where)
        except BaseException:
            db.close()
            raise
        return db

    def _open_pool(self) -> ConnectionPool:
        pool = ConnectionPool(self.url, min_size=1, max_size=self.readers, open=False,
                              kwargs={**self._connect_args, "autocommit": True},
                              name="workyard-readers")
        pool.open(wait=True, timeout=10)
        return pool

    def _open(self) -> None:
        try:
            self._writer = self._open_writer()
            self._pool = self._open_pool()
        except psycopg.Error as exc:
            self._close()
            raise StoreError(f"{self.where}: cannot open the store: {exc}".strip()) from exc
        except PoolTimeout as exc:
            self._close()
            raise StoreError(f"{self.where}: cannot open the store: {exc}") from exc
        except BaseException:
            self._close()
            raise

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- the writer actor -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(self._open)
        self._closed = False
        try:
            task_status.started()
            while True:
                await self._wake.wait()
                # One more scheduler round, so that writes handed over by tasks that
                # run in the same round as this wake-up share this commit.
                await trio.lowlevel.checkpoint()
                self._wake = trio.Event()
                batch, self._pending = self._pending, []
                # A batch taken off the queue is committed even if we are cancelled
                # meanwhile: otherwise neither this loop nor the flush below writes it.
                with trio.CancelScope(shield=True):
                    await self._commit(batch)
        finally:
            # Cancelled: flush what callers already handed over, then close.
            with trio.CancelScope(shield=True):
                self._closed = True
                if self._pending:
                    batch, self._pending = self._pending, []
                    await self._commit(batch)
                await trio.to_thread.run_sync(self._close)

    async def _commit(self, batch: list[_Unit]) -> None:
        try:
            await trio.to_thread.run_sync(self._write, batch)
        except Exception as exc:  # noqa: BLE001 - connection lost, database down: fail every unit
            log.error("store transaction failed (%s): %s", self.where, exc)
            for unit in batch:
                if unit.error is None:
                    unit.error, unit.results = exc, []
        else:
            self.commits += 1
        for unit in batch:
            if unit.done is not None:
                unit.done.set()
                continue
            if unit.error is not None:
                log.error("store write failed (%s): %r", _describe(unit.changes), unit.error)
            if unit.then is not None:
                try:
                    unit.then()
                except Exception:  # a callback's bug must not stop the writer
                    log.exception("store commit callback failed")

    def _connection(self) -> psycopg.Connection:
        """The writer's connection, opened again if it was lost. An idle connection the
        server sent something on has been closed by it (terminated, restarted; the
        writer never LISTENs): that is found without a round trip, so the next batch
        does not fail on it."""
        db = self._writer
        if db is None or db.closed or db.broken or _readable(db):
            if db is not None:
                db.close()
                log.warning("store connection lost (%s): connecting again", self.where)
            self._writer = None
            self._writer = db = self._connect()
        return db

    def _write(self, batch: list[_Unit]) -> None:
        """One transaction for the whole batch, on a worker thread."""
        db = self._connection()
        try:
            with db.pipeline(), db.transaction():
                self._apply(db, batch)
        except Exception:
            if db.broken or db.closed:
                raise  # the connection, not a unit: the whole batch failed
            # Rolled back whole: find the failing units, commit the others.
            with db.transaction():
                self._apply_one_by_one(db, batch)

    def _apply_one_by_one(self, db: psycopg.Connection, batch: list[_Unit]) -> None:
        """Apply each unit in its own SAVEPOINT; a unit that raises is rolled back alone."""
        for unit in batch:
            if unit.error is not None:
                continue
            try:
                with db.transaction():  # a savepoint
                    self._apply(db, [unit])
            except Exception as exc:  # any failure is this unit's alone
                if db.broken or db.closed:
                    raise
                unit.error, unit.results = exc, []

    @staticmethod
    def _apply(db: psycopg.Connection, units: list[_Unit]) -> None:
        """Apply `units` in order, as few statements as the order allows."""
        statements = _Statements(db)
        for unit in units:
            if unit.error is None:
                unit.results = [statements.apply(op) for op in unit.ops]
        statements.flush()

    # -- handing over writes --------------------------------------------------------

    @staticmethod
    def _prepare(unit: _Unit) -> _Unit:
        try:
            for change in unit.changes:
                prepare = _PREPARE.get(type(change))
                if prepare is None:
                    raise TypeError(f"unknown change {change!r}")
                unit.ops.append(prepare(change))
        except Exception as exc:  # noqa: BLE001 - the unit fails alone, reported as usual
            unit.error = exc
        return unit

    def _queue(self, unit: _Unit) -> None:
        if self._closed:
            raise StoreError(f"the store {self.where} is closed")
        self._pending.append(unit)
        self._wake.set()

    async def commit(self, *changes: Change) -> list[Result]:
        unit = self._prepare(_Unit(changes, done=trio.Event()))
        if unit.error is None:
            self._queue(unit)
            assert unit.done is not None
            await unit.done.wait()
        if unit.error is not None:
            raise StoreError(f"the store could not commit {_describe(changes)}: "
                             f"{unit.error}".strip()) from unit.error
        return unit.results

    def commit_soon(self, change: Change, then: Callable[[], None] | None = None) -> None:
        if self._closed:  # shutting down: say so, and do not leave anyone waiting
            log.error("store write dropped (%s): the store %s is closed",
                      type(change).__name__, self.where)
            if then is not None:
                then()
            return
        self._queue(self._prepare(_Unit((change,), then=then)))

    async def _read(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run `fn` on a pool connection (autocommit): reads, and the rare writes (purge)
        that need not wait for, or slow down, a group commit."""
        pool = self._pool
        if pool is None:
            raise StoreError(f"the store {self.where} is not running")

        def read() -> T:
            with pool.connection(timeout=10) as db:
                return fn(db)

        try:
            return await trio.to_thread.run_sync(read, limiter=self._read_limiter)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StoreError(f"the store {self.where} could not read: {exc}".strip()) from exc
