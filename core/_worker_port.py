"""The lean worker port: `GET /work/queue` served directly by trio-websocket.

The same protocol as the main port (`serve_worker` in `_ws.py`), without ASGI in
between: a frame costs the hub about half the CPU it costs through quart on
hypercorn. Each connection is also pinged every `ping_interval` seconds, and a
ping not answered within `ping_timeout` ends it — which detaches the worker and
reschedules its tasks — however the peer died.

Any other path is refused with 404 before the upgrade.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer
from werkzeug.datastructures import Headers, MultiDict

from ._auth import Auth
from ._config import Settings
from ._hub import Hub
from ._wire import encode
from ._ws import WorkerSocket, serve_worker

__all__ = ["serve_worker_port"]

log = logging.getLogger("workyard.ws")

PATH = "/work/queue"
#: messages a connection's reader may queue before it waits for the worker session
MESSAGE_QUEUE = 64
RECEIVE_BYTES = 64 * 1024


class _LeanSocket:
    """A trio-websocket connection as a `WorkerSocket`."""

    def __init__(self, ws: WebSocketConnection, close_timeout: float) -> None:
        self._ws = ws
        self._close_timeout = close_timeout

    async def receive(self) -> str | bytes:
        return await self._ws.get_message()

    async def send(self, frame: str) -> None:
        await self._ws.send_message(frame)

    async def close(self, code: int, reason: str) -> None:
        with trio.move_on_after(self._close_timeout):  # then the stream is closed anyway
            await self._ws.aclose(code, reason)


class _LeanUpgrade:
    """A trio-websocket handshake as a `WorkerUpgrade`; once accepted, the connection
    is pinged in `nursery`, and an unanswered ping cancels that nursery."""

    def __init__(self, request: WebSocketRequest, query: str, nursery: trio.Nursery,
                 settings: Settings) -> None:
        self._request = request
        self._nursery = nursery
        self._settings = settings
        self.args = MultiDict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        self.headers = Headers([(k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in request.headers])

    async def refuse(self, status: int, body: bytes) -> None:
        await self._request.reject(status, extra_headers=[(b"content-type", b"application/json")],
                                   body=body)

    async def accept(self) -> WorkerSocket:
        ws = await self._request.accept()
        self._nursery.start_soon(self._keep_alive, ws)
        return _LeanSocket(ws, self._settings.ping_timeout)

    async def _keep_alive(self, ws: WebSocketConnection) -> None:
        """Ping every `ping_interval`; a ping unanswered for `ping_timeout` ends the
        connection (cancelling its nursery detaches the worker)."""
        while True:
            await trio.sleep(self._settings.ping_interval)
            try:
                with trio.fail_after(self._settings.ping_timeout):
                    await ws.ping()
            except trio.TooSlowError:
                log.info("worker connection from %s did not answer a ping within %g s; "
                         "dropping it", getattr(ws.remote, "url", ws.remote),
                         self._settings.ping_timeout)
                self._nursery.cancel_scope.cancel()
                return


async def serve_worker_port(
    hub: Hub,
    auth: Auth,
    settings: Settings,
    listener: socket.socket,
    *,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `/work/queue` on `listener` (a bound, listening socket) until cancelled."""

    async def handle(request: WebSocketRequest) -> None:
        path, _, query = request.path.partition("?")
        if path != PATH:
            await request.reject(404, extra_headers=[(b"content-type", b"application/json")],
                                 body=encode({"error": f"this port serves only {PATH}"}))
            return
        try:
            async with trio.open_nursery() as nursery:
                await serve_worker(_LeanUpgrade(request, query, nursery, settings), hub, auth)
                nursery.cancel_scope.cancel()  # stop pinging
        except* ConnectionClosed:
            pass  # the peer went away: the worker is already detached
        except* Exception:  # one connection's failure must not take the port down
            log.exception("worker connection from %s failed",
                          getattr(request.remote, "url", request.remote))

    server = WebSocketServer(
        handle, [trio.SocketListener(trio.socket.from_stdlib_socket(listener))],
        max_message_size=settings.max_frame,
        # answers one read brought are queued at once (trio-websocket's default queue
        # of 1 costs a task switch per message), and a read takes what has arrived
        message_queue_size=MESSAGE_QUEUE,
        receive_buffer_size=RECEIVE_BYTES,
        # a peer that completes no closing handshake is let go after this long
        disconnect_timeout=settings.ping_timeout,
    )
    await server.run(task_status=task_status)
