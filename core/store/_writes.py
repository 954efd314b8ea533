"""The write half of every store's aggregates, written once: each write method is a
change handed to the store's `commit` (or, on the hot path, `commit_soon`). A store
implements the reads and how changes apply; it inherits these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from .._model import Task
from ._interface import ConfigureQueue, FinishTask, InsertTasks, OnCommit, StartAttempt, Store

__all__ = ["QueueWrites", "TaskWrites"]


class TaskWrites:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def insert(self, tasks: Sequence[Task]) -> list[str]:
        (ids,) = await self._store.commit(InsertTasks(tasks))
        return cast(list[str], ids)  # what an InsertTasks commits to

    def started(self, task: Task) -> None:
        self._store.commit_soon(StartAttempt(task))

    def finish(self, task: Task, then: OnCommit) -> None:
        self._store.commit_soon(FinishTask(task), lambda: then(task))


class QueueWrites:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def configure(self, queue: str, configuration: bytes) -> None:
        await self._store.commit(ConfigureQueue(queue, configuration))
