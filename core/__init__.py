"""workyard: a task hub for worker fleets.

Producers submit tasks; workers attach over a WebSocket or by HTTP polling and
declare which tasks they run, with filters on task attributes. Each task goes to
the most specific matching worker, load is spread evenly, and a lost worker's
tasks are rescheduled at once.

The public API is re-exported here; the underscored modules are private.
"""

from ._config import Settings
from ._errors import (
    Conflict,
    InvalidInput,
    InvalidSetting,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    WorkyardError,
)
from ._model import Attempt, Outcome, Subscription, Task, TaskState
from .hub import Hub, Link
from .scheduling import (
    UNCHANGED,
    Dispatch,
    Effect,
    Finished,
    Policy,
    Requeued,
    Scheduler,
    WorkerState,
)
from .server import build_app, serve
from .store import MemoryStore, SQLiteStore, Store, StoreError

__all__ = [
    "UNCHANGED",
    "Attempt",
    "Conflict",
    "Dispatch",
    "Effect",
    "Finished",
    "Hub",
    "InvalidInput",
    "InvalidSetting",
    "Link",
    "MemoryStore",
    "NotFound",
    "Outcome",
    "Policy",
    "Requeued",
    "SQLiteStore",
    "Scheduler",
    "Settings",
    "Store",
    "StoreError",
    "Subscription",
    "Task",
    "TaskState",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WorkerState",
    "WorkyardError",
    "build_app",
    "serve",
]

__version__ = "0.1.0"
