"""The durable store interface, and the in-memory store the simulator and tests use.

The hub writes a task twice: when it is submitted (before the 201) and when it is
final (before anyone can see the final state). Queue configurations (set by an
admin for polling workers) are kept beside the tasks. Everything in between lives in
the scheduler; after a crash, whatever was not final is queued again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import trio

from .._model import Task, TaskState

__all__ = ["MemoryStore", "Store"]

OnCommit = Callable[[Task], None]


class Store(Protocol):
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer actor: open, serve writes until cancelled, close."""

    async def insert(self, tasks: list[Task]) -> list[str]:
        """Store new tasks durably. Returns their ids; a task whose idempotency key is
        already stored is not inserted and gets the existing task's id instead."""

    def finish(self, task: Task, then: OnCommit) -> None:
        """Store a final state; call `then(task)` once it is durable."""

    async def get(self, task_id: str) -> Task | None: ...

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        """Newest first."""

    async def unfinished(self) -> list[Task]:
        """Tasks not final, oldest first: what a restarted hub queues again."""

    async def purge(self, finished_before: float) -> int:
        """Delete final tasks that finished before the given time; returns how many."""

    async def configurations(self) -> dict[str, bytes]:
        """Every queue's stored configuration (a JSON object), by queue name."""

    async def configure(self, queue: str, configuration: bytes) -> None:
        """Store a queue's configuration durably, replacing the previous one."""


class MemoryStore:
    """A `Store` in a dict: instant commits, nothing survives the process."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self._keys: dict[str, str] = {}
        self._configurations: dict[str, bytes] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def insert(self, tasks: list[Task]) -> list[str]:
        ids = []
        for task in tasks:
            existing = self._keys.get(task.key) if task.key is not None else None
            if existing is not None and existing in self.tasks:
                ids.append(existing)
                continue
            self.tasks[task.id] = task
            if task.key is not None:
                self._keys[task.key] = task.id
            ids.append(task.id)
        return ids

    def finish(self, task: Task, then: OnCommit) -> None:
        self.tasks[task.id] = task
        then(task)

    async def get(self, task_id: str) -> Task | None:
        return self.tasks.get(task_id)

    async def find(self, *, name: str | None, state: TaskState | None, limit: int) -> list[Task]:
        found = [
            t for t in reversed(self.tasks.values())
            if (name is None or t.name == name) and (state is None or t.state is state)
        ]
        return found[:limit]

    async def unfinished(self) -> list[Task]:
        return [t for t in self.tasks.values() if not t.state.final]

    async def purge(self, finished_before: float) -> int:
        old = [t.id for t in self.tasks.values() if t.finished is not None
               and t.finished < finished_before]
        for task_id in old:
            task = self.tasks.pop(task_id)
            if task.key is not None:
                self._keys.pop(task.key, None)
        return len(old)

    async def configurations(self) -> dict[str, bytes]:
        return dict(self._configurations)

    async def configure(self, queue: str, configuration: bytes) -> None:
        self._configurations[queue] = configuration
