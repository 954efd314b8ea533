"""workyard's Python clients: a worker and producers.

    from workyard.client import AsyncProducer, Producer, Worker

Workers register async handlers with `@worker.handler(name, **filter)`; a handler
gets a `Job` and returns the result data (raising makes the task's error).
`Worker` speaks WebSocket; `PollingWorker`, where available, polls over HTTP with
the same handlers.
"""

from ._handlers import Handler, Handlers, Job
from ._producer import AsyncProducer, HubError, Producer
from ._worker import Worker, WorkerRejected

__all__ = [
    "AsyncProducer",
    "Handler",
    "Handlers",
    "HubError",
    "Job",
    "Producer",
    "Worker",
    "WorkerRejected",
]

try:  # the HTTP polling worker lives in its own module
    from ._poller import PollingWorker
except ModuleNotFoundError as exc:  # pragma: no cover - not written yet
    if exc.name != f"{__name__}._poller":
        raise
else:
    __all__.append("PollingWorker")
