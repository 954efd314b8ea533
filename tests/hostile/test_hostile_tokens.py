"""Tokens a client makes up are refused, never a 500 (issue 15, item 7): a non-ASCII
bearer token in a header, in `?access_token=` or in a first frame gets 401 / close 1008,
and the hub logs no traceback for it."""

from __future__ import annotations

import json
import logging

import pytest
import trio
from conftest import NET_TIMEOUT, Served, StartServer, http_client
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from workyard import Settings

#: a raw latin-1 byte, as a header carries it, and UTF-8 percent-encoded, as a query does
HEADER_TOKENS = [b"Bearer \xe9", b"Bearer \xc3\xa9", b"Bearer \xff\xfe"]
QUERY_TOKENS = ["%C3%A9", "%E9", "%ED%A0%80"]  # é, a lone latin-1 byte, a lone surrogate
ROUTES = [("POST", "/tasks"), ("GET", "/tasks"), ("GET", "/workers"),
          ("POST", "/v1/queue/q"), ("GET", "/v1/queue/q"),
          ("PUT", "/v1/queue/q/configuration"), ("POST", "/w/q")]


@pytest.fixture
async def guarded(start_server: StartServer, hub_db: str) -> Served:
    return await start_server(Settings(port=0, db=hub_db, worker_tokens=frozenset({"w"}),
                                       producer_tokens=frozenset({"p"}),
                                       admin_tokens=frozenset({"a"})))


async def test_a_non_ascii_token_is_a_401_on_every_route_and_logs_no_traceback(
    guarded: Served, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with http_client(guarded.url) as http:
        for method, path in ROUTES:
            for header in HEADER_TOKENS:
                response = await http.request(method, path, content=b"{}",
                                              headers={"Authorization": header})
                assert response.status_code == 401, (method, path, header, response.text)
            for token in QUERY_TOKENS:
                response = await http.request(method, f"{path}?access_token={token}",
                                              content=b"{}")
                assert response.status_code == 401, (method, path, token, response.text)
        assert (await http.get("/health")).status_code == 200
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_non_ascii_token_on_a_websocket_upgrade_is_a_401(guarded: Served) -> None:
    for token in QUERY_TOKENS:
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(guarded.ws(f"/work/queue?task=t&access_token={token}")):
                pass  # pragma: no cover
        assert rejected.value.status_code == 401
    for header in HEADER_TOKENS:
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(guarded.ws("/work/queue?task=t"),
                                          extra_headers=[(b"Authorization", header)]):
                pass  # pragma: no cover
        assert rejected.value.status_code == 401


@pytest.mark.parametrize(("token", "reason"), [
    ("Bearer é", "invalid worker token"), ("é", "invalid worker token"),
    ("Bearer \x00", "invalid worker token"),
    ("Bearer \udc80", "surrogate"),  # not even JSON's UTF-8: a malformed frame
])
async def test_a_non_ascii_token_in_the_first_frame_closes_with_1008(
    guarded: Served, token: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_websocket_url(guarded.ws("/work/queue")) as ws:
        await ws.send_message(json.dumps({"kind": "authorization", "jwt": token}))
        with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason.code == 1008
    assert reason in (closed.value.reason.reason or "")
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_the_right_token_still_works_beside_them(guarded: Served) -> None:
    async with http_client(guarded.url) as http:
        ok = await http.post("/tasks", json={"name": "t"}, headers={"Authorization": "Bearer p"})
        assert ok.status_code == 201
        queued = await http.get("/tasks?access_token=a")
        assert queued.status_code == 200 and len(queued.json()["tasks"]) == 1
