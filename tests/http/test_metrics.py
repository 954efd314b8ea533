"""/metrics, parsed with prometheus-client's own parser, against a scripted run."""

from __future__ import annotations

import httpx
import trio
from conftest import NET_TIMEOUT, Served, StartServer, echo_worker, http_client
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import open_websocket_url

from workyard import Settings
from workyard.transports import FRAMES

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def scrape_until(http: httpx.AsyncClient, name: str, expected: float,
                       **labels: str) -> Samples:
    """Histograms follow the event stream a moment behind the answers: a bounded poll."""
    with trio.fail_after(NET_TIMEOUT):
        while True:
            samples = await scrape(http)
            if value(samples, name, **labels) == expected:
                return samples
            await trio.sleep(0.02)


async def test_twenty_tasks_on_four_workers_count_twenty_processed_and_five_each(
        start_server: StartServer, hub_db: str) -> None:
    served = await start_server(Settings(port=0, db=hub_db, metrics_per_worker=10))
    frames_in, frames_out = FRAMES.received, FRAMES.sent
    async with http_client(served.url) as http, trio.open_nursery() as nursery:
        for i in range(4):
            await nursery.start(echo_worker, served.ws(f"/work/queue?task=resize&worker_id=w{i}"))
        batch = await http.post("/tasks", json={"tasks": [{"name": "resize", "data": i}
                                                          for i in range(20)]})
        assert batch.status_code == 201
        for task_id in batch.json()["ids"]:
            assert (await http.get(f"/tasks/{task_id}?wait=10")).json()["state"] == "done"

        samples = await scrape_until(http, "workyard_end_to_end_latency_seconds_count", 20,
                                     queue="resize")
        nursery.cancel_scope.cancel()

    assert value(samples, "workyard_tasks_submitted_total", queue="resize") == 20
    assert value(samples, "workyard_tasks_processed_total", queue="resize") == 20
    assert value(samples, "workyard_tasks_failed_total", queue="resize") == 0
    assert value(samples, "workyard_queue_queued", queue="resize") == 0
    assert value(samples, "workyard_queue_running", queue="resize") == 0
    assert value(samples, "workyard_queue_workers", queue="resize") == 4
    assert value(samples, "workyard_workers_attached", transport="websocket", pool="") == 4
    for i in range(4):
        assert value(samples, "workyard_worker_processed_total", worker=f"w{i}") == 5
        assert value(samples, "workyard_worker_outstanding", worker=f"w{i}") == 0
    assert value(samples, "workyard_worker_series_omitted") == 0
    assert value(samples, "workyard_dispatch_latency_seconds_count", queue="resize") == 20
    assert value(samples, "workyard_dispatch_latency_seconds_bucket", queue="resize",
                 le="+Inf") == 20
    assert value(samples, "workyard_http_requests_total", route="/tasks", method="POST",
                 status="201") == 1
    assert value(samples, "workyard_http_requests_total", route="/tasks/<task_id>",
                 method="GET", status="200") == 20
    assert value(samples, "workyard_store_commit_units_sum") >= 21  # the batch, 20 starts...
    assert (FRAMES.received - frames_in, FRAMES.sent - frames_out) == (20, 20)
    assert value(samples, "workyard_events_dropped_total") == 0


async def test_per_worker_series_are_off_by_default_and_capped_when_on(
        start_server: StartServer, hub_db: str) -> None:
    default = await start_server()
    capped = await start_server(Settings(port=0, db=hub_db + "-2", metrics_per_worker=2))
    async with trio.open_nursery() as nursery:
        for served in (default, capped):
            for i in range(3):
                await nursery.start(echo_worker, served.ws(f"/work/queue?task=t&worker_id=w{i}"))
        async with http_client(default.url) as http:
            off = await scrape(http)
        async with http_client(capped.url) as http:
            on = await scrape(http)
        nursery.cancel_scope.cancel()
    assert not any(name.startswith("workyard_worker_") for name, _ in off)
    assert sum(name == "workyard_worker_outstanding" for name, _ in on) == 2
    assert value(on, "workyard_worker_series_omitted") == 1


async def test_a_lost_worker_counts_its_tasks_as_reschedules_by_reason(
        server: Served, http: httpx.AsyncClient) -> None:
    # a worker that takes two tasks, never answers, and goes away
    async with open_websocket_url(server.ws("/work/queue?task=slow&worker_id=mute")) as ws:
        with trio.fail_after(NET_TIMEOUT):
            while "mute" not in server.hub.sessions.attached:
                await trio.sleep(0.01)
        await http.post("/tasks", json={"tasks": [{"name": "slow"}, {"name": "slow"}]})
        for _ in range(2):
            await ws.get_message()
    samples = await scrape_until(http, "workyard_task_reschedules_total", 2, queue="slow",
                                 reason="worker_lost")
    assert value(samples, "workyard_queue_queued", queue="slow") == 2
    assert value(samples, "workyard_workers_attached", transport="websocket", pool="") is None
