"""Pool and worker events out of a served hub: to RabbitMQ (real broker, pika consumers
bound by pattern), through a broker outage and a kill -9, and on the embedded stream."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
import taskcluster
import trio
from conftest import NET_TIMEOUT, Served, StartServer, http_client
from trio_websocket import open_websocket_url

from workyard import Settings

POOL = "proj/linux"
SPEC: dict[str, Any] = {"providerId": "aws", "description": "d", "config": {},
                        "owner": "ci@example.com", "emailOnError": False}
EVENTS = taskcluster.WorkerManagerEvents({"rootUrl": "http://127.0.0.1"})


def manager(url: str) -> Any:
    return taskcluster.WorkerManager({"rootUrl": url, "maxRetries": 0})


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    with trio.fail_after(NET_TIMEOUT):
        return await trio.to_thread.run_sync(partial(fn, *args))


# -- a pika consumer ---------------------------------------------------------------------


class Consumer:
    """A durable queue bound by pattern(s), read with pika in a thread (it survives a
    broker restart; deleted at the end)."""

    def __init__(self, url: str, bindings: list[dict[str, str]]) -> None:
        self.url = url
        self.queue = f"queue/workyard-tests/{uuid.uuid4().hex}"
        connection = pika.BlockingConnection(pika.URLParameters(url))
        channel = connection.channel()
        channel.queue_declare(self.queue, durable=True)
        for b in bindings:
            channel.exchange_declare(b["exchange"], exchange_type="topic", durable=True)
            channel.queue_bind(self.queue, b["exchange"], b["routingKeyPattern"])
        connection.close()

    def _take(self, count: int, quiet: float) -> list[tuple[str, str, Any, Any]]:
        """`count` messages (then `quiet` seconds in which no more may come), or fewer
        once NET_TIMEOUT is over."""
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = connection.channel()
        got: list[tuple[str, str, Any, Any]] = []
        try:
            waited = 0.0
            for method, props, body in channel.consume(self.queue, inactivity_timeout=0.05):
                if method is None:
                    waited += 0.05
                    if (len(got) >= count and waited >= quiet) or waited >= NET_TIMEOUT:
                        break
                    continue
                waited = 0.0
                got.append((method.exchange, method.routing_key, json.loads(body), props))
                channel.basic_ack(method.delivery_tag)
                if len(got) >= count and quiet == 0:
                    break
            channel.cancel()
        finally:
            connection.close()
        return got

    async def take(self, count: int, quiet: float = 0.0) -> list[tuple[str, str, Any, Any]]:
        with trio.fail_after(NET_TIMEOUT + quiet + 5):
            return await trio.to_thread.run_sync(self._take, count, quiet)

    def delete(self) -> None:
        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        connection.channel().queue_delete(self.queue)
        connection.close()


@contextmanager
def consumer(url: str, *bindings: dict[str, str]) -> Iterator[Consumer]:
    c = Consumer(url, list(bindings))
    try:
        yield c
    finally:
        c.delete()


def short(exchange: str) -> str:
    return exchange.rsplit("/", 1)[-1]


@pytest.fixture
async def amqp_server(start_server: StartServer, hub_db: str, amqp_url: str) -> Served:
    return await start_server(Settings(port=0, db=hub_db, amqp_url=amqp_url))


# -- RabbitMQ ------------------------------------------------------------------------


async def test_a_consumer_bound_by_provider_gets_exactly_that_providers_pool_events(
        amqp_server: Served, amqp_url: str) -> None:
    wm = manager(amqp_server.url)
    with consumer(amqp_url, EVENTS.workerPoolCreated(providerId="aws"),
                  EVENTS.workerPoolUpdated(providerId="aws")) as aws, \
            consumer(amqp_url, EVENTS.workerPoolCreated(), EVENTS.workerPoolUpdated()) as every:
        await call(wm.createWorkerPool, POOL, SPEC)
        await call(wm.createWorkerPool, "proj/other", {**SPEC, "providerId": "gcp"})
        await call(wm.updateWorkerPool, POOL, {**SPEC, "description": "changed"})
        got = await aws.take(2, quiet=0.3)
        assert [(short(e), key, body) for e, key, body, _ in got] == [
            ("worker-pool-created", "primary.aws.proj.linux._._._._",
             {"workerPoolId": POOL, "providerId": "aws"}),
            ("worker-pool-updated", "primary.aws.proj.linux._._._._",
             {"workerPoolId": POOL, "providerId": "aws", "previousProviderId": "aws"})]
        props = got[0][3]
        assert props.content_type == "application/json" and props.delivery_mode == 2
        # the outbox seq, for consumers to drop at-least-once repeats
        assert [p.message_id for _, _, _, p in got] == ["1", "3"]
        assert [body["workerPoolId"] for _, _, body, _ in await every.take(3)] == [
            POOL, "proj/other", POOL]


async def test_worker_events_reach_rabbitmq_with_the_full_routing_key(
        amqp_server: Served, amqp_url: str) -> None:
    await call(manager(amqp_server.url).createWorkerPool, POOL, SPEC)
    with consumer(amqp_url, EVENTS.workerRunning(providerId="aws", workerGroup="eu"),
                  EVENTS.workerStopped(workerId="w1")) as c:
        url = amqp_server.ws(f"/work/queue?task=tag&worker_id=w1&capacity=2&worker_pool={POOL}"
                             "&worker_group=eu")
        async with open_websocket_url(url):
            pass
        got = await c.take(2)
    assert [(short(e), key) for e, key, _, _ in got] == [
        ("worker-running", "primary.aws.proj.linux.eu.w1._._"),
        ("worker-stopped", "primary.aws.proj.linux.eu.w1._._")]
    assert got[0][2]["capacity"] == 2 and got[0][2]["workerGroup"] == "eu"


@asynccontextmanager
async def broker_stopped() -> AsyncIterator[None]:
    """RabbitMQ stopped for the block, and started again however it ends."""
    await trio.run_process(["rabbitmqctl", "-q", "stop_app"], capture_stdout=True)
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            await trio.run_process(["rabbitmqctl", "-q", "start_app"], capture_stdout=True)
            await trio.run_process(["rabbitmqctl", "-q", "await_startup"], capture_stdout=True)


async def test_with_the_broker_down_the_hub_works_and_delivers_in_order_once_it_is_back(
        amqp_server: Served, amqp_url: str) -> None:
    wm = manager(amqp_server.url)
    relay = amqp_server.hub.relay
    with consumer(amqp_url, EVENTS.workerPoolCreated(), EVENTS.workerPoolUpdated()) as c:
        await call(wm.createWorkerPool, POOL, SPEC)
        with trio.fail_after(NET_TIMEOUT):
            await relay.wait_delivered(1)
        async with broker_stopped():
            for n in range(5):
                await call(wm.updateWorkerPool, POOL, {**SPEC, "description": f"v{n}"})
            assert (await call(wm.workerPool, POOL))["description"] == "v4"
            with trio.fail_after(NET_TIMEOUT):
                while not relay.failures:
                    await trio.sleep(0.02)
            assert relay.cursor == 1  # the outbox holds the five updates
        with trio.fail_after(NET_TIMEOUT + 10):
            await relay.wait_delivered(6)
        got = await c.take(6)
    assert [short(e) for e, _, _, _ in got] == ["worker-pool-created"] + ["worker-pool-updated"] * 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served_subprocess(db: Path, port: int, amqp: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "WORKYARD_AMQP_URL": amqp}
    proc = subprocess.Popen([sys.executable, "-m", "workyard", "serve", "--db", str(db),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(NET_TIMEOUT)


async def wait_up(url: str) -> None:
    async with http_client(url) as http:
        with trio.fail_after(NET_TIMEOUT):
            while True:
                try:
                    if (await http.get("/health")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)


async def test_an_event_committed_before_a_kill_9_is_delivered_after_the_restart(
        tmp_path: Path, amqp_url: str) -> None:
    db, port = tmp_path / "hub.db", free_port()
    url = f"http://127.0.0.1:{port}"
    with consumer(amqp_url, EVENTS.workerPoolCreated(providerId="aws")) as c:
        # a broker nobody listens on: the event can only wait in the outbox
        with served_subprocess(db, port, "amqp://guest:guest@127.0.0.1:1/%2F") as hub:
            await wait_up(url)
            await call(manager(url).createWorkerPool, POOL, SPEC)
            hub.send_signal(signal.SIGKILL)
            hub.wait(NET_TIMEOUT)
        with served_subprocess(db, port, amqp_url):
            await wait_up(url)
            got = await c.take(1, quiet=0.3)
            assert (await call(manager(url).workerPool, POOL))["providerId"] == "aws"
    assert [(short(e), body) for e, _, body, _ in got] == [
        ("worker-pool-created", {"workerPoolId": POOL, "providerId": "aws"})]


# -- the embedded stream -------------------------------------------------------------


async def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    """The next `count` SSE messages (id, event, data) of a streaming response."""
    got: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with trio.fail_after(NET_TIMEOUT):
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if current:
                    got.append(current)
                    current = {}
                if len(got) >= count:
                    return got
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return got


WM = "exchange/taskcluster-worker-manager/v1/"


async def test_the_stream_binds_by_pattern_and_resumes_from_a_seq_with_no_broker(
        server: Served, http: httpx.AsyncClient) -> None:
    wm = manager(server.url)
    query = (f"/events?exchange={WM}worker-pool-created&pattern=primary.aws.%23"
             f"&exchange={WM}worker-pool-updated&pattern=%23")
    async with http.stream("GET", query) as live:
        assert live.headers["content-type"].startswith("text/event-stream")
        await call(wm.createWorkerPool, "proj/a", SPEC)
        await call(wm.createWorkerPool, "proj/b", {**SPEC, "providerId": "gcp"})
        await call(wm.updateWorkerPool, "proj/b", SPEC)
        first = await read_events(live, 2)
    assert [(e["event"].removeprefix(WM), e["data"]["payload"]["workerPoolId"]) for e in first] \
        == [("worker-pool-created", "proj/a"), ("worker-pool-updated", "proj/b")]
    assert [int(e["id"]) for e in first] == [1, 3] and first[1]["data"]["seq"] == 3
    assert first[0]["data"]["routingKey"] == "primary.aws.proj.a._._._._"

    await call(wm.createWorkerPool, "proj/c", SPEC)  # while nobody listens
    async with http.stream("GET", query, headers={"Last-Event-ID": "1"}) as resumed:
        again = await read_events(resumed, 2)
    assert [e["data"]["payload"]["workerPoolId"] for e in again] == ["proj/b", "proj/c"]


async def test_the_stream_carries_hub_task_and_worker_events_live(
        server: Served, http: httpx.AsyncClient) -> None:
    query = ("/events?exchange=exchange/workyard/v1/task-submitted"
             "&exchange=exchange/workyard/v1/worker-attached")
    async with http.stream("GET", query) as live:
        with trio.fail_after(NET_TIMEOUT):
            while not server.hub.feed.hub_subscribers:
                await trio.sleep(0.01)
            await trio.sleep(0.05)  # the bridge subscribes to the hub's events
        async with open_websocket_url(server.ws("/work/queue?task=tag&worker_id=w9")):
            assert (await http.post("/tasks", json={"name": "tag.x"})).status_code == 201
            got = await read_events(live, 2)
    assert {e["event"] for e in got} == {"exchange/workyard/v1/task-submitted",
                                         "exchange/workyard/v1/worker-attached"}
    assert all("id" not in e and e["data"]["seq"] is None for e in got)
    submitted = next(e for e in got if e["event"].endswith("task-submitted"))
    assert submitted["data"]["routingKey"] == "primary.tag_x._"


async def test_a_stream_request_without_bindings_is_refused(http: httpx.AsyncClient) -> None:
    answer = await http.get("/events")
    assert answer.status_code == 400 and "exchange" in answer.json()["error"]
    answer = await http.get("/events?exchange=a&exchange=b&pattern=%23")
    assert answer.status_code == 400
