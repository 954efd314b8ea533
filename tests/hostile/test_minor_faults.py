"""The minor ones (issue 15, item 14): answers that are not the worker's get an error
frame, a broken WebSocket frame on the main port gets a close frame, and text that is
not UTF-8 or holds a lone surrogate is named for what it is."""

from __future__ import annotations

import json

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served, bare_client, next_event
from trio_websocket import open_websocket_url
from wsproto.events import CloseConnection, Ping, TextMessage


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
