"""The functional core: which worker gets which task. Pure code, no I/O, no clock.

`_effects`: what a call asks its caller to do. `_index`: workers, their classes
and the buckets routing looks up. `_backlog`: waiting tasks in groups, offered to
the classes that may take them. `_scheduler`: the Scheduler tying them together.
"""

from ._effects import Dispatch, Effect, Finished, Requeued
from ._index import Policy, WorkerState
from ._scheduler import UNCHANGED, Scheduler

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
