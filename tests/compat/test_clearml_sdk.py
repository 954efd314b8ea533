"""The real `clearml` SDK (2.1.12) against a served hub: its APIClient logs in with
HTTP Basic, reads our JWT, and calls every workers.* action with its typed requests
and response models. Credentials come from the environment, as a user sets them;
nothing may leave 127.0.0.1 (the test fails if the SDK looks up any other host)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from conftest import StartServer

from workyard import Settings, Subscription, Task
from workyard.testing import RecordingLink

pytest.importorskip("clearml")
#: the SDK's vendored pyhocon calls pyparsing's deprecated names
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKEN = "s3cret"


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) any name lookup but the loopback: no version check, no
    telemetry, no default server on the internet."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in ("127.0.0.1", "localhost", b"127.0.0.1"):
            asked.append(str(host))
            raise socket.gaierror(f"test: no lookups beyond loopback ({host})")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield asked
    assert asked == []


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "agent-key")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", TOKEN)
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "no-clearml.conf"))
    monkeypatch.delenv("CLEARML_AUTH_TOKEN", raising=False)


def sdk_session(url: str) -> Any:
    import os

    from clearml.backend_api.session.client import APIClient

    os.environ["CLEARML_API_HOST"] = url
    return APIClient()


async def test_the_real_sdk_registers_reports_and_reads_every_workers_action(
        start_server: StartServer, hub_db: str, sdk_env: None, loopback_only: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    served = await start_server(Settings(port=0, db=hub_db, worker_tokens=frozenset({TOKEN}), allow_lockout=True))
    monkeypatch.setenv("CLEARML_API_HOST", served.url)
    hub = served.hub
    hub.attach("ws-worker", [Subscription.of("resize")], RecordingLink())
    await hub.submit([Task(id="job-1", name="resize")])
    now = int(time.time())

    def use_the_sdk() -> dict[str, Any]:
        from clearml.backend_api.session import Session

        client = sdk_session(served.url)
        seen: dict[str, Any] = {"api": Session.api_version, "feature_set": Session.feature_set}
        client.workers.register(worker="sdk-1", queues=["gpu"], timeout=300, tags=["a100"])
        for i, (cpu, mem) in enumerate([(10.0, 0.0), (30.0, 512.0), (50.0, 1024.0)]):
            client.workers.status_report(
                worker="sdk-1", timestamp=(now - 60 + i * 20) * 1000, task="train-7",
                machine_stats={"cpu_usage": [cpu, cpu + 10], "memory_used": mem})
        seen["workers"] = {w.id: w for w in client.workers.get_all(last_seen=600)}
        seen["stats"] = client.workers.get_stats(
            from_date=now - 120, to_date=now, interval=60,
            items=[{"key": "cpu_usage", "category": "max"}, {"key": "memory_used"}])
        seen["activity"] = client.workers.get_activity_report(
            from_date=now - 120, to_date=now, interval=60)
        seen["keys"] = client.workers.get_metric_keys(worker_ids=["sdk-1"])
        client.workers.unregister(worker="sdk-1")
        seen["after"] = [w.id for w in client.workers.get_all()]
        return seen

    seen = await trio.to_thread.run_sync(use_the_sdk)
    assert (seen["api"], seen["feature_set"]) == ("2.23", "basic")  # the SDK's newest
    sdk_worker, ws_worker = seen["workers"]["sdk-1"], seen["workers"]["ws-worker"]
    assert [q.id for q in sdk_worker.queues] == ["gpu"] and sdk_worker.tags == ["a100"]
    assert sdk_worker.task.id == "train-7" and sdk_worker.user.id == "agent-key"
    assert ws_worker.task.id == "job-1" and [q.name for q in ws_worker.queues] == ["resize"]

    buckets: dict[int, list[tuple[float, float]]] = {}
    for i, (cpu, mem) in enumerate([(10.0, 0.0), (30.0, 512.0), (50.0, 1024.0)]):
        ts = now - 60 + i * 20
        buckets.setdefault(ts // 60 * 60 * 1000, []).append((cpu, mem))
    [stats] = seen["stats"].workers
    cpu, mem = stats.metrics
    assert (cpu.metric, mem.metric) == ("cpu_usage", "memory_used")
    assert cpu.dates == mem.dates == sorted(buckets)
    assert cpu.stats[0].aggregation.value == "max"  # the SDK's `category` is honoured
    assert cpu.stats[0].values == [max(c + 10 for c, _ in b) for _, b in sorted(buckets.items())]
    assert mem.stats[0].values == pytest.approx(
        [sum(m for _, m in b) / len(b) for _, b in sorted(buckets.items())])
    assert seen["activity"].total.counts == seen["activity"].active.counts == [1] * len(buckets)
    assert [(c.name, c.metric_keys) for c in seen["keys"].categories] == [
        ("cpu", ["cpu_usage"]), ("memory", ["memory_used"])]
    assert seen["after"] == ["ws-worker"]


async def test_the_sdk_is_refused_with_a_wrong_secret(
        start_server: StartServer, hub_db: str, sdk_env: None, loopback_only: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    served = await start_server(Settings(port=0, db=hub_db, worker_tokens=frozenset({"other"}),
                                                allow_lockout=True))

    def connect() -> str:
        try:
            sdk_session(served.url)
        except Exception as exc:  # noqa: BLE001 - the SDK's LoginError
            return f"{type(exc).__name__}: {exc}"
        return "connected"

    refusal = await trio.to_thread.run_sync(connect)
    assert "LoginError" in refusal and "401" in refusal and "invalid credentials" in refusal
