"""Worker pools in the hub: membership, drain, and the outbox events each change
commits with it (`hub.pools`, on the in-memory store)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from workyard import Hub, Subscription, Task
from workyard._errors import Conflict, InvalidInput
from workyard.hub._pools import offer_of
from workyard.outbox import POOL_REMOVED, WORKER_MANAGER_PREFIX
from workyard.store import PoolRecord, StoreError
from workyard.testing import MemoryStore, RecordingLink

StartHub = Callable[..., Awaitable[Hub]]
TAG = [Subscription.of("tag")]


def record(pool_id: str = "proj/pool", provider: str = "aws") -> PoolRecord:
    return PoolRecord(pool_id, provider, "d", b"{}", "me@example.com", False, 0.0, 0.0)


async def settled(hub: Hub) -> list[tuple[str, str, dict[str, Any]]]:
    """The outbox once the ledger has committed what it was handed: (exchange without
    the worker-manager prefix, routing key, body)."""
    for _ in range(10):  # the ledger commits within a few scheduler rounds
        await trio.testing.wait_all_tasks_blocked()
    rows = await hub.store.outbox.read(0, 1000)
    return [(r.exchange.removeprefix(WORKER_MANAGER_PREFIX), r.routing_key, json.loads(r.body))
            for r in rows]


async def test_a_created_pool_commits_its_event_with_it(start_hub: StartHub) -> None:
    hub = await start_hub()
    pool, created = await hub.pools.create(record())
    assert created and pool.record.created > 0
    assert await hub.store.pools.get("proj/pool") == pool.record
    assert await settled(hub) == [("worker-pool-created", "primary.aws.proj.pool._._._._",
                                   {"workerPoolId": "proj/pool", "providerId": "aws"})]


async def test_an_identical_create_is_idempotent_and_a_different_one_conflicts(
        start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(record())
    _, created = await hub.pools.create(record())
    assert not created
    with pytest.raises(Conflict, match="different settings"):
        await hub.pools.create(record(provider="gcp"))
    assert len(await settled(hub)) == 1


async def test_pool_workers_count_and_publish_running_stopped_and_removed(
        start_hub: StartHub, autojump_clock: trio.testing.MockClock) -> None:
    hub = await start_hub(ping_interval=1.0, ping_timeout=1.0)
    await hub.pools.create(record())
    a, b = RecordingLink(), RecordingLink()
    hub.attach("w1", TAG, a, capacity=4, worker_pool="proj/pool", worker_group="eu")
    hub.attach("w2", TAG, b, capacity=2, worker_pool="proj/pool")
    pool = hub.pools.get("proj/pool")
    assert pool is not None and len(pool.workers) == 2 and pool.running_capacity == 6
    hub.detach("w1", a)
    await trio.sleep(3.0)  # w2 never proves it is alive: the liveness watch drops it
    assert not pool.workers and b.closed is not None
    events = await settled(hub)
    assert [(e[0], e[1]) for e in events[1:]] == [
        ("worker-running", "primary.aws.proj.pool.eu.w1._._"),
        ("worker-running", "primary.aws.proj.pool.default.w2._._"),
        ("worker-stopped", "primary.aws.proj.pool.eu.w1._._"),
        ("worker-removed", "primary.aws.proj.pool.default.w2._._")]
    running = events[1][2]
    assert running.keys() == {"workerPoolId", "providerId", "workerId", "workerGroup",
                              "capacity", "timestamp"}
    assert running["capacity"] == 4 and running["timestamp"].endswith("Z")
    assert "reason" not in events[3][2] and events[4][2]["reason"] == b.closed


async def test_a_draining_pool_refuses_new_workers_and_goes_with_its_last(
        start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(record())
    a = RecordingLink()
    hub.attach("w1", TAG, a, worker_pool="proj/pool")
    drained = await hub.pools.delete("proj/pool")
    assert drained.record.provider_id == "null-provider"
    with pytest.raises(ValueError, match="being drained"):
        hub.attach("w2", TAG, RecordingLink(), worker_pool="proj/pool")
    assert "w2" not in hub.sessions.attached
    assert hub.pools.get("proj/pool") is drained  # w1 may finish
    hub.detach("w1", a)
    assert hub.pools.get("proj/pool") is None
    events = await settled(hub)
    assert [e[0] for e in events] == ["worker-pool-created", "worker-running",
                                      "worker-pool-updated", "worker-stopped",
                                      POOL_REMOVED]
    assert events[2][2] == {"workerPoolId": "proj/pool", "providerId": "null-provider",
                            "previousProviderId": "aws"}
    assert events[2][1] == "primary.null-provider.proj.pool._._._._"
    assert await hub.store.pools.get("proj/pool") is None


async def test_draining_a_pool_with_no_workers_removes_it_at_once(start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(record())
    await hub.pools.delete("proj/pool")
    assert hub.pools.get("proj/pool") is None
    assert [e[0] for e in await settled(hub)] == [
        "worker-pool-created", "worker-pool-updated", POOL_REMOVED]


async def test_workers_of_unknown_pools_or_with_bad_ids_are_refused(start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(record())
    with pytest.raises(ValueError, match="no worker pool"):
        hub.attach("w1", TAG, RecordingLink(), worker_pool="other/pool")
    with pytest.raises(ValueError, match="worker_group"):
        hub.attach("w1", TAG, RecordingLink(), worker_pool="proj/pool", worker_group="a.b")
    with pytest.raises(ValueError, match="worker_id"):
        hub.attach("w.1", TAG, RecordingLink(), worker_pool="proj/pool")
    assert not hub.sessions.attached


class FailingStore(MemoryStore):
    """Fails every commit that saves a pool while `failing` is set."""

    failing = False

    async def commit(self, *changes: Any) -> Any:
        if self.failing:
            raise StoreError("disk on fire")
        return await super().commit(*changes)


async def test_a_pool_change_that_does_not_commit_is_undone_and_publishes_nothing(
        start_hub: StartHub) -> None:
    store = FailingStore()
    hub = await start_hub(store=store)
    await hub.pools.create(record())
    store.failing = True
    with pytest.raises(StoreError):
        await hub.pools.update(record(provider="gcp"))
    with pytest.raises(StoreError):
        await hub.pools.create(record("other/pool"))
    pool = hub.pools.get("proj/pool")
    assert pool is not None and pool.record.provider_id == "aws"
    assert hub.pools.get("other/pool") is None
    store.failing = False
    assert [e[0] for e in await settled(hub)] == ["worker-pool-created"]


# -- demand: what a provisioner scales on ----------------------------------------------


def offering(pool_id: str, *subscriptions: dict[str, Any], capacity: int = 2) -> PoolRecord:
    config = json.dumps({"subscriptions": list(subscriptions), "capacityPerWorker": capacity})
    return PoolRecord(pool_id, "aws", "d", config.encode(), "me@example.com", False, 0.0, 0.0)


def task(name: str, **attrs: str) -> Task:
    return Task(id=f"{name}-{uuid.uuid4().hex[:8]}", name=name, attrs=attrs)


async def test_pending_tasks_count_what_only_a_new_worker_of_the_pool_would_take(
        start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(offering("proj/linux", {"name": "build", "filter": {"os": "linux"}}))
    await hub.pools.create(offering("proj/any", {"name": "build"}, {"name": "test"}))
    await hub.pools.create(record("proj/plain"))  # declares nothing
    await hub.submit([task("build", os="linux"), task("build", os="linux"),
                      task("build", os="mac"), task("test"), task("other")])
    # linux builds go to the more specific linux pool; the rest of `build` and `test`
    # only to `any`; `other` to no pool
    assert hub.pending_tasks() == {"proj/linux": 2, "proj/any": 2, "proj/plain": 0}
    # an attached, busy worker more specific than `any` will take the mac build
    busy = RecordingLink()
    hub.attach("mac1", [Subscription.of("build", {"os": "mac"}), Subscription.of("test")],
               busy, capacity=1)
    assert [t.attrs for t in busy.tasks] == [{"os": "mac"}]  # first in line
    # the test task: `any`'s workers would be as specific as mac1, and mac1 is busy
    assert hub.pending_tasks() == {"proj/linux": 2, "proj/any": 1, "proj/plain": 0}
    # a free worker takes what it can at once: nothing of its own stays pending
    hub.attach("w1", [Subscription.of("test")], RecordingLink(), capacity=10)
    assert hub.pending_tasks() == {"proj/linux": 2, "proj/any": 0, "proj/plain": 0}


async def test_a_task_two_pools_could_take_equally_is_neither_pools_alone(
        start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(offering("proj/a", {"name": "build"}))
    await hub.pools.create(offering("proj/b", {"name": "build"}))
    await hub.submit([task("build")])
    assert hub.pending_tasks() == {"proj/a": 0, "proj/b": 0}


async def test_a_draining_pool_has_no_demand_and_leaves_it_to_the_others(
        start_hub: StartHub) -> None:
    hub = await start_hub()
    await hub.pools.create(offering("proj/a", {"name": "build"}))
    await hub.pools.create(offering("proj/b", {"name": "build"}))
    link = RecordingLink()
    hub.attach("w1", [Subscription.of("x")], link, worker_pool="proj/a")
    await hub.submit([task("build")])
    await hub.pools.delete("proj/a")  # drains: it keeps w1, takes no new worker
    assert hub.pending_tasks() == {"proj/a": 0, "proj/b": 1}


@pytest.mark.parametrize(("config", "said"), [
    ({"subscriptions": "build"}, "non-empty array"),
    ({"subscriptions": []}, "non-empty array"),
    ({"subscriptions": [{"name": "build", "extra": 1}]}, "subscriptions[0]"),
    ({"subscriptions": [{"name": ""}]}, "non-empty task name"),
    ({"subscriptions": [{"name": "b", "filter": ["os"]}]}, "filter must be an object"),
    ({"subscriptions": [{"name": "b"}], "capacityPerWorker": 0}, "capacityPerWorker"),
    ({"subscriptions": [{"name": "b"}], "capacityPerWorker": True}, "capacityPerWorker"),
    ({"capacityPerWorker": 3}, "needs config.subscriptions"),
])
def test_a_bad_declaration_in_a_pools_config_says_what_is_wrong(
        config: dict[str, Any], said: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(said)):
        offer_of(config)
