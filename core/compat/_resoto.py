"""Seed 000 (Resoto's worker queue) on the main port: `GET /work/queue` through quart.

The protocol itself is `serve_worker` (transports); this is the thin adapter that
lets quart's `websocket` context carry it.
"""

from __future__ import annotations

from quart import Response, websocket
from quart_trio import QuartTrio

from .._auth import Auth
from ..hub import Hub
from ..transports import WorkerSocket, serve_worker

__all__ = ["add_websocket_routes"]


class _QuartSocket:
    """quart's `websocket` context as a `WorkerSocket`."""

    async def receive(self) -> str | bytes:
        return await websocket.receive()

    async def send(self, frame: str) -> None:
        await websocket.send(frame)

    async def close(self, code: int, reason: str) -> None:
        await websocket.close(code, reason)


class _QuartUpgrade:
    """quart's `websocket` context as a `WorkerUpgrade`. quart refuses an upgrade by
    the route returning a response, so `refuse` keeps it for the route to return."""

    def __init__(self) -> None:
        self.args = websocket.args
        self.headers = websocket.headers
        self.refusal: Response | None = None

    async def refuse(self, status: int, body: bytes) -> None:
        self.refusal = Response(body, status=status, content_type="application/json")

    async def accept(self) -> WorkerSocket:
        await websocket.accept()
        return _QuartSocket()


def add_websocket_routes(app: QuartTrio, hub: Hub, auth: Auth) -> None:
    @app.websocket("/work/queue")
    async def work_queue() -> Response | None:
        upgrade = _QuartUpgrade()
        await serve_worker(upgrade, hub, auth)
        return upgrade.refusal
