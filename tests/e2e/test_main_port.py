"""The main port's front door against a real server on a real socket: WebSocket workers
reach the lean server (with its ping liveness), everything else reaches hypercorn, and
no one connection's input or failure ends the hub.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served, StartServer, http_client, silent_worker
from trio_websocket import open_websocket_url

from workyard import Settings
from workyard.server._front import serve_front
from workyard.server._serve import open_listener

#: the headers of a WebSocket upgrade request, after its request line
UPGRADE = (b"Host: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def port_of(served: Served) -> int:
    return httpx.URL(served.url).port or 0


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection and read until the server closes it (bounded)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        received = b""
        with trio.fail_after(NET_TIMEOUT):
            while chunk := await stream.receive_some(65536):
                received += chunk
    return received


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
    return int(status_line.split()[1]), headers, body


async def read_response(stream: trio.SocketStream) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length, read off a connection that stays open."""
    raw = b""
    with trio.fail_after(NET_TIMEOUT):
        while True:
            if b"\r\n\r\n" in raw:
                status, headers, body = parse_response(raw)
                if len(body) >= int(headers["content-length"]):
                    return status, headers, body
            raw += await stream.receive_some(65536)


async def submit(http: httpx.AsyncClient) -> str:
    response = await http.post("/tasks", json={"name": "tag"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def health_answers(served: Served) -> None:
    async with http_client(served.url) as http:
        response = await http.get("/health")
    assert response.status_code == 200 and response.json()["ok"] is True


# --- liveness -------------------------------------------------------------------------


async def test_a_main_port_worker_that_stops_answering_pings_is_dropped_and_its_task_rescheduled(
    start_server: StartServer, hub_db: str
) -> None:
    settings = Settings(port=0, db=hub_db, ping_interval=0.2, ping_timeout=0.2)
    served = await start_server(settings)
    async with http_client(served.url) as http:
        task_id = await submit(http)
        stream, frame = await silent_worker(served.ws("/work/queue?task=tag&worker_id=silent"))
        silent_since = trio.current_time()
        async with stream, open_websocket_url(
                served.ws("/work/queue?task=tag&worker_id=alive")) as ws:
            assert frame["task_id"] == task_id
            # The live worker answers the pings; the task comes to it once the silent one
            # has missed one, a ping interval plus a ping timeout after it took the task.
            with trio.fail_after(NET_TIMEOUT):
                redispatched = json.loads(await ws.get_message())
            waited = trio.current_time() - silent_since
            assert redispatched["task_id"] == task_id
            workers = (await http.get("/workers")).json()["workers"]
            assert [w["id"] for w in workers] == ["alive"]
            await ws.send_message(json.dumps({"task_id": task_id, "result": "done"}))
            with trio.fail_after(NET_TIMEOUT):
                body = (await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})).json()
    assert [(a["worker"], a["outcome"]) for a in body["attempts"]] == [
        ("silent", "worker_lost"), ("alive", "done")]
    # not TCP's doing: the silent peer's kernel acknowledged every byte; the slack is
    # for a loaded machine, far below NET_TIMEOUT
    assert waited < settings.ping_interval + settings.ping_timeout + 2.0


# --- one connection's input never ends the hub -------------------------------------------


@pytest.mark.parametrize("then", [
    b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n",
    b"\x00\x01\x02 not http at all\r\n\r\n",
], ids=["a-second-request", "junk"])
async def test_a_refused_upgrade_is_a_json_400_that_closes_the_connection_whatever_follows(
    server: Served, then: bytes
) -> None:
    raw = await exchange(port_of(server),
                         b"GET /work/queue?task=x&capacity=-1 HTTP/1.1\r\n" + UPGRADE + then)
    status, headers, body = parse_response(raw)  # `exchange` returned: the hub closed it
    assert status == 400
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert "capacity" in json.loads(body)["error"]
    assert raw.count(b"HTTP/1.1") == 1  # the second request was not answered
    await health_answers(server)


async def test_an_upgrade_for_another_path_is_a_json_404_and_the_hub_keeps_serving(
    server: Served,
) -> None:
    raw = await exchange(port_of(server), b"GET /tasks HTTP/1.1\r\n" + UPGRADE
                         + b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
    status, headers, body = parse_response(raw)
    assert status == 404 and headers["connection"] == "close"
    assert "/work/queue" in json.loads(body)["error"]
    await health_answers(server)


@pytest.mark.parametrize("data", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS client hello
    b"GARBAGE\r\n\r\n",
    b"GET /work/queue",  # a head cut short: the peer leaves
    b"",
], ids=["tls", "junk", "cut-short", "nothing"])
async def test_junk_or_a_vanishing_peer_ends_only_its_own_connection(
    server: Served, data: bytes
) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(server))
    async with stream:
        await stream.send_all(data)
        await stream.send_eof()
        with trio.fail_after(NET_TIMEOUT):
            while await stream.receive_some(65536):
                pass  # whatever hypercorn answers, until it closes
    await health_answers(server)


# --- everything else is hypercorn's ------------------------------------------------------


async def test_plain_http_keeps_its_connection_and_gets_the_apps_answers(
    server: Served,
) -> None:
    """Two requests on one connection (the front door routes only the first), and a
    plain GET of the worker path answered by the app, not the WebSocket server."""
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(server))
    async with stream:
        answers = []
        for target in (b"/health", b"/work/queue"):
            await stream.send_all(b"GET " + target + b" HTTP/1.1\r\nHost: hub\r\n\r\n")
            status, headers, body = await read_response(stream)
            answers.append((status, headers["content-type"], json.loads(body)))
    assert answers[0] == (200, "application/json", {"ok": True, "workers": 0, "unfinished": 0})
    assert answers[1][:2] == (404, "application/json") and answers[1][2]["error"]


async def test_http2_with_prior_knowledge_reaches_the_app(server: Served) -> None:
    async with httpx.AsyncClient(base_url=server.url, http1=False, http2=True,
                                 timeout=NET_TIMEOUT, verify=False) as http:
        response = await http.get("/health")
    assert response.http_version == "HTTP/2" and response.json()["ok"] is True


async def test_seed_workers_on_both_ports_share_one_hub(
    start_server: StartServer, hub_db: str
) -> None:
    served = await start_server(Settings(port=0, worker_port=0, db=hub_db))
    assert served.hub.worker_url is not None
    async with http_client(served.url) as http, \
            open_websocket_url(served.ws("/work/queue?task=tag&worker_id=main")) as main, \
            open_websocket_url(served.hub.worker_url + "?task=tag&worker_id=lean") as lean:
        ids = {await submit(http) for _ in range(2)}  # even spread: one each
        with trio.fail_after(NET_TIMEOUT):
            got = {json.loads(await ws.get_message())["task_id"] for ws in (main, lean)}
        assert got == ids
        workers = (await http.get("/workers")).json()["workers"]
    assert sorted(w["id"] for w in workers) == ["lean", "main"]


# --- the front door alone ----------------------------------------------------------------


async def test_a_failing_connection_handler_is_logged_once_and_ends_only_its_connection(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """Whichever server's handler raises, the front door contains it; and each handler
    gets the bytes the front door read, in order, before the rest of the stream."""
    seen: list[bytes] = []

    async def failing(stream: trio.SocketStream, received: bytes) -> None:
        raise RuntimeError("a bug in one connection's handler")

    async def echo(stream: trio.SocketStream, received: bytes) -> None:
        seen.append(received)
        await stream.send_all(b"ok:" + received)

    listener = open_listener(Settings(port=0))
    port = listener.getsockname()[1]
    await nursery.start(serve_front, listener, failing, echo)
    with caplog.at_level(logging.ERROR, logger="workyard.server"):
        assert await exchange(port, b"GET /work/queue HTTP/1.1\r\n" + UPGRADE) == b""
        assert await exchange(port, b"POST /tasks HTTP/1.1\r\n\r\n") == (
            b"ok:POST /tasks HTTP/1.1\r\n\r\n")
    failures = [r for r in caplog.records if r.name == "workyard.server"]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "a bug in one connection's handler" in str(failures[0].exc_info[1])
    assert seen == [b"POST /tasks HTTP/1.1\r\n\r\n"]
