"""TLS on every listener (`--certfile`, `--keyfile`): one server context for the main
port and the worker port, and each connection's handshake, done before anything reads
a request from it.

With TLS on, a client that speaks plain HTTP to the port (its first byte is not a TLS
handshake record) is answered `400` in plain HTTP, saying to use https://, and the
connection is closed: a clear refusal instead of a handshake error it cannot read. A
handshake that fails or does not finish within `HANDSHAKE_TIMEOUT` ends that connection
only, with one line in the log.
"""

from __future__ import annotations

import logging
import socket
import ssl

import trio

from .._config import Settings
from .._errors import InvalidInput, InvalidSetting
from ..protocol import HANDSHAKE_TIMEOUT, encode
from ._streams import linger

__all__ = ["open_tls", "server_context"]

log = logging.getLogger("workyard.server")

#: the first byte of every TLS connection (a handshake record's content type)
HANDSHAKE_RECORD = 0x16
#: ALPN: HTTP/2 for the clients that offer it (hypercorn), HTTP/1.1 for the rest
ALPN = ["h2", "http/1.1"]
PLAIN_HTTP = InvalidInput("this port speaks TLS: use https:// (wss:// for WebSocket workers)")


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of every listener, None without `--certfile`. Raises
    InvalidSetting, naming the flags, for a certificate without its key (or the reverse)
    and for files that cannot be read or are no certificate and matching key."""
    cert, key = settings.certfile, settings.keyfile
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--certfile", "--keyfile") if key is None else ("--keyfile", "--certfile")
        raise InvalidSetting(f"{given} is set but {missing} is not: TLS needs both (a PEM "
                             "file holding the certificate and its key can be given to both)")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_alpn_protocols(ALPN)
    where = f"--certfile {cert} --keyfile {key}"
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:
        if isinstance(exc, ssl.SSLError):
            why = f" ({exc.reason.lower().replace('_', ' ')})" if exc.reason else ""
            raise InvalidSetting(f"{where}: not a PEM certificate chain and its private "
                                 f"key{why}") from None
        unreadable = cert if _unreadable(cert) else key
        raise InvalidSetting(f"{where}: cannot read {unreadable} "
                             f"({exc.strerror or exc})") from None
    return context


def _unreadable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return False
    except OSError:
        return True


async def open_tls(stream: trio.SocketStream, context: ssl.SSLContext,
                   peer: object) -> trio.SSLStream[trio.SocketStream] | None:
    """`stream` as TLS, its handshake done; None when the connection is to be closed: the
    peer left, spoke plain HTTP (it was told to use https://), or its handshake failed or
    was too slow (logged once, with `peer`)."""
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            first = await stream.socket.recv(1, socket.MSG_PEEK)  # left for the handshake
            if first and first[0] == HANDSHAKE_RECORD:
                tls = trio.SSLStream(stream, context, server_side=True, https_compatible=True)
                await tls.do_handshake()
                return tls
    except trio.TooSlowError:
        log.info("TLS connection from %s closed: no handshake within %g s", peer,
                 HANDSHAKE_TIMEOUT)
        return None
    except (trio.BrokenResourceError, OSError) as exc:
        log.info("TLS handshake with %s failed: %s", peer, exc.__cause__ or exc)
        return None
    if first:
        await _refuse_plain(stream)
    return None


async def _refuse_plain(stream: trio.SocketStream) -> None:
    """Answer a plain HTTP client in plain HTTP: 400, with the reason."""
    body = encode(PLAIN_HTTP.body())
    head = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    with trio.move_on_after(HANDSHAKE_TIMEOUT):
        try:
            await stream.send_all(head + body)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
    await linger(stream)
