"""workyard's Python clients: workers and producers.

    from workyard.client import AsyncProducer, PollingWorker, Producer, Worker

Workers register async handlers with `@worker.handler(name, **filter)`; a handler
gets a `Job` and returns the result data (raising makes the task's error).
`Worker` holds a WebSocket; `PollingWorker` long-polls over HTTP with the same
handlers.
"""

from ._handlers import Handler, Handlers, Job
from ._poller import PollingWorker
from ._producer import AsyncProducer, HubError, Producer
from ._worker import Worker, WorkerRejected

__all__ = [
    "AsyncProducer",
    "Handler",
    "Handlers",
    "HubError",
    "Job",
    "PollingWorker",
    "Producer",
    "Worker",
    "WorkerRejected",
]
