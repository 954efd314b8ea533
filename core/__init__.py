"""workyard: a task hub for worker fleets.

Producers submit tasks; workers attach over a WebSocket or by HTTP polling and
declare which tasks they run, with filters on task attributes. Each task goes to
the most specific matching worker, load is spread evenly, and a lost worker's
tasks are rescheduled at once.

The public API is what this package, `workyard.events`, `workyard.client`,
`workyard.sim` and `workyard.testing` export (a test pins it). Everything else —
the layer packages (`scheduling`, `hub`, `store`, `transports`, ...) and every
underscored module — is the implementation, free to change.
"""

from typing import TYPE_CHECKING

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
from .hub import Hub, Link, Liveness, QueueView, Session, WorkerView, queue_views, worker_views
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
from .store import SQLiteStore, Store, StoreError

if TYPE_CHECKING:
    from .server import build_app, serve


def __getattr__(name: str) -> object:
    """`build_app` and `serve`, imported on first use: they bring quart and hypercorn,
    which a worker or a producer (`workyard.client`) never needs."""
    if name in ("build_app", "serve"):
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "Liveness",
    "NotFound",
    "Outcome",
    "Policy",
    "QueueView",
    "Requeued",
    "SQLiteStore",
    "Scheduler",
    "Session",
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
    "WorkerView",
    "WorkyardError",
    "build_app",
    "queue_views",
    "serve",
    "worker_views",
]

__version__ = "0.1.0"
