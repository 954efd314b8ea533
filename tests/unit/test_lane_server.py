"""The lane server on one in-memory connection: the answers it writes itself (read back
by h11 as a client would), keep-alive and its end, and which handlers a client that
leaves cancels."""

from __future__ import annotations

from collections.abc import AsyncIterator

import h11
import pytest
import trio
import trio.testing

from workyard.http._lane import Lane, LaneRequest, LaneResponse, json_reply
from workyard.server._lane_server import LaneServer


class _Handlers:
    """A lane whose handlers say what became of them."""

    def __init__(self) -> None:
        self.lane = Lane()
        self.release = trio.Event()
        self.started = trio.Event()
        self.outcomes: list[str] = []
        self.lane.route("POST", "/echo")(self.echo)
        self.lane.route("GET", "/empty")(self.empty)
        self.lane.route("POST", "/slow")(self.slow)
        self.lane.route("POST", "/poll", waits=True)(self.slow)

    async def echo(self, request: LaneRequest) -> LaneResponse:
        return json_reply({"body": (await request.body()).decode()}, 201)

    async def empty(self, request: LaneRequest) -> LaneResponse:
        return LaneResponse(204, content_type=None, headers=[("X-Seen", "yes")])

    async def slow(self, request: LaneRequest) -> LaneResponse:
        self.started.set()
        try:
            await self.release.wait()
        except trio.Cancelled:
            self.outcomes.append("cancelled")
            raise
        self.outcomes.append("finished")
        return json_reply({})


@pytest.fixture
async def served() -> AsyncIterator[tuple[_Handlers, trio.testing.MemoryStapledStream]]:
    handlers = _Handlers()

    async def nowhere(stream: object, received: bytes) -> None:
        raise AssertionError("every request here is the lane's")

    server = LaneServer(handlers.lane, nowhere, max_body=1024, body_timeout=5, keep_alive=5)
    client, hub = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            first = bytes(await hub.receive_some(65536))  # a socket gives bytes
            await server.serve_connection(hub, first)
            await hub.aclose()

        nursery.start_soon(serve)
        yield handlers, client
        nursery.cancel_scope.cancel()


def _request(method: str, path: str, body: bytes = b"", *extra: str,
             version: str = "1.1") -> bytes:
    head = [f"{method} {path} HTTP/{version}", "Host: hub", *extra]
    if method == "POST":
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _read(stream: trio.abc.Stream, client: h11.Connection) -> list[h11.Event]:
    """One response, as h11 parses it (it refuses a malformed one)."""
    events: list[h11.Event] = []
    with trio.fail_after(5):
        while not events or not isinstance(events[-1], h11.EndOfMessage):
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await stream.receive_some(65536))
            else:
                events.append(event)
    return events


def _expect(client: h11.Connection, method: str, path: str) -> None:
    """Tell h11 the request was sent: it reads a response only after its request."""
    client.send(h11.Request(method=method, target=path, headers=[("Host", "hub")]))
    client.send(h11.EndOfMessage())


async def test_pipelined_answers_are_well_formed_and_keep_the_connection_open(
        served: tuple[_Handlers, trio.testing.MemoryStapledStream]) -> None:
    _, stream = served
    await stream.send_all(_request("POST", "/echo", b"one") + _request("GET", "/empty"))
    client = h11.Connection(h11.CLIENT)
    _expect(client, "POST", "/echo")
    response, *data, _ = await _read(stream, client)
    assert isinstance(response, h11.Response) and response.status_code == 201
    headers = dict(response.headers)
    assert headers[b"content-type"] == b"application/json" and b"date" in headers
    assert b"".join(bytes(d.data) for d in data) == b'{"body":"one"}'
    assert int(headers[b"content-length"]) == len(b'{"body":"one"}')
    assert b"connection" not in headers
    client.start_next_cycle()
    _expect(client, "GET", "/empty")
    empty, _ = await _read(stream, client)
    assert isinstance(empty, h11.Response) and empty.status_code == 204
    assert dict(empty.headers).keys() >= {b"x-seen", b"date"}
    assert b"content-length" not in dict(empty.headers)


@pytest.mark.parametrize(("extra", "version"), [(("Connection: close",), "1.1"), ((), "1.0")],
                         ids=["connection-close", "http-1.0"])
async def test_a_client_that_asks_to_close_gets_connection_close_and_then_the_end(
        served: tuple[_Handlers, trio.testing.MemoryStapledStream], extra: tuple[str, ...],
        version: str) -> None:
    _, stream = served
    await stream.send_all(_request("POST", "/echo", b"last", *extra, version=version))
    data = b""
    with trio.fail_after(5):
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 201 ") and b"\r\nconnection: close" in head
    assert body == b'{"body":"last"}'


async def test_a_handler_that_does_not_wait_runs_to_its_end_when_its_client_leaves(
        served: tuple[_Handlers, trio.testing.MemoryStapledStream]) -> None:
    handlers, stream = served
    await stream.send_all(_request("POST", "/slow", b"{}"))
    await handlers.started.wait()
    await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    handlers.release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert handlers.outcomes == ["finished"]


async def test_a_waiting_handler_is_cancelled_when_its_client_leaves(
        served: tuple[_Handlers, trio.testing.MemoryStapledStream]) -> None:
    handlers, stream = served
    await stream.send_all(_request("POST", "/poll", b"{}"))
    await handlers.started.wait()
    await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert handlers.outcomes == ["cancelled"]
