"""The task model: what a task is, what happened to it, and what a worker asks for.

Plain data with no I/O. `data` and `result` stay raw JSON bytes from the moment
they arrive until they leave, so the hub never decodes a payload it only relays.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Mapping

import msgspec

from ._errors import InvalidInput

__all__ = [
    "FINAL_STATES",
    "Attempt",
    "Outcome",
    "Subscription",
    "Task",
    "TaskState",
]

JSON_NULL = msgspec.Raw(b"null")


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})


class Outcome(enum.StrEnum):
    """How one attempt ended."""

    DONE = "done"
    ERROR = "error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    #: another attempt's answer arrived first
    SUPERSEDED = "superseded"


#: Outcomes that count against a task's `retries`.
RETRYABLE = frozenset({Outcome.TIMEOUT, Outcome.WORKER_LOST})


class Attempt(msgspec.Struct, kw_only=True):
    worker: str
    started: float
    ended: float | None = None
    outcome: Outcome | None = None


class Task(msgspec.Struct, kw_only=True):
    id: str
    name: str
    attrs: dict[str, str] = {}
    data: msgspec.Raw = JSON_NULL
    priority: int = 0
    timeout: float = 60.0
    retries: int = 3
    schedule_timeout: float | None = None
    key: str | None = None
    state: TaskState = TaskState.QUEUED
    created: float = 0.0
    finished: float | None = None
    result: msgspec.Raw | None = None
    error: str | None = None
    attempts: list[Attempt] = []
    #: submission order: FIFO within a priority, and the order a restarted hub requeues in
    seq: int = 0

    @property
    def worker(self) -> str | None:
        """The worker holding the current attempt, if the task is running."""
        if self.state is TaskState.RUNNING and self.attempts:
            return self.attempts[-1].worker
        return None

    def lost_attempts(self) -> int:
        return sum(1 for a in self.attempts if a.outcome in RETRYABLE)


class Subscription(msgspec.Struct, frozen=True):
    """A worker's offer to run tasks called `name` whose attrs pass `filter`.

    A task matches when, for every filter key, its attrs hold that key with one
    of the listed values. The empty filter matches every task of that name.
    """

    name: str
    filter: dict[str, frozenset[str]] = {}

    @classmethod
    def of(cls, name: str, filter: Mapping[str, Iterable[str] | str] | None = None) -> Subscription:
        """Build a subscription, accepting `"a,b"` or `["a", "b"]` as values."""
        if not isinstance(name, str) or not name:
            raise InvalidInput("a subscription needs a non-empty task name")
        clean: dict[str, frozenset[str]] = {}
        for key, values in (filter or {}).items():
            if isinstance(values, str):
                values = values.split(",")
            if not isinstance(values, (list, tuple, set, frozenset)) or not all(
                isinstance(v, str) for v in values
            ):
                raise InvalidInput(f"filter {key!r} must be a string or a list of strings")
            vals = frozenset(v.strip() for v in values if v.strip())
            if not vals:
                raise InvalidInput(f"filter {key!r} needs at least one non-empty value")
            clean[key] = vals
        # how much one worker may declare is bounded where the hub takes a declaration
        # (`protocol.check_declaration`), for every transport at once
        return cls(name, clean)

    @property
    def key(self) -> tuple[str, tuple[tuple[str, tuple[str, ...]], ...]]:
        """A hashable identity: equal subscriptions have equal keys."""
        return self.name, tuple((k, tuple(sorted(self.filter[k]))) for k in self.shape)

    @property
    def specificity(self) -> int:
        return len(self.filter)

    @property
    def shape(self) -> tuple[str, ...]:
        """The filter's keys in a canonical order: workers are indexed by shape."""
        return tuple(sorted(self.filter))

    def value_keys(self) -> Iterable[tuple[str, ...]]:
        """Every tuple of allowed values, in `shape` order."""
        return itertools.product(*(sorted(self.filter[k]) for k in self.shape))

    def matches(self, name: str, attrs: Mapping[str, str]) -> bool:
        return name == self.name and all(attrs.get(k) in vals for k, vals in self.filter.items())

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "filter": {k: sorted(v) for k, v in sorted(self.filter.items())}}
