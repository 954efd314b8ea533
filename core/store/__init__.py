"""Durable state behind one narrow seam.

* `_interface.py`: the `Store` (one attribute per aggregate: `tasks`, `queues`,
  `pools`, `outbox`, `stats`; the writer actor `run`; `commit` and `commit_soon`), the
  change types it applies, and `StoreError`.
* `_writes.py`: the aggregates' write methods, sugar over `commit`, written once.
* `_sqlite.py`: `SQLiteStore`, one file, group commit, units of work that fail alone.
* `_postgres.py`: `PostgresStore`, the same on PostgreSQL (psycopg 3, the `postgres`
  extra; imported on first use, so SQLite-only installs need no psycopg);
  `_postgres_migrations.py` its schema's numbered versions.
* `_migrations.py`: the SQLite schema's numbered versions.
* `_memory.py`: `MemoryStore`, the in-memory double (public as `workyard.testing`).
"""

from typing import TYPE_CHECKING, Any

from ._interface import (
    ActivityBucket,
    AppendEvents,
    Change,
    ConfigureQueue,
    DeletePool,
    FinishTask,
    InsertTasks,
    MarkDelivered,
    OnCommit,
    OutboxEvent,
    OutboxRow,
    OutboxStore,
    PoolRecord,
    PoolStore,
    QueueStore,
    RecordStats,
    Result,
    SavePool,
    StartAttempt,
    StatBucket,
    StatSeries,
    StatsStore,
    Store,
    StoreError,
    TaskStore,
)
from ._memory import MemoryStore
from ._sqlite import SQLiteStore

if TYPE_CHECKING:  # mypy holds every store to the seam
    from ._postgres import PostgresStore

    def _implements_the_seam(memory: MemoryStore, sqlite: SQLiteStore,
                             postgres: PostgresStore) -> tuple[Store, Store, Store]:
        return memory, sqlite, postgres


def __getattr__(name: str) -> Any:
    """`PostgresStore` on first use: psycopg is an optional dependency."""
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ActivityBucket",
    "AppendEvents",
    "Change",
    "ConfigureQueue",
    "DeletePool",
    "FinishTask",
    "InsertTasks",
    "MarkDelivered",
    "MemoryStore",
    "OnCommit",
    "OutboxEvent",
    "OutboxRow",
    "OutboxStore",
    "PoolRecord",
    "PoolStore",
    "PostgresStore",
    "QueueStore",
    "RecordStats",
    "Result",
    "SQLiteStore",
    "SavePool",
    "StartAttempt",
    "StatBucket",
    "StatSeries",
    "StatsStore",
    "Store",
    "StoreError",
    "TaskStore",
]
