"""The WebSocket frames of an open worker connection's steady state, read and written
without wsproto's per-frame machinery.

A worker's connection spends its life on three kinds of frame: whole text messages
(tasks and answers), pings and pongs. wsproto turns each into a Frame, an event and
a few generator steps; here a read of many frames is split in one loop over the
buffer. Anything else — a close, a fragment, a binary or reserved frame, an unmasked
or oversized one, a non-minimal length, text that is not UTF-8 — stops the split at
that frame, and the caller hands the rest of the stream to wsproto, which knows the
protocol in full (and refuses a bad frame with the right close code). The split
never goes past a frame it does not understand and only takes whole (FIN) messages,
so wsproto always starts at a frame boundary, between messages; until then it has
read nothing of the stream after the upgrade (a server-side wsproto connection
starts its frame reader empty), so its state is as if it had read every frame.

Server frames are never masked, so writing one is a header and the payload.
"""

from __future__ import annotations

__all__ = ["PING", "PONG", "TEXT", "frame", "split_frames"]

#: first bytes (FIN, no RSV bits, opcode) of the frames the fast path reads and writes
TEXT, PING, PONG = 0x81, 0x89, 0x8A
_ACCEPTED = frozenset({TEXT, PING, PONG})
_MASKED = 0x80
_MAX_CONTROL = 125


def frame(first: int, payload: bytes | bytearray) -> bytes:
    """A server (unmasked) frame: `first` is its first byte (e.g. TEXT)."""
    size = len(payload)
    if size < 126:
        head = bytes((first, size))
    elif size < 1 << 16:
        head = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((first, 127)) + size.to_bytes(8, "big")
    return head + payload


def _unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little")


def split_frames(data: bytes | bytearray, limit: int
                 ) -> tuple[list[tuple[int, bytes]], int, bool]:
    """The complete common client frames at the start of `data`.

    Returns (first byte, unmasked payload) for each, how many bytes they took, and
    whether the split stopped at a frame it leaves to wsproto (False: at the end of
    `data`, or inside an incomplete frame that needs more bytes). Text payloads longer
    than `limit` bytes are left to wsproto too (the caller's size check reads them).
    """
    frames: list[tuple[int, bytes]] = []
    end = len(data)
    at = 0
    while end - at >= 2:
        first, second = data[at], data[at + 1]
        if first not in _ACCEPTED or not second & _MASKED:
            return frames, at, True
        size = second & 0x7F
        head = at + 2
        if size >= 126:
            if first != TEXT:  # a control frame's payload is at most 125 bytes
                return frames, at, True
            width = 2 if size == 126 else 8
            if end - head < width:
                break
            size = int.from_bytes(data[head:head + width], "big")
            head += width
            if size < (126 if width == 2 else 1 << 16) or size >= 1 << 63:
                return frames, at, True  # not the shortest form: wsproto refuses it
        if size > (limit if first == TEXT else _MAX_CONTROL):
            return frames, at, True
        stop = head + 4 + size
        if stop > end:
            break
        payload = _unmask(data[head + 4:stop], data[head:head + 4])
        if first == TEXT and not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return frames, at, True
        frames.append((first, payload))
        at = stop
    return frames, at, False
