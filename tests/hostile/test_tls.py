"""TLS on every listener (issue 15, "make the class impossible"): with `--certfile` and
`--keyfile` the main port and the worker port speak TLS with the same certificate, to
real clients (httpx, HTTP/1.1 and HTTP/2, trio-websocket, the SDK, the CLI); a plain
HTTP client gets a 400 that says to use https://, and a failed handshake ends only its
connection, with one line in the log and no traceback.

The certificate is made in the test by a throwaway CA (trustme)."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import httpx
import pytest
import trio
import trio.testing
import trustme
from conftest import NET_TIMEOUT, Served, StartServer, http_client
from hypercorn.config import Config
from quart import request
from quart_trio import QuartTrio
from trio_websocket import ConnectionRejected, open_websocket_url

from workyard import Settings
from workyard.cli import main
from workyard.client import AsyncProducer, Job, Worker
from workyard.server import open_hub
from workyard.server._front import serve_front
from workyard.server._hypercorn import HTTPServer
from workyard.server._serve import open_listener
from workyard.transports._tls import server_context

PLAIN_REFUSAL = "this port speaks TLS: use https:// (wss:// for WebSocket workers)"


@dataclass
class Certificate:
    """A server certificate for 127.0.0.1, its key, and the CA a client must trust."""

    certfile: str
    keyfile: str
    cafile: str
    client: ssl.SSLContext


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (str(folder / n) for n in ("hub.pem", "hub-key.pem", "ca.pem"))
    for i, pem in enumerate(issued.cert_chain_pems):
        pem.write_to_path(certfile, append=i > 0)
    issued.private_key_pem.write_to_path(keyfile)
    ca.cert_pem.write_to_path(cafile)
    client = ssl.create_default_context(cafile=cafile)
    return Certificate(certfile, keyfile, cafile, client)


@pytest.fixture
async def tls_server(start_server: StartServer, certificate: Certificate,
                     hub_db: str) -> Served:
    settings = Settings(port=0, worker_port=0, db=hub_db, certfile=certificate.certfile,
                        keyfile=certificate.keyfile)
    return await start_server(settings, hub=open_hub(settings))


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch, certificate: Certificate) -> Iterator[None]:
    """The standard variable every client of the SDK and CLI reads: trust the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", certificate.cafile)
    yield


def tls_client(served: Served, certificate: Certificate, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=served.url, timeout=NET_TIMEOUT,
                             verify=certificate.client, **kwargs)  # type: ignore[arg-type]


async def answer_one(url: str, certificate: Certificate) -> None:
    """A WebSocket worker over wss: take one task and answer it with its data."""
    async with open_websocket_url(url, ssl_context=certificate.client) as ws:
        with trio.fail_after(NET_TIMEOUT):
            frame = json.loads(await ws.get_message())
        await ws.send_message(json.dumps({"task_id": frame["task_id"], "result": "done",
                                          "data": frame["data"]}))


async def test_the_main_port_serves_https_over_http_1_1_and_http_2(
    tls_server: Served, certificate: Certificate
) -> None:
    assert tls_server.url.startswith("https://")
    for http2 in (False, True):
        async with tls_client(tls_server, certificate, http2=http2) as https:
            created = await https.post("/tasks", json={"name": "t", "data": {"n": 1}})
            health = await https.get("/health")
        assert created.status_code == 201 and health.status_code == 200
        assert health.http_version == ("HTTP/2" if http2 else "HTTP/1.1")


@pytest.mark.parametrize("port", ["main", "worker"])
async def test_a_websocket_worker_over_wss_gets_and_answers_a_task_on_either_port(
    tls_server: Served, certificate: Certificate, port: str
) -> None:
    url = (tls_server.ws("/work/queue") if port == "main" else tls_server.hub.worker_url)
    assert url is not None and url.startswith("wss://")
    async with tls_client(tls_server, certificate) as https:
        task_id = (await https.post("/tasks", json={"name": "t", "data": port})).json()["id"]
        await answer_one(url + "?task=t", certificate)
        done = (await https.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})).json()
    assert (done["state"], done["result"]) == ("done", port)


async def test_the_sdk_worker_and_producer_work_against_https_with_ssl_cert_file(
    tls_server: Served, trusting: None, nursery: trio.Nursery
) -> None:
    worker = Worker(tls_server.url, worker_id="sdk-over-tls")

    @worker.handler("tag")
    async def tag(job: Job) -> object:
        return {"tagged": job.data}

    await nursery.start(worker.run)
    async with AsyncProducer(tls_server.url) as hub:
        task_id = await hub.submit("tag", 7)
        with trio.fail_after(NET_TIMEOUT):
            done = await hub.result(task_id, wait=NET_TIMEOUT)
    assert (done["state"], done["result"]) == ("done", {"tagged": 7})


async def test_workyard_submit_reaches_an_https_hub_with_ssl_cert_file(
    start_server: StartServer, certificate: Certificate, hub_db: str, trusting: None,
    capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's TLS example: a hub with tokens and a certificate, and `workyard
    submit` trusting its CA through SSL_CERT_FILE."""
    served = await start_server(Settings(
        port=0, db=hub_db, worker_tokens=frozenset({"w"}), producer_tokens=frozenset({"p"}),
        certfile=certificate.certfile, keyfile=certificate.keyfile))
    with trio.fail_after(NET_TIMEOUT):
        status = await trio.to_thread.run_sync(
            main, ["submit", "tag", "--url", served.url, "--token", "p"])
    assert status == 0 and len(capsys.readouterr().out.split()) == 1  # the task's id


async def test_plain_http_to_a_tls_port_gets_a_400_saying_to_use_https(
    tls_server: Served, certificate: Certificate
) -> None:
    plain = tls_server.url.replace("https://", "http://")
    async with http_client(plain) as http:
        for path in ("/health", "/tasks"):
            refused = await http.get(path)
            assert refused.status_code == 400 and refused.json() == {"error": PLAIN_REFUSAL}
    for url in (tls_server.ws("/work/queue?task=t"), tls_server.hub.worker_url or ""):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(url.replace("wss://", "ws://") + "?task=t"):
                pass  # pragma: no cover
        assert rejected.value.status_code == 400
        assert json.loads(rejected.value.body or b"") == {"error": PLAIN_REFUSAL}


async def test_a_failed_handshake_ends_only_its_connection_with_one_line_and_no_traceback(
    tls_server: Served, certificate: Certificate, caplog: pytest.LogCaptureFixture
) -> None:
    port = httpx.URL(tls_server.url).port or 0
    caplog.set_level(logging.INFO)
    junk = b"\x16\x03\x01\x00\x05hello"  # a handshake record's header, then nonsense
    for target in (port, int(httpx.URL(tls_server.hub.worker_url or "").port or 0)):
        stream = await trio.open_tcp_stream("127.0.0.1", target)
        async with stream:
            await stream.send_all(junk)
            with trio.fail_after(NET_TIMEOUT):
                while await stream.receive_some(65536):
                    pass  # the server's alert, then its close
        # a client that does not trust the certificate gives up mid-handshake
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient(verify=ssl.create_default_context()) as stranger:
                await stranger.get(f"https://127.0.0.1:{target}/health")
    async with tls_client(tls_server, certificate) as https:
        assert (await https.get("/health")).status_code == 200
    await trio.testing.wait_all_tasks_blocked()  # the server has read every close
    failed = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(failed) == 4, [r.getMessage() for r in failed]
    assert not [r for r in caplog.records if r.exc_info], "a traceback in the log"


async def test_a_handshake_that_does_not_come_in_time_ends_its_connection_with_one_line(
    start_server: StartServer, certificate: Certificate, hub_db: str,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("workyard.transports._tls.HANDSHAKE_TIMEOUT", 0.2)
    settings = Settings(port=0, worker_port=0, db=hub_db, certfile=certificate.certfile,
                        keyfile=certificate.keyfile)
    served = await start_server(settings, hub=open_hub(settings))
    caplog.set_level(logging.INFO)
    ports = [httpx.URL(served.url).port or 0, httpx.URL(served.hub.worker_url or "").port or 0]
    for port in ports:
        for sent in (b"", b"\x16\x03\x01"):  # silent; a record header, then nothing
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(sent)
                with trio.fail_after(NET_TIMEOUT):
                    assert await stream.receive_some(65536) == b""  # closed by the hub
    await trio.testing.wait_all_tasks_blocked()
    said = [r.getMessage() for r in caplog.records if "no handshake within" in r.getMessage()]
    assert len(said) == 4, said
    assert not [r for r in caplog.records if r.exc_info], "a traceback in the log"
    async with tls_client(served, certificate) as https:
        assert (await https.get("/health")).status_code == 200


async def test_the_asgi_scope_says_https_behind_the_front_door(
    nursery: trio.Nursery, certificate: Certificate
) -> None:
    """hypercorn reads TLS off the stream it is handed (`_Replayed`): the app sees
    https, over HTTP/1.1 and over HTTP/2 negotiated by ALPN."""
    app = QuartTrio("scheme")

    @app.route("/scheme")
    async def scheme() -> str:
        return f"{request.scheme} {request.http_version}"

    settings = Settings(port=0, certfile=certificate.certfile, keyfile=certificate.keyfile)
    http = HTTPServer(app, Config())
    await nursery.start(http.run)
    listener = open_listener(settings)

    async def no_lean(stream: trio.abc.Stream, received: bytes) -> None:
        raise AssertionError("no WebSocket here")  # pragma: no cover

    await nursery.start(partial(serve_front, listener, no_lean, http.serve_connection,
                                tls=server_context(settings)))
    base = f"https://127.0.0.1:{listener.getsockname()[1]}"
    for http2, said in ((False, "https 1.1"), (True, "https 2")):
        async with httpx.AsyncClient(base_url=base, verify=certificate.client,
                                     http2=http2, timeout=NET_TIMEOUT) as client:
            assert (await client.get("/scheme")).text == said

