"""The producer API and fleet views against a real hypercorn server on a real socket.

Also: restart recovery from the SQLite file, auth, and the body size limit.
Waits on the network are events or long-polls bounded by `trio.fail_after`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served, StartServer, echo_worker, http_client
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)

from workyard import Settings


def error_of(response: httpx.Response) -> str:
    """The `error` of a JSON 4xx response (any other shape fails the test)."""
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


async def submit(http: httpx.AsyncClient, **spec: Any) -> str:
    response = await http.post("/tasks", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def wait_final(http: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    """Long-poll until the task is final (bounded)."""
    with trio.fail_after(NET_TIMEOUT):
        while True:
            body = (await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})).json()
            if body["state"] in ("done", "failed", "cancelled"):
                return body


# --- submitting -----------------------------------------------------------------------


async def test_submit_one_and_get_it(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks", json={"name": "tag", "attrs": {"cloud": "aws"},
                                               "data": {"x": [1, 2]}, "priority": 2})
    assert response.status_code == 201
    assert response.json()["created"] is True
    task = (await http.get(f"/tasks/{response.json()['id']}")).json()
    assert task["state"] == "queued" and task["name"] == "tag"
    assert task["attrs"] == {"cloud": "aws"} and task["data"] == {"x": [1, 2]}
    assert task["priority"] == 2 and task["attempts"] == []


async def test_submit_batch(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks", json={"tasks": [{"name": "a"}, {"name": "b"}]})
    assert response.status_code == 201
    ids = response.json()["ids"]
    assert len(ids) == 2 and len(set(ids)) == 2


async def test_idempotency_key_over_http(http: httpx.AsyncClient) -> None:
    first = await http.post("/tasks", json={"name": "tag", "key": "nightly-1"})
    again = await http.post("/tasks", json={"name": "tag", "key": "nightly-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "created": False}
    batch = await http.post("/tasks", json={"tasks": [{"name": "tag", "key": "nightly-1"},
                                                      {"name": "tag", "key": "nightly-2"},
                                                      {"name": "tag", "key": "nightly-2"}]})
    ids = batch.json()["ids"]
    assert ids[0] == first.json()["id"] and ids[1] == ids[2] != ids[0]
    listed = (await http.get("/tasks")).json()["tasks"]
    assert len(listed) == 2


BAD_SUBMISSIONS = [
    # (body, a substring the error must contain: the offending field where there is one)
    (b"{", ""),  # malformed JSON: no field to name
    (b"", ""),
    (b"\xff\xfe", ""),
    (b"null", "object"),
    (b"[]", "object"),
    (b'"tag"', "object"),
    (b"{}", "name"),
    (b'{"name": 5}', "$.name"),
    (b'{"name": ""}', "$.name"),
    (b'{"name": "t", "attrs": {"cloud": 1}}', "$.attrs"),
    (b'{"name": "t", "attrs": ["a"]}', "$.attrs"),
    (b'{"name": "t", "priority": "high"}', "$.priority"),
    (b'{"name": "t", "timeout": -1}', "$.timeout"),
    (b'{"name": "t", "timeout": 0}', "$.timeout"),
    (b'{"name": "t", "retries": -1}', "$.retries"),
    (b'{"name": "t", "schedule_timeout": 0}', "$.schedule_timeout"),
    (b'{"name": "t", "key": ""}', "$.key"),
    (b'{"name": "t", "bogus": 1}', "bogus"),
    (b'{"tasks": []}', "tasks"),
    (b'{"tasks": "x"}', "tasks"),
    (b'{"tasks": null}', "tasks"),
    (b'{"tasks": [{"name": "ok"}], "extra": 1}', "tasks"),
    (b'{"tasks": [{"name": "ok"}, {"name": 3}]}', "$.tasks[1].name"),
    (b'{"tasks": [{"name": "ok"}, {"name": "t", "timeout": -5}]}', "$.tasks[1].timeout"),
    (b'{"tasks": [{"name": "ok"}, 7]}', "$.tasks[1]"),
]


async def test_bad_submissions_are_4xx_naming_the_field_and_store_nothing(
    http: httpx.AsyncClient,
) -> None:
    for body, names in BAD_SUBMISSIONS:
        response = await http.post("/tasks", content=body,
                                   headers={"content-type": "application/json"})
        assert response.status_code == 400, (body, response.text)
        assert names in error_of(response), (body, response.text)
    assert (await http.get("/tasks")).json() == {"tasks": []}


async def test_batch_size_limits(http: httpx.AsyncClient) -> None:
    response = await http.post("/tasks", json={"tasks": [{"name": "t"}] * 1001})
    assert response.status_code == 400
    assert "1000" in error_of(response)
    assert (await http.get("/tasks")).json() == {"tasks": []}
    response = await http.post("/tasks", json={"tasks": [{"name": "t"}] * 1000})
    assert response.status_code == 201 and len(response.json()["ids"]) == 1000


async def test_bad_query_parameters(http: httpx.AsyncClient) -> None:
    task_id = await submit(http, name="t")
    for query in ("wait=abc", "wait=-1", "wait=nan", "wait=1e9"):
        response = await http.get(f"/tasks/{task_id}?{query}")
        assert response.status_code == 400 and "wait" in error_of(response), query
    for query, field in (("limit=abc", "limit"), ("limit=0", "limit"),
                         ("limit=100000", "limit"), ("state=bogus", "state")):
        response = await http.get(f"/tasks?{query}")
        assert response.status_code == 400 and field in error_of(response), query


async def test_unknown_task_is_404(http: httpx.AsyncClient) -> None:
    assert "nope" in error_of(await http.get("/tasks/nope"))
    assert (await http.get("/tasks/nope")).status_code == 404
    assert (await http.delete("/tasks/nope")).status_code == 404


async def test_unknown_route_and_method_are_json_errors(http: httpx.AsyncClient) -> None:
    assert (await http.get("/nothing-here")).status_code == 404
    error_of(await http.get("/nothing-here"))
    response = await http.put("/tasks")
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) >= {"GET", "POST"}
    error_of(response)


# --- waiting, cancelling, listing -------------------------------------------------------


async def test_long_poll_returns_when_the_task_is_final(
    server: Served, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    task_id = await submit(http, name="tag", data={"n": 7})
    got: list[httpx.Response] = []
    polled = trio.Event()

    async def poll() -> None:
        got.append(await http.get(f"/tasks/{task_id}", params={"wait": 60}))
        polled.set()

    nursery.start_soon(poll)
    # Everything idle for a moment: the request has reached the hub and is waiting there.
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert not got and task_id in server.hub.scheduler.tasks
    await nursery.start(echo_worker, server.ws("/work/queue?task=tag"))
    with trio.fail_after(NET_TIMEOUT):  # a bound: the answer ends the poll, not the 60 s
        await polled.wait()
    body = got[0].json()
    assert body["state"] == "done" and body["result"] == {"n": 7}
    assert body["attempts"][0]["outcome"] == "done"


async def test_wait_on_a_final_task_returns_at_once(
    server: Served, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    task_id = await submit(http, name="tag")
    assert (await http.delete(f"/tasks/{task_id}")).json()["state"] == "cancelled"
    with trio.fail_after(NET_TIMEOUT):
        body = (await http.get(f"/tasks/{task_id}", params={"wait": 60})).json()
    assert body["state"] == "cancelled"


async def test_waiting_for_many_tasks_answers_once_all_are_final_and_stored(
    server: Served, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    ids = [await submit(http, name="tag", data=n) for n in range(3)]
    got: list[httpx.Response] = []
    answered = trio.Event()

    async def wait_for_all() -> None:
        got.append(await http.post("/tasks/wait", json={"ids": [*ids, ids[0]], "wait": 60}))
        answered.set()

    nursery.start_soon(wait_for_all)
    await trio.testing.wait_all_tasks_blocked(cushion=0.05)
    assert not got  # parked at the hub while nothing is final
    await nursery.start(echo_worker, server.ws("/work/queue?task=tag"))
    with trio.fail_after(NET_TIMEOUT):  # the last answer ends the wait, not the 60 s
        await answered.wait()
    body = got[0].json()
    assert [(t["id"], t["state"], t["result"]) for t in body["finished"]] == [
        (task_id, "done", n) for n, task_id in enumerate(ids)]  # each once, in order
    assert body["pending"] == [] and body["unknown"] == []
    for task_id in ids:  # what it answered with is durable
        stored = await server.hub.store.tasks.get(task_id)
        assert stored is not None and stored.state.value == "done"


async def test_waiting_for_at_least_one_names_the_pending_and_the_unknown_ids(
    http: httpx.AsyncClient,
) -> None:
    cancelled, queued = await submit(http, name="tag"), await submit(http, name="later")
    await http.delete(f"/tasks/{cancelled}")
    query = {"ids": [queued, "nope", cancelled], "wait": 60, "min": 1}
    with trio.fail_after(NET_TIMEOUT):  # one final already: at once, not after 60 s
        response = await http.post("/tasks/wait", json=query)
    body = response.json()
    assert response.status_code == 200
    assert [(t["id"], t["state"]) for t in body["finished"]] == [(cancelled, "cancelled")]
    assert body["pending"] == [queued] and body["unknown"] == ["nope"]
    with trio.fail_after(NET_TIMEOUT):  # only unknown ids: nothing to wait for
        body = (await http.post("/tasks/wait", json={"ids": ["nope"], "wait": 60})).json()
    assert body == {"finished": [], "pending": [], "unknown": ["nope"]}
    body = (await http.post("/tasks/wait", json={"ids": [queued], "wait": 0.05})).json()
    assert body == {"finished": [], "pending": [queued], "unknown": []}


@pytest.mark.parametrize(("body", "says"), [
    ({"ids": []}, "at least one"),
    ({"ids": ["t"] * 1001}, "at most 1000"),
    ({"ids": ["a", "b", "a"], "min": 3}, "`min` is 3"),
    ({"ids": ["a"], "min": 0}, "$.min"),
    ({"ids": ["a"], "wait": -1}, "$.wait"),
    ({"ids": ["a"], "wait": 301}, "$.wait"),
    ({"ids": [7]}, "$.ids[0]"),
    ({"ids": [""]}, "$.ids[0]"),
    ({"ids": "a"}, "$.ids"),
    ({"task_ids": ["a"]}, "task_ids"),
    ([], "object"),
])
async def test_bad_waits_for_many_tasks_are_400s_naming_the_problem(
    http: httpx.AsyncClient, body: Any, says: str
) -> None:
    response = await http.post("/tasks/wait", json=body)
    assert response.status_code == 400 and says in error_of(response)
    response = await http.post("/tasks/wait", content=b"{not json")
    assert response.status_code == 400


async def test_cancel_queued_and_running(
    server: Served, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    queued = await submit(http, name="later")
    response = await http.delete(f"/tasks/{queued}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    again = await http.delete(f"/tasks/{queued}")
    assert again.status_code == 409 and "cancelled" in error_of(again)

    running = await submit(http, name="tag")
    async with open_websocket_url(server.ws("/work/queue?task=tag")) as ws:
        with trio.fail_after(NET_TIMEOUT):
            frame = json.loads(await ws.get_message())
        assert frame["task_id"] == running
        response = await http.delete(f"/tasks/{running}")
        assert response.json()["state"] == "cancelled"
        assert response.json()["attempts"][0]["outcome"] == "cancelled"
        # The worker's answer comes too late and changes nothing.
        await ws.send_message(json.dumps({"task_id": running, "result": "done", "data": 1}))
        follow_up = await submit(http, name="tag")
        with trio.fail_after(NET_TIMEOUT):
            assert json.loads(await ws.get_message())["task_id"] == follow_up
    assert (await http.get(f"/tasks/{running}")).json()["state"] == "cancelled"


async def test_listing_filters(
    server: Served, http: httpx.AsyncClient, nursery: trio.Nursery
) -> None:
    a1 = await submit(http, name="a")
    b1 = await submit(http, name="b")
    a2 = await submit(http, name="a")
    await http.delete(f"/tasks/{a1}")

    async def ids(**params: Any) -> list[str]:
        response = await http.get("/tasks", params=params)
        assert response.status_code == 200
        return [t["id"] for t in response.json()["tasks"]]

    assert await ids() == [a2, b1, a1]  # newest first
    assert await ids(name="a") == [a2, a1]
    assert await ids(state="queued") == [a2, b1]
    assert await ids(state="queued", name="b") == [b1]
    assert await ids(state="cancelled") == [a1]
    assert await ids(limit=1) == [a2]
    assert await ids(name="zzz") == []

    await nursery.start(echo_worker, server.ws("/work/queue?task=b"))
    await wait_final(http, b1)
    assert await ids(state="done") == [b1]
    listed = (await http.get("/tasks", params={"state": "done"})).json()["tasks"][0]
    assert listed["attempts"][0]["outcome"] == "done"


async def test_running_tasks_are_listed_with_their_worker(
    server: Served, http: httpx.AsyncClient
) -> None:
    task_id = await submit(http, name="tag")
    async with open_websocket_url(server.ws("/work/queue?task=tag&worker_id=w1")) as ws:
        with trio.fail_after(NET_TIMEOUT):
            await ws.get_message()
        [listed] = (await http.get("/tasks", params={"state": "running"})).json()["tasks"]
        assert listed["id"] == task_id and listed["attempts"][0]["worker"] == "w1"


async def test_workers_and_queues_shapes(server: Served, http: httpx.AsyncClient) -> None:
    task_id = await submit(http, name="tag", attrs={"cloud": "aws"})
    await submit(http, name="tag", attrs={"cloud": "azure"})
    url = server.ws("/work/queue?task=tag,collect&cloud=aws,gcp&worker_id=w1&capacity=3")
    async with open_websocket_url(url) as ws:
        with trio.fail_after(NET_TIMEOUT):
            assert json.loads(await ws.get_message())["task_id"] == task_id
        workers = (await http.get("/workers")).json()
        queues = (await http.get("/queues")).json()
    [worker] = workers["workers"]
    assert set(worker) == {"id", "transport", "subscriptions", "capacity", "outstanding",
                           "processed", "failed", "lost", "connected_since", "since"}
    assert worker["id"] == "w1" and worker["transport"] == "websocket"
    assert worker["capacity"] == 3 and worker["outstanding"] == 1
    assert worker["subscriptions"] == [
        {"name": "tag", "filter": {"cloud": ["aws", "gcp"]}},
        {"name": "collect", "filter": {"cloud": ["aws", "gcp"]}},
    ]
    assert queues == {"queues": {
        "collect": {"queued": 0, "running": 0, "workers": 1, "processed": 0, "failed": 0},
        "tag": {"queued": 1, "running": 1, "workers": 1, "processed": 0, "failed": 0},
    }}
    health = (await http.get("/health")).json()
    assert health["ok"] is True


# --- restart recovery -------------------------------------------------------------------


async def test_restart_requeues_unfinished_tasks_from_the_sqlite_file(
    start_server: StartServer, hub_db: str, nursery: trio.Nursery
) -> None:
    first = await start_server()
    async with http_client(first.url) as http:
        done_id = await submit(http, name="tag", data="early")
        async with trio.open_nursery() as workers:
            await workers.start(echo_worker, first.ws("/work/queue?task=tag"))
            await wait_final(http, done_id)
            workers.cancel_scope.cancel()
        ids = (await http.post("/tasks", json={"tasks": [
            {"name": "tag", "data": i} for i in range(3)]})).json()["ids"]
        # One task running on a worker that never answers, two queued, when the hub stops.
        async with open_websocket_url(first.ws("/work/queue?task=tag&capacity=1")) as ws:
            with trio.fail_after(NET_TIMEOUT):
                running = json.loads(await ws.get_message())["task_id"]
            assert running == ids[0]
            with trio.fail_after(NET_TIMEOUT):
                await first.stop()

    second = await start_server(Settings(port=0, db=hub_db))
    assert sorted(second.hub.scheduler.tasks) == sorted(ids)
    async with http_client(second.url) as http:
        queued = [t["id"] for t in (await http.get("/tasks?state=queued")).json()["tasks"]]
        assert sorted(queued) == sorted(ids)
        await nursery.start(echo_worker, second.ws("/work/queue?task=tag"))
        for i, task_id in enumerate(ids):
            body = await wait_final(http, task_id)
            assert body["state"] == "done" and body["result"] == i
        assert (await http.get(f"/tasks/{done_id}")).json()["result"] == "early"


# --- auth and limits --------------------------------------------------------------------

TOKENS = Settings(port=0, db=":memory:", worker_tokens=frozenset({"w"}),
                  producer_tokens=frozenset({"p"}), admin_tokens=frozenset({"a"}))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_http_auth(start_server: StartServer) -> None:
    served = await start_server(TOKENS)
    async with http_client(served.url) as http:
        for headers in ({}, bearer("wrong"), bearer("w"), {"Authorization": "Basic p"}):
            response = await http.post("/tasks", json={"name": "t"}, headers=headers)
            assert response.status_code == 401 and "producer" in error_of(response)
            assert (await http.get("/tasks", headers=headers)).status_code == 401
        for token in ("p", "a"):
            response = await http.post("/tasks", json={"name": "t"}, headers=bearer(token))
            assert response.status_code == 201
        assert (await http.get("/workers")).status_code == 401
        for token in ("w", "p", "a"):
            assert (await http.get("/workers", headers=bearer(token))).status_code == 200
            assert (await http.get("/queues", headers=bearer(token))).status_code == 200
        assert (await http.get("/queues", headers=bearer("nope"))).status_code == 401


async def receives_a_task(served: Served, ws: WebSocketConnection) -> None:
    """Submit a task, check the worker on `ws` gets it (proof that it is attached), and
    answer it, so that the next worker does not inherit it."""
    async with http_client(served.url) as http:
        submitted = await http.post("/tasks", json={"name": "tag"}, headers=bearer("a"))
        task_id = submitted.json()["id"]
        with trio.fail_after(NET_TIMEOUT):
            assert json.loads(await ws.get_message())["task_id"] == task_id
        await ws.send_message(json.dumps({"task_id": task_id, "result": "done"}))
        final = await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT},
                               headers=bearer("a"))
        assert final.json()["state"] == "done"


async def test_ws_auth_by_header(start_server: StartServer) -> None:
    served = await start_server(TOKENS)
    for token in ("w", "a"):
        async with open_websocket_url(served.ws("/work/queue?task=tag"),
                                      extra_headers=[(b"authorization", f"Bearer {token}".encode())]
                                      ) as ws:
            await receives_a_task(served, ws)
    async with open_websocket_url(served.ws("/work/queue?task=tag&access_token=w")) as ws:
        await receives_a_task(served, ws)  # for clients that cannot set headers
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(served.ws("/work/queue?task=tag"),
                                      extra_headers=[(b"authorization", b"Bearer p")]):
            pass  # pragma: no cover
    assert rejected.value.status_code == 401
    assert "token" in json.loads(rejected.value.body)["error"]


async def test_ws_auth_by_first_message_then_declarations(start_server: StartServer) -> None:
    served = await start_server(TOKENS)
    async with open_websocket_url(served.ws("/work/queue")) as ws:
        await ws.send_message(json.dumps({"kind": "authorization", "jwt": "Bearer w"}))
        await ws.send_message(json.dumps([{"name": "tag", "filter": {}}]))
        await receives_a_task(served, ws)
    # Query-form declarations with the authorization as first message work too.
    async with open_websocket_url(served.ws("/work/queue?task=tag")) as ws:
        await ws.send_message(json.dumps({"kind": "authorization", "jwt": "Bearer w"}))
        await receives_a_task(served, ws)


@pytest.mark.parametrize("first", [
    {"kind": "authorization", "jwt": "Bearer wrong"},
    {"kind": "authorization", "jwt": "Bearer p"},
    [{"name": "tag", "filter": {}}],
])
async def test_ws_refused_without_a_valid_worker_token(
    start_server: StartServer, first: Any
) -> None:
    served = await start_server(TOKENS)
    async with open_websocket_url(served.ws("/work/queue")) as ws:
        await ws.send_message(json.dumps(first))
        with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1008
    assert "token" in closed.value.reason.reason or "authorization" in closed.value.reason.reason


async def test_body_size_limit_is_a_413_json_error(start_server: StartServer) -> None:
    served = await start_server(Settings(port=0, db=":memory:", max_body=1024))
    async with http_client(served.url) as http:
        response = await http.post("/tasks", json={"name": "t", "data": "x" * 2000})
        assert response.status_code == 413
        error_of(response)

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to check up front
            yield b'{"name": "t", "data": "'
            for _ in range(20):
                yield b"x" * 100
            yield b'"}'

        response = await http.post("/tasks", content=chunked())
        assert response.status_code == 413
        error_of(response)
        assert (await http.post("/tasks", json={"name": "t", "data": "x" * 500})).status_code == 201
        assert len((await http.get("/tasks", headers=bearer("a"))).json()["tasks"]) == 1


async def test_serve_reports_a_free_port(start_server: StartServer) -> None:
    a, b = await start_server(Settings(port=0, db=":memory:")), await start_server(
        Settings(port=0, db=":memory:"))
    assert a.url.startswith("http://127.0.0.1:") and a.url != b.url

