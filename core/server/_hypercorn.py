"""hypercorn's trio worker, one connection at a time.

`hypercorn.trio.serve` owns its listening sockets and accepts connections itself, but
the main port's front door (`_front.py`) must read each request's head before it knows
whether hypercorn should see the connection at all. So this runs hypercorn's own pieces
instead: `Lifespan` (quart's `before_serving` hooks), a `WorkerContext`, and a
`TCPServer` per connection handed over, with the bytes the front door already read
replayed first. These are hypercorn internals, which is why pyproject pins
`hypercorn==0.18.0`: `run` and `serve_connection` are that version's
`hypercorn.trio.run.worker_serve` minus what the hub never used there (QUIC, statsd,
`max_requests`, a shutdown trigger) and TLS, whose handshake the front door has done.
Two of hypercorn's classes are amended here, for responses that go out before their
request's body is in (`_TCPServer`: the connection's close; `_H2Protocol`: the body's
late DATA). Check all of it against `worker_serve`, `TCPServer` (`__init__`, `run`,
`_close`) and `H2Protocol._handle_events` before changing the pin.

Shutdown is cancellation, as it was under `hypercorn.trio.serve`: the CLI cancels
`serve` on SIGINT or SIGTERM, and a cancelled `worker_serve` never reached its
graceful phase (`graceful_timeout`, lifespan shutdown) either. Open connections are
cancelled with the rest, and the hub flushes its store on the way out.
"""

from __future__ import annotations

from typing import Any

import h2.events
import hypercorn.protocol
import trio
from hypercorn.config import Config
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState, LifespanState
from hypercorn.utils import wrap_app
from quart_trio import QuartTrio

__all__ = ["HTTPServer"]


class _Replayed(trio.abc.Stream):
    """A stream (a socket stream, or TLS over one) whose first read returns bytes already
    taken off it.

    hypercorn's `TCPServer` tells TLS from plain TCP by what the stream has: it calls
    `do_handshake` (a TLS stream's, already done, returns at once), then reads the ALPN
    protocol and the peer's address off `transport_stream.socket`; a stream without
    `do_handshake` is plain, and its address comes from `.socket`. So everything but the
    reads is the wrapped stream's own, attribute for attribute — `send_eof` included,
    which a TLS stream does not have (TCPServer expects that AttributeError) — and the
    ASGI scope's `scheme` comes out http or https, ws or wss, as it would under
    hypercorn's own listeners.
    """

    def __init__(self, stream: trio.abc.Stream, received: bytes) -> None:
        self._stream = stream
        self._received = received

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._received:
            data, self._received = self._received, b""
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self._stream.aclose()


class _TCPServer(TCPServer):
    """hypercorn's `TCPServer`, whose closing of the connection cannot be lost.

    When a response goes out before its request's body is in (a 408 for a body that
    trickles in past `BODY_TIMEOUT`, a 413), hypercorn closes the connection from the
    task that sent the response, the app's — which quart-trio cancels the moment the
    response is out. The close was cancelled at its first checkpoint, halfway: the
    connection stayed open, reading the rest of the body and any request after it, and
    answering nothing. Shielded, the close is done whichever task asks for it; it cannot
    hang there, as it waits for nothing from the peer (`send_eof` is a shutdown, and
    `aclose` closes the socket, TLS streams being https-compatible: no close_notify
    awaited) — which is why hypercorn's own idle-timeout close is shielded too.
    """

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            await super()._close()


class _H2Protocol(H2Protocol):
    """hypercorn's HTTP/2 protocol, which drops the body of a stream it has closed.

    A response may go out before its request's body is in (a 408, a 413, a refusal
    that never reads the body); hypercorn then forgets the stream, and the body's next
    DATA frame raised KeyError — ending the connection and every stream on it, with a
    traceback. hypercorn already ignores such a stream's end (StreamEnded); its DATA
    is acknowledged (flow control: the connection's window must not shrink) and dropped.
    """

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        batch: list[h2.events.Event] = []
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                await super()._handle_events(batch)  # it may open that stream
                batch = []
                if event.stream_id not in self.streams:
                    self.connection.acknowledge_received_data(event.flow_controlled_length,
                                                              event.stream_id)
                    continue
            batch.append(event)
        await super()._handle_events(batch)


#: hypercorn's ProtocolWrapper picks its HTTP/2 protocol by this name, whether by ALPN
#: (TLS), prior knowledge or an h2c upgrade
hypercorn.protocol.H2Protocol = _H2Protocol  # type: ignore[misc]


class HTTPServer:
    """The app over HTTP/1.1 and HTTP/2 (h2c), for the connections it is handed. `run`
    holds the app's lifespan and must be started before any connection is served."""

    def __init__(self, app: QuartTrio, config: Config) -> None:
        self._app = wrap_app(app, config.wsgi_max_body_size, "asgi")
        self._config = config
        self._state: LifespanState = {}
        self._context = WorkerContext(None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the app (its `before_serving` hooks run here), then hold it until
        cancelled."""
        lifespan = Lifespan(self._app, self._config, self._state)
        async with trio.open_nursery() as nursery:
            await nursery.start(lifespan.handle_lifespan)
            await lifespan.wait_for_startup()
            task_status.started()
            await trio.sleep_forever()

    async def serve_connection(self, stream: trio.abc.Stream, received: bytes) -> None:
        """Serve one connection until it ends; `received` is what was already read."""
        replayed = _Replayed(stream, received)  # annotated SSLStream, used as any stream
        await _TCPServer(self._app, self._config, self._context,
                         ConnectionState(self._state.copy()), replayed)  # type: ignore[arg-type]
