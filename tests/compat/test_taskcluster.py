"""Seed 003: the real `taskcluster` client (113.2.0) manages worker pools on a served hub,
unchanged, with `rootUrl` = the hub's base URL. The client is synchronous (requests), so
each call runs in a thread."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import pytest
import taskcluster
import trio
from conftest import NET_TIMEOUT, Served, StartServer, http_client
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from workyard import Settings

POOL = "proj/linux"
SPEC: dict[str, Any] = {"providerId": "aws", "description": "linux builders",
                        "config": {"minCapacity": 0, "maxCapacity": 4}, "owner": "ci@example.com",
                        "emailOnError": False}


def manager(served: Served, credentials: dict[str, str] | None = None) -> Any:
    options: dict[str, Any] = {"rootUrl": served.url, "maxRetries": 0}
    if credentials is not None:
        options["credentials"] = credentials
    return taskcluster.WorkerManager(options)


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with trio.fail_after(NET_TIMEOUT):
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


async def failure(fn: Callable[..., Any], *args: Any) -> taskcluster.TaskclusterRestFailure:
    with pytest.raises(taskcluster.TaskclusterRestFailure) as caught:
        await call(fn, *args)
    return caught.value


COUNTERS = ("currentCapacity", "requestedCount", "runningCount", "stoppingCount",
            "stoppedCount", "requestedCapacity", "runningCapacity", "stoppingCapacity",
            "stoppedCapacity")


async def test_the_real_client_creates_reads_updates_and_deletes_a_pool(server: Served) -> None:
    wm = manager(server)
    created = await call(wm.createWorkerPool, POOL, SPEC)
    assert {k: created[k] for k in SPEC} == SPEC and created["workerPoolId"] == POOL
    assert created["created"].endswith("Z") and len(created["created"]) == 24
    assert all(created[c] == 0 for c in COUNTERS)
    assert await call(wm.createWorkerPool, POOL, SPEC) == created  # identical: idempotent
    assert await call(wm.workerPool, POOL) == created

    updated = await call(wm.updateWorkerPool, POOL, {**SPEC, "providerId": "gcp",
                                                     "workerPoolId": POOL,
                                                     "created": "ignored"})
    assert updated["providerId"] == "gcp" and updated["created"] == created["created"]
    assert updated["lastModified"] >= created["lastModified"]

    deleted = await call(wm.deleteWorkerPool, POOL)
    assert deleted["providerId"] == "null-provider"
    failed = await failure(wm.workerPool, POOL)  # no workers: removed at once
    assert failed.status_code == 404 and failed.body["code"] == "ResourceNotFound"


async def test_listing_pages_with_the_clients_continuation_tokens(server: Served) -> None:
    wm = manager(server)
    ids = [f"proj/p{n:02d}" for n in range(7)]
    for pool_id in reversed(ids):
        await call(wm.createWorkerPool, pool_id, SPEC)
    first = await call(wm.listWorkerPools, query={"limit": 3})
    assert [p["workerPoolId"] for p in first["workerPools"]] == ids[:3]
    assert first["continuationToken"]
    pages: list[list[str]] = []
    await call(wm.listWorkerPools, query={"limit": 3},
               paginationHandler=lambda page: pages.append(
                   [p["workerPoolId"] for p in page["workerPools"]]))
    assert pages == [ids[:3], ids[3:6], ids[6:]]
    last = await call(wm.listWorkerPools, query={"limit": 3, "continuationToken":
                                                 first["continuationToken"]})
    assert [p["workerPoolId"] for p in last["workerPools"]] == ids[3:6]
    assert "continuationToken" not in await call(wm.listWorkerPools)


@pytest.mark.parametrize(("payload", "problem"), [
    ({k: v for k, v in SPEC.items() if k != "owner"}, "required property 'owner'"),
    ({**SPEC, "extra": 1}, "additional property 'extra'"),
    ({**SPEC, "providerId": "has space"}, "providerId"),
    ({**SPEC, "providerId": "x" * 39}, "providerId"),
    ({**SPEC, "description": "d" * 10241}, "description"),
    ({**SPEC, "config": []}, "config must be object"),
    ({**SPEC, "owner": "nobody"}, "email"),
    ({**SPEC, "emailOnError": "yes"}, "boolean"),
])
async def test_a_payload_that_fails_the_schema_is_an_input_validation_error(
        server: Served, payload: dict[str, Any], problem: str) -> None:
    failed = await failure(manager(server).createWorkerPool, POOL, payload)
    assert failed.status_code == 400 and failed.body["code"] == "InputValidationError"
    assert problem in failed.body["message"]
    info = failed.body["requestInfo"]
    assert info["method"] == "createWorkerPool" and info["params"] == {"workerPoolId": POOL}
    assert info["payload"] == payload and info["time"].endswith("Z")


async def test_errors_have_taskclusters_codes_and_are_never_5xx(server: Served) -> None:
    wm = manager(server)
    bad_id = await failure(wm.workerPool, "no-slash")
    assert (bad_id.status_code, bad_id.body["code"]) == (400, "InvalidRequestArguments")
    bad_id = await failure(wm.createWorkerPool, "Proj/UPPER", SPEC)
    assert (bad_id.status_code, bad_id.body["code"]) == (400, "InvalidRequestArguments")
    missing = await failure(wm.updateWorkerPool, POOL, SPEC)
    assert (missing.status_code, missing.body["code"]) == (404, "ResourceNotFound")
    assert (await failure(wm.deleteWorkerPool, POOL)).status_code == 404
    await call(wm.createWorkerPool, POOL, SPEC)
    conflict = await failure(wm.createWorkerPool, POOL, {**SPEC, "description": "other"})
    assert (conflict.status_code, conflict.body["code"]) == (409, "RequestConflict")
    mismatch = await failure(wm.updateWorkerPool, POOL, {**SPEC, "workerPoolId": "proj/other"})
    assert (mismatch.status_code, mismatch.body["code"]) == (400, "InputError")
    async with http_client(server.url) as http:
        junk = await http.put(f"/api/worker-manager/v1/worker-pool/{POOL}", content=b"{nope")
        assert junk.status_code == 400 and junk.json()["code"] == "InputValidationError"
        limit = await http.get("/api/worker-manager/v1/worker-pools?limit=zero")
        assert limit.status_code == 400 and limit.json()["code"] == "InvalidRequestArguments"


async def test_pool_workers_are_listed_and_counted_while_attached(server: Served) -> None:
    wm = manager(server)
    await call(wm.createWorkerPool, POOL, SPEC)
    url = server.ws(f"/work/queue?task=tag&worker_id=w1&capacity=3&worker_pool={POOL}"
                    "&worker_group=eu-west")
    async with open_websocket_url(url):
        with trio.fail_after(NET_TIMEOUT):
            while "w1" not in server.hub.sessions.attached:
                await trio.sleep(0.01)
        pool = await call(wm.workerPool, POOL)
        assert (pool["runningCount"], pool["runningCapacity"], pool["currentCapacity"]) == (1, 3, 3)
        listed = await call(wm.listWorkersForWorkerPool, POOL)
        assert [(w["workerGroup"], w["workerId"], w["state"], w["capacity"])
                for w in listed["workers"]] == [("eu-west", "w1", "running", 3)]
        worker = await call(wm.worker, POOL, "eu-west", "w1")
        assert worker["providerId"] == "aws"
        assert (await failure(wm.worker, POOL, "eu-west", "nobody")).status_code == 404
    with trio.fail_after(NET_TIMEOUT):
        while (await call(wm.workerPool, POOL))["runningCount"]:
            await trio.sleep(0.01)
    stopped = await call(wm.listWorkersForWorkerPool, POOL, query={"state": "stopped"})
    assert [w["workerId"] for w in stopped["workers"]] == ["w1"]
    assert (await call(wm.listWorkersForWorkerPool, POOL, query={"state": "running"})
            )["workers"] == []


async def test_a_draining_pool_refuses_workers_keeps_its_own_and_goes_with_the_last(
        server: Served) -> None:
    wm = manager(server)
    await call(wm.createWorkerPool, POOL, SPEC)
    async with open_websocket_url(server.ws(f"/work/queue?task=tag&worker_pool={POOL}")) as kept:
        with trio.fail_after(NET_TIMEOUT):
            while not server.hub.pools.pools[POOL].workers:
                await trio.sleep(0.01)
        await call(wm.deleteWorkerPool, POOL)
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(server.ws(f"/work/queue?task=tag&worker_pool={POOL}")):
                pass
        assert rejected.value.status_code == 400
        assert b"being drained" in (rejected.value.body or b"")
        declared = json.dumps([{"name": "tag", "worker_pool": POOL}])
        async with open_websocket_url(server.ws("/work/queue")) as late:
            await late.send_message(declared)
            with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed) as closed:
                await late.get_message()
            assert closed.value.reason.code == 1008
            assert "being drained" in (closed.value.reason.reason or "")
        assert (await call(wm.workerPool, POOL))["runningCount"] == 1
        assert not kept.closed
    with trio.fail_after(NET_TIMEOUT):
        while POOL in server.hub.pools.pools:
            await trio.sleep(0.01)
    assert (await failure(wm.workerPool, POOL)).status_code == 404


async def test_a_polling_worker_joins_a_pool_by_query_parameters(
        server: Served, http: httpx.AsyncClient) -> None:
    await call(manager(server).createWorkerPool, POOL, SPEC)
    answer = await http.post(f"/v1/queue/tag?worker_pool={POOL}&worker_group=g1&max=0",
                             headers={"X-Worker-Id": "p1"}, json={})
    assert answer.status_code == 204
    session = server.hub.sessions.attached["p1"]
    assert (session.worker_pool, session.worker_group) == (POOL, "g1")
    assert session.subscriptions[0].filter == {}  # not taken for filters
    anonymous = await http.post(f"/v1/queue/tag?worker_pool={POOL}", json={})
    assert anonymous.status_code == 400 and "worker_id" in anonymous.json()["error"]


# -- auth ---------------------------------------------------------------------------


@pytest.fixture
async def guarded(start_server: StartServer, hub_db: str) -> Served:
    return await start_server(Settings(port=0, db=hub_db, admin_tokens=frozenset({"adm"}),
                                       taskcluster_clients=frozenset({"ci:s3cret"})))


async def test_configured_hawk_credentials_may_manage_pools(guarded: Served) -> None:
    wm = manager(guarded, {"clientId": "ci", "accessToken": "s3cret"})
    await call(wm.createWorkerPool, POOL, SPEC)
    assert (await call(wm.listWorkerPools, query={"limit": 1}))["workerPools"][0][
        "workerPoolId"] == POOL
    assert (await call(wm.deleteWorkerPool, POOL))["providerId"] == "null-provider"


async def test_calls_without_valid_credentials_get_taskclusters_401(guarded: Served) -> None:
    for credentials in (None, {"clientId": "ci", "accessToken": "wrong"},
                        {"clientId": "nobody", "accessToken": "s3cret"}):
        with pytest.raises(taskcluster.TaskclusterAuthFailure) as caught:
            await call(manager(guarded, credentials).createWorkerPool, POOL, SPEC)
        assert caught.value.status_code == 401
        assert caught.value.body["code"] == "AuthenticationFailed"
    assert POOL not in guarded.hub.pools.pools


async def test_a_bearer_admin_token_may_manage_pools_and_others_only_read(
        guarded: Served) -> None:
    path = f"/api/worker-manager/v1/worker-pool/{POOL}"
    async with http_client(guarded.url) as http:
        created = await http.put(path, json=SPEC, headers={"Authorization": "Bearer adm"})
        assert created.status_code == 200
        refused = await http.post(path, json=SPEC, headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401 and refused.json()["code"] == "AuthenticationFailed"
        read = await http.get(path, headers={"Authorization": "Bearer adm"})
        assert read.status_code == 200 and read.json()["workerPoolId"] == POOL


async def test_a_provisioner_reads_the_tasks_only_its_pools_new_workers_would_take(
        server: Served, http: httpx.AsyncClient) -> None:
    wm = manager(server)
    config = {"subscriptions": [{"name": "build", "filter": {"os": ["linux"]}}],
              "capacityPerWorker": 2}
    await call(wm.createWorkerPool, POOL, {**SPEC, "config": config})
    for attrs in ({"os": "linux"}, {"os": "linux"}, {"os": "mac"}):
        answer = await http.post("/tasks", json={"name": "build", "attrs": attrs})
        assert answer.status_code in (200, 201), answer.text
    queue = taskcluster.Queue({"rootUrl": server.url, "maxRetries": 0})
    assert await call(queue.pendingTasks, POOL) == {
        "taskQueueId": POOL, "provisionerId": "proj", "workerType": "linux", "pendingTasks": 2}
    assert (await call(wm.workerPool, POOL))["pendingTasks"] == 2
    # a worker of the pool takes them: nothing is pending any more
    url = server.ws(f"/work/queue?task=build&os=linux&worker_id=w1&capacity=2"
                    f"&worker_pool={POOL}")
    async with open_websocket_url(url) as ws:
        for _ in range(2):
            with trio.fail_after(NET_TIMEOUT):
                await ws.get_message()
        assert (await call(queue.pendingTasks, POOL))["pendingTasks"] == 0
    assert (await failure(queue.pendingTasks, "proj/nothing")).status_code == 404
    assert (await failure(queue.pendingTasks, "no-slash")).body["code"] == \
        "InvalidRequestArguments"


async def test_a_pool_config_declaring_bad_subscriptions_is_an_input_error(
        server: Served) -> None:
    bad = {**SPEC, "config": {"subscriptions": [{"name": "build", "filter": {"os": 3}}]}}
    failed = await failure(manager(server).createWorkerPool, POOL, bad)
    assert failed.status_code == 400 and failed.body["code"] == "InputError"
    assert "config.subscriptions[0]" in failed.body["message"]
