"""The functional core: which worker gets which task. Pure code, no I/O, no clock."""

from ._scheduler import (
    UNCHANGED,
    Dispatch,
    Effect,
    Finished,
    Policy,
    Requeued,
    Scheduler,
    WorkerState,
)

__all__ = [
    "UNCHANGED",
    "Dispatch",
    "Effect",
    "Finished",
    "Policy",
    "Requeued",
    "Scheduler",
    "WorkerState",
]
