"""Several real `workyard serve` processes on one PostgreSQL database (issue 14): they
elect one leader, a follower stores submissions for it and relays workers to it, a
follower takes over after the leader is killed with -9, and a leader whose election
session is terminated stops scheduling (fencing) while another takes over. Each test
has a schema of its own."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio
from conftest import NET_TIMEOUT, http_client
from trio_websocket import ConnectionClosed, open_websocket_url

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _cluster import (
    WAIT,
    HubProcess,
    TcpProxy,
    in_schema,
    start_hubs,
    via,
    wait_leader,
)

from workyard.client import AsyncProducer, Job, Worker


@pytest.fixture
def cluster_db(postgres_schema: tuple[str, str]) -> str:
    url, schema = postgres_schema
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    return in_schema(url, schema)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client("http://127.0.0.1") as http:
        yield http


async def stopped(hubs: list[HubProcess]) -> None:
    for hub in hubs:
        await hub.stop()


def ws(url: str, query: str) -> str:
    return "ws" + url.removeprefix("http") + "/work/queue?" + query


async def answer(connection: object, count: int) -> list[str]:
    """Answer `count` tasks on a trio-websocket connection with their own data."""
    seen = []
    for _ in range(count):
        with trio.fail_after(NET_TIMEOUT):
            frame = json.loads(await connection.get_message())  # type: ignore[attr-defined]
        seen.append(frame["task_id"])
        await connection.send_message(json.dumps(  # type: ignore[attr-defined]
            {"task_id": frame["task_id"], "result": "done", "data": frame["data"]}))
    return seen


def running_in_db(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM tasks WHERE state = 'running'").fetchone()
    return int(row[0]) if row else 0


def term_in_db(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT term FROM hub_leader").fetchone()
    return int(row[0]) if row else 0


async def test_two_hubs_elect_one_leader_and_the_follower_serves_producers_and_relays_workers(
        cluster_db: str, tmp_path: Path, client: httpx.AsyncClient) -> None:
    hubs = await start_hubs(cluster_db, tmp_path, 2)
    try:
        leader, follower = hubs
        assert (await wait_leader(client, hubs)) is leader
        health = await follower.health(client)
        assert health is not None and (health["role"], health["leader"]) == (
            "follower", leader.url)
        # a producer at the follower: stored there, scheduled by the leader
        ids = (await client.post(f"{follower.url}/tasks", json={"tasks": [
            {"name": "echo", "data": i} for i in range(3)]})).json()["ids"]
        # a WebSocket worker at the follower is relayed to the leader
        async with open_websocket_url(ws(follower.url, "task=echo&worker_id=w1")) as conn:
            assert sorted(await answer(conn, 3)) == sorted(ids)
            # the follower waits for many by reading the database until they are final
            with trio.fail_after(NET_TIMEOUT / 2):  # not the whole wait: "nope" never ends
                waited = (await client.post(f"{follower.url}/tasks/wait", json={
                    "ids": [*ids, "nope"], "wait": NET_TIMEOUT})).json()
            assert [(t["id"], t["state"]) for t in waited["finished"]] == [
                (task_id, "done") for task_id in ids]
            assert (waited["pending"], waited["unknown"]) == ([], ["nope"])
            for i, task_id in enumerate(ids):
                task = (await client.get(f"{follower.url}/tasks/{task_id}",
                                         params={"wait": NET_TIMEOUT})).json()
                assert (task["state"], task["result"]) == ("done", i)
                assert [a["worker"] for a in task["attempts"]] == ["w1"]
            workers = (await client.get(f"{follower.url}/workers")).json()["workers"]
            assert [w["id"] for w in workers] == ["w1"]  # relayed: the leader's view
        # a polling worker (seed 002) at the follower is relayed too
        task_id = (await client.post(f"{follower.url}/tasks",
                                     json={"name": "poll", "data": 7})).json()["id"]
        polled = (await client.post(f"{follower.url}/v1/queue/poll", params={"wait": 10},
                                    headers={"X-Worker-Id": "p1"}, json={})).json()
        assert [t["_id"] for t in polled["tasks"]] == [task_id]
        reported = await client.post(f"{follower.url}/v1/queue/poll", params={"max": 0},
                                     headers={"X-Worker-Id": "p1"}, json={"tasks": [
                                         {"_id": task_id, "status": "done",
                                          "result": {"ok": 1}}]})
        assert reported.status_code in (200, 204), reported.text
        task = (await client.get(f"{leader.url}/tasks/{task_id}",
                                 params={"wait": NET_TIMEOUT})).json()
        assert (task["state"], task["result"]) == ("done", {"ok": 1})
    finally:
        await stopped(hubs)


async def test_a_follower_takes_over_after_the_leader_is_killed_and_reruns_the_cut_off_tasks(
        cluster_db: str, tmp_path: Path, client: httpx.AsyncClient) -> None:
    hubs = await start_hubs(cluster_db, tmp_path, 3)
    try:
        leader = await wait_leader(client, hubs)
        follower = hubs[1]
        ids = (await client.post(f"{follower.url}/tasks", json={"tasks": [
            {"name": "t", "data": i} for i in range(4)]})).json()["ids"]
        async with open_websocket_url(ws(leader.url, "task=t&worker_id=doomed")) as conn:
            with trio.fail_after(NET_TIMEOUT):
                held = [json.loads(await conn.get_message())["task_id"] for _ in ids]
                while running_in_db(cluster_db) < len(ids):  # bounded: the group commit
                    await trio.sleep(0.01)
            assert sorted(held) == sorted(ids)
            await leader.kill()
            taken = trio.current_time()
            heir = await wait_leader(client, hubs)
            took = trio.current_time() - taken
        assert heir is not leader and took < 10.0, took  # within seconds, on a loaded machine
        # a worker at any hub gets the cut-off tasks again, each counted as a lost worker
        async with open_websocket_url(ws(hubs[2].url, "task=t&worker_id=heir")) as conn:
            assert sorted(await answer(conn, len(ids))) == sorted(ids)
            for i, task_id in enumerate(ids):
                task = (await client.get(f"{hubs[2].url}/tasks/{task_id}",
                                         params={"wait": NET_TIMEOUT})).json()
                assert (task["state"], task["result"]) == ("done", i)
                assert [(a["worker"], a["outcome"]) for a in task["attempts"]] == [
                    ("doomed", "worker_lost"), ("heir", "done")]
    finally:
        await stopped(hubs)


async def test_a_leader_whose_session_is_terminated_stops_scheduling_and_another_leads(
        cluster_db: str, tmp_path: Path, client: httpx.AsyncClient) -> None:
    hubs = await start_hubs(cluster_db, tmp_path, 2)
    try:
        leader = await wait_leader(client, hubs)
        term = term_in_db(cluster_db)
        ids = (await client.post(f"{leader.url}/tasks", json={"tasks": [
            {"name": "t", "data": i} for i in range(3)]})).json()["ids"]
        async with open_websocket_url(ws(leader.url, "task=t&worker_id=first")) as conn:
            with trio.fail_after(NET_TIMEOUT):
                held = [json.loads(await conn.get_message())["task_id"] for _ in ids]
                while running_in_db(cluster_db) < len(ids):
                    await trio.sleep(0.01)
            assert sorted(held) == sorted(ids)
            with psycopg.connect(cluster_db, autocommit=True) as db:
                killed = db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s", (f"workyard-election {leader.pid}",)
                ).fetchall()
            assert killed == [(True,)]
            # fenced: the old leader lets its worker go at once (it stopped scheduling)
            with trio.fail_after(NET_TIMEOUT), pytest.raises(ConnectionClosed):
                while True:
                    await conn.get_message()
        with trio.fail_after(WAIT):
            while term_in_db(cluster_db) <= term:
                await trio.sleep(0.02)
        assert "lost the leadership" in leader.text()
        new = await wait_leader(client, hubs)  # either hub may win the new term
        async with open_websocket_url(ws(new.url, "task=t&worker_id=second")) as conn:
            assert sorted(await answer(conn, len(ids))) == sorted(ids)
            for task_id in ids:
                task = (await client.get(f"{new.url}/tasks/{task_id}",
                                         params={"wait": NET_TIMEOUT})).json()
                assert [(a["worker"], a["outcome"]) for a in task["attempts"]] == [
                    ("first", "worker_lost"), ("second", "done")]  # run once more, not twice
    finally:
        await stopped(hubs)


async def test_the_sdk_fails_over_between_hub_urls(
        cluster_db: str, tmp_path: Path, client: httpx.AsyncClient) -> None:
    hubs = await start_hubs(cluster_db, tmp_path, 2)
    try:
        leader, follower = hubs
        urls = f"http://127.0.0.1:1,{leader.url},{follower.url}"  # the first one never answers
        worker = Worker(urls, worker_id="sdk", backoff_min=0.05, backoff_max=0.5)

        @worker.handler("sdk")
        async def echo(job: Job) -> object:
            return job.data

        async with AsyncProducer(urls, timeout=NET_TIMEOUT) as producer, \
                trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            task_id = await producer.submit("sdk", 1)
            assert (await producer.result(task_id, wait=NET_TIMEOUT))["result"] == 1
            # the CLI too: `--url` (or WORKYARD_URL) with several hubs
            with trio.fail_after(NET_TIMEOUT * 2):
                done = await trio.run_process(
                    [sys.executable, "-m", "workyard.cli", "submit", "sdk", "--data", "3",
                     "--wait", str(NET_TIMEOUT), "--url", urls],
                    capture_stdout=True, capture_stderr=True, check=False)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["result"] == 3
            await leader.kill()  # the producer and the worker move on to the other hub
            await wait_leader(client, hubs)
            task_id = await producer.submit("sdk", 2)
            task = await producer.result(task_id, wait=NET_TIMEOUT)
            assert (task["state"], task["result"]) == ("done", 2)
            assert worker.url == follower.url and worker.connections >= 2
            nursery.cancel_scope.cancel()
    finally:
        await stopped(hubs)


async def test_a_database_outage_refuses_submissions_with_503_and_the_hubs_recover_alone(
        cluster_db: str, tmp_path: Path, client: httpx.AsyncClient) -> None:
    target = httpx.URL(cluster_db.replace("postgresql://", "http://", 1))
    proxy = TcpProxy((target.host, target.port or 5432))
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        hubs = await start_hubs(via(cluster_db, proxy.port), tmp_path, 2)
        try:
            leader = await wait_leader(client, hubs)
            acked = (await client.post(f"{hubs[1].url}/tasks", json={"tasks": [
                {"name": "t", "data": i} for i in range(5)]})).json()["ids"]
            proxy.cut()
            with trio.fail_after(WAIT):
                while (refused := await client.post(f"{leader.url}/tasks",
                                                    json={"name": "t"})).status_code != 503:
                    await trio.sleep(0.05)
            assert "store" in refused.json()["error"], refused.text
            with trio.fail_after(WAIT):  # the leader lost its lock session: nobody schedules
                while (await leader.health(client) or {}).get("role") != "follower":
                    await trio.sleep(0.05)
            proxy.restore()
            heir = await wait_leader(client, hubs)  # by themselves
            with trio.fail_after(WAIT):
                while (late := await client.post(f"{heir.url}/tasks",
                                                 json={"name": "t", "data": 5})).status_code != 201:
                    await trio.sleep(0.05)
            ids = [*acked, late.json()["id"]]
            async with open_websocket_url(ws(hubs[0].url, "task=t&worker_id=after")) as conn:
                assert sorted(await answer(conn, len(ids))) == sorted(ids)
                for i, task_id in enumerate(ids):
                    task = (await client.get(f"{heir.url}/tasks/{task_id}",
                                             params={"wait": NET_TIMEOUT})).json()
                    assert (task["state"], task["result"]) == ("done", i)  # nothing lost
        finally:
            await stopped(hubs)
            nursery.cancel_scope.cancel()
