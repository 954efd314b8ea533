"""A hub whose `--db` is a PostgreSQL URL: it picks PostgresStore, serves submissions
and results from it, and a hub started again on the same URL finds them, its worker
pools and its event outbox too."""

from __future__ import annotations

import psycopg
import trio
from conftest import NET_TIMEOUT, StartServer, echo_worker, http_client
from test_pool_events import SPEC, WM, call, manager, read_events

from workyard import Settings
from workyard.server import open_store
from workyard.store import PostgresStore


def in_schema(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema` (libpq's `options`)."""
    return f"{url}?options=-csearch_path%3D{schema}"


def test_a_postgresql_url_opens_a_postgres_store_and_is_logged_without_its_password() -> None:
    store = open_store(Settings(db="postgresql://hub:secret@db.example:5433/work"))
    assert isinstance(store, PostgresStore)
    assert store.where == "postgresql://hub@db.example:5433/work"


async def test_a_hub_on_postgresql_keeps_tasks_and_results_across_a_restart(
        start_server: StartServer, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    settings = Settings(port=0, db=in_schema(url, schema))
    served = await start_server(settings)
    async with http_client(served.url) as http:
        response = await http.post("/tasks", json={"name": "echo", "data": {"x": 1}})
        assert response.status_code == 201, response.text
        task_id = response.json()["id"]
        async with trio.open_nursery() as worker:
            await worker.start(echo_worker, served.ws("/work/queue?task=echo"))
            body = (await http.get(f"/tasks/{task_id}", params={"wait": NET_TIMEOUT})).json()
            assert body["state"] == "done", body
            worker.cancel_scope.cancel()
    await served.stop()
    with psycopg.connect(url) as db:
        assert db.execute(f"SELECT state FROM {schema}.tasks WHERE id = %s",  # type: ignore[arg-type]
                          (task_id,)).fetchone() == ("done",)
    again = await start_server(settings)
    async with http_client(again.url) as http:
        body = (await http.get(f"/tasks/{task_id}")).json()
    assert (body["state"], body["result"]) == ("done", {"x": 1})  # what the worker answered


async def test_pools_and_their_events_on_postgresql_survive_a_restart_with_seqs_unbroken(
        start_server: StartServer, postgres_schema: tuple[str, str]) -> None:
    url, schema = postgres_schema
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    settings = Settings(port=0, db=in_schema(url, schema))
    query = f"/events?exchange={WM}worker-pool-created&since=0"
    served = await start_server(settings)
    wm = manager(served.url)
    await call(wm.createWorkerPool, "proj/a", SPEC)
    await call(wm.createWorkerPool, "proj/b", {**SPEC, "providerId": "gcp"})
    await served.stop()

    again = await start_server(settings)
    wm = manager(again.url)
    pools = (await call(wm.listWorkerPools))["workerPools"]
    assert [(p["workerPoolId"], p["providerId"]) for p in pools] == [
        ("proj/a", "aws"), ("proj/b", "gcp")]
    await call(wm.createWorkerPool, "proj/c", SPEC)
    async with http_client(again.url) as http, http.stream("GET", query) as stream:
        events = await read_events(stream, 3)
    assert [(int(e["id"]), e["data"]["payload"]["workerPoolId"]) for e in events] == [
        (1, "proj/a"), (2, "proj/b"), (3, "proj/c")]  # numbered on, no gap, after the restart
