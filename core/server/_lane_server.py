"""HTTP/1.1 connections of the fast lane (`http/_lane.py`), parsed with h11 alone.

The front door hands a connection here when its first request is a lane route (its
head complete). Each request is then parsed by h11, its body read whole (within
`--max-body` and quart's body timeout, answering `Expect: 100-continue`), its
handler run, and the answer written here in one send. The socket is watched while a
handler runs only for a route that `waits` (a long poll): a client that leaves
cancels it, as hypercorn and quart do, so a poll cut off gives its tasks back. Any
other handler runs to its end; a client gone meanwhile is seen when its answer is
sent or the next request read. A keep-alive connection stays here while its requests are the
lane's; the first one that is not (or that h11 refuses, or HEAD and OPTIONS) is
handed to hypercorn with its bytes unread, so hypercorn answers it, and the rest of
the connection, exactly as it would have.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote
from wsgiref.handlers import format_date_time

import h11
import trio
import werkzeug.urls  # noqa: F401 - registers the "werkzeug.url_quote" codec error handler
from werkzeug.datastructures import Headers, ImmutableMultiDict
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge, RequestTimeout

from ..http._lane import Lane, LaneRequest, LaneResponse, Route
from ..transports._streams import peer_of
from ._front import HEAD_TIMEOUT, MAX_HEAD, RECEIVE_BYTES, ConnectionHandler, head_end

__all__ = ["LaneServer"]

#: no answer but the status for a body h11 cannot read (hypercorn answers the same)
_BAD_REQUEST = b"HTTP/1.1 400 \r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
#: statuses that have no body, hence no content-length
_NO_BODY = frozenset({204, 304})
#: the args of a request without a query (most of them), shared: they cannot change
_NO_ARGS: ImmutableMultiDict[str, str] = ImmutableMultiDict()


class _HandOver(Exception):
    """This request is not the lane's after all: hypercorn takes the connection."""


class _Gone(Exception):
    """The client left (or broke the protocol): the connection ends here."""


class LaneServer:
    """Serves the lane's routes on connections handed over by the front door."""

    def __init__(self, lane: Lane, fallback: ConnectionHandler, *, max_body: int,
                 body_timeout: float, keep_alive: float,
                 serves: Callable[[str, str], bool] | None = None) -> None:
        self.lane = lane
        #: whether this hub answers (method, path) itself now; when not (a follower's
        #: routes that go to the leader), the request is hypercorn's, which relays it
        self.serves = serves
        self.fallback = fallback
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.keep_alive = keep_alive
        self._date = (0, b"")

    def takes(self, data: bytes) -> bool | None:
        """Whether `data`, the start of a request, is a lane route with its head complete;
        None while that is not known yet."""
        lane = self.lane
        line_end = data.find(b"\n")
        if line_end < 0:
            if len(data) >= MAX_HEAD:
                return False
            could = any((m + b" ").startswith(data) if len(data) <= len(m) else
                        data.startswith(m + b" ") for m in lane.methods)
            return None if could else False
        parts = data[:line_end].rstrip(b"\r").split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or \
                parts[0] not in lane.methods:
            return False
        try:
            path = unquote(parts[1].partition(b"?")[0].decode("ascii"))
        except UnicodeDecodeError:
            return False
        method = parts[0].decode()
        if not path.startswith("/") or lane.match(method, path) is None:
            return False
        if self.serves is not None and not self.serves(method, path):
            return False
        if head_end(data) < 0:
            return None if len(data) < MAX_HEAD else False
        return True

    async def serve_connection(self, stream: trio.abc.Stream, received: bytes) -> None:
        address = peer_of(stream)
        peer = address[0] if isinstance(address, tuple) else None
        buffer = received
        try:
            while True:
                buffer, takes = await self._next_head(stream, buffer)
                if not takes:
                    raise _HandOver
                buffer = await self._serve_one(stream, buffer, peer)
        except _HandOver:
            await self.fallback(stream, buffer)
        except (_Gone, trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _next_head(self, stream: trio.abc.Stream, buffer: bytes
                         ) -> tuple[bytes, bool]:
        """`buffer` and what follows until the request can be routed, and whether it is
        the lane's: the keep-alive timeout while nothing came, the head timeout once
        something did."""
        while (takes := self.takes(buffer)) is None:
            chunk = await _receive(stream, HEAD_TIMEOUT if buffer else self.keep_alive)
            if not chunk:
                raise _Gone
            buffer += chunk
        return buffer, takes

    async def _serve_one(self, stream: trio.abc.Stream, buffer: bytes,
                         peer: str | None) -> bytes:
        """Answer the request at the start of `buffer`; return the bytes after it."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        conn.receive_data(buffer)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            raise _HandOver from None  # hypercorn says what is wrong with it
        if not isinstance(event, h11.Request):
            raise _HandOver
        method = event.method.decode("ascii")
        raw_path, _, query = event.target.partition(b"?")
        path = unquote(raw_path.decode("ascii"))
        found = self.lane.match(method, path)
        if found is None:
            raise _HandOver
        route, view_args = found
        headers = Headers([(n.decode("latin-1"), v.decode("latin-1"))
                           for n, v in event.headers])
        body, refused = await self._read_body(stream, conn, headers)

        async def read_body() -> bytes:
            if refused is not None:
                raise refused
            return body

        args = ImmutableMultiDict(parse_qsl(query.decode("ascii"), keep_blank_values=True,
                                            errors="werkzeug.url_quote")) if query else _NO_ARGS
        request = LaneRequest(method, path, args, headers, view_args, peer, read_body)
        close = refused is not None or not _keeps_alive(event)
        pending = b""
        if route.waits and refused is None:  # the body is read: the socket is ours to watch
            close, pending = await self._answer_watched(stream, route, request, close)
        else:
            close = await self._answer(stream, route, request, close)
        if close or conn.their_state is not h11.DONE:
            raise _Gone  # Connection: close, HTTP/1.0, or a body left unread
        return conn.trailing_data[0] + pending

    async def _answer(self, stream: trio.abc.Stream, route: Route, request: LaneRequest,
                      close: bool) -> bool:
        """Run the handler and send its answer; whether the connection ends after it."""
        reply = await self.lane.answer(route, request)
        close = close or _closes(reply)
        await stream.send_all(self._encode(reply, close))
        return close

    async def _answer_watched(self, stream: trio.abc.Stream, route: Route,
                              request: LaneRequest, close: bool) -> tuple[bool, bytes]:
        """`_answer` while the socket is watched, so that a client that leaves cancels
        the handler; also what the client sent meanwhile."""
        pending = bytearray()
        sent = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch, stream, pending, nursery.cancel_scope)
            # sent before the watch is stopped: stopping it takes a scheduler round,
            # in which whatever else is ready (a store commit, say) would go first
            close = await self._answer(stream, route, request, close)
            sent = True
            nursery.cancel_scope.cancel()
        if not sent:
            raise _Gone  # the client left while its handler ran (or while it was sent)
        return close, bytes(pending)

    async def _read_body(self, stream: trio.abc.Stream, conn: h11.Connection,
                         headers: Headers) -> tuple[bytes, HTTPException | None]:
        """The whole body, or why it was refused (quart's 413 and 408)."""
        length = headers.get("content-length")
        if length is not None and int(length) > self.max_body:
            return b"", RequestEntityTooLarge()
        chunks: list[bytes] = []
        size = 0
        # The timeout's clock starts when the body is first waited for: most come
        # whole with the head, and need no cancel scope at all.
        deadline: float | None = None
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if deadline is None:
                        deadline = trio.current_time() + self.body_timeout
                    with trio.fail_at(deadline):
                        if conn.they_are_waiting_for_100_continue:
                            await stream.send_all(conn.send(
                                h11.InformationalResponse(status_code=100, headers=[])))
                        # h11 takes any bytes-like object (its docstring), though its
                        # annotation says bytes: a TLS stream's bytearray goes in uncopied
                        conn.receive_data(
                            await stream.receive_some(RECEIVE_BYTES))  # type: ignore[arg-type]
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > self.max_body:
                        return b"", RequestEntityTooLarge()
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks), None
                else:
                    raise _Gone
        except trio.TooSlowError:
            return b"", RequestTimeout()
        except h11.RemoteProtocolError:
            if conn.their_state is not h11.CLOSED and not conn.trailing_data[1]:
                await stream.send_all(_BAD_REQUEST)  # a malformed body, not a leaver
            raise _Gone from None

    def _encode(self, reply: LaneResponse, close: bool) -> bytes:
        """Head and body of the answer, for one send. Written here rather than by h11,
        whose checks of every header were a tenth of the lane's time for a ClearML
        report: the status and headers come from the lane's handlers, not clients."""
        head = [b"HTTP/1.1 %d \r\n" % reply.status]
        if reply.content_type is not None:
            head.append(b"content-type: %s\r\n" % reply.content_type.encode("ascii"))
        head.extend(b"%s: %s\r\n" % (name.encode("ascii"), value.encode("ascii"))
                    for name, value in reply.headers)
        if reply.status not in _NO_BODY:
            head.append(b"content-length: %d\r\n" % len(reply.body))
        head.append(b"date: %s\r\n" % self._now())
        if close and not _closes(reply):
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        if reply.status not in _NO_BODY:
            head.append(reply.body)
        return b"".join(head)

    def _now(self) -> bytes:
        """The Date header, formatted once a second."""
        second = int(time.time())
        if second != self._date[0]:
            self._date = (second, format_date_time(second).encode("ascii"))
        return self._date[1]


def _keeps_alive(request: h11.Request) -> bool:
    """Whether the client lets the connection be reused after this request (h11's rule:
    HTTP/1.1 without `Connection: close`)."""
    if request.http_version < b"1.1":
        return False
    return not any(name == b"connection" and b"close" in value.lower()
                   for name, value in request.headers)


def _closes(reply: LaneResponse) -> bool:
    """Whether the handler's answer ends the connection (`Connection: close`)."""
    return any(name.lower() == "connection" and "close" in value.lower()
               for name, value in reply.headers)


async def _receive(stream: trio.abc.Stream, timeout: float) -> bytes | bytearray:
    """`stream.receive_some` within `timeout` seconds, else `trio.TooSlowError`: a cancel
    scope of its own rather than `trio.fail_after`, whose context manager was a sixth
    of a keep-alive request's time in the lane."""
    with trio.CancelScope(deadline=trio.current_time() + timeout):
        return await stream.receive_some(RECEIVE_BYTES)
    raise trio.TooSlowError  # here only if the deadline cancelled the receive


async def _watch(stream: trio.abc.Stream, pending: bytearray,
                 scope: trio.CancelScope) -> None:
    """While a handler runs: keep what the client sends next, cancel the handler if the
    client leaves."""
    try:
        while len(pending) < RECEIVE_BYTES:
            chunk = await stream.receive_some(RECEIVE_BYTES)
            if not chunk:
                break
            pending += chunk
        else:
            await trio.sleep_forever()  # enough buffered: let the client wait
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()
