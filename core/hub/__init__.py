"""The imperative shell: trio actors that apply the scheduler's effects, worker
sessions and their liveness, the event stream, and read models built from them."""

from ._events import (
    Event,
    EventStream,
    Missed,
    TaskCancelled,
    TaskDispatched,
    TaskFinished,
    TaskRequeued,
    TaskSubmitted,
    WorkerAttached,
    WorkerCapacityChanged,
    WorkerDetached,
)
from ._hub import Hub, QueueStats
from ._sessions import Link, Liveness, Session
from ._views import QueueView, WorkerView, queue_views, worker_views

__all__ = [
    "Event",
    "EventStream",
    "Hub",
    "Link",
    "Liveness",
    "Missed",
    "QueueStats",
    "QueueView",
    "Session",
    "TaskCancelled",
    "TaskDispatched",
    "TaskFinished",
    "TaskRequeued",
    "TaskSubmitted",
    "WorkerAttached",
    "WorkerCapacityChanged",
    "WorkerDetached",
    "WorkerView",
    "queue_views",
    "worker_views",
]
