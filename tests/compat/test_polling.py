"""HTTP polling workers (seed 002) and presque worker routes (seed 004), over real sockets.

The seed client is written from seed 002 alone (urllib and json, no workyard code).
Time-dependent tests (long polls, leases, liveness) run a MemoryStore hub under
`autojump_clock`: every request is in-process loopback I/O, so the clock only
jumps when everything is genuinely waiting.
"""

from __future__ import annotations

import json
import urllib.request
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import NET_TIMEOUT, Served, StartServer, echo_worker, until

from workyard import Settings
from workyard.client import Job, PollingWorker

#: long enough for any virtual-time wait in these tests (httpx timeouts run on trio's clock)
VIRTUAL_TIMEOUT = 1000.0


async def submit(http: httpx.AsyncClient, name: str = "resize", **spec: Any) -> str:
    response = await http.post("/tasks", json={"name": name, **spec})
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def task_state(http: httpx.AsyncClient, task_id: str, wait: float = 0) -> dict[str, Any]:
    response = await http.get(f"/tasks/{task_id}", params={"wait": wait} if wait else None)
    assert response.status_code == 200, response.text
    return response.json()


async def poll(http: httpx.AsyncClient, queue: str = "resize", body: Any = None,
               **params: Any) -> httpx.Response:
    return await http.post(f"/v1/queue/{queue}", json={} if body is None else body,
                           params=params)


def parked(served: Served, worker_id: str) -> Any:
    """A condition: the polling worker `worker_id` has a poll open."""
    def check() -> bool:
        worker = served.hub.scheduler.workers.get(worker_id)
        return worker is not None and any(worker.rooms.values())
    return check


def attached(served: Served, worker_id: str) -> bool:
    return worker_id in served.hub.sessions.attached


@pytest.fixture
async def virtual(start_server: StartServer) -> Served:
    return await start_server(Settings(port=0, db=":memory:", poll_liveness=30.0))


@pytest.fixture
async def vhttp(virtual: Served) -> Any:
    async with httpx.AsyncClient(base_url=virtual.url, timeout=VIRTUAL_TIMEOUT) as client:
        yield client


# --- seed 002 verbatim -------------------------------------------------------------------


def seed_client(base: str, queue: str) -> list[dict[str, Any]]:
    """A polling worker written from seed 002 alone: get the configuration, then poll,
    do each task (data "fail" fails) and report it in the next poll, until 204."""
    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=NET_TIMEOUT) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None

    status, config = call("GET", f"/v1/queue/{queue}")
    assert status == 200 and config["configuration"]["interval"] > 0
    seen: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    while True:
        status, body = call("POST", f"/v1/queue/{queue}", report)
        if status == 204:
            return seen
        reports = []
        for task in body["tasks"]:
            seen.append(task)
            if task["data"] == "fail":
                reports.append({"_id": task["_id"], "status": "failed", "error": "some error"})
            else:
                reports.append({"_id": task["_id"], "status": "done"})
        report = {"tasks": reports}


async def test_a_seed_002_client_works_unchanged(server: Served, http: httpx.AsyncClient) -> None:
    ids = [await submit(http, data=d) for d in ("a", "fail", "b")]
    seen = await trio.to_thread.run_sync(seed_client, server.url, "resize")
    assert [t["_id"] for t in seen] == ids  # one task per poll, in order
    assert seen[0] == {"_id": ids[0], "data": "a", "name": "resize", "attrs": {},
                       "timeout": 60.0}
    states = [await task_state(http, i) for i in ids]
    assert [s["state"] for s in states] == ["done", "failed", "done"]
    assert states[1]["error"] == "some error"
    assert server.hub.scheduler.workers == {}  # anonymous pollers leave nothing behind


async def test_configuration_defaults_and_admin_settings_that_survive_a_restart(
    start_server: StartServer, hub_db: str
) -> None:
    config = Settings(port=0, db=hub_db, worker_tokens=frozenset({"w"}),
                      admin_tokens=frozenset({"a"}))
    served = await start_server(config)
    worker = {"Authorization": "Bearer w"}
    admin = {"Authorization": "Bearer a"}
    async with httpx.AsyncClient(base_url=served.url, timeout=NET_TIMEOUT) as http:
        response = await http.get("/v1/queue/resize", headers=worker)
        assert response.json() == {"configuration": {"interval": 30000}}
        assert (await http.get("/v1/queue/resize")).status_code == 401
        settings = {"interval": 10000, "some": "other", "data": {"can": {"go": "here"}}}
        put = await http.put("/v1/queue/resize/configuration", json=settings, headers=worker)
        assert put.status_code == 401  # admins only
        put = await http.put("/v1/queue/resize/configuration", json=settings, headers=admin)
        assert put.status_code == 200 and put.json() == {"configuration": settings}
        assert (await http.get("/v1/queue/resize", headers=worker)).json() == put.json()
        assert (await http.get("/v1/queue/other", headers=worker)).json()["configuration"] == {
            "interval": 30000}
        bad = await http.put("/v1/queue/resize/configuration", json={"interval": -1},
                             headers=admin)
        assert bad.status_code == 400 and "interval" in bad.json()["error"]
        for path in ("/v1/queue/" + "q" * 201, "/v1/queue/a%01b", "/v1/queue/"):
            response = await http.get(path, headers=worker)
            assert response.status_code == 400, path
            assert "queue" in response.json()["error"]
    await served.stop()

    restarted = await start_server(config)  # same SQLite file: the settings survive
    async with httpx.AsyncClient(base_url=restarted.url, timeout=NET_TIMEOUT) as http:
        response = await http.get("/v1/queue/resize", headers=worker)
        assert response.json() == {"configuration": settings}


async def test_reporting_and_polling_in_one_request(http: httpx.AsyncClient) -> None:
    first, second = await submit(http, data=1), await submit(http, data=2)
    assert (await poll(http)).json()["tasks"][0]["_id"] == first
    response = await poll(http, body={"tasks": [{"_id": first, "status": "done",
                                                  "result": {"size": 3}}]})
    assert response.status_code == 200 and response.json()["tasks"][0]["_id"] == second
    assert (await task_state(http, first))["result"] == {"size": 3}
    response = await poll(http, body={"tasks": [{"_id": second, "status": "done"}]})
    assert response.status_code == 204
    assert (await task_state(http, second))["state"] == "done"


async def test_max_hands_out_a_batch(http: httpx.AsyncClient) -> None:
    ids = [await submit(http, data=i) for i in range(5)]
    response = await poll(http, body={"worker_id": "batcher"}, max=3)
    assert [t["_id"] for t in response.json()["tasks"]] == ids[:3]
    response = await poll(http, body={"worker_id": "batcher", "max": 100})
    assert [t["_id"] for t in response.json()["tasks"]] == ids[3:]
    for bad in ({"max": 101}, {"max": -1}, {"max": "x"}, {"wait": 61}):
        assert (await poll(http, **bad)).status_code == 400, bad


# --- long polls, leases, liveness (virtual time) -----------------------------------------


async def test_a_waiting_long_poll_is_answered_on_submit(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    got: dict[str, Any] = {}

    async def long_poll() -> None:
        got["response"] = await poll(vhttp, body={"worker_id": "p1"}, wait=60)
        got["at"] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await until(parked(virtual, "p1"))
        await trio.sleep(25)  # the poll just waits...
        assert "response" not in got
        submitted_at = trio.current_time()
        task_id = await submit(vhttp, timeout=3600.0)
    assert got["response"].json()["tasks"][0]["_id"] == task_id
    assert got["at"] == submitted_at  # ...and is answered at once, not after an interval

    start = trio.current_time()
    response = await poll(vhttp, body={"worker_id": "p1"}, wait=60)
    assert response.status_code == 204 and trio.current_time() - start == pytest.approx(60)


async def test_an_expired_lease_goes_to_a_websocket_worker(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await submit(vhttp, timeout=5.0, data="x")
    leased = await poll(vhttp, body={"worker_id": "p1"})
    assert leased.json()["tasks"][0]["_id"] == task_id
    async with trio.open_nursery() as nursery:
        await nursery.start(echo_worker, virtual.ws("/work/queue?task=resize&worker_id=ws1"))
        start = trio.current_time()
        state = await task_state(vhttp, task_id, wait=60)
        nursery.cancel_scope.cancel()
    assert state["state"] == "done" and state["result"] == "x"
    assert trio.current_time() - start == pytest.approx(5.0, abs=0.01)
    assert [(a["worker"], a["outcome"]) for a in state["attempts"]] == [
        ("p1", "timeout"), ("ws1", "done")]
    # The poller's late report is a harmless duplicate, not an error.
    late = await poll(vhttp, body={"worker_id": "p1", "max": 0,
                                   "tasks": [{"_id": task_id, "status": "done"}]})
    assert late.status_code == 204


async def test_a_silent_poller_is_gone_after_the_liveness_window(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    task_id = await submit(vhttp, timeout=3600.0)
    assert (await poll(vhttp, body={"worker_id": "p1"})).status_code == 200
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        await nursery.start(echo_worker, virtual.ws("/work/queue?task=resize"))
        state = await task_state(vhttp, task_id, wait=300)
        nursery.cancel_scope.cancel()
    assert state["state"] == "done"
    assert state["attempts"][0]["outcome"] == "worker_lost"
    # poll_liveness is 30 s, and the liveness watch wakes when it runs out
    assert trio.current_time() - start == pytest.approx(30.0)
    assert not attached(virtual, "p1")


async def test_a_waiting_poll_keeps_its_worker_alive(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    held = await submit(vhttp, timeout=3600.0)
    assert (await poll(vhttp, body={"worker_id": "p1"})).status_code == 200
    for _ in range(3):  # 180 s of back-to-back long polls, far past the 30 s window
        response = await poll(vhttp, body={"worker_id": "p1"}, wait=60)
        assert response.status_code == 204
    assert (await task_state(vhttp, held))["state"] == "running"
    report = {"worker_id": "p1", "tasks": [{"_id": held, "status": "done"}], "max": 0}
    assert (await poll(vhttp, body=report)).status_code == 204
    assert (await task_state(vhttp, held))["attempts"][0]["outcome"] == "done"


async def test_a_newer_poll_supersedes_a_waiting_one_and_delete_ends_it(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    """A worker that reports while its long poll waits sends a new poll: the old one returns
    at once, the new one takes over. Unregistering ends a waiting poll with a 409."""
    responses: list[httpx.Response] = []

    async def long_poll(**how: Any) -> None:
        responses.append(await vhttp.post("/v1/queue/resize", params={"wait": 60}, **how))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(long_poll, json={"worker_id": "p1"}))
        await until(parked(virtual, "p1"))
        start = trio.current_time()
        nursery.start_soon(partial(long_poll, json={"max": 2}, headers={"X-Worker-Id": "p1"}))
        await until(lambda: len(responses) == 1)
        assert responses[0].status_code == 204 and trio.current_time() == start
        assert virtual.hub.scheduler.workers["p1"].rooms["resize"] == 2
        batch = await vhttp.post("/tasks", json={"tasks": [{"name": "resize"}] * 2})
    # Both tasks, dispatched in the same step, come back in one response.
    assert [t["_id"] for t in responses[1].json()["tasks"]] == batch.json()["ids"]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(long_poll, json={"worker_id": "p2"}))
        await until(parked(virtual, "p2"))
        assert (await vhttp.delete("/w/resize", params={"worker_id": "p2"})).status_code == 204
    assert responses[2].status_code == 409 and "unregistered" in responses[2].json()["error"]
    assert not attached(virtual, "p2")


# --- one fleet ---------------------------------------------------------------------------


async def test_most_specific_match_crosses_transports(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    """A waiting generic poller loses aws tasks to an aws WebSocket worker; an aws poller
    wins them over a generic WebSocket worker."""
    async def long_poll(worker_id: str, filters: dict[str, str], into: list[str]) -> None:
        response = await poll(vhttp, body={"worker_id": worker_id}, wait=60, **filters)
        into.extend(t["_id"] for t in response.json()["tasks"])

    generic_poller: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(echo_worker, virtual.ws("/work/queue?task=resize&cloud=aws"))
        nursery.start_soon(long_poll, "generic", {}, generic_poller)
        await until(parked(virtual, "generic"))
        aws = await submit(vhttp, attrs={"cloud": "aws"})
        assert (await task_state(vhttp, aws, wait=10))["state"] == "done"  # the WS worker's
        gcp = await submit(vhttp, attrs={"cloud": "gcp"})
        await until(lambda: bool(generic_poller))
        nursery.cancel_scope.cancel()
    assert generic_poller == [gcp]

    aws_poller: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(echo_worker, virtual.ws("/work/queue?task=resize"))
        nursery.start_soon(long_poll, "aws", {"cloud": "aws,azure"}, aws_poller)
        await until(parked(virtual, "aws"))
        aws = await submit(vhttp, attrs={"cloud": "aws"})
        await until(lambda: bool(aws_poller))
        plain = await submit(vhttp)
        assert (await task_state(vhttp, plain, wait=10))["state"] == "done"
        nursery.cancel_scope.cancel()
    assert aws_poller == [aws]
    assert (await task_state(vhttp, aws))["state"] == "running"  # leased to the poller


async def test_even_spread_counts_polling_and_websocket_workers(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    """Three tasks, one WebSocket worker that holds them, one poller that waits: the
    poller, with nothing outstanding, gets the next one whatever the attach order."""
    from trio_websocket import open_websocket_url

    async with open_websocket_url(virtual.ws("/work/queue?task=resize&worker_id=ws")) as ws:
        await until(lambda: "ws" in virtual.hub.scheduler.workers)
        await submit(vhttp)  # goes to the only worker, the WS one, which keeps it
        got: list[str] = []

        async def long_poll() -> None:
            response = await poll(vhttp, body={"worker_id": "p"}, wait=60)
            got.extend(t["_id"] for t in response.json()["tasks"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_poll)
            await until(parked(virtual, "p"))
            second = await submit(vhttp)
        assert got == [second]
        await ws.get_message()


# --- bad reports ---------------------------------------------------------------------------


async def test_bad_reports_are_named_and_good_ones_still_apply(http: httpx.AsyncClient) -> None:
    mine = [await submit(http, data=i) for i in range(2)]
    theirs = await submit(http)
    assert len((await poll(http, body={"worker_id": "me", "max": 2})).json()["tasks"]) == 2
    assert (await poll(http, body={"worker_id": "them"})).json()["tasks"][0]["_id"] == theirs
    entries = [
        {"_id": mine[0], "status": "done", "result": 1},
        {"_id": "nope", "status": "done"},
        {"_id": mine[1], "status": "finished"},
        {"_id": mine[1], "status": "failed"},
        {"_id": theirs, "status": "done"},
        "not an object",
        {"status": "done"},
    ]
    response = await poll(http, body={"worker_id": "me", "tasks": entries})
    assert response.status_code == 400  # mixed problems: 400, each with its own status
    body = response.json()
    assert body["accepted"] == 1
    rejected = [(r["_id"], r["status"]) for r in body["rejected"]]
    assert rejected == [("nope", 404), (mine[1], 400), (mine[1], 400), (theirs, 409),
                        (None, 400), (None, 400)]
    messages = [r["error"] for r in body["rejected"]]
    assert "no such task" in messages[0] and "finished" in messages[1]
    assert "error" in messages[2] and "not leased to worker 'me'" in messages[3]
    assert "tasks[5]" in messages[4] and "_id" in messages[5]
    assert (await task_state(http, mine[0]))["state"] == "done"  # the good entry applied
    assert (await task_state(http, mine[1]))["state"] == "running"
    assert (await task_state(http, theirs))["state"] == "running"

    only_unknown = await poll(http, body={"worker_id": "me",
                                          "tasks": [{"_id": "nope", "status": "done"}]})
    assert only_unknown.status_code == 404
    # An anonymous report for a named worker's task is refused too.
    anonymous = await poll(http, body={"tasks": [{"_id": theirs, "status": "done"}]})
    assert anonymous.status_code == 409 and "anonymous" in anonymous.json()["error"]
    for raw in (b"{", b"[]", b'{"tasks": 3}', b'{"worker_id": ""}'):
        response = await http.post("/v1/queue/resize", content=raw)
        assert response.status_code == 400, raw


async def test_named_and_anonymous_reports_do_not_mix(http: httpx.AsyncClient) -> None:
    anon_task = await submit(http)
    assert (await poll(http)).json()["tasks"][0]["_id"] == anon_task
    named = await poll(http, body={"worker_id": "w", "max": 0,
                                   "tasks": [{"_id": anon_task, "status": "done"}]})
    assert named.status_code == 409
    accepted = await poll(http, body={"tasks": [{"_id": anon_task, "status": "done"}]})
    assert accepted.status_code == 204
    assert (await task_state(http, anon_task))["state"] == "done"


async def test_a_poller_that_changes_filters_keeps_its_leases_and_counters(
    server: Served, http: httpx.AsyncClient
) -> None:
    done_first = await submit(http, attrs={"cloud": "aws"})
    held = await submit(http, attrs={"cloud": "aws"})
    assert (await poll(http, body={"worker_id": "w", "max": 2}, cloud="aws")).status_code == 200
    report = {"worker_id": "w", "max": 0, "tasks": [{"_id": done_first, "status": "done"}]}
    assert (await poll(http, body=report, cloud="aws")).status_code == 204
    gcp = await submit(http, attrs={"cloud": "gcp"})
    changed = await poll(http, body={"worker_id": "w"}, cloud="gcp")
    assert [t["_id"] for t in changed.json()["tasks"]] == [gcp]
    assert (await task_state(http, held))["state"] == "running"  # still leased to w
    [worker] = (await http.get("/workers")).json()["workers"]
    assert worker["id"] == "w" and worker["processed"] == 1 and worker["outstanding"] == 2
    assert worker["subscriptions"] == [{"name": "resize", "filter": {"cloud": ["gcp"]}}]
    report = {"worker_id": "w", "max": 0, "tasks": [{"_id": held, "status": "done"},
                                                     {"_id": gcp, "status": "done"}]}
    assert (await poll(http, body=report, cloud="gcp")).status_code == 204
    [worker] = (await http.get("/workers")).json()["workers"]
    assert worker["processed"] == 3 and worker["outstanding"] == 0


async def test_a_poller_polling_two_queues_under_one_id_is_one_worker(
    server: Served, http: httpx.AsyncClient
) -> None:
    resize, crop = await submit(http, "resize"), await submit(http, "crop")
    assert (await poll(http, "resize", body={"worker_id": "p"})).status_code == 200
    assert (await poll(http, "crop", body={"worker_id": "p"})).status_code == 200
    [worker] = (await http.get("/workers")).json()["workers"]
    assert worker["id"] == "p" and worker["transport"] == "polling"
    assert worker["outstanding"] == 2
    assert [s["name"] for s in worker["subscriptions"]] == ["resize", "crop"]
    # either queue's poll may report either task: it is one worker
    report = {"worker_id": "p", "max": 0, "tasks": [{"_id": resize, "status": "done"},
                                                     {"_id": crop, "status": "done"}]}
    assert (await poll(http, "crop", body=report)).status_code == 204
    [worker] = (await http.get("/workers")).json()["workers"]
    assert (worker["outstanding"], worker["processed"]) == (0, 2)


async def test_a_poll_takes_only_tasks_of_its_own_queue(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    got: list[httpx.Response] = []

    async def long_poll() -> None:
        got.append(await poll(vhttp, "resize", body={"worker_id": "p"}, wait=30))

    assert (await poll(vhttp, "crop", body={"worker_id": "p", "max": 0})).status_code == 204
    async with trio.open_nursery() as nursery:
        nursery.start_soon(long_poll)
        await until(parked(virtual, "p"))
        crop = await submit(vhttp, "crop")  # p serves crop but has no crop poll open
        resize = await submit(vhttp, "resize")
    assert [t["_id"] for t in got[0].json()["tasks"]] == [resize]
    assert (await task_state(vhttp, crop))["state"] == "queued"


# --- presque routes ----------------------------------------------------------------------


async def test_presque_registry_and_counters(server: Served, http: httpx.AsyncClient) -> None:
    assert (await http.post("/w/resize", json={"worker_id": "w1"})).status_code == 201
    assert (await http.post("/w/resize", headers={"X-presque-workerid": "w2"})).status_code == 201
    missing = await http.post("/w/resize", json={})
    assert missing.status_code == 400 and "worker_id" in missing.json()["error"]
    view = (await http.get("/w/", params={"worker_id": "w1"})).json()
    assert view["worker_id"] == "w1" and view["processed"] == 0 and view["failed"] == 0
    assert isinstance(view["started_at"], int)

    ids = [await submit(http, data=d) for d in ("ok", "ok", "bad")]
    got = (await poll(http, body={"worker_id": "w1", "max": 3})).json()["tasks"]
    reports = [{"_id": t["_id"], "status": "failed" if t["data"] == "bad" else "done",
                "error": "broken"} for t in got]
    assert (await poll(http, body={"worker_id": "w1", "tasks": reports})).status_code == 204
    async with trio.open_nursery() as nursery:  # and one by a WebSocket worker, same fleet
        await nursery.start(echo_worker, server.ws("/work/queue?task=resize&worker_id=ws"))
        last = await submit(http)
        assert (await task_state(http, last, wait=NET_TIMEOUT))["state"] == "done"
        assert (await http.get("/w/resize")).json() == {
            "queue_name": "resize", "workers_list": ["w1", "w2", "ws"],
            "processed": 3, "failed": 1}
        assert (await http.get("/w/", params={"worker_id": "ws"})).json()["processed"] == 1
        nursery.cancel_scope.cancel()
    assert len(ids) == 3
    w1 = (await http.get("/w/", params={"worker_id": "w1"})).json()
    assert (w1["processed"], w1["failed"]) == (2, 1)
    assert (await http.get("/w/", params={"queue_name": "resize"})).json()["processed"] == 3
    assert set((await http.get("/w/")).json()) >= {"w1", "w2"}

    # Unregistering detaches the poller; the registered counts survived its detach until then.
    assert (await http.delete("/w/resize", params={"worker_id": "w1"})).status_code == 204
    assert "w1" not in (await http.get("/w/resize")).json()["workers_list"]
    assert (await http.get("/w/", params={"worker_id": "w1"})).status_code == 404
    assert (await http.delete("/w/resize")).status_code == 400


async def test_presque_counts_survive_a_liveness_detach(
    virtual: Served, vhttp: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    assert (await vhttp.post("/w/resize", json={"worker_id": "w1"})).status_code == 201
    task_id = await submit(vhttp)
    await poll(vhttp, body={"worker_id": "w1"})
    await poll(vhttp, body={"worker_id": "w1", "max": 0,
                            "tasks": [{"_id": task_id, "status": "done"}]})
    await trio.sleep(60)  # silent past the window: detached
    assert not attached(virtual, "w1")
    view = (await vhttp.get("/w/", params={"worker_id": "w1"})).json()
    assert view["processed"] == 1


# --- the SDK -------------------------------------------------------------------------------


async def test_polling_worker_client_runs_batches(server: Served, http: httpx.AsyncClient) -> None:
    worker = PollingWorker(server.url, worker_id="sdk", concurrency=4, wait=5)
    seen: list[str] = []

    @worker.handler("resize", cloud="aws")
    async def resize(job: Job) -> Any:
        seen.append(job.id)
        if job.data == "fail":
            raise RuntimeError("no can do")
        return {"doubled": job.data * 2}

    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        assert attached(server, "sdk")
        ids = [await submit(http, data=i, attrs={"cloud": "aws"}) for i in range(10)]
        bad = await submit(http, data="fail", attrs={"cloud": "aws"})
        states = [await task_state(http, i, wait=NET_TIMEOUT) for i in ids]
        failed = await task_state(http, bad, wait=NET_TIMEOUT)
        nursery.cancel_scope.cancel()
    assert [s["result"] for s in states] == [{"doubled": i * 2} for i in range(10)]
    assert failed["state"] == "failed" and failed["error"] == "no can do"
    assert sorted(seen) == sorted([*ids, bad])
    await until(lambda: not attached(server, "sdk"))  # said goodbye


async def test_polling_worker_rejected_by_the_hub(start_server: StartServer, hub_db: str) -> None:
    from workyard.client import WorkerRejected

    served = await start_server(Settings(port=0, db=hub_db, worker_tokens=frozenset({"w"}),
                                         allow_lockout=True))
    worker = PollingWorker(served.url, token="wrong")
    worker.handler("resize")(_noop)
    with pytest.raises(WorkerRejected, match="401"):
        await worker.run()


async def _noop(job: Job) -> None:
    return None
