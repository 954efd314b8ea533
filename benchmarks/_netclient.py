"""Lean WebSocket and HTTP/1.1 clients for the benchmarks: plain sockets, one epoll loop.

The benchmarks measure the hub, so the clients must cost far less per message
than the server they drive. Each client process runs many connections in one
`selectors` loop; WebSocket frames (RFC 6455: text frames, ping → pong) and
HTTP/1.1 keep-alive exchanges are parsed and built by hand. The same machinery
drives the hub's workers and the bare echo server that gives the ceiling, so the
two figures are comparable.
"""

from __future__ import annotations

import base64
import os
import selectors
import socket
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Conn", "HttpConn", "connect", "connect_http", "encode_frame", "run_loop"]

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


def encode_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """A final, masked client frame (clients must mask; the key is random per frame)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    repeated = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    return head + mask + masked


class _Stream:
    """A non-blocking socket with a receive buffer and an output buffer."""

    __slots__ = ("buf", "closed", "out", "sock")

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(rest)
        self.out = bytearray()
        self.closed = False

    def _read(self) -> bool:
        """Append what arrived to `buf`. False once the peer closed."""
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return True
        except ConnectionError:
            data = b""
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def feed(self) -> bool:
        """Read what arrived and handle complete messages. False once the peer closed."""
        return self._read() and self.parse()

    def parse(self) -> bool:
        """Handle the complete messages in `buf`. False once the peer closed."""
        raise NotImplementedError

    def flush(self) -> None:
        out = self.out
        while out:
            try:
                sent = self.sock.send(out)
            except BlockingIOError:
                # Rare with small frames: finish the write blocking rather than
                # tracking writability; the peer is reading.
                self.sock.setblocking(True)
                try:
                    self.sock.sendall(out)
                finally:
                    self.sock.setblocking(False)
                sent = len(out)
            del out[:sent]


class Conn(_Stream):
    """One WebSocket connection; `on_message(conn, payload)` gets each message."""

    __slots__ = ("fragments", "on_message", "pending")

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        super().__init__(sock, rest)
        self.fragments: list[bytes] = []
        #: room for a role's own per-connection state (e.g. answers not yet sent)
        self.pending: list[bytes] = []
        self.on_message: Callable[[Conn, bytes], None] = lambda conn, msg: None

    def send(self, payload: bytes) -> None:
        """Queue a text frame; `flush` writes everything queued in one system call."""
        self.out += encode_frame(payload)

    def parse(self) -> bool:
        buf = self.buf
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            head = 2
            if n == 126:
                if end - pos < 4:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 4], "big")
                head = 4
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                head = 10
            if b1 & 0x80:  # servers do not mask; tolerate it anyway
                head += 4
            if end - pos < head + n:
                break
            payload = bytes(buf[pos + head:pos + head + n])
            if b1 & 0x80:
                key = buf[pos + head - 4:pos + head]
                payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            pos += head + n
            opcode = b0 & 0x0F
            if opcode == PING:
                self.out += encode_frame(payload, PONG)
            elif opcode == CLOSE:
                self.closed = True
                del buf[:pos]
                return False
            elif opcode in (0x0, 0x1, 0x2):
                if not b0 & 0x80:
                    self.fragments.append(payload)
                    continue
                if self.fragments:
                    self.fragments.append(payload)
                    payload = b"".join(self.fragments)
                    self.fragments = []
                self.on_message(self, payload)
        del buf[:pos]
        return True


class HttpConn(_Stream):
    """One HTTP/1.1 keep-alive connection, one request at a time.

    `on_response(conn, status, body)` gets each response; responses must carry a
    Content-Length (the hub's do).
    """

    __slots__ = ("host", "on_response")

    def __init__(self, sock: socket.socket, host: str) -> None:
        super().__init__(sock, b"")
        self.host = host
        self.on_response: Callable[[HttpConn, int, bytes], None] = lambda conn, s, b: None

    def request(self, method: str, target: str, body: bytes = b"") -> None:
        """Queue a request; `flush` writes it."""
        self.out += (f"{method} {target} HTTP/1.1\r\nHost: {self.host}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                     ).encode() + body

    def parse(self) -> bool:
        buf = self.buf
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                return True
            head = bytes(buf[:head_end]).split(b"\r\n")
            status = int(head[0].split(b" ", 2)[1])
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(buf) < head_end + 4 + length:
                return True
            body = bytes(buf[head_end + 4:head_end + 4 + length])
            del buf[:head_end + 4 + length]
            self.on_response(self, status, body)


def _open_socket(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def connect_http(host: str, port: int, *, timeout: float = 30.0) -> HttpConn:
    sock = _open_socket(host, port, timeout)
    sock.setblocking(False)
    return HttpConn(sock, f"{host}:{port}")


def connect(host: str, port: int, path: str, *, timeout: float = 30.0) -> Conn:
    """Open a WebSocket (blocking handshake), then switch the socket to non-blocking."""
    sock = _open_socket(host, port, timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"{host}:{port}{path}: closed during the handshake")
        response += chunk
    head, _, rest = response.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        raise ConnectionError(f"{host}:{port}{path}: {status.decode(errors='replace')}")
    sock.setblocking(False)
    return Conn(sock, rest)


def run_loop(conns: Sequence[_Stream], until: Callable[[], bool], *, tick: float = 0.05,
             after_feed: Callable[[Any], None] | None = None) -> None:
    """Serve `conns` until `until()` is true (checked at least every `tick` seconds).

    `after_feed(conn)` runs after each read, before the connection's output is flushed.
    """
    sel = selectors.DefaultSelector()
    for conn in conns:
        sel.register(conn.sock, selectors.EVENT_READ, conn)
        conn.parse()  # frames that came with the handshake's response
        conn.flush()
    try:
        while not until():
            for key, _ in sel.select(tick):
                conn = key.data
                if not conn.feed():
                    sel.unregister(conn.sock)
                    continue
                if after_feed is not None:
                    after_feed(conn)
                if conn.out:
                    conn.flush()
    finally:
        sel.close()
