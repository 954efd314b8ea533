"""Worker pools (Taskcluster's worker-manager): which pools exist, who is in them, and
every change to them as an event committed with the change itself.

The pools live in memory, loaded from the store at start; every write goes through
one ledger actor, in order, so the outbox holds a pool's events in the order they
happened. A write is applied in memory when it is handed over (so the next request
sees it) and committed with its events in one store transaction; if the commit fails
the pool is put back as stored and the caller gets the StoreError: no event is ever
stored for a change that was not.

A pool's `config` may declare what its workers will take — `subscriptions` in the
workers' own declaration form, and `capacityPerWorker` — so the hub can tell a
provisioner how many waiting tasks only a new worker of that pool would take
(`Hub.pending_tasks`, counted by the scheduler's `demand`).

A pool whose providerId is `null-provider` is being drained: it admits no new
workers, keeps the attached ones, and is removed — with an event saying so — the
moment its last worker leaves (at once if it has none).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import msgspec
import trio

from .._errors import Conflict, InvalidInput, NotFound
from .._model import Subscription
from ..outbox import POOL_REMOVED, Feed, pool_event, worker_event
from ..protocol import check_declaration
from ..store import (
    AppendEvents,
    Change,
    DeletePool,
    OutboxEvent,
    OutboxRow,
    PoolRecord,
    SavePool,
    Store,
    StoreError,
)
from ._sessions import Session

__all__ = ["DRAIN_PROVIDER", "Offer", "Pool", "Pools", "StoppedWorker", "offer_of"]

log = logging.getLogger("workyard.pools")

DRAIN_PROVIDER = "null-provider"
#: Taskcluster's identifier: worker groups and ids of pool workers (routing-key words)
IDENTIFIER = re.compile(r"^[a-zA-Z0-9_-]{1,38}$")
DEFAULT_GROUP = "default"
#: stopped workers remembered per pool, for the workers listing
KEEP_STOPPED = 1000


#: the largest `capacityPerWorker` a pool may declare
MAX_CAPACITY_PER_WORKER = 100_000


@dataclass(frozen=True, slots=True)
class Offer:
    """What a pool's workers will take, as its `config` declares it."""

    subscriptions: tuple[Subscription, ...]
    #: tasks in flight per worker (None: not declared)
    capacity: int | None = None


def offer_of(config: Mapping[str, Any]) -> Offer | None:
    """The offer a pool's `config` declares (None: no `subscriptions`); raises
    InvalidInput saying what is wrong with it."""
    raw = config.get("subscriptions")
    capacity = config.get("capacityPerWorker")
    if raw is None:
        if capacity is not None:
            raise InvalidInput("config.capacityPerWorker needs config.subscriptions")
        return None
    if not isinstance(raw, list) or not raw:
        raise InvalidInput('config.subscriptions must be a non-empty array of '
                           '{"name": ..., "filter": {...}} objects')
    subs = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not set(entry) <= {"name", "filter"}:
            raise InvalidInput(f'config.subscriptions[{i}] must be an object with "name" '
                               'and optionally "filter"')
        filter_ = entry.get("filter")
        if filter_ is not None and not isinstance(filter_, dict):
            raise InvalidInput(f"config.subscriptions[{i}].filter must be an object")
        try:
            subs.append(Subscription.of(entry.get("name"), filter_))  # type: ignore[arg-type]
        except InvalidInput as exc:
            raise InvalidInput(f"config.subscriptions[{i}]: {exc.message}") from None
    try:
        subs = check_declaration(subs)
    except InvalidInput as exc:
        raise InvalidInput(f"config.subscriptions: {exc.message}") from None
    if capacity is not None and (type(capacity) is not int
                                 or not 1 <= capacity <= MAX_CAPACITY_PER_WORKER):
        raise InvalidInput(f"config.capacityPerWorker must be a whole number from 1 to "
                           f"{MAX_CAPACITY_PER_WORKER:,}")
    return Offer(tuple({s.key: s for s in subs}.values()), capacity)


_decode_config = msgspec.json.Decoder(dict[str, Any])


@functools.lru_cache(maxsize=1024)
def stored_offer(config: bytes) -> Offer | None:
    """The offer of a stored config (checked when it was set; one stored before
    offers existed and now invalid counts as none)."""
    try:
        return offer_of(_decode_config.decode(config))
    except (InvalidInput, msgspec.DecodeError, msgspec.ValidationError):
        return None


@dataclass(frozen=True, slots=True)
class StoppedWorker:
    worker_id: str
    worker_group: str
    capacity: int
    started: float
    stopped: float
    reason: str


@dataclass(eq=False, slots=True)
class Pool:
    record: PoolRecord
    #: attached workers by id
    workers: dict[str, Session] = field(default_factory=dict)
    stopped: OrderedDict[str, StoppedWorker] = field(default_factory=OrderedDict)

    @property
    def draining(self) -> bool:
        return self.record.provider_id == DRAIN_PROVIDER

    @property
    def offer(self) -> Offer | None:
        return stored_offer(self.record.config)

    @property
    def running_capacity(self) -> int:
        return sum(capacity_of(s) for s in self.workers.values())


def capacity_of(session: Session) -> int:
    """A worker's capacity as Taskcluster counts it (0 for an unlimited one)."""
    return session.capacity or 0


@dataclass(eq=False, slots=True)
class _Write:
    changes: tuple[Change, ...]
    done: trio.Event = field(default_factory=trio.Event)
    error: StoreError | None = None


class Pools:
    def __init__(self, store: Store, feed: Feed, now: Callable[[], float]) -> None:
        self.store = store
        self.feed = feed
        self.now = now
        self.pools: dict[str, Pool] = {}
        self._send, self._receive = trio.open_memory_channel[_Write](math.inf)

    async def load(self) -> None:
        self.pools = {r.worker_pool_id: Pool(r) for r in await self.store.pools.all()}
        # a drained pool whose workers were gone when the hub stopped goes now
        for pool in [p for p in self.pools.values() if p.draining]:
            self._remove(pool, [])

    # -- the ledger ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The ledger actor: commits the writes in the order they were handed over, as
        many per transaction as are waiting."""
        task_status.started()
        while True:
            batch = [await self._receive.receive()]
            while True:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            await self._commit(batch)

    async def _commit(self, batch: list[_Write]) -> None:
        changes = [c for w in batch for c in w.changes]
        try:
            results = await self.store.commit(*changes)
        except StoreError as exc:
            if len(batch) > 1:  # find the failing write; the others commit
                for write in batch:
                    await self._commit([write])
                return
            log.error("pool write failed (%s): %s", _kinds(batch[0].changes), exc)
            batch[0].error = exc
            batch[0].done.set()
            return
        rows: list[OutboxRow] = []
        for change, result in zip(changes, results):
            if type(change) is AppendEvents:
                seqs = cast("list[int]", result)  # an AppendEvents' result: its events' seqs
                rows.extend(OutboxRow(seq, e.exchange, e.routing_key, e.body, e.at)
                            for seq, e in zip(seqs, change.events, strict=True))
        self.feed.committed(rows)
        for write in batch:
            write.done.set()

    def _write(self, *changes: Change) -> _Write:
        write = _Write(changes)
        self._send.send_nowait(write)
        return write

    async def _await(self, write: _Write, restore: Callable[[], None]) -> None:
        await write.done.wait()
        if write.error is not None:
            restore()
            raise write.error

    # -- pool changes (the worker-manager API) ----------------------------------------

    def get(self, worker_pool_id: str) -> Pool | None:
        return self.pools.get(worker_pool_id)

    async def create(self, record: PoolRecord) -> tuple[Pool, bool]:
        """Create a pool; an identical one already there is returned as it is (False).
        Raises Conflict for a different pool under the same id."""
        existing = self.pools.get(record.worker_pool_id)
        if existing is not None:
            if _same(existing.record, record):
                return existing, False
            raise Conflict(f"worker pool {record.worker_pool_id!r} already exists with "
                           "different settings")
        now = self.now()
        record = replace(record, created=now, last_modified=now)
        pool = self.pools[record.worker_pool_id] = Pool(record)
        events = [pool_event("worker-pool-created", record.worker_pool_id, record.provider_id,
                             None, now)]
        write = self._save(pool, events)

        def restore() -> None:
            if self.pools.get(record.worker_pool_id) is pool:
                del self.pools[record.worker_pool_id]
        await self._await(write, restore)
        return pool, True

    async def update(self, record: PoolRecord) -> Pool:
        """Replace a pool's settings (`created` is kept). Raises NotFound."""
        pool = self.pools.get(record.worker_pool_id)
        if pool is None:
            raise NotFound(f"worker pool {record.worker_pool_id!r} not found")
        old = pool.record
        now = self.now()
        pool.record = replace(record, created=old.created, last_modified=now)
        events = [pool_event("worker-pool-updated", record.worker_pool_id, record.provider_id,
                             old.provider_id, now)]
        write = self._save(pool, events)

        def restore() -> None:
            pool.record = old
            self.pools.setdefault(old.worker_pool_id, pool)
        await self._await(write, restore)
        return pool

    async def delete(self, worker_pool_id: str) -> Pool:
        """Drain a pool (Taskcluster's delete: providerId becomes `null-provider`)."""
        pool = self.pools.get(worker_pool_id)
        if pool is None:
            raise NotFound(f"worker pool {worker_pool_id!r} not found")
        return await self.update(replace(pool.record, provider_id=DRAIN_PROVIDER))

    def _save(self, pool: Pool, events: list[OutboxEvent]) -> _Write:
        if pool.draining and not pool.workers:
            return self._remove(pool, events, save=True)
        return self._write(SavePool(pool.record), AppendEvents(events))

    def _remove(self, pool: Pool, events: list[OutboxEvent], *, save: bool = False) -> _Write:
        """The drained pool has no worker left: it goes, and its removal is an event."""
        record = pool.record
        if self.pools.get(record.worker_pool_id) is pool:
            del self.pools[record.worker_pool_id]
        log.info("worker pool %s drained and removed", record.worker_pool_id)
        removed = pool_event(POOL_REMOVED, record.worker_pool_id, record.provider_id, None,
                             self.now())
        changes: list[Change] = [SavePool(record)] if save else []
        return self._write(*changes, DeletePool(record.worker_pool_id),
                           AppendEvents([*events, removed]))

    # -- workers ----------------------------------------------------------------------

    def admit(self, worker_pool_id: str | None, worker_group: str | None,
              worker_id: str) -> str | None:
        """Check a worker's pool declaration; returns its group (None: no pool). Raises
        InvalidInput for an unknown or draining pool, or ids Taskcluster would refuse."""
        if worker_pool_id is None:
            if worker_group is not None:
                raise InvalidInput("`worker_group` needs a `worker_pool`")
            return None
        pool = self.pools.get(worker_pool_id)
        if pool is None:
            raise InvalidInput(f"no worker pool {worker_pool_id!r}: create it first")
        if pool.draining:
            raise InvalidInput(f"worker pool {worker_pool_id!r} is being drained "
                               f"(providerId {DRAIN_PROVIDER}): it takes no new workers")
        group = worker_group or DEFAULT_GROUP
        for what, value in (("worker_group", group), ("worker_id", worker_id)):
            if not IDENTIFIER.match(value):
                raise InvalidInput(f"a worker in a pool needs a `{what}` of 1 to 38 letters, "
                                   f"digits, '-' or '_', not {value!r}")
        return group

    def joined(self, session: Session) -> None:
        pool = self.pools.get(session.worker_pool or "")
        if pool is None or session.worker_group is None:
            return
        pool.workers[session.id] = session
        pool.stopped.pop(session.id, None)
        record = pool.record
        self._write(AppendEvents([worker_event(
            "worker-running", worker_pool_id=record.worker_pool_id,
            provider_id=record.provider_id, worker_group=session.worker_group,
            worker_id=session.id, capacity=capacity_of(session), at=self.now())]))

    def left(self, session: Session, reason: str, *, lost: bool) -> None:
        """A pool worker detached: `worker-stopped`, or `worker-removed` (with the reason)
        when it was lost. A draining pool's last worker takes the pool with it."""
        pool = self.pools.get(session.worker_pool or "")
        if pool is None or pool.workers.get(session.id) is not session:
            return
        del pool.workers[session.id]
        group = session.worker_group or DEFAULT_GROUP
        now = self.now()
        pool.stopped[session.id] = StoppedWorker(session.id, group, capacity_of(session),
                                                 session.connected, now, reason)
        while len(pool.stopped) > KEEP_STOPPED:
            pool.stopped.popitem(last=False)
        record = pool.record
        events = [worker_event(
            "worker-removed" if lost else "worker-stopped",
            worker_pool_id=record.worker_pool_id, provider_id=record.provider_id,
            worker_group=group, worker_id=session.id, capacity=capacity_of(session), at=now,
            reason=reason if lost else None)]
        if pool.draining and not pool.workers:
            self._remove(pool, events)
        else:
            self._write(AppendEvents(events))

    def offers(self) -> dict[str, tuple[Subscription, ...]]:
        """The subscriptions new workers of each pool would declare: pools that declare
        them and are not being drained (those take no new workers)."""
        found = {}
        for pool_id, pool in self.pools.items():
            offer = pool.offer
            if offer is not None and not pool.draining:
                found[pool_id] = offer.subscriptions
        return found

    def __len__(self) -> int:
        return len(self.pools)

    def ids(self) -> Sequence[str]:
        return sorted(self.pools)


def _same(a: PoolRecord, b: PoolRecord) -> bool:
    return (a.provider_id, a.description, a.config, a.owner, a.email_on_error) == (
        b.provider_id, b.description, b.config, b.owner, b.email_on_error)


def _kinds(changes: Sequence[Change]) -> str:
    return " + ".join(type(c).__name__ for c in changes)
