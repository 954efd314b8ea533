"""How writes reach a group-committing store's writer, written once for every such store
(SQLite, PostgreSQL): a unit of work is prepared as it is handed over (so the store
keeps what was written, not the live object), queued for the next group commit, and
its writer tells the caller once it is durable or has failed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from ._interface import Change, Result, StoreError

__all__ = ["HandOver", "Unit", "describe"]

log = logging.getLogger("workyard.store")


@dataclass(slots=True, eq=False)
class Unit:
    """One unit of work: applied, or rolled back, as a whole."""

    changes: Sequence[Change]
    #: what the store's writer applies, one per change (the store's `_prepare` says)
    ops: list[Any] = field(default_factory=list)
    #: set once the unit is committed or has failed, for a `commit` awaiting it
    done: trio.Event | None = None
    #: called once the unit is committed or has failed, for `commit_soon`
    then: Callable[[], None] | None = None
    results: list[Result] = field(default_factory=list)
    error: BaseException | None = None
    #: the leader's term it was handed over in, for a store that fences leaders
    fence: int | None = None


def describe(changes: Sequence[Change]) -> str:
    return " + ".join(type(c).__name__ for c in changes)


class HandOver:
    """`commit` and `commit_soon` over a writer actor that takes `_pending` units each
    time `_wake` is set. A store sets `where` (named in errors), `_closed`, `_pending`
    and `_wake`, and says in `_prepare` how a change becomes what its writer applies."""

    where: str
    _closed: bool
    _pending: list[Unit]
    _wake: trio.Event

    def _prepare(self, unit: Unit) -> Unit:
        raise NotImplementedError

    def _queue(self, unit: Unit) -> None:
        if self._closed:
            raise StoreError(f"the store {self.where} is closed")
        self._pending.append(unit)
        self._wake.set()

    async def commit(self, *changes: Change) -> list[Result]:
        unit = self._prepare(Unit(changes, done=trio.Event()))
        if unit.error is None:
            self._queue(unit)
            assert unit.done is not None
            await unit.done.wait()
        if unit.error is not None:
            why = " ".join(str(unit.error).split())  # one line (libpq's have several)
            raise StoreError(f"the store could not commit {describe(changes)}: "
                             f"{why}".strip()) from unit.error
        return unit.results

    def commit_soon(self, change: Change, then: Callable[[], None] | None = None) -> None:
        if self._closed:  # shutting down: say so, and do not leave anyone waiting
            log.error("store write dropped (%s): the store %s is closed",
                      type(change).__name__, self.where)
            if then is not None:
                then()
            return
        self._queue(self._prepare(Unit((change,), then=then)))
