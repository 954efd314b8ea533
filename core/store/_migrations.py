"""Versioned schema migrations for the SQLite store, applied when the store starts.

The schema version is SQLite's `PRAGMA user_version`. `MIGRATIONS` lists every step
from an empty file; a store opening a file applies the steps above its version, each
in its own transaction together with the new version number, so a crash mid-way
leaves a file at some whole version. A file with a newer version than this code
knows is refused: an older workyard must not write to a schema it does not know.

Version 1 is the schema from before versioning, statement for statement: those files
say user_version 0 and already hold the tables, and `IF NOT EXISTS` lets version 1
run over them unchanged. Never edit a released step; add the next one.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from ._interface import StoreError

__all__ = ["MIGRATIONS", "VERSION", "migrate", "refuse_newer"]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    why: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "tasks and queue configurations", (
        """CREATE TABLE IF NOT EXISTS tasks (
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
)""",
        "CREATE INDEX IF NOT EXISTS tasks_unfinished ON tasks (seq) WHERE finished IS NULL",
        "CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished) WHERE finished IS NOT NULL",
        "CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, seq)",
        """CREATE TABLE IF NOT EXISTS queue_configurations (
    queue TEXT PRIMARY KEY,
    configuration BLOB NOT NULL
)""",
    )),
    Migration(2, "find(state=...) newest first reads an index instead of scanning", (
        "CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, seq)",
    )),
    Migration(3, "worker pools, and the event outbox with the relay's cursor", (
        """CREATE TABLE worker_pools (
    worker_pool_id TEXT PRIMARY KEY,
    provider_id TEXT NOT NULL,
    description TEXT NOT NULL,
    config BLOB NOT NULL,
    owner TEXT NOT NULL,
    email_on_error INTEGER NOT NULL,
    created REAL NOT NULL,
    last_modified REAL NOT NULL
)""",
        # AUTOINCREMENT: a seq is never reused, even once purged (streams resume by it)
        """CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    body BLOB NOT NULL,
    at REAL NOT NULL
)""",
        """CREATE TABLE outbox_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    delivered INTEGER NOT NULL
)""",
        "INSERT INTO outbox_cursor (id, delivered) VALUES (1, 0)",
    )),
    Migration(4, "machine statistics of the worker registry (workers.status_report)", (
        # one row per (worker, metric, variant): samples name it by a small integer
        """CREATE TABLE stat_series (
    id INTEGER PRIMARY KEY,
    worker TEXT NOT NULL,
    metric TEXT NOT NULL,
    variant TEXT NOT NULL,
    UNIQUE (worker, metric, variant)
)""",
        # clustered by series then time: a range of one series is one index range
        """CREATE TABLE stat_samples (
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID""",
        # one row per report, for activity (who reported, and with a task)
        """CREATE TABLE stat_reports (
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    task TEXT,
    PRIMARY KEY (ts, worker)
) WITHOUT ROWID""",
    )),
    Migration(5, "rollups of machine statistics (5-minute and hourly count, sum, min, max "
                 "per series; who reported per span), so long ranges read few rows", (
        """CREATE TABLE stat_rollups (
    span INTEGER NOT NULL,
    series INTEGER NOT NULL,
    start INTEGER NOT NULL,
    count INTEGER NOT NULL,
    total REAL NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    PRIMARY KEY (span, series, start)
) WITHOUT ROWID""",
        """CREATE TABLE stat_activity (
    span INTEGER NOT NULL,
    start INTEGER NOT NULL,
    worker TEXT NOT NULL,
    active INTEGER NOT NULL,
    PRIMARY KEY (span, start, worker)
) WITHOUT ROWID""",
        # a query names metrics, not series ids: find its series without a scan
        "CREATE INDEX stat_series_metric ON stat_series (metric, worker)",
        # 5-minute spans with rollup increments committed raw but not yet rolled up
        # (the store writes those every second or so): rolled up again at start
        "CREATE TABLE stat_pending (start INTEGER PRIMARY KEY)",
        # the samples already stored, rolled up (spans as in `_rollups.SPANS`)
        *(f"""INSERT INTO stat_rollups (span, series, start, count, total, low, high)
SELECT {span}, series, ts / {span} * {span}, count(*), sum(value), min(value), max(value)
FROM stat_samples GROUP BY series, ts / {span}""" for span in (300_000, 3_600_000)),
        # a listed metric's variants pooled, in a series of variant "" (`_rollups.POOLED`)
        """INSERT INTO stat_series (worker, metric, variant)
SELECT DISTINCT worker, metric, '' FROM stat_series WHERE variant NOT IN ('', 'total')""",
        *(f"""INSERT INTO stat_rollups (span, series, start, count, total, low, high)
SELECT {span}, p.id, x.ts / {span} * {span}, count(*), sum(x.value), min(x.value), max(x.value)
FROM stat_series p JOIN stat_series s ON s.worker = p.worker AND s.metric = p.metric
AND s.variant NOT IN ('', 'total') JOIN stat_samples x ON x.series = s.id
WHERE p.variant = '' GROUP BY p.id, x.ts / {span}""" for span in (300_000, 3_600_000)),
        *(f"""INSERT INTO stat_activity (span, start, worker, active)
SELECT {span}, ts / {span} * {span}, worker, max(task IS NOT NULL)
FROM stat_reports GROUP BY ts / {span}, worker""" for span in (300_000, 3_600_000)),
    )),
    Migration(6, "a report's readings in its own row, as a JSON object of values by series "
                 "id: a report appends one row at the end of the table instead of writing "
                 "a row into each of its series' ranges", (
        # a rowid table: rows of a few hundred bytes would crowd a WITHOUT ROWID tree's
        # interior pages, which hold whole rows
        """CREATE TABLE stat_reports_6 (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    worker TEXT NOT NULL,
    task TEXT,
    readings TEXT,
    UNIQUE (ts, worker)
)""",
        # %!.17g: every double as it was (SQLite's JSON functions write 15 digits)
        """INSERT INTO stat_reports_6 (ts, worker, task, readings)
SELECT r.ts, r.worker, r.task, (SELECT '{' || group_concat('"' || x.series || '":'
    || printf('%!.17g', x.value), ',') || '}' FROM stat_series s JOIN stat_samples x
    ON x.series = s.id AND x.ts = r.ts WHERE s.worker = r.worker)
FROM stat_reports r ORDER BY r.ts, r.worker""",
        "DROP TABLE stat_reports",
        "DROP TABLE stat_samples",
        "ALTER TABLE stat_reports_6 RENAME TO stat_reports",
    )),
)

#: The schema version this code writes.
VERSION = MIGRATIONS[-1].version


def _version(db: sqlite3.Connection) -> int:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    return int(version)


def refuse_newer(db: sqlite3.Connection, path: str) -> int:
    """The file's schema version; `StoreError` if it is newer than this code knows."""
    version = _version(db)
    if version > VERSION:
        raise StoreError(f"{path}: schema version {version} is newer than this workyard "
                         f"supports ({VERSION}); upgrade workyard to open it")
    return version


def migrate(db: sqlite3.Connection, path: str) -> int:
    """Bring the file open on `db` (autocommit mode) to `VERSION`; returns the version
    it had. Raises `StoreError` for a file newer than this code."""
    found = refuse_newer(db, path)
    for migration in MIGRATIONS:
        if migration.version <= found:
            continue
        db.execute("BEGIN IMMEDIATE")
        try:
            if _version(db) < migration.version:  # another process may have migrated
                for statement in migration.statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {migration.version:d}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    refuse_newer(db, path)  # a newer workyard may have migrated it meanwhile
    return found
