"""The lean WebSocket server: `GET /work/queue` served by trio and wsproto directly.

It serves every WebSocket worker: those on the main port (whose front door,
`server/_front.py`, hands it the upgrade requests for `/work/queue` with the bytes it
has already read) and those on the optional `--worker-port`, which is this server
alone on a port of its own. The protocol is `serve_worker` (`_websocket.py`), with no
ASGI or WebSocket library's per-message machinery in between. Two things keep a frame
cheap:

* writes are coalesced: `send` only appends a frame to the connection's buffer, and
  one writer sends everything buffered in a single `send_all`, so a burst of N task
  frames from the hub costs one system call;
* reads are pulled: `receive` splits what one read brought into messages and hands
  them out, with no reader task or queue in between;
* an open connection's common frames — whole text messages, pings, pongs — are read
  and written by `_frames.py` in one loop per read, not by wsproto frame by frame;
  the first frame of any other kind hands the rest of the stream to wsproto for good.

The worker protocol pings each connection every `ping_interval` seconds (`ping`
returns at the pong); the hub's liveness watch drops a worker whose pongs stopped for
`ping_interval + ping_timeout` — which detaches it and reschedules its tasks — however
the peer died. Any other path is refused with 404 before the upgrade; a refusal
closes the connection.
"""

from __future__ import annotations

import logging
import socket
import ssl
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import trio
from werkzeug.datastructures import Headers, MultiDict
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import RemoteProtocolError

from .._auth import Auth
from .._config import Settings
from .._errors import InvalidInput, NotFound, TooLarge
from ..hub import Hub
from ..protocol import HANDSHAKE_TIMEOUT, encode
from . import _frames
from ._streams import linger, peer_of
from ._tls import open_tls
from ._websocket import WorkerSocket, serve_worker

__all__ = ["serve_lean_connection", "serve_worker_port"]

log = logging.getLogger("workyard.ws")

PATH = "/work/queue"
RECEIVE_BYTES = 64 * 1024
#: buffered outgoing bytes beyond which `send` waits for the peer to take them
HIGH_WATER = 1024 * 1024


class ConnectionEnded(Exception):
    """The WebSocket connection is over (closed by either side, or the stream broke)."""


class _LeanSocket:
    """One server-side wsproto connection on a trio stream; a `WorkerSocket` once
    upgraded."""

    def __init__(self, stream: trio.abc.Stream, settings: Settings) -> None:
        self._stream = stream
        self._settings = settings
        self._ws = WSConnection(ConnectionType.SERVER)
        self._out = bytearray()
        self._has_output = trio.Event()
        self._send_lock = trio.Lock()
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self._part_bytes = 0
        self._pong = trio.Event()
        #: received bytes of an incomplete frame, while `_frames` reads the stream
        self._pending = bytearray()
        #: `_frames` reads the stream (False: wsproto does, from the first frame
        #: `_frames` leaves to it on)
        self._fast = True
        #: answered with an HTTP error instead of upgrading
        self._refused = False

    @property
    def _open(self) -> bool:
        return self._ws.state is ConnectionState.OPEN

    # --- writing -----------------------------------------------------------------------

    def queue(self, event: Event) -> None:
        """Buffer `event`'s bytes for the writer."""
        self._out += self._ws.send(event)
        self._has_output.set()

    async def flush(self) -> None:
        """Send everything buffered so far."""
        async with self._send_lock:
            # a cancellation must come before the buffer is taken, or its bytes (a close
            # frame, say) would be lost instead of left for `wind_up`
            await trio.lowlevel.checkpoint_if_cancelled()
            if self._out:
                data, self._out = self._out, bytearray()
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise ConnectionEnded("the stream broke") from exc

    async def write_forever(self) -> None:
        """The writer: whatever was buffered since its last send goes out in one."""
        while True:
            await self._has_output.wait()
            self._has_output = trio.Event()
            await self.flush()

    async def send(self, frame: str | bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self._open:
            raise ConnectionEnded("the connection is closing")
        self._buffer(_frames.TEXT, frame.encode() if isinstance(frame, str) else frame)
        if len(self._out) > HIGH_WATER:  # a slow reader: wait for it
            await self.flush()

    async def refuse(self, status: int, body: bytes) -> None:
        """Answer the upgrade request with an HTTP error and a JSON `body`; the
        connection ends with it."""
        self.queue(RejectConnection(status_code=status, has_body=True, headers=[
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
            (b"connection", b"close")]))
        self.queue(RejectData(data=body))
        self._refused = True
        await self.flush()

    # --- reading -----------------------------------------------------------------------

    async def _receive_some(self) -> bytes:
        try:  # a socket's read, or ssl's: bytes, though any Stream may return a bytearray
            return cast(bytes, await self._stream.receive_some(RECEIVE_BYTES))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionEnded("the stream broke") from exc

    async def _read(self) -> None:
        """Take in one read (the end of the stream too): its common frames here, the
        rest through wsproto."""
        data = await self._receive_some()
        if self._ws.state is ConnectionState.CLOSED:
            raise ConnectionEnded("the connection is closed")
        if self._fast:
            if data and self._open:
                self._pending += data
                frames, used, leave = _frames.split_frames(self._pending,
                                                           self._settings.max_frame)
                del self._pending[:used]
                for first, payload in frames:
                    self._take_frame(first, payload)
                if not leave:
                    return
                # a frame for wsproto: it reads from that frame's first byte on
                data, self._pending = bytes(self._pending), bytearray()
            elif self._pending:  # the end of the stream, or a close under way
                self._ws.receive_data(bytes(self._pending))
                self._pending.clear()
            self._fast = False
        self._ws.receive_data(data or None)  # None: the peer closed the stream
        for event in self._ws.events():
            self._take(event)

    def _take_frame(self, first: int, payload: bytes) -> None:
        """Act on one frame `_frames` read (UTF-8 text, a ping or a pong)."""
        if first == _frames.TEXT:
            self._messages.append(payload)
        elif first == _frames.PING:
            if self._open:
                self._buffer(_frames.PONG, payload)
        else:
            self._pong.set()

    def _buffer(self, first: int, payload: bytes) -> None:
        """Add a frame `_frames` writes (a text message, a pong) to the output."""
        self._out += _frames.frame(first, payload)
        self._has_output.set()

    async def request(self, received: bytes = b"") -> Request | None:
        """The upgrade request, read from `received` (bytes already taken off the stream)
        and then from the stream; None if the peer sent none in time (or left)."""
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            data = received or await self._receive_some()
            while data:
                self._ws.receive_data(data)
                for event in self._ws.events():
                    if isinstance(event, Request):
                        return event
                data = await self._receive_some()
        return None

    def _take(self, event: Event) -> None:
        """Act on one event of an upgraded connection."""
        if isinstance(event, Message):
            self._part_bytes += len(event.data)
            if self._part_bytes > self._settings.max_frame:
                if self._open:
                    too_big = TooLarge("message too big")
                    self.queue(CloseConnection(too_big.close_code, too_big.reason))
                return
            self._parts.append(event.data)
            if event.message_finished:
                parts, self._parts, self._part_bytes = self._parts, [], 0
                self._messages.append("".join(cast(list[str], parts))
                                      if isinstance(event, TextMessage)
                                      else b"".join(cast(list[bytes], parts)))
        elif isinstance(event, Ping):
            if self._open:
                self.queue(event.response())
        elif isinstance(event, Pong):
            self._pong.set()
        elif isinstance(event, CloseConnection) and self._ws.state in (
                ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            self.queue(event.response())

    async def receive(self) -> str | bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._messages:
            if not self._open:
                raise ConnectionEnded("the connection is closing")
            await self._read()
        return self._messages.popleft()

    # --- closing -----------------------------------------------------------------------

    async def close(self, code: int, reason: str) -> None:
        """Send a close frame and await the peer's, for at most `ping_timeout`."""
        with trio.move_on_after(self._settings.ping_timeout):
            try:
                if self._open:
                    self.queue(CloseConnection(code, reason))
                await self.flush()
                while self._ws.state is not ConnectionState.CLOSED:
                    await self._read()
            except ConnectionEnded:
                pass

    async def wind_up(self) -> None:
        """Send what is still buffered (a close frame, a refusal), without waiting long;
        after an HTTP answer (a refusal), also linger: end our side and drop what the
        peer still sends, briefly, so that it gets to read the answer."""
        with trio.move_on_after(self._settings.ping_timeout):
            try:
                await self.flush()
            except ConnectionEnded:
                return
        if self._refused:
            await linger(self._stream)

    # --- liveness ----------------------------------------------------------------------

    async def ping(self) -> None:
        """Send a ping; return once its pong arrives (through `receive`, which the worker
        protocol always awaits while the worker is connected)."""
        self._pong = trio.Event()
        if not self._open:
            raise ConnectionEnded("the connection is closing")
        self.queue(Ping(b"workyard"))
        await self._pong.wait()


class _LeanUpgrade:
    """A wsproto upgrade request as a `WorkerUpgrade`."""

    def __init__(self, socket: _LeanSocket, request: Request, query: str,
                 nursery: trio.Nursery) -> None:
        self._socket = socket
        self._nursery = nursery
        self.args = MultiDict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        self.headers = Headers([(k.decode("latin-1"), v.decode("latin-1"))
                                for k, v in request.extra_headers])

    async def refuse(self, status: int, body: bytes) -> None:
        await self._socket.refuse(status, body)

    async def accept(self) -> WorkerSocket:
        self._socket.queue(AcceptConnection())
        return self._socket


async def serve_lean_connection(hub: Hub, auth: Auth, settings: Settings,
                                stream: trio.abc.Stream, received: bytes = b"") -> None:
    """Serve one connection from its upgrade request to its end, then close it.

    `received` is what was already read from `stream` (the main port's front door reads
    the request head to route it); `stream` is a socket stream, or TLS over one. A
    request that is no WebSocket upgrade gets a 400, one for another path a 404; a
    failure is logged here once and ends only this connection.
    """
    async with stream:
        socket = _LeanSocket(stream, settings)
        try:
            await _serve(socket, hub, auth, received)
        except* ConnectionEnded:
            pass  # the peer went away: the worker is already detached
        except* Exception:  # one connection's failure must not take the server down
            log.exception("worker connection from %s failed", peer_of(stream))
        await socket.wind_up()


async def _serve(socket: _LeanSocket, hub: Hub, auth: Auth, received: bytes) -> None:
    try:
        request = await socket.request(received)
    except RemoteProtocolError as exc:  # an HTTP request, but no WebSocket upgrade
        refused = InvalidInput(f"expected a WebSocket upgrade: {exc}")
        await socket.refuse(refused.status, encode(refused.body()))
        return
    if request is None:
        return
    path, _, query = request.target.partition("?")
    if path != PATH:
        elsewhere = NotFound(f"no WebSocket endpoint at {path[:100]}: workers connect to {PATH}")
        await socket.refuse(elsewhere.status, encode(elsewhere.body()))
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(socket.write_forever)
        await serve_worker(_LeanUpgrade(socket, request, query, nursery), hub, auth)
        nursery.cancel_scope.cancel()  # stop the writer and the pings


async def serve_worker_port(
    hub: Hub,
    auth: Auth,
    settings: Settings,
    listener: socket.socket,
    *,
    tls: ssl.SSLContext | None = None,
    handler: Callable[[trio.abc.Stream, bytes], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `/work/queue`, and nothing else, on `listener` (a bound, listening socket)
    until cancelled: the optional `--worker-port`; over TLS with `tls`. `handler` serves
    each connection instead (a follower's relay picks per connection)."""
    serve = handler or partial(serve_lean_connection, hub, auth, settings)

    async def handle(stream: trio.SocketStream) -> None:
        if tls is None:
            await serve(stream, b"")
            return
        async with stream:
            secure = await open_tls(stream, tls, peer_of(stream))
            if secure is not None:
                await serve(secure, b"")

    listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(listener))]
    await trio.serve_listeners(handle, listeners, task_status=task_status)
