"""The events a hub publishes on `hub.events`, one class per kind of state change.

    with hub.events.subscribe() as events:
        async for event in events:
            if isinstance(event, TaskFinished): ...

Each is a frozen msgspec struct tagged by `type` ("task.finished", ...), so it
encodes to JSON as is. `Missed` tells a subscriber that fell behind how many events
it lost at that point.
"""

from .hub._events import (
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

__all__ = [
    "Event",
    "EventStream",
    "Missed",
    "TaskCancelled",
    "TaskDispatched",
    "TaskFinished",
    "TaskRequeued",
    "TaskSubmitted",
    "WorkerAttached",
    "WorkerCapacityChanged",
    "WorkerDetached",
]
