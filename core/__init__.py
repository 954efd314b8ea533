"""workyard: a task hub for worker fleets.

Producers submit tasks; workers attach over a WebSocket or by HTTP polling and
declare which tasks they run, with filters on task attributes. Each task goes to
the most specific matching worker, load is spread evenly, and a lost worker's
tasks are rescheduled at once.

The public API is re-exported here; the underscored modules are private.
"""

from ._config import Settings
from ._hub import Hub, Link
from ._model import Attempt, Outcome, Subscription, Task, TaskState
from ._scheduler import Dispatch, Effect, Finished, Policy, Requeued, Scheduler, WorkerState
from ._server import build_app, serve
from ._sqlite import SQLiteStore
from ._store import MemoryStore, Store

__all__ = [
    "Attempt",
    "Dispatch",
    "Effect",
    "Finished",
    "Hub",
    "Link",
    "MemoryStore",
    "Outcome",
    "Policy",
    "Requeued",
    "SQLiteStore",
    "Scheduler",
    "Settings",
    "Store",
    "Subscription",
    "Task",
    "TaskState",
    "WorkerState",
    "build_app",
    "serve",
]

__version__ = "0.1.0"
