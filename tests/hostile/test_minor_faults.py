"""The minor ones (issue 15, item 14): answers that are not the worker's get an error
frame, a broken WebSocket frame on the main port gets a close frame, text that is not
UTF-8 or holds a lone surrogate is named for what it is, and a body that trickles in
past the body timeout (or is too large) gets its 408 (413) and its connection closed,
with no traceback."""

from __future__ import annotations

import json
import logging

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served, StartServer, bare_client, http_client, next_event
from trio_websocket import open_websocket_url
from wsproto.events import CloseConnection, Ping, TextMessage

from workyard import Settings


async def next_frame(ws: object) -> dict[str, object]:
    with trio.fail_after(NET_TIMEOUT):
        return json.loads(await ws.get_message())  # type: ignore[attr-defined]


async def test_an_answer_for_an_unknown_or_foreign_task_gets_an_error_frame(
    server: Served, http: httpx.AsyncClient
) -> None:
    task_id = (await http.post("/tasks", json={"name": "t"})).json()["id"]
    async with open_websocket_url(server.ws("/work/queue?task=t&worker_id=holder")) as holder, \
            open_websocket_url(server.ws("/work/queue?task=other&worker_id=other")) as other:
        assert (await next_frame(holder))["task_id"] == task_id
        await other.send_message(json.dumps({"task_id": "no-such-task", "result": "done"}))
        assert "no task 'no-such-task'" in str((await next_frame(other))["error"])
        await other.send_message(json.dumps({"task_id": task_id, "result": "done"}))
        assert "never assigned to worker 'other'" in str((await next_frame(other))["error"])
        # the holder's answer still wins: the foreign one changed nothing
        await holder.send_message(json.dumps({"task_id": task_id, "result": "done",
                                              "data": "mine"}))
        with trio.fail_after(NET_TIMEOUT):
            done = (await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})).json()
        assert (done["state"], done["result"]) == ("done", "mine")


@pytest.mark.parametrize(("frame", "code"), [
    (b"\x81\x02hi", 1002),  # a client frame without a mask
    (b"\x81\x82abcd" + bytes(b ^ k for b, k in zip(b"\xff\xfe", b"ab", strict=True)), 1007),
], ids=["unmasked", "text-not-utf-8"])
async def test_a_broken_websocket_frame_on_the_main_port_gets_a_close_frame(
    server: Served, http: httpx.AsyncClient, frame: bytes, code: int
) -> None:
    stream, ws = await bare_client(server.ws("/work/queue?task=t"))
    async with stream:
        await stream.send_all(frame)
        while isinstance(event := await next_event(stream, ws), (Ping, TextMessage)):
            pass
    assert isinstance(event, CloseConnection) and event.code == code
    assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize(("text", "said"), [
    (b"\xff", "not valid UTF-8"),
    (b"\xed\xa0\x80", "not valid UTF-8"),  # a surrogate, encoded
    (b"\\ud800", "lone UTF-16 surrogate"),  # a surrogate, escaped, alone
], ids=["bad-byte", "encoded-surrogate", "escaped-lone-surrogate"])
async def test_text_that_is_not_utf_8_is_a_400_that_says_so(
    http: httpx.AsyncClient, text: bytes, said: str
) -> None:
    for path, body in (("/tasks", b'{"name": "%s"}'), ("/tasks", b'{"tasks": [{"name": "%s"}]}'),
                       ("/tasks", b'{"name": "t", "data": {"relayed": "%s"}}'),  # once a
                       # poison task: every worker it went to failed on it
                       ("/v1/queue/q", b'{"worker_id": "%s"}'), ("/w/q", b'{"worker_id": "%s"}')):
        response = await http.post(path, content=body % text)
        assert response.status_code == 400, (path, response.text)
        assert said in response.json()["error"], response.text


async def test_a_body_trickling_in_past_the_body_timeout_gets_a_408_and_its_connection_closed(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    """The 408 is sent by the app's task, which quart-trio cancels the moment the
    response is out; hypercorn's close of the connection ran in that cancelled task and
    was lost, so the connection stayed open, reading the rest of the body (and any
    request after it) and answering nothing."""
    monkeypatch.setattr("workyard.http._app.BODY_TIMEOUT", 0.5)
    served = await start_server()
    caplog.set_level(logging.INFO)
    port = httpx.URL(served.url).port or 0
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"POST /tasks HTTP/1.1\r\nHost: hub\r\nContent-Length: 100\r\n"
                              b"Content-Type: application/json\r\n\r\n{")
        received = b""
        with trio.fail_after(NET_TIMEOUT):
            while b"browser didn't finish" not in received:
                received += await stream.receive_some(65536)
            assert received.startswith(b"HTTP/1.1 408 ")
            try:
                await stream.send_all(b'"name": "late"}')  # the body goes on trickling
                while await stream.receive_some(65536):
                    pass  # until the server closes the connection
            except trio.BrokenResourceError:
                pass  # closed with the late bytes unread: a reset, as good a close
    async with http_client(served.url) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/tasks", params={"name": "late"})).json()["tasks"] == []
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


async def test_a_body_over_max_body_gets_a_413_and_its_connection_closed(
    start_server: StartServer, hub_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same lost close, for the 413 sent before the body is read."""
    served = await start_server(Settings(port=0, db=hub_db, max_body=1024))
    caplog.set_level(logging.INFO)
    stream = await trio.open_tcp_stream("127.0.0.1", httpx.URL(served.url).port or 0)
    async with stream:
        await stream.send_all(b"POST /tasks HTTP/1.1\r\nHost: hub\r\nContent-Length: 5000\r\n"
                              b"Content-Type: application/json\r\n\r\n{")
        received = b""
        with trio.fail_after(NET_TIMEOUT):
            while chunk := await stream.receive_some(65536):
                received += chunk  # until the server closes the connection
    assert received.startswith(b"HTTP/1.1 413 ")
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


async def test_over_http_2_a_trickled_body_s_408_ends_its_stream_and_not_the_connection(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture
) -> None:
    """Over HTTP/2 (here h2c, as TLS negotiates it by ALPN) the body's DATA frames that
    arrive after the 408 are for a stream hypercorn has dropped: they raised KeyError,
    which ended the connection and every other stream on it, with a traceback."""
    monkeypatch.setattr("workyard.http._app.BODY_TIMEOUT", 0.5)
    served = await start_server()
    caplog.set_level(logging.INFO)
    stream = await trio.open_tcp_stream("127.0.0.1", httpx.URL(served.url).port or 0)
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    statuses: dict[int, bytes] = {}
    ended: set[int] = set()

    def request(stream_id: int, method: str, path: str, *, end: bool) -> None:
        client.send_headers(stream_id, [(":method", method), (":path", path),
                                        (":scheme", "http"), (":authority", "hub"),
                                        ("content-type", "application/json")], end_stream=end)

    async def read_until_ended(stream_id: int) -> None:
        await stream.send_all(client.data_to_send())
        while stream_id not in ended:
            data = await stream.receive_some(65536)
            assert data, "the hub closed the HTTP/2 connection"
            for event in client.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    statuses[event.stream_id] = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    client.acknowledge_received_data(event.flow_controlled_length,
                                                     event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    ended.add(event.stream_id)
            await stream.send_all(client.data_to_send())

    async with stream:
        client.initiate_connection()
        request(1, "POST", "/tasks", end=False)
        client.send_data(1, b"{")
        with trio.fail_after(NET_TIMEOUT):
            await read_until_ended(1)
            client.send_data(1, b'"name": "late"}', end_stream=True)  # the body goes on
            request(3, "GET", "/health", end=True)  # and so does the connection
            await read_until_ended(3)
    assert statuses == {1: b"408", 3: b"200"}
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
