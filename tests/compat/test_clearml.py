"""ClearML's workers.* registry (seed 001): the registry and its timeouts, statistics
checked against numbers computed here, clearml-agent's exact payloads, and bad input.

Registry tests call `ClearML.handle` on a MemoryStore hub under `autojump_clock`, so
timeouts of minutes take no time; statistics and payloads go over real HTTP to a
served hub on its SQLite store. The real SDK is in `test_clearml_sdk.py`.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import StartServer, http_client

from workyard import Hub, Settings, Subscription, Task
from workyard.compat import ClearML
from workyard.hub import worker_views
from workyard.testing import RecordingLink

StartHub = Callable[..., Awaitable[Hub]]


class Registry:
    """A `ClearML` over a test hub, called as the HTTP route calls it."""

    def __init__(self, hub: Hub, settings: Settings | None = None) -> None:
        self.hub = hub
        self.clearml = ClearML(hub, settings or Settings())

    async def call(self, action: str, body: dict[str, Any] | None = None, *,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        service, _, name = action.rpartition(".") if "." in action else ("workers", "", action)
        status, raw = await self.clearml.handle(
            service, name, None, headers or {}, json.dumps(body or {}).encode(), {}, "10.0.0.7")
        answer = json.loads(raw)
        assert answer["meta"]["result_code"] == status
        return status, answer

    async def ok(self, action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, answer = await self.call(action, body)
        assert status == 200, answer["meta"]
        return answer["data"]

    async def ids(self, **body: Any) -> list[str]:
        return [w["id"] for w in (await self.ok("get_all", body))["workers"]]


@pytest.fixture
async def registry(start_hub: StartHub) -> Registry:
    return Registry(await start_hub())


def now_ms(hub: Hub) -> int:
    return int(hub.now() * 1000)


# -- the registry ---------------------------------------------------------------------


async def test_a_registered_worker_is_gone_timeout_seconds_after_its_last_report(
        registry: Registry, autojump_clock: trio.testing.MockClock) -> None:
    await registry.ok("register", {"worker": "agent-1", "timeout": 60, "queues": ["gpu"]})
    await trio.sleep(50)
    await registry.ok("status_report", {"worker": "agent-1", "timestamp": now_ms(registry.hub)})
    await trio.sleep(59)
    assert await registry.ids() == ["agent-1"]
    assert [v.id for v in worker_views(registry.hub)] == ["agent-1"]  # GET /workers too
    await trio.sleep(2)
    assert await registry.ids() == []
    assert worker_views(registry.hub) == []


async def test_a_zero_or_missing_timeout_is_the_default_600_seconds(
        registry: Registry, autojump_clock: trio.testing.MockClock) -> None:
    await registry.ok("register", {"worker": "a", "timeout": 0})
    await registry.ok("status_report", {"worker": "b", "timestamp": now_ms(registry.hub)})
    workers = (await registry.ok("get_all"))["workers"]
    assert [w["register_timeout"] for w in workers] == [600, 600]
    await trio.sleep(599)
    assert await registry.ids() == ["a", "b"]
    await trio.sleep(2)
    assert await registry.ids() == []


async def test_unregister_drops_the_worker_and_an_unknown_worker_is_fine(
        registry: Registry) -> None:
    await registry.ok("register", {"worker": "a"})
    await registry.ok("unregister", {"worker": "a", "queues": ["ignored"]})
    await registry.ok("unregister", {"worker": "never-seen"})
    assert await registry.ids() == []
    assert "a" not in registry.hub.sessions.attached


async def test_a_report_clears_task_and_queue_it_omits_but_keeps_tags_and_queues(
        registry: Registry) -> None:
    await registry.ok("register", {"worker": "a", "queues": ["q1", "q2"], "tags": ["gpu"]})
    ts = now_ms(registry.hub)
    await registry.ok("status_report", {"worker": "a", "timestamp": ts, "task": "t-9",
                                        "queue": "q1", "queues": None})
    [worker] = (await registry.ok("get_all"))["workers"]
    assert (worker["task"]["id"], worker["queue"]["id"]) == ("t-9", "q1")
    assert [q["id"] for q in worker["queues"]] == ["q1", "q2"] and worker["tags"] == ["gpu"]
    await registry.ok("status_report", {"worker": "a", "timestamp": ts, "queues": []})
    [worker] = (await registry.ok("get_all"))["workers"]
    assert (worker["task"], worker["queue"]) == (None, None)
    assert [q["id"] for q in worker["queues"]] == ["q1", "q2"] and worker["tags"] == ["gpu"]
    await registry.ok("status_report", {"worker": "a", "timestamp": ts, "tags": []})
    assert (await registry.ok("get_all"))["workers"][0]["tags"] == []


async def test_get_all_filters_by_last_seen_tags_and_pattern(
        registry: Registry, autojump_clock: trio.testing.MockClock) -> None:
    await registry.ok("register", {"worker": "old-1", "tags": ["cpu"], "timeout": 7200})
    await trio.sleep(100)
    await registry.ok("register", {"worker": "new-1", "tags": ["gpu", "big"]})
    await registry.ok("register", {"worker": "new-2", "tags": ["gpu"]})
    assert await registry.ids(last_seen=50) == ["new-1", "new-2"]
    assert await registry.ids(last_seen=0) == ["old-1", "new-1", "new-2"]
    assert await registry.ids(tags=["cpu", "big"]) == ["old-1", "new-1"]
    assert await registry.ids(tags=["gpu", "-big"]) == ["new-2"]
    assert await registry.ids(worker_pattern="^new-[2-9]$") == ["new-2"]


async def test_a_worker_pattern_that_backtracks_without_end_is_refused_naming_it(
        registry: Registry) -> None:
    await registry.ok("register", {"worker": "a" * 60 + "b"})
    status, answer = await registry.call("get_all", {"worker_pattern": "^(a|aa)+$"})
    assert (status, answer["meta"]["result_subcode"]) == (400, 12)
    assert "worker_pattern" in answer["meta"]["result_msg"]
    assert "backtracks" in answer["meta"]["result_msg"]


async def test_a_hub_worker_shows_its_task_names_as_queues_and_the_task_it_runs(
        registry: Registry, autojump_clock: trio.testing.MockClock) -> None:
    hub = registry.hub
    link = RecordingLink()
    hub.attach("ws-1", [Subscription.of("resize", {"cloud": ["aws"]}),
                        Subscription.of("tag")], link)
    running = Task(id="t1", name="resize", attrs={"cloud": "aws"})
    await hub.submit([running, Task(id="t2", name="tag"), Task(id="t3", name="other")])
    await trio.sleep(12)
    [worker] = (await registry.ok("get_all"))["workers"]
    assert worker["id"] == "ws-1" and link.ids[0] == "t1"
    assert worker["task"] == {"id": "t1", "name": "resize", "running_time": 12}
    assert worker["queue"] == {"id": "resize", "name": "resize"}
    assert [(q["id"], q["num_tasks"]) for q in worker["queues"]] == [("resize", 0), ("tag", 0)]
    assert worker["tags"] == ["cloud=aws"]
    assert worker["system_tags"] == ["transport:websocket"]


async def test_a_report_for_a_hub_worker_adds_its_stats_and_keeps_its_connection(
        registry: Registry) -> None:
    hub = registry.hub
    link = RecordingLink()
    hub.attach("ws-1", [Subscription.of("tag")], link)
    await registry.ok("register", {"worker": "ws-1", "tags": ["sdk"]})
    await registry.ok("status_report", {"worker": "ws-1", "timestamp": now_ms(hub),
                                        "machine_stats": {"cpu_usage": [40.0]}})
    assert link.closed is None and hub.sessions.attached["ws-1"].transport == "websocket"
    [worker] = (await registry.ok("get_all"))["workers"]
    assert worker["tags"] == ["sdk"] and worker["ip"] == "10.0.0.7"
    assert (await registry.ok("get_metric_keys", {"worker_ids": ["ws-1"]}))["categories"] == [
        {"name": "cpu", "metric_keys": ["cpu_usage"]}]
    await registry.ok("unregister", {"worker": "ws-1"})  # its ClearML side only
    assert link.closed is None and await registry.ids() == ["ws-1"]


async def test_hub_workers_that_send_no_stats_count_in_the_activity_report(
        start_hub: StartHub, autojump_clock: trio.testing.MockClock) -> None:
    registry = Registry(await start_hub(ping_interval=3600.0))  # links that never pong
    hub = registry.hub
    hub.start_soon(registry.clearml.run)
    start = hub.now()
    busy, idle = RecordingLink(), RecordingLink()
    hub.attach("busy", [Subscription.of("tag")], busy)
    hub.attach("idle", [Subscription.of("other")], idle)
    await hub.submit([Task(id="t1", name="tag")])
    await trio.sleep(31)  # one sample
    report = await registry.ok("get_activity_report", {
        "from_date": start, "to_date": hub.now(), "interval": 3600})
    assert report["total"]["counts"] == [2] and report["active"]["counts"] == [1]


# -- statistics over HTTP, against numbers computed here --------------------------------


def clearml(http: httpx.AsyncClient) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def call(action: str, body: dict[str, Any], *, version: str = "") -> dict[str, Any]:
        prefix = f"/v{version}" if version else ""
        response = await http.post(f"{prefix}/workers.{action}", json=body)
        assert response.status_code == 200, response.text
        return response.json()["data"]
    return call


async def test_get_stats_pools_samples_and_variants_per_epoch_bucket(
        start_server: StartServer) -> None:
    served = await start_server()
    rnd = random.Random(7)
    base = (int(time.time()) // 1000) * 1000 - 3000  # epoch seconds, a whole 1000
    interval = 7  # the real server would raise it to 40
    samples: dict[str, list[tuple[int, list[float], float]]] = {"w1": [], "w2": []}
    async with http_client(served.url) as http:
        call = clearml(http)
        for worker, readings in samples.items():
            for i in range(40):
                ts = base + i * 3 + rnd.randint(0, 2)
                gpu = [float(rnd.randint(0, 100)) for _ in range(4)]
                mem = 0.0 if i % 5 == 0 else float(rnd.randint(1, 9000))  # zeros are kept
                readings.append((ts, gpu, mem))
                await call("status_report", {
                    "worker": worker, "timestamp": ts * 1000, "machine_stats": {
                        "gpu_usage": gpu, "memory_used": mem}})
        until = base + 100  # the last sample of each worker is in the last bucket
        got = await call("get_stats", {
            "from_date": base, "to_date": until, "interval": interval, "items": [
                {"key": "gpu_usage", "aggregation": "avg"}, {"key": "gpu_usage", "category": "max"},
                {"key": "memory_used", "category": "min"}]})
        split = await call("get_stats", {
            "from_date": base, "to_date": until, "interval": interval, "split_by_variant": True,
            "worker_ids": ["w2"], "items": [{"key": "gpu_usage", "aggregation": "min"}]})

    def expected(worker: str, pick: Callable[[list[float], float], list[float]]
                 ) -> dict[int, list[float]]:
        buckets: dict[int, list[float]] = {}
        for ts, gpu, mem in samples[worker]:
            if base <= ts <= until:
                buckets.setdefault(ts // interval * interval * 1000, []).extend(pick(gpu, mem))
        return dict(sorted(buckets.items()))

    assert [w["worker"] for w in got["workers"]] == ["w1", "w2"]
    for answer in got["workers"]:
        gpu = expected(answer["worker"], lambda g, m: g)
        mem = expected(answer["worker"], lambda g, m: [m])
        by_metric = {m["metric"]: m for m in answer["metrics"]}
        assert list(by_metric) == ["gpu_usage", "memory_used"]
        assert by_metric["gpu_usage"]["dates"] == list(gpu)
        assert by_metric["gpu_usage"]["stats"] == [
            {"aggregation": "avg", "values": pytest.approx([sum(v) / len(v) for v in gpu.values()])},
            {"aggregation": "max", "values": [max(v) for v in gpu.values()]}]
        assert by_metric["memory_used"]["stats"] == [
            {"aggregation": "min", "values": [min(v) for v in mem.values()]}]
        assert 0.0 in by_metric["memory_used"]["stats"][0]["values"]
    [w2] = split["workers"]
    assert [m["variant"] for m in w2["metrics"]] == ["0", "1", "2", "3"]
    for variant in range(4):
        per = expected("w2", lambda g, m, v=variant: [g[v]])  # type: ignore[misc]
        assert w2["metrics"][variant]["dates"] == list(per)
        assert w2["metrics"][variant]["stats"][0]["values"] == [min(v) for v in per.values()]


async def test_activity_counts_distinct_reporting_workers_and_those_with_a_task(
        start_server: StartServer) -> None:
    served = await start_server()
    base = (int(time.time()) // 100) * 100 - 1000
    reports = [("a", 0, "t1"), ("a", 10, None), ("b", 20, None), ("c", 60, "t2"),
               ("b", 130, "t3"), ("a", 199, None)]
    async with http_client(served.url) as http:
        call = clearml(http)
        for worker, offset, task in reports:
            await call("status_report", {"worker": worker, "timestamp": (base + offset) * 1000,
                                         "task": task, "machine_stats": None})
        got = await call("get_activity_report", {"from_date": base, "to_date": base + 199,
                                                 "interval": 100}, version="999.0")
    assert got == {"total": {"dates": [base * 1000, (base + 100) * 1000], "counts": [3, 2]},
                   "active": {"dates": [base * 1000, (base + 100) * 1000], "counts": [2, 1]}}


async def test_clearml_agent_payloads_are_accepted_as_it_sends_them(
        start_server: StartServer) -> None:
    """clearml-agent 3.0.3's daemon: unversioned GET with a JSON body, `is_daemon`,
    ms timestamps, averaged machine stats, `machine_stats: null` on stop."""
    served = await start_server()
    worker = "gpu-box:0"
    stats = {"cpu_usage": [12.5], "cpu_temperature": [51.0], "memory_used": 7810.2,
             "memory_free": 24000.0, "disk_free_home": 61.3, "disk_read": 0.0,
             "disk_write": 1.25, "network_tx": 0.01, "network_rx": 0.02,
             "gpu_usage": [90.0, 0.0, 15.0, 40.0], "gpu_temperature": [70.0, 30.0, 40.0, 50.0],
             "gpu_memory_used": [10000, 0, 200, 4000], "gpu_memory_free": [6000, 16000, 15800, 12000]}
    async with http_client(served.url) as http:
        async def send(action: str, body: dict[str, Any]) -> httpx.Response:
            return await http.request("GET", f"/workers.{action}", content=json.dumps(body),
                                      headers={"Content-Type": "application/json"})

        ts = int(time.time()) * 1000
        assert (await send("register", {"worker": worker, "queues": ["q-id-1"]})).status_code == 200
        r = await send("status_report", {"worker": worker, "timestamp": ts, "queues": ["q-id-1"],
                                         "machine_stats": stats, "is_daemon": True})
        assert r.status_code == 200 and r.json()["meta"]["result_msg"] == "OK"
        r = await send("status_report", {"worker": worker, "timestamp": ts + 30_000,
                                         "task": "f00d", "queue": "q-id-1",
                                         "machine_stats": None})
        assert r.status_code == 200
        r = await send("unregister", {"worker": worker, "queues": ["q-id-1"]})
        assert r.status_code == 200
        keys = (await send("get_metric_keys", {})).json()["data"]["categories"]
        got = (await send("get_stats", {
            "from_date": ts / 1000 - 60, "to_date": ts / 1000 + 60, "interval": 3600,
            "items": [{"key": "gpu_memory_free", "aggregation": "max"},
                      {"key": "disk_read"}]})).json()["data"]
    assert {c["name"]: c["metric_keys"] for c in keys} == {
        "cpu": ["cpu_temperature", "cpu_usage"], "disk": ["disk_free_home", "disk_read", "disk_write"],
        "gpu": ["gpu_memory_free", "gpu_memory_used", "gpu_temperature", "gpu_usage"],
        "memory": ["memory_free", "memory_used"], "network": ["network_rx", "network_tx"]}
    [w] = got["workers"]
    assert [(m["metric"], m["stats"][0]["values"]) for m in w["metrics"]] == [
        ("gpu_memory_free", [16000.0]), ("disk_read", [0.0])]


# -- bad input ------------------------------------------------------------------------

FAR_FUTURE = (int(time.time()) + 3 * 24 * 3600) * 1000
#: beyond the default raw retention (2 days): its samples would be purged at once
LONG_AGO = (int(time.time()) - 3 * 24 * 3600) * 1000

BAD = [
    ("register", {}, 400, 12, "field 'worker'. field is required!"),
    ("register", {"worker": None}, 400, 12, "field 'worker'. field is required!"),
    ("register", {"worker": 7}, 400, 12, "field 'worker'"),
    ("register", {"worker": "a", "timeout": -1}, 400, 1002, "invalid timeout"),
    ("register", {"worker": "a", "queues": "q"}, 400, 12, "field 'queues'"),
    ("status_report", {"worker": "a"}, 400, 12, "field 'timestamp'. field is required!"),
    ("status_report", {"worker": "a", "timestamp": "now"}, 400, 12, "field 'timestamp'"),
    ("status_report", {"worker": "a", "timestamp": FAR_FUTURE}, 400, 12, "field 'timestamp'"),
    ("status_report", {"worker": "a", "timestamp": 1, "machine_stats": {"cpu_usage": "x"}},
     400, 12, "field 'machine_stats.cpu_usage'"),
    ("status_report", {"worker": "a", "timestamp": 1, "machine_stats": {"cpu_usage": [True]}},
     400, 12, "field 'machine_stats.cpu_usage[0]'"),
    ("status_report", {"worker": "a", "timestamp": 1, "machine_stats": {"bad key!": 1}},
     400, 12, "field 'machine_stats.bad key!'"),
    ("status_report", {"worker": "a", "timestamp": LONG_AGO}, 400, 12,
     f"field 'timestamp'. {LONG_AGO:d} is older than the statistics' raw retention"),
    ("status_report", {"worker": "a", "timestamp": 1e300}, 400, 12, "field 'timestamp'"),
    ("status_report", {"worker": "a", "timestamp": -5}, 400, 12, "field 'timestamp'"),
    ("status_report", {"worker": "a\n", "timestamp": 1}, 400, 12, "field 'worker'"),
    ("status_report", {"worker": "a", "timestamp": 1, "machine_stats": [1, 2]},
     400, 12, "field 'machine_stats'"),
    ("status_report", {"worker": "a", "timestamp": 1, "machine_stats": {"gpu_usage": [1] * 65}},
     400, 12, "field 'machine_stats.gpu_usage'"),
    ("status_report", {"worker": "a", "timestamp": 1, "machine_stats": {
        f"m{i}": 1 for i in range(101)}}, 400, 12, "field 'machine_stats'"),
    ("register", {"worker": "a", "timeout": "soon"}, 400, 12, "field 'timeout'"),
    ("register", {"worker": "a" * 300}, 400, 12, "field 'worker'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": -3, "items": [{"key": "a"}]},
     400, 12, "field 'interval'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1, "items": [{"key": ""}]},
     400, 12, "field 'items[0].key'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1, "items": []},
     400, 12, "field 'items'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1,
                   "items": [{"key": "a"}] * 101}, 400, 12, "field 'items'"),
    ("get_stats", {"from_date": -1, "to_date": 10, "interval": 1, "items": [{"key": "a"}]},
     400, 12, "field 'from_date'"),
    ("get_stats", {"from_date": "yesterday", "to_date": 10, "interval": 1,
                   "items": [{"key": "a"}]}, 400, 12, "field 'from_date'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1, "items": [{"key": "a"}],
                   "worker_ids": [7]}, 400, 12, "field 'worker_ids[0]'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1, "items": [{"key": "a"}],
                   "split_by_variant": "yes"}, 400, 12, "field 'split_by_variant'"),
    ("get_stats", {"from_date": 10, "to_date": 10, "interval": 1, "items": [{"key": "a"}]},
     400, 16, "from_date"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 0, "items": [{"key": "a"}]},
     400, 12, "field 'interval'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1.5, "items": [{"key": "a"}]},
     400, 12, "field 'interval'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1}, 400, 12, "field 'items'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1, "items": [{"key": "a",
     "aggregation": "median"}]}, 400, 12, "field 'items[0].aggregation'"),
    ("get_stats", {"from_date": 1, "to_date": 10, "interval": 1, "items": [{}]},
     400, 12, "field 'items[0].key'. field is required!"),
    ("get_stats", {"from_date": 0, "to_date": 1e9, "interval": 1, "items": [{"key": "a"}]},
     400, 12, "field 'interval'"),
    ("get_stats", {"from_date": 1, "to_date": 1e300, "interval": 1, "items": [{"key": "a"}]},
     400, 12, "field 'to_date'"),
    ("get_activity_report", {"from_date": 5, "to_date": 1, "interval": 1}, 400, 16, "to_date"),
    ("get_activity_report", {"to_date": 1, "interval": 1}, 400, 12, "field 'from_date'"),
    ("get_all", {"worker_pattern": "("}, 400, 12, "field 'worker_pattern'"),
    ("get_all", {"last_seen": "none!"}, 400, 12, "field 'last_seen'"),
    ("get_metric_keys", {"worker_ids": "a"}, 400, 12, "field 'worker_ids'"),
    ("fly", {}, 404, 0, "Unable to find endpoint for name workers.fly"),
]


@pytest.mark.parametrize(("action", "body", "status", "subcode", "named"), BAD,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
async def test_bad_input_gets_clearmls_envelope_with_its_code_naming_the_field(
        registry: Registry, action: str, body: dict[str, Any], status: int, subcode: int,
        named: str) -> None:
    got, answer = await registry.call(action, body)
    meta = answer["meta"]
    assert (got, meta["result_code"], meta["result_subcode"]) == (status, status, subcode)
    assert named in meta["result_msg"], meta["result_msg"]
    assert meta["endpoint"]["name"] == f"workers.{action}"


async def test_a_body_that_is_not_a_json_object_gets_a_400_envelope(
        start_server: StartServer) -> None:
    served = await start_server(Settings(port=0, db=":memory:", max_body=1024))
    async with http_client(served.url) as http:
        for body in (b"{not json", b"[1, 2]", b'"worker"'):
            r = await http.post("/workers.register", content=body)
            assert (r.status_code, r.json()["meta"]["result_subcode"]) == (400, 12), body
        r = await http.post("/workers.status_report", content=b"x" * 2048)
        assert r.status_code == 413 and r.json()["meta"]["result_code"] == 413
    async with http_client(served.url) as http:
        r = await http.get("/queues.get_all")
        assert r.status_code == 404 and r.json()["meta"]["endpoint"]["name"] == "queues.get_all"
        r = await http.get("/v2.20/workers.get_all")
        assert r.json()["meta"]["endpoint"] == {
            "name": "workers.get_all", "requested_version": "2.20", "actual_version": "2.20"}


# -- credentials ----------------------------------------------------------------------


def basic(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


async def test_with_worker_tokens_only_a_token_logs_in_and_the_jwt_is_accepted_back(
        start_hub: StartHub) -> None:
    registry = Registry(await start_hub(), Settings(worker_tokens=frozenset({"s3cret"})))

    async def code(action: str, headers: dict[str, str]) -> tuple[int, int]:
        _, answer = await registry.call(action, {"worker": "a"}, headers=headers)
        return answer["meta"]["result_code"], answer["meta"]["result_subcode"]

    assert await code("auth.login", {}) == (401, 20)
    assert await code("auth.login", {"Authorization": basic("key", "wrong")}) == (401, 10)
    assert await code("register", {}) == (401, 20)
    assert await code("register", {"Authorization": "Bearer not.a.jwt"}) == (401, 30)
    _, answer = await registry.call("auth.login", headers={"Authorization": basic("key", "s3cret")})
    token = answer["data"]["token"]
    assert token.count(".") == 2
    assert await code("register", {"Authorization": "Bearer s3cret"}) == (200, 0)  # the SDK's
    assert await code("register", {"Authorization": basic("key", "wrong")}) == (401, 10)
    assert await code("register", {"Authorization": f"Bearer {token}"}) == (200, 0)
    _, answer = await registry.call("get_all", {}, headers={"Authorization": "Bearer s3cret"})
    [worker] = answer["data"]["workers"]
    assert worker["user"] == {"id": "key", "name": "key"}
