"""What waits: tasks grouped by the attrs routing looks at, and where each group is offered.

A group's head is registered in the heaps of the classes at its top level (the
most specific level with an attached class matching it), so a class that frees
up finds its best waiting task without looking at any other group. A projection
index (groups by shape and values) finds the groups a new class matches.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Mapping

from .._model import Task, TaskState
from ._index import Shape, Values, WorkerClass

__all__ = ["Backlog", "Deadline", "Deadlines", "Group", "GroupEntry", "ReadyEntry"]

#: a group's head registered in a class: (-priority, seq, registration no, group)
GroupEntry = tuple[int, int, int, "Group"]
#: a class that may have work for a free member: (-priority, seq of its best head, no, class)
ReadyEntry = tuple[int, int, int, WorkerClass]
#: (when, seq, task id, attempt no; 0 for the schedule_timeout)
Deadline = tuple[float, int, str, int]


class Group:
    """Waiting tasks of one name that share the attrs the routing looks at."""

    __slots__ = ("alive", "attrs", "classes", "heap", "key", "top")

    def __init__(self, key: tuple[str | None, ...], attrs: dict[str, str]) -> None:
        self.key = key
        self.attrs = attrs
        self.heap: list[tuple[int, int, Task]] = []  # (-priority, seq, task)
        #: specificity of its top level, None while no attached class matches it
        self.top: int | None = None
        #: the classes at its top level, where its head is registered
        self.classes: list[WorkerClass] = []
        self.alive = True

    def head(self) -> Task | None:
        heap = self.heap
        while heap and heap[0][2].state is not TaskState.QUEUED:
            heapq.heappop(heap)
        return heap[0][2] if heap else None


class Backlog:
    """The waiting side of one task name: groups, their projections, ready classes, deadlines."""

    __slots__ = ("deadlines", "groups", "projection", "ready")

    def __init__(self) -> None:
        self.groups: dict[tuple[str | None, ...], Group] = {}
        #: shape -> values of the group's attrs on it -> groups
        self.projection: dict[Shape, dict[Values, dict[tuple[str | None, ...], Group]]] = {}
        #: classes that gained a free member or a better head during this call
        self.ready: list[ReadyEntry] = []
        self.deadlines = Deadlines()

    def key_of(self, attrs: Mapping[str, str],
               routing_keys: tuple[str, ...]) -> tuple[str | None, ...]:
        return tuple(attrs.get(k) for k in routing_keys)

    def new_group(self, key: tuple[str | None, ...], routing_keys: tuple[str, ...]) -> Group:
        g = self.groups[key] = Group(key, {k: v for k, v in zip(routing_keys, key)
                                            if v is not None})
        for shape, by_values in self.projection.items():
            values = _project(g, shape)
            if values is not None:
                by_values.setdefault(values, {})[key] = g
        return g

    def drop(self, g: Group) -> None:
        """Forget an empty group."""
        g.alive = False
        del self.groups[g.key]
        for shape, by_values in self.projection.items():
            values = _project(g, shape)
            if values is not None:
                groups = by_values[values]
                del groups[g.key]
                if not groups:
                    del by_values[values]

    def add_shape(self, shape: Shape) -> None:
        by_values = self.projection[shape] = {}
        for g in self.groups.values():
            values = _project(g, shape)
            if values is not None:
                by_values.setdefault(values, {})[g.key] = g

    def matching(self, c: WorkerClass) -> Iterable[Group]:
        """The groups class `c` matches: by its values or by the groups present, fewer first."""
        by_values = self.projection.get(c.shape)
        if not by_values:
            return ()
        if len(c.values) <= len(by_values):
            return [g for values in c.values for g in by_values.get(values, {}).values()]
        allowed = c.value_set
        return [g for values, groups in by_values.items() if values in allowed
                for g in groups.values()]


def _project(g: Group, shape: Shape) -> Values | None:
    try:
        return tuple([g.attrs[k] for k in shape])
    except KeyError:
        return None


class Deadlines:
    """A queue's deadlines, earliest first (by when, then by the order they were set).

    Most come in order — one timeout for every task of a name, set as time moves on —
    and go on a FIFO, O(1) to add and to take; one earlier than the FIFO's last goes on
    a heap instead. Taking the smaller of the two heads gives the order one heap would.
    """

    __slots__ = ("_heap", "_in_order")

    def __init__(self) -> None:
        self._in_order: deque[Deadline] = deque()
        self._heap: list[Deadline] = []

    def __bool__(self) -> bool:
        return bool(self._in_order or self._heap)

    def push(self, deadline: Deadline) -> None:
        """Add a deadline; its second field (a sequence number) must exceed every earlier one's."""
        in_order = self._in_order
        if not in_order or deadline[0] >= in_order[-1][0]:
            in_order.append(deadline)
        else:
            heapq.heappush(self._heap, deadline)

    def first(self) -> Deadline | None:
        """The earliest deadline (None if there is none)."""
        in_order, heap = self._in_order, self._heap
        if in_order and (not heap or in_order[0] < heap[0]):
            return in_order[0]
        return heap[0] if heap else None

    def pop(self) -> Deadline:
        """Take the earliest deadline (there must be one)."""
        in_order, heap = self._in_order, self._heap
        if in_order and (not heap or in_order[0] < heap[0]):
            return in_order.popleft()
        return heapq.heappop(heap)
