"""Who may take what: workers grouped into classes, classes indexed by filter values.

Workers of one task name with an identical subscription form a class with one
heap of its free members, so a load change touches one heap per subscription
however many values the filter lists. Buckets, keyed by (filter shape, value
tuple), hold classes, not workers: they change only when a class comes or goes.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._model import Subscription, Task

if TYPE_CHECKING:
    from ._backlog import GroupEntry

__all__ = ["FreeEntry", "Policy", "Roster", "WorkerClass", "WorkerState"]

Shape = tuple[str, ...]
Values = tuple[str, ...]
#: a free worker's place in its class: (outstanding, tie-break, version, worker); versions
#: are unique, so comparing two entries never reaches the worker
FreeEntry = tuple[int, int, int, "WorkerState"]


class Policy(enum.StrEnum):
    """How to choose among equally specific candidates."""

    #: fewest outstanding, ties to the least recently assigned (the hub's policy)
    EVEN = "even"
    #: fewest outstanding, ties to the earliest attached (the anchor's behaviour)
    ATTACH_ORDER = "attach-order"
    #: uniformly random among free candidates
    RANDOM = "random"


@dataclass(slots=True, eq=False)
class WorkerState:
    id: str
    subscriptions: tuple[Subscription, ...]
    capacity: int | None = None
    connected: float = 0.0
    #: takes tasks only into open polls (`rooms`), never unasked
    polling: bool = False
    #: polling workers: per task name, tasks the open poll may still take
    rooms: dict[str, int] = field(default_factory=dict)
    outstanding: dict[str, Task] = field(default_factory=dict)
    attach_seq: int = 0
    last_assigned: int = 0
    #: moves on with every change of load or freedom; older heap entries are stale
    version: int = 0
    #: one per subscription
    classes: list[WorkerClass] = field(default_factory=list)
    #: task names in declaration order (not a set: drain order must not depend on hashing)
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(dict.fromkeys(s.name for s in self.subscriptions))

    def free_for(self, name: str) -> bool:
        """Can it take one more task called `name` now?"""
        return (self.capacity is None or len(self.outstanding) < self.capacity) and (
            not self.polling or self.rooms.get(name, 0) > 0
        )


class WorkerClass:
    """The attached workers of one task name that declared one identical subscription.

    `free` holds entries of free members, stale once a member's version moves on;
    `groups` holds the heads of the waiting groups for which this class is among
    the most specific candidates (see `_backlog`), stale once a head or a group's
    top level moves on. Both are cleaned lazily, when peeked.
    """

    __slots__ = ("dead", "free", "groups", "key", "members", "name", "shape", "specificity",
                 "value_set", "values")

    def __init__(self, sub: Subscription) -> None:
        self.key = sub.key
        self.name = sub.name
        self.shape: Shape = sub.shape
        self.specificity = len(self.shape)
        self.values: tuple[Values, ...] = tuple(sub.value_keys())
        self.value_set = frozenset(self.values)
        self.members: dict[str, WorkerState] = {}
        self.free: list[FreeEntry] = []
        self.groups: list[GroupEntry] = []
        #: its last member left: no longer in any bucket
        self.dead = False

    def best_free(self) -> FreeEntry | None:
        """The entry of its best free member (None if none is free). An entry is stale
        once its worker's version moved on, which leaving a class always does."""
        heap = self.free
        while heap:
            entry = heap[0]
            if entry[3].version == entry[2]:
                return entry
            heapq.heappop(heap)
        return None


class Roster:
    """The classes of one task name, indexed so that routing a task costs one dict
    lookup per distinct filter shape."""

    __slots__ = ("buckets", "classes", "levels", "routing_keys", "shape_refs")

    def __init__(self) -> None:
        self.classes: dict[object, WorkerClass] = {}
        #: shape -> value tuple -> the classes allowing it (by subscription key)
        self.buckets: dict[Shape, dict[Values, dict[object, WorkerClass]]] = {}
        #: classes per shape
        self.shape_refs: dict[Shape, int] = {}
        #: shapes grouped by specificity, most specific first
        self.levels: list[list[Shape]] = []
        #: every attr key any filter of this name looks at (only grows)
        self.routing_keys: tuple[str, ...] = ()

    def add(self, c: WorkerClass) -> tuple[bool, bool]:
        """Index a new class. Returns (its shape is new, routing keys grew)."""
        shape = c.shape
        new_shape = shape not in self.buckets
        if new_shape:
            self.buckets[shape] = {}
            self.shape_refs[shape] = 0
            self._relevel()
        self.shape_refs[shape] += 1
        by_values = self.buckets[shape]
        for values in c.values:
            by_values.setdefault(values, {})[c.key] = c
        self.classes[c.key] = c
        new_keys = not set(shape) <= set(self.routing_keys)
        if new_keys:
            self.routing_keys = tuple(sorted(set(self.routing_keys) | set(shape)))
        return new_shape, new_keys

    def remove(self, c: WorkerClass) -> bool:
        """Unindex a class that lost its last member. Returns whether its shape went too."""
        c.dead = True
        del self.classes[c.key]
        shape = c.shape
        by_values = self.buckets[shape]
        for values in c.values:
            bucket = by_values[values]
            del bucket[c.key]
            if not bucket:
                del by_values[values]
        self.shape_refs[shape] -= 1
        if self.shape_refs[shape]:
            return False
        del self.shape_refs[shape], self.buckets[shape]
        self._relevel()
        return True

    def top_buckets(self, attrs: Mapping[str, str]) -> list[dict[object, WorkerClass]] | None:
        """The non-empty matching buckets of the most specific level that has any."""
        buckets = self.buckets
        for shapes in self.levels:
            found = None
            for shape in shapes:
                try:  # the commonest shapes, no key or one, without building a list
                    if not shape:
                        values: Values = ()
                    elif len(shape) == 1:
                        values = (attrs[shape[0]],)
                    else:
                        values = tuple([attrs[k] for k in shape])
                except KeyError:
                    continue
                bucket = buckets[shape].get(values)
                if bucket:
                    if found is None:
                        found = [bucket]
                    else:
                        found.append(bucket)
            if found is not None:
                return found
        return None

    def top(self, attrs: Mapping[str, str]) -> tuple[int, list[WorkerClass]] | None:
        """The most specific matching level: (specificity, its classes), or None."""
        buckets = self.top_buckets(attrs)
        if buckets is None:
            return None
        classes = [c for bucket in buckets for c in bucket.values()]
        return classes[0].specificity, classes

    def _relevel(self) -> None:
        by_level: dict[int, list[Shape]] = {}
        for shape in self.buckets:
            by_level.setdefault(len(shape), []).append(shape)
        self.levels = [by_level[n] for n in sorted(by_level, reverse=True)]
