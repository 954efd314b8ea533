"""How workers reach the hub, with no HTTP framework in them: the WebSocket worker
session (any WebSocket server), the lean trio + wsproto server that serves it, and
polling leases."""

from ._lean import serve_lean_connection, serve_worker_port
from ._polling import ANONYMOUS, Poll, Poller, PollingFleet, Problem
from ._websocket import FRAMES, WorkerSocket, WorkerUpgrade, serve_worker

__all__ = [
    "ANONYMOUS",
    "FRAMES",
    "Poll",
    "Poller",
    "PollingFleet",
    "Problem",
    "WorkerSocket",
    "WorkerUpgrade",
    "serve_lean_connection",
    "serve_worker",
    "serve_worker_port",
]
