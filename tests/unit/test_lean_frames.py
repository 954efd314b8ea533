"""The lean WebSocket server's own frame reading (`_frames.py`) and its hand-off to
wsproto: every frame it does not read itself reaches wsproto whole, in order."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Ping, Pong, Request, TextMessage

from workyard._config import Settings
from workyard.transports import _frames
from workyard.transports._lean import _LeanSocket


def _client_frame(first: int, payload: bytes, *, masked: bool = True) -> bytes:
    """A client frame as RFC 6455 writes it (masked, unless told otherwise)."""
    size = len(payload)
    if size < 126:
        head = bytes((first, (0x80 if masked else 0) | size))
    else:
        head = bytes((first, (0x80 if masked else 0) | 126)) + size.to_bytes(2, "big")
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_whole_text_frames_pings_and_pongs_are_split_and_unmasked() -> None:
    data = (_client_frame(_frames.TEXT, b'{"a": 1}') + _client_frame(_frames.PING, b"p")
            + _client_frame(_frames.TEXT, "é".encode() * 100)
            + _client_frame(_frames.PONG, b""))
    frames, used, leave = _frames.split_frames(data, 1 << 20)
    assert frames == [(_frames.TEXT, b'{"a": 1}'), (_frames.PING, b"p"),
                      (_frames.TEXT, "é".encode() * 100), (_frames.PONG, b"")]
    assert (used, leave) == (len(data), False)


def test_an_incomplete_frame_waits_for_more_bytes() -> None:
    whole = _client_frame(_frames.TEXT, b"x" * 300)
    for cut in (1, 3, 10, len(whole) - 1):
        assert _frames.split_frames(whole[:cut], 1 << 20) == ([], 0, False)


@pytest.mark.parametrize("other", [
    _client_frame(0x88, b"\x03\xe8"),  # a close
    _client_frame(0x01, b"part"),  # the first fragment of a message
    _client_frame(0x82, b"\x00"),  # binary
    _client_frame(0xC1, b"x"),  # RSV1 set
    _client_frame(_frames.TEXT, b"x", masked=False),
    _client_frame(_frames.TEXT, b"\xff\xfe"),  # not UTF-8
    _client_frame(_frames.TEXT, b"y" * 65),  # beyond the limit below
    bytes((_frames.TEXT, 0x80 | 126, 0, 5)) + b"mask" + b"short",  # not the shortest length
])
def test_the_split_stops_at_the_first_frame_it_leaves_to_wsproto(other: bytes) -> None:
    first = _client_frame(_frames.TEXT, b"ok")
    frames, used, leave = _frames.split_frames(first + other + first, 64)
    assert (frames, used, leave) == ([(_frames.TEXT, b"ok")], len(first), True)


def test_a_server_frame_is_its_header_and_payload() -> None:
    assert _frames.frame(_frames.TEXT, b"hi") == b"\x81\x02hi"
    assert _frames.frame(_frames.TEXT, b"x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert _frames.frame(_frames.TEXT, b"x" * 70_000)[:10] == (
        b"\x81\x7f" + (70_000).to_bytes(8, "big"))


async def test_messages_arrive_in_order_across_the_hand_off_to_wsproto() -> None:
    client_end, server_end = trio.testing.memory_stream_pair()
    socket = _LeanSocket(server_end, Settings())
    client = WSConnection(ConnectionType.CLIENT)

    async def client_sends(*events: object) -> None:
        await client_end.send_all(b"".join(client.send(e) for e in events))  # type: ignore[arg-type]

    async def client_receives() -> list[object]:
        client.receive_data(await client_end.receive_some())
        return list(client.events())

    with trio.fail_after(5):
        await client_sends(Request(host="hub", target="/work/queue"))
        assert isinstance(await socket.request(), Request)
        socket.queue(AcceptConnection())
        await socket.flush()
        assert any(isinstance(e, AcceptConnection) for e in await client_receives())

        await client_sends(TextMessage("first"), Ping(b"are you there"))
        assert await socket.receive() == b"first"  # read by `_frames`
        await socket.flush()
        assert [type(e) for e in await client_receives()] == [Pong]
        await client_sends(TextMessage("se", message_finished=False), TextMessage("cond"),
                           TextMessage("third"))
        received = [await socket.receive() for _ in range(2)]  # read by wsproto
        await socket.send("back")
        await socket.flush()
        echoed = await client_receives()
    assert received == ["second", "third"]
    assert [(type(e), e.data) for e in echoed if isinstance(e, Message)] == [
        (TextMessage, "back")]
