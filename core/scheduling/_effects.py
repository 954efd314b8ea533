"""What a scheduler call asks its caller to do: the only output of the pure core."""

from __future__ import annotations

from dataclasses import dataclass

from .._model import Outcome, Task

__all__ = ["Dispatch", "Effect", "Finished", "Requeued"]


@dataclass(slots=True, frozen=True)
class Dispatch:
    """Send `task` to `worker`; its state is now running."""

    worker: str
    task: Task


@dataclass(slots=True, frozen=True)
class Finished:
    """`task` reached a final state: persist it, then announce it.

    `worker` is the one whose answer (done or error) or loss (retries exhausted)
    ended it, so the caller can count per worker; None for a cancel of a queued
    task or a schedule_timeout.
    """

    task: Task
    worker: str | None


@dataclass(slots=True, frozen=True)
class Requeued:
    """`task` lost its worker (`outcome`) and is queued again (or already re-dispatched)."""

    task: Task
    worker: str
    outcome: Outcome


Effect = Dispatch | Finished | Requeued
