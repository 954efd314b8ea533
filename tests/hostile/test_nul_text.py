"""NUL in text the hub stores: PostgreSQL's text cannot hold it, so the hub keeps it
out the same way on every store. A producer's name, key or attributes with one (and
a worker pool's description or owner) are refused at the door with a 400 naming the field (the store's refusal would have been a
503, which clients retry for ever); a worker's error message keeps its task's outcome,
its NUL shown as U+FFFD."""

from __future__ import annotations

import httpx
import pytest
import trio
from conftest import Served, http_client

from workyard import Hub, Subscription, TaskState
from workyard.protocol import Answer, TaskSpec
from workyard.store import PostgresStore
from workyard.testing import RecordingLink


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "a\x00b"}, "$.name"),
    ({"name": "a\nb"}, "$.name"),
    ({"name": "tag", "key": "k\x00"}, "$.key"),
    ({"name": "tag", "attrs": {"cloud\x00": "aws"}}, "$.attrs"),
    ({"name": "tag", "attrs": {"cloud": "a\x00ws"}}, "$.attrs[...]"),
])
async def test_a_submission_with_nul_in_its_text_is_refused_naming_the_field(
        http: httpx.AsyncClient, body: dict[str, object], field: str) -> None:
    response = await http.post("/tasks", json=body)
    assert response.status_code == 400
    assert f"`{field}`" in response.json()["error"]
    assert (await http.get("/tasks")).json()["tasks"] == []


async def test_a_clearml_report_naming_a_task_with_nul_is_refused_naming_it(
        server: Served) -> None:
    async with http_client(server.url) as http:
        response = await http.post("/workers.status_report", json={
            "worker": "agent-1", "timestamp": 1_700_000_000_000, "task": "t\x00"})
    assert response.status_code == 400
    assert response.json()["meta"]["result_subcode"] == 12
    assert "task" in response.json()["meta"]["result_msg"]


async def test_a_worker_error_with_nul_fails_its_task_on_postgresql_with_the_nul_replaced(
        postgres_schema: tuple[str, str], nursery: trio.Nursery) -> None:
    url, schema = postgres_schema
    store = PostgresStore(url, schema=schema)
    hub = Hub(store=store)
    await nursery.start(hub.run)
    hub.attach("w1", [Subscription.of("tag")], RecordingLink())
    [task_id] = await hub.submit([TaskSpec(name="tag", retries=0).to_task(hub.now())])
    assert hub.answer("w1", Answer(task_id, "error", error="exit\x00code 3")) is None
    final = await hub.wait(task_id, 10.0)
    assert final is not None and final.state is TaskState.FAILED
    await store.commit()
    stored = await store.tasks.get(task_id)
    assert stored is not None and stored.state is TaskState.FAILED
    assert stored.error == "exit\ufffdcode 3"


@pytest.mark.parametrize(("field", "value"), [("description", "linux\x00builders"),
                                              ("owner", "ci\x00@example.com")])
async def test_a_worker_pool_with_nul_in_its_text_is_refused_naming_the_field(
        http: httpx.AsyncClient, field: str, value: str) -> None:
    spec = {"providerId": "aws", "description": "linux builders", "config": {},
            "owner": "ci@example.com", "emailOnError": False, field: value}
    response = await http.put("/api/worker-manager/v1/worker-pool/proj/linux", json=spec)
    assert response.status_code == 400
    assert response.json()["code"] == "InputValidationError"
    assert f"data/{field}" in response.json()["message"]
