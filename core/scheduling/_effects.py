"""What a scheduler call asks its caller to do: the only output of the pure core.

Effects are msgspec structs, not frozen dataclasses: every dispatch and every final
state makes one, and a frozen dataclass's `__init__` (one `object.__setattr__` per
field) cost four times as much.
"""

from __future__ import annotations

import msgspec

from .._model import Outcome, Task

__all__ = ["Dispatch", "Effect", "Finished", "Requeued"]


class Dispatch(msgspec.Struct, frozen=True):
    """Send `task` to `worker`; its state is now running."""

    worker: str
    task: Task


class Finished(msgspec.Struct, frozen=True):
    """`task` reached a final state: persist it, then announce it.

    `worker` is the one whose answer (done or error) or loss (retries exhausted)
    ended it, so the caller can count per worker; None for a cancel of a queued
    task or a schedule_timeout.
    """

    task: Task
    worker: str | None


class Requeued(msgspec.Struct, frozen=True):
    """`task` lost its worker (`outcome`) and is queued again (or already re-dispatched)."""

    task: Task
    worker: str
    outcome: Outcome


Effect = Dispatch | Finished | Requeued
