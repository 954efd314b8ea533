"""WAL checkpoints beside the SQLite writer, on a connection of their own.

A checkpoint copies the WAL's pages back into the database file and syncs it (4-20 ms
under load). Run by the writer between two commits, it held the next commit that
long. WAL mode lets a PASSIVE checkpoint run beside the writer instead: it copies what
no reader still needs while commits go on appending to the WAL.

The WAL only starts again from its beginning when a writer finds everything in it
copied and no reader on an old snapshot, so a checkpoint must finish between two
commits; with commits a few milliseconds apart the ones beside the writer never do
(each syncs the database file). Every connection
truncates the WAL file to `WAL_LIMIT` when it starts it again (`journal_size_limit`),
so a file longer than that is a WAL that grew past it: then the writer waits for a
checkpoint with no commit beside it (`alone`), as it used to for every checkpoint,
and the WAL stays near its limit however long the load lasts. Only a reader that
holds an old snapshot keeps it growing (as it would with any checkpoint); the writer
then waits again only every `WAL_LIMIT / 4` of growth.
"""

from __future__ import annotations

import logging
import os
import sqlite3

import trio

log = logging.getLogger("workyard.store")

#: bytes of WAL past which the writer waits for a checkpoint with no commit beside it,
#: and to which the WAL file is cut when it starts again: a wait per ~600 small commits
#: (~26 KB each) under steady load, where waiting for every checkpoint was one per 150
#: (`CHECKPOINT_COMMITS`, the WAL then peaked near 5 MB); a longer one costs disk and
#: its replay when the store opens after a crash
WAL_LIMIT = 16_000_000


def checkpoint(db: sqlite3.Connection) -> tuple[int, int]:
    """A PASSIVE checkpoint: (frames in the WAL, frames copied back), reading the result
    (an unread one would leave the statement open)."""
    _busy, frames, copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return frames, copied


class Checkpoints:
    """At most one checkpoint at a time, on `db` (of the database at `path`), asked for
    by the writer (`start`, `alone`); `run` them in the store's nursery. Closing `db` is
    the store's, after `run` ended."""

    def __init__(self, db: sqlite3.Connection, path: str, *, limit: int = WAL_LIMIT) -> None:
        self.db = db
        self._wal_path = path + "-wal"
        self._limit = limit
        #: the WAL file's size past which the writer waits (`too_long`)
        self._extent = limit
        self._wanted = trio.Event()
        #: set when the running checkpoint ended, and when the next one will have
        self._running: trio.Event | None = None
        self._next = trio.Event()
        self._ended = False
        self.runs = 0
        self.waits = 0  # checkpoints the writer waited for (`alone`)

    def start(self) -> bool:
        """Ask for a checkpoint beside the writer; False if one runs already (ask again
        later: one that started before this commit does not copy it)."""
        if self._running is not None:
            return False
        self._wanted.set()
        return True

    def too_long(self) -> bool:
        """Has the WAL grown past its limit (the file is cut to it on a restart)? A
        `stat` of its file (microseconds: the writer asks before every batch)."""
        try:
            size = os.stat(self._wal_path).st_size
        except FileNotFoundError:
            return False
        if size <= self._limit:  # started again: wait as soon as it is past the limit
            self._extent = self._limit
        return size > self._extent

    async def alone(self) -> None:
        """Wait for a checkpoint that starts with no commit beside it (the writer waits
        meanwhile): after it, the next commit writes the WAL from its beginning unless
        a reader still holds an older snapshot. Until then, wait again only once the
        WAL grew by another quarter of its limit."""
        self.waits += 1
        while self._running is not None and not self._ended:
            await self._running.wait()
        done = self._next
        self._wanted.set()
        await done.wait()
        try:
            size = os.stat(self._wal_path).st_size
        except FileNotFoundError:
            size = 0
        self._extent = max(self._limit, size) + self._limit // 4

    async def run(self) -> None:
        try:
            while True:
                await self._wanted.wait()
                self._wanted = trio.Event()
                running = self._running = self._next
                self._next = trio.Event()
                try:
                    # not abandoned on cancel: `db` stays in use until the thread is done
                    await trio.to_thread.run_sync(checkpoint, self.db)
                except sqlite3.Error:  # the next one will do; the commits are durable
                    log.exception("WAL checkpoint failed")
                else:
                    self.runs += 1
                finally:
                    self._running = None
                    running.set()
        finally:
            self._ended = True  # a writer waiting in `alone` goes on
            self._next.set()
