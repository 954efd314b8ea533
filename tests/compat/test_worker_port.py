"""The lean worker port (`Settings.worker_port`): seed 000's `/work/queue` served by
trio + wsproto beside the main port, with the same protocol and real ping liveness.

Workers here are seed 000 clients (trio-websocket, plain JSON); the protocol's
details are tested on the main port (`test_seed000.py`, `test_server.py`) and share
their code with this port, so these tests check the port's own wiring: both
declaration forms, refusals before the upgrade, authorization, 404 for other paths,
the port's WebSocket handling (fragments, pings, size limit) and a silent peer dropped
by its unanswered ping.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import (
    NET_TIMEOUT,
    Served,
    StartServer,
    bare_client,
    http_client,
    next_event,
    silent_worker,
)
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url
from wsproto.events import CloseConnection, Ping, Pong, TextMessage

from workyard import Settings
from workyard.cli import main

TOKENS = {"worker_tokens": frozenset({"w"}), "producer_tokens": frozenset({"p"})}
PRODUCER = {"Authorization": "Bearer p"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(port=0, worker_port=0, db=str(tmp_path / "hub.db"))


def worker_url(served: Served, query: str = "") -> str:
    assert served.hub.worker_url is not None
    return served.hub.worker_url + query


async def submit(http: httpx.AsyncClient, **spec: Any) -> str:
    response = await http.post("/tasks", json={"name": "tag", **spec}, headers=PRODUCER)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def final(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    with trio.fail_after(NET_TIMEOUT):
        response = await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT},
                                  headers=PRODUCER)
    return response.json()


async def next_frame(ws: Any) -> Any:
    with trio.fail_after(NET_TIMEOUT):
        return json.loads(await ws.get_message())


async def refused(url: str, **kwargs: Any) -> ConnectionRejected:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, **kwargs):
            pass  # pragma: no cover
    return rejected.value


# --- the protocol on the lean port ------------------------------------------------------


@pytest.mark.parametrize(("query", "first_message"), [
    ("?task=tag&cloud=aws,gcp&worker_id=lean&capacity=4", None),
    ("?worker_id=lean", [{"name": "tag", "filter": {"cloud": ["aws", "gcp"]}, "info": "x"}]),
], ids=["query", "first-message"])
async def test_a_seed_worker_on_the_worker_port_gets_and_answers_tasks(
    start_server: StartServer, settings: Settings, query: str, first_message: Any
) -> None:
    served = await start_server(settings)
    assert served.hub.worker_url.startswith("ws://127.0.0.1:")
    assert not served.hub.worker_url.startswith(served.ws(""))  # a port of its own
    async with http_client(served.url) as http:
        ok = await submit(http, attrs={"cloud": "aws"}, data={"n": 1})
        bad = await submit(http, attrs={"cloud": "gcp"}, data="fail")
        elsewhere = await submit(http, attrs={"cloud": "azure"})
        async with open_websocket_url(worker_url(served, query)) as ws:
            if first_message is not None:
                await ws.send_message(json.dumps(first_message))
            frames = [await next_frame(ws) for _ in range(2)]
            assert {f["task_id"] for f in frames} == {ok, bad}
            assert all(set(f) == {"task_id", "task_name", "attrs", "data", "timeout"}
                       for f in frames)
            await ws.send_message("not json")
            assert "malformed" in (await next_frame(ws))["error"]
            await ws.send_message(json.dumps([  # an array of answers
                {"task_id": f["task_id"], "result": "error", "error": "it broke"}
                if f["data"] == "fail" else
                {"task_id": f["task_id"], "result": "done", "data": f["data"]}
                for f in frames]))
            done, failed = await final(http, ok), await final(http, bad)
            [worker] = (await http.get("/workers", headers=PRODUCER)).json()["workers"]
        assert done["state"] == "done" and done["result"] == {"n": 1}
        assert failed["state"] == "failed" and failed["error"] == "it broke"
        assert worker["id"] == "lean" and worker["transport"] == "websocket"
        assert (await http.get(f"/tasks/{elsewhere}", headers=PRODUCER)).json()["state"] == (
            "queued")


async def test_task_arrays_with_max(start_server: StartServer, settings: Settings) -> None:
    served = await start_server(settings)
    async with http_client(served.url) as http:
        ids = [await submit(http, data=i) for i in range(3)]
        async with open_websocket_url(worker_url(served, "?task=tag&max=2")) as ws:
            got = []
            while len(got) < 3:
                frame = await next_frame(ws)
                assert isinstance(frame, list) and 1 <= len(frame) <= 2
                got += [t["task_id"] for t in frame]
        assert sorted(got) == sorted(ids)


async def test_refusals_before_the_upgrade(start_server: StartServer, settings: Settings) -> None:
    served = await start_server(settings)
    for query in ("?task=tag&capacity=abc", "?task=tag&cloud=", "?task=tag&max=0"):
        rejected = await refused(worker_url(served, query))
        assert rejected.status_code == 400 and json.loads(rejected.body)["error"], query
    other_path = worker_url(served).removesuffix("/work/queue") + "/tasks"
    rejected = await refused(other_path)
    assert rejected.status_code == 404 and "/work/queue" in json.loads(rejected.body)["error"]


async def test_a_bad_first_message_closes_with_1008(
    start_server: StartServer, settings: Settings
) -> None:
    served = await start_server(settings)
    async with open_websocket_url(worker_url(served)) as ws:
        await ws.send_message("[]")
        with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1008
    assert "no tasks declared" in closed.value.reason.reason


async def test_authorization(start_server: StartServer, settings: Settings) -> None:
    served = await start_server(replace(settings, **TOKENS))
    rejected = await refused(worker_url(served, "?task=tag"),
                             extra_headers=[(b"authorization", b"Bearer p")])
    assert rejected.status_code == 401 and "token" in json.loads(rejected.body)["error"]
    async with http_client(served.url) as http:
        by_header = await submit(http)
        async with open_websocket_url(worker_url(served, "?task=tag"),
                                      extra_headers=[(b"authorization", b"Bearer w")]) as ws:
            frame = await next_frame(ws)
            assert frame["task_id"] == by_header
            await ws.send_message(json.dumps({"task_id": by_header, "result": "done"}))
            assert (await final(http, by_header))["state"] == "done"
        by_message = await submit(http)
        async with open_websocket_url(worker_url(served)) as ws:
            await ws.send_message(json.dumps({"kind": "authorization", "jwt": "Bearer w"}))
            await ws.send_message(json.dumps([{"name": "tag"}]))
            assert (await next_frame(ws))["task_id"] == by_message
    async with open_websocket_url(worker_url(served, "?task=tag")) as ws:
        await ws.send_message(json.dumps({"kind": "authorization", "jwt": "Bearer p"}))
        with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1008 and "token" in closed.value.reason.reason


async def test_fragments_pings_and_oversized_messages(
    start_server: StartServer, settings: Settings
) -> None:
    """The port's own WebSocket handling: a fragmented message is one message, a
    peer's ping is answered, and a message over `max_frame` closes with 1009."""
    served = await start_server(replace(settings, max_frame=1000))
    stream, ws = await bare_client(worker_url(served))
    async with stream:
        declaration = json.dumps([{"name": "tag"}])
        await stream.send_all(ws.send(TextMessage(declaration[:5], message_finished=False))
                              + ws.send(Ping(b"hi"))
                              + ws.send(TextMessage(declaration[5:])))
        assert await next_event(stream, ws) == Pong(b"hi")
        async with http_client(served.url) as http:
            task_id = await submit(http)
            event = await next_event(stream, ws)
            assert isinstance(event, TextMessage) and json.loads(event.data)["task_id"] == task_id
        await stream.send_all(ws.send(TextMessage("x" * 600, message_finished=False))
                              + ws.send(TextMessage("x" * 600)))
        closed = await next_event(stream, ws)
        assert isinstance(closed, CloseConnection) and closed.code == 1009


# --- liveness ----------------------------------------------------------------------------


async def test_a_peer_that_stops_answering_pings_is_dropped_and_its_task_rescheduled(
    start_server: StartServer, settings: Settings
) -> None:
    served = await start_server(replace(settings, ping_interval=0.1, ping_timeout=0.2))
    async with http_client(served.url) as http:
        task_id = await submit(http)
        stream, frame = await silent_worker(worker_url(served, "?task=tag&worker_id=silent"))
        async with stream:
            assert frame["task_id"] == task_id
            async with open_websocket_url(worker_url(served, "?task=tag&worker_id=alive")) as ws:
                # Pings every 0.1 s reach this worker too; it answers them and stays.
                assert (await next_frame(ws))["task_id"] == task_id
                await ws.send_message(json.dumps({"task_id": task_id, "result": "done"}))
                body = await final(http, task_id)
                workers = (await http.get("/workers", headers=PRODUCER)).json()["workers"]
    assert [(a["worker"], a["outcome"]) for a in body["attempts"]] == [
        ("silent", "worker_lost"), ("alive", "done")]
    assert [w["id"] for w in workers] == ["alive"]


# --- configuration ----------------------------------------------------------------------


def test_worker_port_from_flag_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env({}).worker_port is None
    assert Settings.from_env({"WORKYARD_WORKER_PORT": "8471"}).worker_port == 8471
    seen: list[Settings] = []
    monkeypatch.setattr("workyard.cli.trio.run", lambda fn, settings: seen.append(settings))
    main(["serve", "--worker-port", "0", "--db", ":memory:"])
    assert seen[0].worker_port == 0
