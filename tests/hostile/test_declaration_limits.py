"""What one worker may declare is bounded on every transport (issue 15, item 3): beyond
a limit a WebSocket worker is closed with 1008 and the limit's reason, a poller gets a
400, and nothing it declared outlives it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from workyard.protocol import (
    MAX_COMBINATIONS,
    MAX_FILTER_KEYS,
    MAX_FILTER_VALUES,
    MAX_NAME,
    MAX_SUBSCRIPTIONS,
)


def values(n: int, prefix: str = "v") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def declaration(count: int, filter: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [{"name": f"t{i}", "filter": filter or {}} for i in range(count)]


async def close_of(served: Served, first: str) -> tuple[int, str]:
    """The close code and reason the hub answers `first` (a first message) with."""
    async with open_websocket_url(served.ws("/work/queue"),
                                  max_message_size=64 * 1024 * 1024) as ws:
        await ws.send_message(first)
        with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    reason = closed.value.reason
    return reason.code, reason.reason or ""


BEYOND = [
    # (declaration, what the close reason names)
    (declaration(1000, {"a": values(64), "b": values(64)}), "at most"),  # the 773 KiB
    (declaration(MAX_SUBSCRIPTIONS + 1), f"at most {MAX_SUBSCRIPTIONS} per worker"),
    (declaration(1, {f"k{i}": ["v"] for i in range(MAX_FILTER_KEYS + 1)}),
     f"at most {MAX_FILTER_KEYS}"),
    (declaration(1, {"a": values(MAX_FILTER_VALUES + 1)}), f"at most {MAX_FILTER_VALUES}"),
    (declaration(1, {"a": ",".join(values(MAX_FILTER_VALUES + 1))}),  # as "v0,v1,…"
     f"at most {MAX_FILTER_VALUES}"),
    (declaration(2, {"a": values(64), "b": values(33)}), f"more than {MAX_COMBINATIONS}"),
    ([{"name": "x" * (MAX_NAME + 1)}], f"1 to {MAX_NAME} printable"),
    ([{"name": "t", "filter": {"k" * (MAX_NAME + 1): "v"}}], "a filter key"),
    ([{"name": "t", "filter": {"k": "a\u0000b"}}], "printable"),
]


@pytest.mark.parametrize(("declared", "reason"), BEYOND, ids=[
    "the-issues-773-KiB", "subscriptions", "filter-keys", "filter-values",
    "filter-values-as-text", "combinations", "long-name", "long-key", "control-character-in-a-value"])
async def test_a_declaration_beyond_a_limit_closes_with_1008_naming_it_and_leaves_nothing(
    server: Served, http: httpx.AsyncClient, declared: list[dict[str, Any]], reason: str
) -> None:
    started = trio.current_time()
    code, said = await close_of(server, json.dumps(declared))
    assert (code, reason in said) == (1008, True), said
    # refused before anything was indexed: the hub stayed responsive (it took 13 s once)
    assert trio.current_time() - started < 2.0
    assert (await http.get("/health")).json()["workers"] == 0
    assert server.hub.scheduler.queues == {}  # nothing it declared outlives it


async def test_a_declaration_at_every_limit_is_accepted_and_forgotten_when_the_worker_leaves(
    server: Served, http: httpx.AsyncClient
) -> None:
    # MAX_SUBSCRIPTIONS subscriptions whose combinations add up to exactly MAX_COMBINATIONS
    per_sub = MAX_COMBINATIONS // MAX_SUBSCRIPTIONS
    declared = declaration(MAX_SUBSCRIPTIONS - 1, {"a": values(per_sub)})
    declared.append({"name": "last", "filter": {
        "a": values(MAX_COMBINATIONS - per_sub * (MAX_SUBSCRIPTIONS - 1))}})
    keys = {f"k{i}": ["v"] for i in range(MAX_FILTER_KEYS)}
    async with open_websocket_url(server.ws("/work/queue?worker_id=wide")) as ws:
        await ws.send_message(json.dumps(declared))
        response = await http.post("/tasks", json={"name": "last", "attrs": {"a": "v0"}})
        with trio.fail_after(NET_TIMEOUT):
            frame = json.loads(await ws.get_message())
        assert frame["task_id"] == response.json()["id"]
        await ws.send_message(json.dumps({"task_id": frame["task_id"], "result": "done"}))
    async with open_websocket_url(server.ws("/work/queue?worker_id=keyed")) as ws:
        await ws.send_message(json.dumps([{"name": "keyed", "filter": keys}]))
        with trio.fail_after(NET_TIMEOUT):
            while len((await http.get("/workers")).json()["workers"]) != 1:
                await trio.sleep(0.01)  # bounded poll: the hub attaches it after the frame
    with trio.fail_after(NET_TIMEOUT):
        while (await http.get("/health")).json()["workers"]:
            await trio.sleep(0.01)  # bounded poll for the detach
    # only the queue a producer used stays (its task's deadline is still pending)
    assert list(server.hub.scheduler.queues) == ["last"]


async def test_a_query_declaration_beyond_a_limit_is_refused_with_400_before_the_upgrade(
    server: Served,
) -> None:
    names = ",".join(f"t{i}" for i in range(MAX_SUBSCRIPTIONS + 1))
    for query in (f"task={names}", f"task=t&a={','.join(values(MAX_FILTER_VALUES + 1))}"):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(server.ws(f"/work/queue?{query}")):
                pass  # pragma: no cover
        assert rejected.value.status_code == 400
        assert "at most" in json.loads(rejected.value.body)["error"]


async def test_a_poller_beyond_a_limit_gets_a_400_and_keeps_nothing(
    server: Served, http: httpx.AsyncClient
) -> None:
    too_many = ",".join(values(MAX_FILTER_VALUES + 1))
    response = await http.post(f"/v1/queue/q?a={too_many}", json={"worker_id": "p"})
    assert response.status_code == 400 and "at most" in response.json()["error"]
    # a named poller adding queue after queue reaches MAX_SUBSCRIPTIONS, then is refused
    for i in range(MAX_SUBSCRIPTIONS):
        ok = await http.post(f"/v1/queue/q{i}", json={"worker_id": "p", "max": 0})
        assert ok.status_code == 204, ok.text
    refused = await http.post("/v1/queue/one-more", json={"worker_id": "p", "max": 0})
    assert refused.status_code == 400 and "at most" in refused.json()["error"]
    assert len(server.hub.scheduler.queues) == MAX_SUBSCRIPTIONS
