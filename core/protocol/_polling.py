"""HTTP polling bodies (seed 002, Katar; seed 004, presque): what a poller sends and gets."""

from __future__ import annotations

import msgspec

from .._model import JSON_NULL, Task

__all__ = ["PollBody", "PolledBatch", "PolledTask", "Registration", "Report"]


class PollBody(msgspec.Struct):
    """POST /v1/queue/{queue}: reports first, then a request for up to `max` tasks."""

    tasks: list[msgspec.Raw] = []
    worker_id: str | None = None
    max: int | None = None
    wait: float | None = None


class Report(msgspec.Struct):
    """One finished task in a poll: `{"_id", "status": "done"|"failed", "error"?, "result"?}`."""

    id: str | int = msgspec.field(name="_id")
    status: str
    error: msgspec.Raw = JSON_NULL
    result: msgspec.Raw = JSON_NULL


class PolledTask(msgspec.Struct, kw_only=True):
    """One task handed to a poller. The defaults only make clients lenient; the hub
    always sends every field."""

    id: str = msgspec.field(name="_id")
    data: msgspec.Raw = JSON_NULL
    name: str
    attrs: dict[str, str] = {}
    timeout: float = 60.0

    @classmethod
    def of(cls, task: Task) -> PolledTask:
        return cls(id=task.id, data=task.data, name=task.name, attrs=task.attrs,
                   timeout=task.timeout)


class PolledBatch(msgspec.Struct):
    """A poll's 200 answer: `{"tasks": [...]}`."""

    tasks: list[PolledTask]


class Registration(msgspec.Struct):
    """POST /w/{queue} (presque): who is starting work on the queue."""

    worker_id: str | None = None
