"""The SDK's workers report their machine to the hub's ClearML registry (opt-in):
psutil readings under ClearML's metric names, added to the worker's own session."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import pytest
import trio
from conftest import NET_TIMEOUT, Served

from workyard import Task
from workyard.client import Job, PollingWorker, Worker
from workyard.client._machine import MachineStats

AGENT_METRICS = {"cpu_usage", "memory_used", "memory_free", "disk_free_home"}


def test_a_machine_sample_has_clearmls_names_and_sane_values() -> None:
    machine = MachineStats()
    stats = machine.sample()
    assert AGENT_METRICS <= set(stats)
    assert isinstance(stats["cpu_usage"], list) and 0 <= stats["cpu_usage"][0] <= 100
    assert stats["memory_used"] > 0 and stats["memory_free"] >= 0  # type: ignore[operator]
    assert 0 <= stats["disk_free_home"] <= 100  # type: ignore[operator]
    rates = {k: v for k, v in machine.sample().items() if k.startswith(("disk_r", "disk_w",
                                                                        "network"))}
    assert all(v >= 0 for v in rates.values())  # type: ignore[operator]


async def stats_of(served: Served, worker_id: str) -> list[str]:
    """The metric keys stored for `worker_id`, once there are some (a bounded poll)."""
    with trio.fail_after(NET_TIMEOUT):
        while not (keys := await served.hub.store.stats.metric_keys([worker_id])):
            await trio.sleep(0.05)
    return keys


@pytest.mark.parametrize("kind", [Worker, PollingWorker], ids=["websocket", "polling"])
async def test_a_worker_with_report_stats_adds_its_machine_to_its_own_session(
        server: Served, kind: Any) -> None:
    release = trio.Event()

    async def hold(job: Job) -> None:
        await release.wait()

    worker = kind(server.url, worker_id="stats-w", report_stats=0.05)
    worker.handler("work")(hold)
    hub = server.hub
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        [task_id] = await hub.submit([Task(id="held-1", name="work")])
        with trio.fail_after(NET_TIMEOUT):  # a bounded poll: the handler has it
            while not worker.handlers.current:
                await trio.sleep(0.01)
        keys = await stats_of(server, "stats-w")
        assert AGENT_METRICS <= set(keys)
        session = hub.sessions.attached["stats-w"]
        assert session.transport in ("websocket", "polling")  # not replaced by the registry
        with trio.fail_after(NET_TIMEOUT):  # a report sent while the task ran says so
            while not any(a.active for a in await hub.store.stats.activity(
                    since=0, until=2**62, interval=2**61)):
                await trio.sleep(0.05)
        release.set()
        nursery.cancel_scope.cancel()
    assert task_id == "held-1"


async def test_cli_worker_report_stats_flag_reaches_the_registry(server: Served) -> None:
    cmd = [sys.executable, "-m", "workyard.cli", "worker", "--url", server.url, "--task", "x",
           "--worker-id", "cli-stats", "--report-stats", "0.1"]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(partial(trio.run_process, cmd, check=False))
        with trio.fail_after(NET_TIMEOUT * 2):  # includes the interpreter's start-up
            while not (keys := await server.hub.store.stats.metric_keys(["cli-stats"])):
                await trio.sleep(0.05)
        assert AGENT_METRICS <= set(keys)
        process.terminate()
        with trio.fail_after(NET_TIMEOUT):
            await process.wait()
