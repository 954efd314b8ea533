"""One validation for every worker id, on every transport (issue 15, item 10): printable,
at most MAX_NAME characters, outside the hub's reserved prefix. A WebSocket worker is
refused before its upgrade exactly as a poller is refused its poll."""

from __future__ import annotations

import json
import urllib.parse

import httpx
import pytest
from conftest import Served
from trio_websocket import ConnectionRejected, open_websocket_url

from workyard.protocol import MAX_NAME, RESERVED_WORKER_PREFIX

BAD_IDS = {
    "newline": "w1\nINFO forged log line",
    "control-character": "w\x07",
    "too-long": "w" * 12_000,
    "reserved-prefix": RESERVED_WORKER_PREFIX + "poll-1",
    "empty": "",
}


async def websocket_refusal(served: Served, worker_id: str) -> tuple[int, str]:
    query = urllib.parse.urlencode({"task": "t", "worker_id": worker_id})
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(served.ws(f"/work/queue?{query}")):
            pass  # pragma: no cover
    return rejected.value.status_code, json.loads(rejected.value.body)["error"]


@pytest.mark.parametrize("worker_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
async def test_a_bad_worker_id_is_refused_alike_by_websocket_and_polling_routes(
    server: Served, http: httpx.AsyncClient, worker_id: str
) -> None:
    ws_status, ws_error = await websocket_refusal(server, worker_id)
    body = await http.post("/v1/queue/t", json={"worker_id": worker_id})
    query = await http.post("/v1/queue/t", params={"worker_id": worker_id})
    registry = await http.post("/w/t", json={"worker_id": worker_id})
    answers = {(r.status_code, r.json()["error"]) for r in (body, query, registry)}
    assert answers == {(ws_status, ws_error)}
    assert ws_status == 400 and "worker_id" in ws_error
    assert worker_id not in ws_error or len(worker_id) <= MAX_NAME  # never echoed whole
    assert (await http.get("/workers")).json() == {"workers": []}


async def test_an_id_at_the_limits_is_accepted_on_the_websocket(
    server: Served, http: httpx.AsyncClient
) -> None:
    worker_id = "é" + "w" * (MAX_NAME - 1)  # printable, not ASCII, MAX_NAME characters
    query = urllib.parse.urlencode({"task": "t", "worker_id": worker_id})
    async with open_websocket_url(server.ws(f"/work/queue?{query}")):
        workers = (await http.get("/workers")).json()["workers"]
        assert [w["id"] for w in workers] == [worker_id]
