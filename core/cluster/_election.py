"""One leader among the hubs of one PostgreSQL database, elected by PostgreSQL itself.

Each hub keeps one dedicated session (autocommit) besides its store's connections.
Whoever holds the session-level advisory lock `pg_try_advisory_lock` leads; a
follower tries for it every `interval` seconds. PostgreSQL frees the lock the moment
the session ends (the process killed, `pg_terminate_backend`, the connection cut), so
there is no home-made consensus and no lease to time out.

Each election moves the term on in the `hub_leader` row (migration 4) with the
leader's advertised URL, which followers read to relay workers to it. Fencing, so two
leaders never dispatch the same task:

* the leader watches its lock session without pause: the socket becoming readable
  (the server's goodbye) or a heartbeat (`SELECT 1` every `heartbeat` seconds) not
  answered within `heartbeat` seconds ends its term at once (`Term.lost`);
* every write transaction of the leader checks its term first (`workyard_fence`, with
  FOR SHARE): once another hub was elected, the leader's writes fail whole and end its
  term too. A transaction that passed the check makes the next election's term bump
  wait for its commit, so the new leader's load (after the bump) sees every dispatch
  the old one recorded.

The leader LISTENs on the schema's channel before it loads anything: followers'
submissions committed after that load are announced there (`PostgresStore.channel`),
and `notices` hands their ids to the hub.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field

import psycopg
import trio
import trio.lowlevel
from psycopg import pq, sql

from ..store._postgres import PostgresStore

__all__ = ["Election", "Term"]

log = logging.getLogger("workyard.cluster")

#: seconds the lock session's statements (the lock, the term bump) may take
STATEMENT_TIMEOUT_MS = 5000
#: the server drops the lock session this soon after its peer vanished unannounced
#: (TCP keepalives, per session), so a partitioned leader's lock does not linger
SERVER_KEEPALIVE = "SET tcp_keepalives_idle = 2; SET tcp_keepalives_interval = 1; " \
                   "SET tcp_keepalives_count = 3"


@dataclass(eq=False)
class Term:
    """One hub's leadership: its number, and whether (and why) it ended."""

    number: int
    lost: trio.Event = field(default_factory=trio.Event)
    reason: str = ""

    def end(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()


class Election:
    """The hub's side of the election on `store`'s database (and schema)."""

    def __init__(self, store: PostgresStore, *, interval: float = 0.5,
                 heartbeat: float = 1.0) -> None:
        self.store = store
        self.interval = interval
        self.heartbeat = heartbeat
        #: this hub's URL as others should reach it (`--advertise-url`); set by `serve`
        self.url: str | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        #: the current term while this hub leads
        self.term: Term | None = None
        #: the leader's advertised URL as last read (None: not known)
        self.leader_url: str | None = None
        self._elected = trio.Event()
        self._notices_in, self.notices = trio.open_memory_channel[list[str]](float("inf"))
        self._channel = ""
        self._key = ""
        store.on_deposed = self._deposed

    # -- what the hub asks --------------------------------------------------------

    async def elected(self) -> Term:
        """The next term this hub leads, once it is elected."""
        while self.term is None or self.term.lost.is_set():
            await self._elected.wait()
        return self.term

    def _deposed(self, term: int, reason: str) -> None:
        """The store refused a write of term `term`: another hub leads now (unless that
        term is over already and this hub leads again)."""
        if self.term is not None and self.term.number == term:
            self.term.end(reason)

    # -- the actor ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow, try for the lock, lead while it holds; again, until cancelled.
        `started` once the first try is over (elected or not)."""
        started = False
        failures = 0
        while True:
            db: psycopg.Connection | None = None
            reason = "the lock session ended"
            try:
                db = await trio.to_thread.run_sync(self._connect)
                while not await trio.to_thread.run_sync(self._try, db):
                    failures = 0
                    if not started:
                        task_status.started()
                        started = True
                    await trio.sleep(self.interval)
                term = await self._lead(db)
                if not started:
                    task_status.started()
                    started = True
                reason = await self._hold(db, term)
            except psycopg.Error as exc:
                reason = f"the lock session failed: {' '.join(str(exc).split())}"
                if self.term is None:
                    failures += 1
                    if failures == 1 or failures % 20 == 0:
                        log.warning("election: %s; trying again", reason)
            finally:
                if db is not None:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(db.close)
            if self.term is not None:
                self.leader_url = None  # until the next try reads who leads
                self.term.end(reason)
                log.warning("this hub lost the leadership (term %d): %s",
                            self.term.number, self.term.reason)
                self.term = None
                self._elected = trio.Event()
            if not started:
                task_status.started()
                started = True
            await trio.sleep(self.interval)

    # -- on a worker thread ----------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        store = self.store
        args = {**store._connect_args, "application_name": f"workyard-election {os.getpid()}",
                "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
                "keepalives_count": 3, "connect_timeout": 5}
        db = psycopg.connect(store.url, autocommit=True, **args)
        try:
            db.execute(SERVER_KEEPALIVE)  # type: ignore[arg-type]  # a constant
            db.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")  # type: ignore[arg-type]
            row = db.execute("SELECT current_schema()").fetchone()
            schema = row[0] if row is not None and row[0] else "public"
            self._channel = f"workyard.{schema}"
            self._key = f"workyard.leader.{schema}"
            store.channel = self._channel  # a follower's submissions are announced there
        except BaseException:
            db.close()
            raise
        return db

    def _try(self, db: psycopg.Connection) -> bool:
        """Take the lock if it is free; else note who leads."""
        row = db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self._key,)).fetchone()
        if row is not None and row[0]:
            return True
        row = db.execute("SELECT url FROM hub_leader WHERE id = 1").fetchone()
        self.leader_url = None if row is None else row[0]
        return False

    def _begin_term(self, db: psycopg.Connection) -> int:
        """Elected: listen first (so no announcement after the hub's load is missed),
        then move the term on with this hub's URL."""
        db.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        row = db.execute(
            "UPDATE hub_leader SET term = term + 1, url = %s, hub = %s, since = %s "
            "WHERE id = 1 RETURNING term", (self.url, self.name, time.time())).fetchone()
        assert row is not None  # migration 4 inserted it
        return int(row[0])

    # -- leading ----------------------------------------------------------------------

    async def _lead(self, db: psycopg.Connection) -> Term:
        number = await trio.to_thread.run_sync(self._begin_term, db)
        term = self.term = Term(number)
        self.leader_url = self.url
        self.store.fence = number
        log.info("this hub is the leader (term %d, %s)", number, self.url)
        self._elected.set()
        return term

    async def _hold(self, db: psycopg.Connection, term: Term) -> str:
        """Watch the lock session until it ends or the term is lost otherwise; hand on
        the announcements that arrive. Returns why the term ended."""
        pg = db.pgconn
        pg.nonblocking = 1
        fd = pg.socket
        beat_at = trio.current_time() + self.heartbeat
        answer_by: float | None = None
        while not term.lost.is_set():
            with trio.move_on_at(min(answer_by or beat_at, trio.current_time() + 0.25)):
                await trio.lowlevel.wait_readable(fd)
            # read whatever arrived, also when the timer fired first: on a busy event
            # loop the answer may be there already
            try:
                pg.consume_input()
            except psycopg.Error as exc:
                return f"the lock session ended: {' '.join(str(exc).split())}"
            if pg.status != pq.ConnStatus.OK:
                return "the lock session ended"
            ids: list[str] = []
            while (notice := pg.notifies()) is not None:
                ids.extend(notice.extra.decode().split(","))
            if ids:
                self._notices_in.send_nowait(ids)
            if answer_by is not None and not pg.is_busy():
                while (result := pg.get_result()) is not None:
                    if result.status not in (pq.ExecStatus.TUPLES_OK,
                                             pq.ExecStatus.COMMAND_OK):
                        message = (result.error_message or b"").decode(errors="replace")
                        return f"the heartbeat failed: {message.strip()}"
                answer_by = None
                beat_at = trio.current_time() + self.heartbeat
            now = trio.current_time()
            if answer_by is not None and now >= answer_by:
                return (f"the database did not answer a heartbeat within "
                        f"{self.heartbeat:g} s")
            if answer_by is None and now >= beat_at:
                pg.send_query(b"SELECT 1")
                while pg.flush() == 1:
                    await trio.lowlevel.wait_writable(fd)
                answer_by = now + self.heartbeat
        return term.reason
