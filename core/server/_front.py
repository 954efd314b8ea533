"""The main port's front door: WebSocket workers to the lean server, the rest to hypercorn.

One listening socket serves both. Each connection's first request head is read (at most
`MAX_HEAD` bytes, for at most `HEAD_TIMEOUT` seconds) and routed once:

* a WebSocket upgrade goes to the lean trio + wsproto server (`transports/_lean.py`):
  workers at `/work/queue` get its cost per frame and its ping/pong liveness, exactly as
  on `--worker-port`, and an upgrade for any other path its 404. The app has no
  WebSocket route, so hypercorn could only refuse one, and its refusal is what let a
  client's further bytes raise h11's LocalProtocolError inside it;
* an HTTP/1.1 request for a route of the fast lane (`POST /tasks`, long polls, ...)
  goes to the lane's h11 server (`_lane_server.py`), which hands the connection on to
  hypercorn at its first request that is not the lane's;
* anything else — plain HTTP on any path (`/work/queue` included), HTTP/2 with prior
  knowledge, junk — goes to hypercorn (`_hypercorn.py`).

Either way the bytes read so far are handed over to be read first. A request is routed
by its first bytes when they show it is for hypercorn (a method or path the lane does
not serve), else once its head is complete (nearly always the first read). A
keep-alive connection stays with whoever got its first request.

With TLS (`tls`, from `--certfile`), each connection's handshake is done first
(`transports/_tls.py`) and the routing reads the decrypted head.

Whatever fails while serving one connection is logged once and ends that connection
only: never the port, never the hub.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import trio

from ..transports._tls import open_tls

__all__ = ["ConnectionHandler", "FastLane", "head_end", "serve_front"]

log = logging.getLogger("workyard.server")

#: serves one connection (a socket stream, or TLS over one), given what was already read
#: from it, and may close it
ConnectionHandler = Callable[[trio.abc.Stream, bytes], Awaitable[None]]

#: the longest request head read before routing (hypercorn's own limit for a head)
MAX_HEAD = 16 * 1024
#: seconds a client has to send the head of its first request
HEAD_TIMEOUT = 10.0
RECEIVE_BYTES = 64 * 1024
_GET = b"GET "

Route = Literal["lean", "lane", "http"]


class FastLane(Protocol):
    """The fast lane's server, as the front door sees it."""

    def takes(self, data: bytes) -> bool | None:
        """Whether the request starting `data` is the lane's; None while not known."""

    async def serve_connection(self, stream: trio.abc.Stream, received: bytes) -> None: ...


def head_end(data: bytes) -> int:
    """Where the request head in `data` ends (its blank line), or -1."""
    end = data.find(b"\n\r\n")
    return end if end >= 0 else data.find(b"\n\n")


def is_websocket_upgrade(data: bytes) -> bool | None:
    """Whether `data`, the start of a connection, is a WebSocket upgrade request; None
    while that is not known yet."""
    if data[:len(_GET)] != _GET[:len(data)]:
        return False
    end = head_end(data)
    if end < 0:
        return None if len(data) < MAX_HEAD else False
    for line in data[:end].split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


def route_of(data: bytes, lane: FastLane | None) -> Route | None:
    """Where the connection starting with `data` goes; None while that is not known."""
    upgrade = is_websocket_upgrade(data)
    if upgrade is None:
        return None
    if upgrade:
        return "lean"
    if lane is None:
        return "http"
    takes = lane.takes(data)
    if takes is None:
        return None
    return "lane" if takes else "http"


async def _read_head(stream: trio.abc.Stream, lane: FastLane | None) -> tuple[bytes, Route]:
    """What the client sent until it could be routed, and where it goes. Raises
    TooSlowError after `HEAD_TIMEOUT`."""
    data = b""
    with trio.fail_after(HEAD_TIMEOUT):
        while (route := route_of(data, lane)) is None:
            chunk = await stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                return data, "http"  # the client left mid-head: hypercorn says goodbye
            data += chunk
    return data, route


def _peer(stream: trio.SocketStream) -> object:
    try:
        return stream.socket.getpeername()
    except OSError:
        return "a peer already gone"


async def serve_front(
    listener: socket.socket,
    lean: ConnectionHandler,
    http: ConnectionHandler,
    lane: FastLane | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `listener` (bound and listening) until cancelled: each connection goes to
    `lean`, `lane` or `http`, with the bytes already read; over TLS with `tls`."""
    handlers: dict[Route, ConnectionHandler] = {"lean": lean, "http": http}
    if lane is not None:
        handlers["lane"] = lane.serve_connection

    async def handle(stream: trio.SocketStream) -> None:
        peer = _peer(stream)  # while it is open: a failed handler may have closed it
        async with stream:
            try:
                connection: trio.abc.Stream = stream
                if tls is not None:
                    if (secure := await open_tls(stream, tls, peer)) is None:
                        return  # refused, or no handshake: open_tls said why
                    connection = secure
                try:
                    received, route = await _read_head(connection, lane)
                except (trio.TooSlowError, trio.BrokenResourceError):
                    return  # nothing routable in time, or the peer reset the connection
                if not received:
                    return  # connected and left
                await handlers[route](connection, received)
            except Exception:  # one connection's failure must not end the server
                log.exception("connection from %s failed", peer)

    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
    await trio.serve_listeners(handle, listeners, task_status=task_status)
