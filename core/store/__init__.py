"""Durable state behind one narrow seam.

* `_interface.py`: the `Store` (one attribute per aggregate: `tasks`, `queues`,
  `pools`, `outbox`, `stats`; the writer actor `run`; `commit` and `commit_soon`), the
  change types it applies, and `StoreError`.
* `_writes.py`: the aggregates' write methods, sugar over `commit`, written once.
* `_sqlite.py`: `SQLiteStore`, one file, group commit, units of work that fail alone.
* `_migrations.py`: the SQLite schema's numbered versions.
* `_memory.py`: `MemoryStore`, the in-memory double (public as `workyard.testing`).
"""

from typing import TYPE_CHECKING

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
    StatsStore,
    Store,
    StoreError,
    TaskStore,
)
from ._memory import MemoryStore
from ._sqlite import SQLiteStore

if TYPE_CHECKING:  # mypy holds both stores to the seam
    def _implements_the_seam(memory: MemoryStore, sqlite: SQLiteStore) -> tuple[Store, Store]:
        return memory, sqlite

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
    "QueueStore",
    "RecordStats",
    "Result",
    "SQLiteStore",
    "SavePool",
    "StartAttempt",
    "StatBucket",
    "StatsStore",
    "Store",
    "StoreError",
    "TaskStore",
]
