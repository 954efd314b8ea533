"""JSON nesting is bounded (issue 15, item 8): a body or frame nested deeper than
MAX_DEPTH levels is a 400 (or an error frame, or close 1008), never a RecursionError's
500, wherever the nesting hides; as deep as the limit is accepted."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served
from trio_websocket import ConnectionClosed, open_websocket_url

from workyard.protocol import MAX_DEPTH


def nested(levels: int) -> str:
    """A JSON value `levels` deep, arrays and objects in turn."""
    opened = "".join('[' if i % 2 else '{"k":' for i in range(levels))
    closed = "".join(']' if i % 2 else '}' for i in reversed(range(levels)))
    return opened + "1" + closed


TOO_DEEP = [1000, 100_000, MAX_DEPTH]  # MAX_DEPTH levels of data inside the task object


def bodies(levels: int) -> list[tuple[str, str, str]]:
    """(method, path, body) carrying a value `levels` deep, one level inside the body."""
    value = nested(levels)
    return [
        ("POST", "/tasks", f'{{"name": "t", "data": {value}}}'),
        ("POST", "/tasks", f'{{"tasks": [{{"name": "t", "data": {nested(levels - 2)}}}]}}'),
        ("PUT", "/v1/queue/q/configuration", f'{{"interval": 5, "x": {value}}}'),
        ("POST", "/v1/queue/q", f'{{"tasks": [{nested(levels - 1)}], "max": 0}}'),
        ("POST", "/w/q", f'{{"worker_id": {value}}}'),
    ]


@pytest.mark.parametrize("levels", TOO_DEEP)
async def test_a_body_nested_too_deep_is_a_400_on_every_route(
    server: Served, http: httpx.AsyncClient, levels: int, caplog: pytest.LogCaptureFixture
) -> None:
    for method, path, body in bodies(levels):
        response = await http.request(method, path, content=body)
        assert response.status_code == 400, (path, response.text[:200])
        assert f"nested more than {MAX_DEPTH} levels" in response.json()["error"], path
    assert (await http.get("/tasks")).json() == {"tasks": []}
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_as_deep_as_the_limit_is_accepted_and_returned_byte_for_byte(
    http: httpx.AsyncClient,
) -> None:
    data = nested(MAX_DEPTH - 1)  # the task object is the first level
    response = await http.post("/tasks", content=f'{{"name": "t", "data": {data}}}')
    assert response.status_code == 201, response.text
    task = await http.get(f"/tasks/{response.json()['id']}")
    assert json.loads(task.text)["data"] == json.loads(data)


async def test_a_frame_nested_too_deep_gets_an_error_frame_or_a_1008(
    server: Served, http: httpx.AsyncClient
) -> None:
    task_id = (await http.post("/tasks", json={"name": "t"})).json()["id"]
    async with open_websocket_url(server.ws("/work/queue?task=t")) as ws:
        with trio.fail_after(NET_TIMEOUT):
            assert json.loads(await ws.get_message())["task_id"] == task_id
            await ws.send_message(
                f'{{"task_id": "{task_id}", "result": "done", "data": {nested(1000)}}}')
            error = json.loads(await ws.get_message())
        assert f"nested more than {MAX_DEPTH} levels" in error["error"]
        # the connection lives on: a good answer still finishes the task
        await ws.send_message(json.dumps({"task_id": task_id, "result": "done"}))
        with trio.fail_after(NET_TIMEOUT):
            done = await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})
        assert done.json()["state"] == "done"
    async with open_websocket_url(server.ws("/work/queue")) as ws:
        await ws.send_message(f'[{{"name": "t", "filter": {nested(1000)}}}]')
        with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1008
    assert f"nested more than {MAX_DEPTH} levels" in (closed.value.reason.reason or "")

