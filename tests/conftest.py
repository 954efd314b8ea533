"""Shared fixtures: a real hub server on a free port, a bare hub, and a fake worker link.

* `start_server(settings=None, *, hub=None)` starts `workyard.serve` (real hypercorn,
  real socket) in the test's nursery and returns a `Served` (base URL, hub, `stop()`).
  Settings default to port 0 and a SQLite file in `tmp_path`.
* `server` is one such server with the defaults; `http` an httpx client for it
  (`http_client(url)` makes one for any other server).
* `start_hub(**hub_kwargs)` runs a `Hub` on a `MemoryStore` with no network, for
  tests that drive time with `autojump_clock`.
* `RecordingLink` (from `workyard.testing`) stands in for a worker connection.
* `echo_worker(ws_url)` is a WebSocket worker (trio-websocket, plain JSON) that answers
  every task with its own data; start it with `nursery.start`.
* `bare_client(ws_url)` is a bare wsproto client, upgraded, for what trio-websocket does
  not let a test do; `next_event` reads its next event; `silent_worker(ws_url)` takes
  one task and then never reads again, so it never answers a ping.
* `postgres_url` is the suite's PostgreSQL server (`WORKYARD_TEST_POSTGRES`, default
  the local one); tests using it skip when it is unreachable, and fail under CI=true.
  `postgres_schema` gives a test (url, schema) of its own, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from trio_websocket import WebSocketConnection, open_websocket_url
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Request, TextMessage

from workyard import Hub, Settings, SQLiteStore, serve
from workyard.server import open_hub
from workyard.testing import MemoryStore

#: Upper bound for any wait on a real socket; a bound, never a sleep.
NET_TIMEOUT = 10.0

#: The PostgreSQL server of the tests that need one.
POSTGRES_URL = os.environ.get("WORKYARD_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/test")


@dataclass
class Served:
    """A running server: its base URL, its hub, and a way to stop it."""

    url: str
    hub: Hub
    _scope: trio.CancelScope
    _stopped: trio.Event

    def ws(self, path: str) -> str:
        """The ws:// URL of `path` (e.g. "/work/queue?task=a")."""
        return "ws" + self.url.removeprefix("http") + path

    async def stop(self) -> None:
        """Cancel the server and wait until it has shut down (store flushed and closed)."""
        self._scope.cancel()
        await self._stopped.wait()


async def _run_server(settings: Settings, hub: Hub, *,
                      task_status: trio.TaskStatus[Served]) -> None:
    stopped = trio.Event()
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(partial(serve, settings, hub=hub))
                task_status.started(Served(url, hub, scope, stopped))
    finally:
        stopped.set()


async def echo_worker(url: str, *,
                      task_status: trio.TaskStatus[WebSocketConnection] = trio.TASK_STATUS_IGNORED
                      ) -> None:
    """Answer every task with `{"result": "done", "data": <the task's data>}` until cancelled."""
    async with open_websocket_url(url) as ws:
        task_status.started(ws)
        while True:
            frame = json.loads(await ws.get_message())
            await ws.send_message(json.dumps(
                {"task_id": frame["task_id"], "result": "done", "data": frame["data"]}))


async def bare_client(url: str) -> tuple[trio.SocketStream, WSConnection]:
    """A wsproto client, upgraded, for what trio-websocket does not let a test do."""
    parsed = httpx.URL(url)
    stream = await trio.open_tcp_stream(parsed.host, parsed.port)
    ws = WSConnection(ConnectionType.CLIENT)
    target = parsed.raw_path.decode()
    await stream.send_all(ws.send(Request(host=f"{parsed.host}:{parsed.port}", target=target)))
    assert isinstance(await next_event(stream, ws), AcceptConnection)
    return stream, ws


async def next_event(stream: trio.SocketStream, ws: WSConnection) -> Any:
    with trio.fail_after(NET_TIMEOUT):
        while True:
            for event in ws.events():
                return event
            ws.receive_data(await stream.receive_some(65536))


async def silent_worker(url: str) -> tuple[trio.SocketStream, dict[str, Any]]:
    """Connect, upgrade and read the first task with a bare wsproto client, which then
    never reads again, so it never answers a ping (as a frozen or vanished peer)."""
    stream, ws = await bare_client(url)
    while isinstance(event := await next_event(stream, ws), Ping):
        pass  # left unanswered
    assert isinstance(event, TextMessage), event
    return stream, json.loads(event.data)


async def until(condition: Callable[[], bool], limit: int = 1000) -> None:
    """Let everything else run until `condition()` holds (bounded, no sleeping)."""
    for _ in range(limit):
        if condition():
            return
        await trio.testing.wait_all_tasks_blocked()
    raise AssertionError("condition never held")


StartServer = Callable[..., Awaitable[Served]]


@pytest.fixture
def hub_db(tmp_path: Path) -> str:
    return str(tmp_path / "hub.db")


@pytest.fixture
def start_server(nursery: trio.Nursery, hub_db: str) -> StartServer:
    async def start(settings: Settings | None = None, *, hub: Hub | None = None) -> Served:
        if settings is None:
            settings = Settings(port=0, db=hub_db)
        if hub is None:
            hub = open_hub(settings)
        return await nursery.start(_run_server, settings, hub)

    return start


@pytest.fixture
async def server(start_server: StartServer) -> Served:
    return await start_server()


def http_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for a test server. The servers speak plain HTTP, so skip loading
    CA certificates, which costs ~0.1 s per client."""
    return httpx.AsyncClient(base_url=url, timeout=NET_TIMEOUT, verify=False, **kwargs)


@pytest.fixture
async def http(server: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(server.url) as client:
        yield client


@pytest.fixture
def start_hub(nursery: trio.Nursery) -> Callable[..., Awaitable[Hub]]:
    async def start(**kwargs: Any) -> Hub:
        kwargs.setdefault("store", MemoryStore())
        hub = Hub(**kwargs)
        await nursery.start(hub.run)
        return hub

    return start


@pytest.fixture
async def sqlite_store(nursery: trio.Nursery, hub_db: str) -> SQLiteStore:
    store = SQLiteStore(hub_db)
    await nursery.start(store.run)
    return store


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The suite's PostgreSQL server. Unreachable: the test skips, saying why in one
    line; under CI=true (where `.ci/run` starts it) it fails instead."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as db:
            db.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any reason it cannot be used
        reason = f"PostgreSQL unusable at {POSTGRES_URL}: {' '.join(str(exc).split())}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[tuple[str, str]]:
    """(url, schema) for a store of this test's own; the schema is dropped afterwards."""
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:16]}"
    yield postgres_url, schema
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")  # type: ignore[arg-type]


#: the RabbitMQ this machine runs for the suite (`.ci/run` makes sure it is up)
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


@pytest.fixture
def amqp_url() -> str:
    """The broker's URL; the test skips (with the reason) when it is not reachable, and
    fails instead under CI (CI=true), where it must be."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        reason = f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return AMQP_URL
