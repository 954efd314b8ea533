"""Versioned schema migrations for the PostgreSQL store, applied when the store starts.

The version lives in a one-row table, `workyard_schema`, beside the store's tables (in
the schema the connection's search_path selects). `MIGRATIONS` lists every step from
an empty schema; each step runs in one transaction together with its new version
number (PostgreSQL's DDL is transactional), so a crash mid-way leaves a whole version.
Hubs starting together on one database take turns through an advisory lock. A schema with a newer version than this code knows is refused: an
older workyard must not write to a schema it does not know.

The columns mirror the SQLite schema's. Payloads (`data`, `result`) are bytea, kept
byte for byte; `attrs` and `attempts` are `json` (not `jsonb`, which rewrites the text
and refuses `\\u0000`), so an operator can query them and they still read back as
written. Never edit a released step; add the next one.
"""

from __future__ import annotations

import psycopg

from ._interface import StoreError
from ._migrations import Migration

__all__ = ["MIGRATIONS", "VERSION", "migrate", "refuse_newer"]

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tasks and queue configurations", (
        """CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    attrs JSON NOT NULL,
    data BYTEA NOT NULL,
    priority BIGINT NOT NULL,
    timeout DOUBLE PRECISION NOT NULL,
    retries BIGINT NOT NULL,
    schedule_timeout DOUBLE PRECISION,
    key TEXT UNIQUE,
    state TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    finished DOUBLE PRECISION,
    result BYTEA,
    error TEXT,
    attempts JSON NOT NULL
)""",
        "CREATE INDEX tasks_unfinished ON tasks (seq) WHERE finished IS NULL",
        "CREATE INDEX tasks_finished ON tasks (finished) WHERE finished IS NOT NULL",
        "CREATE INDEX tasks_name ON tasks (name, seq)",
        "CREATE INDEX tasks_state ON tasks (state, seq)",
        """CREATE TABLE queue_configurations (
    queue TEXT PRIMARY KEY,
    configuration BYTEA NOT NULL
)""",
    )),
)

#: The schema version this code writes.
VERSION = MIGRATIONS[-1].version

#: The advisory lock (one bigint) migrating hubs take turns on.
MIGRATION_LOCK = 0x776F726B_79617264  # "workyard"

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS workyard_schema (version INTEGER NOT NULL)"


def _version(db: psycopg.Connection) -> int:
    if db.execute("SELECT to_regclass('workyard_schema')").fetchone() == (None,):
        return 0
    row = db.execute("SELECT version FROM workyard_schema").fetchone()
    return 0 if row is None else int(row[0])


def refuse_newer(db: psycopg.Connection, where: str) -> int:
    """The schema's version; `StoreError` if it is newer than this code knows."""
    version = _version(db)
    db.rollback()
    if version > VERSION:
        raise StoreError(f"{where}: schema version {version} is newer than this workyard "
                         f"supports ({VERSION}); upgrade workyard to open it")
    return version


def migrate(db: psycopg.Connection, where: str) -> int:
    """Bring the schema `db` (not in autocommit) sees to `VERSION`; returns the version
    it had. Raises `StoreError` for a schema newer than this code."""
    found = refuse_newer(db, where)
    if found == VERSION:
        return found
    # A session lock, taken before the migrating transactions begin: each then starts
    # after the previous hub's commit and sees its tables. (Waiting on a lock taken
    # inside the transaction would leave it with the catalog as it was at BEGIN.)
    db.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    db.commit()
    try:
        for migration in MIGRATIONS:
            if migration.version <= found:
                continue
            with db.transaction():
                if _version(db) < migration.version:  # another hub may have migrated
                    db.execute(_VERSION_TABLE)
                    for statement in migration.statements:
                        db.execute(statement)  # type: ignore[arg-type]  # our own constants
                    db.execute("DELETE FROM workyard_schema")
                    db.execute("INSERT INTO workyard_schema (version) VALUES (%s)",
                               (migration.version,))
    finally:
        if not db.broken:
            db.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            db.commit()
    refuse_newer(db, where)  # a newer workyard may have migrated it meanwhile
    return found
