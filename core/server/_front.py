"""The main port's front door: WebSocket workers to the lean server, the rest to hypercorn.

One listening socket serves both. Each connection's first request head is read (at most
`MAX_HEAD` bytes, for at most `HEAD_TIMEOUT` seconds) and routed once:

* a WebSocket upgrade goes to the lean trio + wsproto server (`transports/_lean.py`):
  workers at `/work/queue` get its cost per frame and its ping/pong liveness, exactly as
  on `--worker-port`, and an upgrade for any other path its 404. The app has no
  WebSocket route, so hypercorn could only refuse one, and its refusal is what let a
  client's further bytes raise h11's LocalProtocolError inside it;
* anything else — plain HTTP on any path (`/work/queue` included), HTTP/2 with prior
  knowledge, junk — goes to hypercorn (`_hypercorn.py`).

Either way the bytes read so far are handed over to be read first. Requests other than
GET are routed by their first bytes, a GET once its head is complete (nearly always the
first read). A keep-alive connection stays with whoever got its first request.

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

import trio

from ..transports._tls import open_tls

__all__ = ["ConnectionHandler", "serve_front"]

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


def is_websocket_upgrade(data: bytes) -> bool | None:
    """Whether `data`, the start of a connection, is a WebSocket upgrade request; None
    while that is not known yet."""
    if data[:len(_GET)] != _GET[:len(data)]:
        return False
    end = data.find(b"\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    if end < 0:
        return None if len(data) < MAX_HEAD else False
    for line in data[:end].split(b"\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bool]:
    """What the client sent until it could be routed, and whether it goes to the lean
    server. Raises TooSlowError after `HEAD_TIMEOUT`."""
    data = b""
    with trio.fail_after(HEAD_TIMEOUT):
        while (lean := is_websocket_upgrade(data)) is None:
            chunk = await stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                return data, False  # the client left mid-head: hypercorn says goodbye
            data += chunk
    return data, lean


def _peer(stream: trio.SocketStream) -> object:
    try:
        return stream.socket.getpeername()
    except OSError:
        return "a peer already gone"


async def serve_front(
    listener: socket.socket,
    lean: ConnectionHandler,
    http: ConnectionHandler,
    *,
    tls: ssl.SSLContext | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `listener` (bound and listening) until cancelled: each connection goes to
    `lean` or to `http`, with the bytes already read; over TLS with `tls`."""

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
                    received, to_lean = await _read_head(connection)
                except (trio.TooSlowError, trio.BrokenResourceError):
                    return  # nothing routable in time, or the peer reset the connection
                if not received:
                    return  # connected and left
                await (lean if to_lean else http)(connection, received)
            except Exception:  # one connection's failure must not end the server
                log.exception("connection from %s failed", peer)

    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
    await trio.serve_listeners(handle, listeners, task_status=task_status)
