"""Stand-ins for the durable and networked parts, for tests and the simulator (as
`trio.testing` is for trio): the in-memory store, and a worker link that records what
the hub sends it.

    hub = Hub(MemoryStore())
    link = RecordingLink()
    hub.attach("w1", [Subscription.of("tag")], link)
    ...
    assert link.ids == [task.id]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ._model import Task
from .store import MemoryStore

__all__ = ["MemoryStore", "RecordingLink"]


@dataclass(eq=False)
class RecordingLink:
    """A `Link` that keeps the tasks the hub delivered, and why it was closed (if it was)."""

    tasks: list[Task] = field(default_factory=list)
    closed: str | None = None

    def deliver(self, task: Task) -> None:
        self.tasks.append(task)

    def close(self, reason: str) -> None:
        self.closed = reason

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]
