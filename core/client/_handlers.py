"""The handler registry shared by both worker clients (WebSocket and HTTP polling).

A handler is `async def fn(job: Job) -> Any`: what it returns is the task's result
data, and what it raises becomes the task's error. The registry also says which
subscriptions the worker declares, so the decorator is the only place a worker
names its tasks and filters.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import trio

from .._model import Subscription
from ..protocol import PolledTask, TaskFrame

__all__ = ["Handler", "Handlers", "Job"]

log = logging.getLogger("workyard.client")


@dataclass(slots=True)
class Job:
    """One task as a handler sees it: `data` is decoded JSON."""

    id: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    data: Any = None
    #: seconds the hub gives this attempt; the handler is cancelled after it
    timeout: float = 60.0

    @classmethod
    def from_frame(cls, frame: TaskFrame) -> Job:
        """From a WebSocket task frame. Raises msgspec.DecodeError for undecodable data."""
        return cls(id=frame.task_id, name=frame.task_name, attrs=frame.attrs,
                   data=msgspec.json.decode(frame.data), timeout=frame.timeout)

    @classmethod
    def from_polled(cls, polled: PolledTask) -> Job:
        """From a task in a poll's answer. Raises msgspec.DecodeError for undecodable data."""
        return cls(id=polled.id, name=polled.name, attrs=polled.attrs,
                   data=msgspec.json.decode(polled.data), timeout=polled.timeout)


Handler = Callable[[Job], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


class Handlers:
    """Task name (and filter) → async handler."""

    def __init__(self) -> None:
        self._entries: list[tuple[Subscription, Handler]] = []
        #: the handler of each name that has only one (no filter to weigh): found at once
        self._only: dict[str, Handler] = {}
        #: jobs running now, by task id (what a machine-stats report says it runs)
        self.current: dict[str, Job] = {}

    def handler(self, name: str, **filter: str | list[str]) -> Callable[[H], H]:
        """Decorator: `@handlers.handler("tag", cloud=["aws", "gcp"])` (or `cloud="aws,gcp"`)."""

        def register(fn: H) -> H:
            self.add(name, fn, **filter)
            return fn

        return register

    def add(self, name: str, fn: Handler, **filter: str | Iterable[str]) -> None:
        if not inspect.iscoroutinefunction(fn) and not inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)  # noqa: B004 - an async __call__, not callable()
        ):
            raise TypeError(f"the handler for {name!r} must be an async function")
        sub = Subscription.of(name, {k: v if isinstance(v, str) else list(v)
                                     for k, v in filter.items()})
        if any(existing.key == sub.key for existing, _ in self._entries):
            raise ValueError(f"a handler for {name!r} with that filter is already registered")
        self._entries.append((sub, fn))
        named = [f for existing, f in self._entries if existing.name == name]
        if len(named) == 1:
            self._only[name] = fn
        else:
            self._only.pop(name, None)

    @property
    def subscriptions(self) -> list[Subscription]:
        return [sub for sub, _ in self._entries]

    def __bool__(self) -> bool:
        return bool(self._entries)

    def find(self, job: Job) -> Handler | None:
        """The most specific handler whose filter passes the job's attrs.

        The hub only sends what we declared, so a name match is the fallback
        (attrs may have been matched under a filter we no longer hold locally).
        """
        only = self._only.get(job.name)
        if only is not None:  # matching or not, the name's one handler is the answer
            return only
        named = [(sub, fn) for sub, fn in self._entries if sub.name == job.name]
        matching = [(sub, fn) for sub, fn in named if sub.matches(job.name, job.attrs)]
        best = max(matching or named, key=lambda e: e[0].specificity, default=None)
        return best[1] if best else None

    async def run(self, job: Job) -> dict[str, Any]:
        """Run the job's handler and return its answer for the hub.

        Never raises for a handler's failure (only trio.Cancelled passes through):
        a raised exception, a timeout or an unencodable result is an error answer.
        """
        fn = self.find(job)
        if fn is None:
            return _error(job, f"this worker has no handler for {job.name!r}")
        self.current[job.id] = job
        # a bare cancel scope: `fail_after` costs a generator context manager per task
        scope = trio.CancelScope(deadline=trio.current_time() + job.timeout)
        try:
            with scope:
                data = await fn(job)
        except Exception as exc:  # any handler failure is the task's error
            log.warning("task %s (%s) failed: %s: %s", job.id, job.name,
                        type(exc).__name__, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            return _error(job, str(exc) or type(exc).__name__)
        finally:
            self.current.pop(job.id, None)
        if scope.cancelled_caught:
            log.warning("task %s (%s) timed out after %gs", job.id, job.name, job.timeout)
            return _error(job, f"handler timed out after {job.timeout:g}s")
        try:  # fail here, as this task's error, rather than in the sender
            msgspec.json.encode(data)
        except (TypeError, ValueError, OverflowError) as exc:
            return _error(job, f"the handler's result is not JSON-encodable: {exc}")
        return {"task_id": job.id, "result": "done", "data": data}


def _error(job: Job, message: str) -> dict[str, Any]:
    return {"task_id": job.id, "result": "error", "error": message}
