"""Seed 000 compatibility (`GET /work/queue`) over real sockets against hypercorn.

Workers here are written from the seed alone — trio-websocket or the `websocket-client`
library plus `json`, no workyard code — because that is what existing fleets run.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
import websocket  # websocket-client: a blocking client, as many real workers use
from conftest import NET_TIMEOUT, Served
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

#: A first-message declaration as current resoto clients send it: extra fields included.
RESOTO_DECLARATION = {
    "name": "tag",
    "filter": {"cloud": ["aws", "gcp"]},
    "info": "Tag resources",
    "description": "Update the tags of a resource",
    "expect_node_result": True,
    "args_description": {"tag": "the tag", "value": "its value"},
    "allowed_on_kind": None,
}


async def submit(http: httpx.AsyncClient, name: str = "tag", **spec: Any) -> str:
    response = await http.post("/tasks", json={"name": name, **spec})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def final(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    with trio.fail_after(NET_TIMEOUT):
        body = (await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})).json()
    assert body["state"] in ("done", "failed", "cancelled"), body
    return body


async def next_frame(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(NET_TIMEOUT):
        return json.loads(await ws.get_message())


async def answer(ws: WebSocketConnection, task_id: str, data: Any = None) -> None:
    await ws.send_message(json.dumps({"task_id": task_id, "result": "done", "data": data}))


# --- a worker from the seed alone -------------------------------------------------------


def blocking_seed_worker(url: str, first_message: str | None, count: int) -> list[dict[str, Any]]:
    """Run `count` tasks with websocket-client: echo `data` back, or report an error for
    tasks whose data asks for one. Returns the frames received."""
    ws = websocket.create_connection(url, timeout=NET_TIMEOUT)
    try:
        if first_message is not None:
            ws.send(first_message)
        frames = []
        for _ in range(count):
            frame = json.loads(ws.recv())
            frames.append(frame)
            if frame["data"] == "fail":
                reply = {"task_id": frame["task_id"], "result": "error", "error": "it broke"}
            else:
                reply = {"task_id": frame["task_id"], "result": "done", "data": frame["data"]}
            ws.send(json.dumps(reply))
        return frames
    finally:
        ws.close()


@pytest.mark.parametrize(("path", "first_message"), [
    ("/work/queue?task=tag&cloud=aws,gcp", None),
    ("/work/queue", json.dumps([RESOTO_DECLARATION])),
], ids=["query", "first-message"])
async def test_a_worker_written_from_the_seed_gets_and_answers_tasks(
    server: Served, http: httpx.AsyncClient, path: str, first_message: str | None
) -> None:
    ok = await submit(http, attrs={"cloud": "aws", "region": "eu"}, data={"n": 1})
    bad = await submit(http, attrs={"cloud": "gcp"}, data="fail")
    frames = await trio.to_thread.run_sync(
        blocking_seed_worker, server.ws(path), first_message, 2)
    assert {f["task_id"] for f in frames} == {ok, bad}
    for f in frames:
        assert set(f) == {"task_id", "task_name", "attrs", "data", "timeout"}
        assert f["task_name"] == "tag"
    done, failed = await final(http, ok), await final(http, bad)
    assert done["state"] == "done" and done["result"] == {"n": 1}
    assert failed["state"] == "failed" and failed["error"] == "it broke"


# --- declaration forms with trio-websocket ----------------------------------------------


async def test_query_form_declarations(server: Served, http: httpx.AsyncClient) -> None:
    url = server.ws("/work/queue?task=collect&task=tag,other&cloud=aws,%20gcp&account=1")
    task_id = await submit(http, attrs={"cloud": "gcp", "account": "1"}, data=[1])
    async with open_websocket_url(url) as ws:
        frame = await next_frame(ws)
        assert frame == {"task_id": task_id, "task_name": "tag",
                         "attrs": {"cloud": "gcp", "account": "1"}, "data": [1], "timeout": 60.0}
        await answer(ws, task_id, "ok")
        assert (await final(http, task_id))["result"] == "ok"
        [worker] = (await http.get("/workers")).json()["workers"]
    assert sorted(s["name"] for s in worker["subscriptions"]) == ["collect", "other", "tag"]
    assert all(s["filter"] == {"account": ["1"], "cloud": ["aws", "gcp"]}
               for s in worker["subscriptions"])


async def test_first_message_form_declarations(server: Served, http: httpx.AsyncClient) -> None:
    aws = await submit(http, attrs={"cloud": "aws"})
    azure = await submit(http, attrs={"cloud": "azure"})
    collect = await submit(http, "collect")
    async with open_websocket_url(server.ws("/work/queue")) as ws:
        await ws.send_message(json.dumps([RESOTO_DECLARATION,
                                          {"name": "collect", "allowed_on_kind": None}]))
        got = {(await next_frame(ws))["task_id"] for _ in range(2)}
        assert got == {aws, collect}
        for task_id in got:
            await answer(ws, task_id)
        for task_id in got:
            assert (await final(http, task_id))["state"] == "done"
    assert (await http.get(f"/tasks/{azure}")).json()["state"] == "queued"


async def test_seed_matching_example_end_to_end(server: Served, http: httpx.AsyncClient) -> None:
    """worker1 cloud=aws,gcp; worker2 cloud=aws account=123 (seed 000's own example)."""
    async with open_websocket_url(server.ws("/work/queue?task=tag&cloud=aws,gcp&worker_id=worker1")
                                  ) as w1, open_websocket_url(
            server.ws("/work/queue?task=tag&cloud=aws&account=123&worker_id=worker2")) as w2:
        # Attachment is proven by a task each: gcp only matches worker1.
        gcp = await submit(http, attrs={"cloud": "gcp"})
        assert (await next_frame(w1))["task_id"] == gcp
        specific = [await submit(http, attrs={"cloud": "aws", "account": "123"})
                    for _ in range(3)]
        assert [(await next_frame(w2))["task_id"] for _ in specific] == specific
        workers = {w["id"]: w for w in (await http.get("/workers")).json()["workers"]}
        assert workers["worker1"]["outstanding"] == 1  # less busy, yet never a candidate
        assert workers["worker2"]["outstanding"] == 3


async def test_a_lost_connection_reschedules_its_tasks_to_another_worker(
    server: Served, http: httpx.AsyncClient
) -> None:
    first = await submit(http)
    async with open_websocket_url(server.ws("/work/queue?task=tag&worker_id=lost")) as lost:
        assert (await next_frame(lost))["task_id"] == first
        async with open_websocket_url(server.ws("/work/queue?task=tag&worker_id=other")) as other:
            second = await submit(http)  # the idle worker gets it: proof that it is attached
            assert (await next_frame(other))["task_id"] == second
            await lost.aclose()
            assert (await next_frame(other))["task_id"] == first
            await answer(other, first)
            await answer(other, second)
            body = await final(http, first)
    assert body["state"] == "done"
    assert [(a["worker"], a["outcome"]) for a in body["attempts"]] == [
        ("lost", "worker_lost"), ("other", "done")]


async def test_array_of_answers_is_accepted(server: Served, http: httpx.AsyncClient) -> None:
    ids = [await submit(http, data=i) for i in range(3)]
    async with open_websocket_url(server.ws("/work/queue?task=tag")) as ws:
        frames = [await next_frame(ws) for _ in ids]
        await ws.send_message(json.dumps([
            {"task_id": f["task_id"], "result": "done", "data": f["data"] * 10} for f in frames]))
        results = [(await final(http, task_id))["result"] for task_id in ids]
    assert results == [0, 10, 20]


async def test_same_worker_id_reconnecting_closes_the_old_connection(
    server: Served, http: httpx.AsyncClient
) -> None:
    task_id = await submit(http)
    url = server.ws("/work/queue?task=tag&worker_id=same")
    async with open_websocket_url(url) as old:
        assert (await next_frame(old))["task_id"] == task_id
        async with open_websocket_url(url) as new:
            assert (await next_frame(new))["task_id"] == task_id  # moved to the new one
            with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                await old.get_message()
            assert closed.value.reason.code == 1008 and "replaced" in closed.value.reason.reason
            await answer(new, task_id)
            assert (await final(http, task_id))["state"] == "done"


# --- malformed input --------------------------------------------------------------------


MALFORMED_FRAMES = [
    "not json",
    "{}",
    '{"task_id": "x"}',
    '{"task_id": "x", "result": "maybe"}',
    '{"task_id": 5, "result": "done"}',
    "[1, 2]",
]


async def test_malformed_frames_get_an_error_frame_and_lose_nothing(
    server: Served, http: httpx.AsyncClient
) -> None:
    task_id = await submit(http, data="keep")
    async with open_websocket_url(server.ws("/work/queue?task=tag")) as ws:
        assert (await next_frame(ws))["task_id"] == task_id
        for frame in MALFORMED_FRAMES:
            await ws.send_message(frame)
            error = await next_frame(ws)
            assert set(error) == {"error"} and "malformed" in error["error"], frame
        # Still attached, the task still ours: answering it works.
        assert (await http.get(f"/tasks/{task_id}")).json()["state"] == "running"
        await answer(ws, task_id, "kept")
        assert (await final(http, task_id))["result"] == "kept"
        later = await submit(http)
        assert (await next_frame(ws))["task_id"] == later


async def test_a_bad_query_is_refused_before_the_upgrade(server: Served) -> None:
    for query in ("task=tag&capacity=abc", "task=tag&capacity=-1", "task=tag&cloud=",
                  "task=tag&cloud=,,"):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(server.ws(f"/work/queue?{query}")):
                pass  # pragma: no cover
        assert rejected.value.status_code == 400, query
        assert json.loads(rejected.value.body)["error"], query


BAD_FIRST_MESSAGES = [
    # (first message, what the close reason must say)
    ("[]", "no tasks declared"),
    ("not json", "expected a JSON array"),
    ('[{"filter": {}}]', "name"),
    ('[{"name": ""}]', "name"),
    ('[{"name": "tag", "filter": {"cloud": []}}]', "cloud"),
    ('{"name": "tag"}', "expected a JSON array"),
]


async def test_bad_first_message_declarations_close_with_1008_and_a_reason(
    server: Served, http: httpx.AsyncClient
) -> None:
    for first, reason in BAD_FIRST_MESSAGES:
        async with open_websocket_url(server.ws("/work/queue")) as ws:
            await ws.send_message(first)
            with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
        assert closed.value.reason.code == 1008, first
        assert reason in closed.value.reason.reason, (first, closed.value.reason)
    assert (await http.get("/workers")).json() == {"workers": []}
