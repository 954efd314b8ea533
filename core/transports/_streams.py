"""What every listener does with a raw connection, whatever serves it: name its peer
for the log, and linger after an HTTP refusal so the peer gets to read it."""

from __future__ import annotations

from typing import Any

import trio

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "linger", "peer_of"]

#: after a refusal, seconds (and bytes) of the peer's further input read and dropped
#: before closing, so that closing with unread input (which sends a TCP reset) cannot
#: destroy the refusal before the peer has read it
LINGER_SECONDS = 1.0
LINGER_BYTES = 64 * 1024


def peer_of(stream: trio.abc.Stream) -> object:
    """The peer's address, for the log, of a socket stream or a TLS stream over one."""
    transport: Any = getattr(stream, "transport_stream", stream)
    try:
        return transport.socket.getpeername()
    except (OSError, AttributeError):
        return "a peer already gone"


async def linger(stream: trio.abc.Stream) -> None:
    """End our side (when the stream can half-close; TLS cannot) and drop what the peer
    still sends, briefly, so that it gets to read the answer we sent."""
    with trio.move_on_after(LINGER_SECONDS):
        try:
            if isinstance(stream, trio.abc.HalfCloseableStream):
                await stream.send_eof()
            dropped = 0
            while dropped < LINGER_BYTES and (data := await stream.receive_some(LINGER_BYTES)):
                dropped += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
