"""How workers reach the hub, with no HTTP framework in between: the WebSocket worker
session (any WebSocket server) and the lean trio + wsproto server that serves it."""

from ._lean import serve_lean_connection, serve_worker_port
from ._websocket import WorkerSocket, WorkerUpgrade, serve_worker

__all__ = ["WorkerSocket", "WorkerUpgrade", "serve_lean_connection", "serve_worker",
           "serve_worker_port"]
