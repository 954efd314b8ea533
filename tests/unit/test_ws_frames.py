"""`GET /work/queue?max=N`: several tasks per frame (a workyard extension to seed 000).

Without `max` every frame is one task object (covered in test_seed000.py); with it,
every frame is a JSON array of up to N tasks, as many as are waiting.
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served
from trio_websocket import ConnectionRejected, open_websocket_url


async def test_waiting_tasks_come_in_arrays_of_at_most_max(
    server: Served, http: httpx.AsyncClient
) -> None:
    response = await http.post("/tasks", json={"tasks": [{"name": "tag", "data": i}
                                                        for i in range(5)]})
    ids = response.json()["ids"]
    async with open_websocket_url(server.ws("/work/queue?task=tag&max=3")) as ws:
        frames = []
        with trio.fail_after(NET_TIMEOUT):
            while sum(len(f) for f in frames) < len(ids):
                frames.append(json.loads(await ws.get_message()))
        assert [len(f) for f in frames] == [3, 2]  # all 5 were waiting: as few frames as allowed
        tasks = [t for f in frames for t in f]
        assert [t["task_id"] for t in tasks] == ids
        assert all(set(t) == {"task_id", "task_name", "attrs", "data", "timeout"} for t in tasks)
        await ws.send_message(json.dumps([
            {"task_id": t["task_id"], "result": "done", "data": t["data"]} for t in tasks]))
        with trio.fail_after(NET_TIMEOUT):
            results = [(await http.get(f"/tasks/{i}", params={"wait": NET_TIMEOUT})).json()
                       for i in ids]
    assert [(r["state"], r["result"]) for r in results] == [("done", i) for i in range(5)]


async def test_a_single_task_is_still_an_array(server: Served, http: httpx.AsyncClient) -> None:
    async with open_websocket_url(server.ws("/work/queue?task=tag&max=8")) as ws:
        task_id = (await http.post("/tasks", json={"name": "tag"})).json()["id"]
        with trio.fail_after(NET_TIMEOUT):
            frame = json.loads(await ws.get_message())
    assert [t["task_id"] for t in frame] == [task_id]


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1001"])
async def test_a_bad_max_is_refused_before_the_upgrade(server: Served, value: str) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(server.ws(f"/work/queue?task=tag&max={value}")):
            pass  # pragma: no cover
    assert rejected.value.status_code == 400
    assert "max" in json.loads(rejected.value.body)["error"]
