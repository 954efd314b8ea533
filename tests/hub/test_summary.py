"""What `workyard serve` logs while it works: a one-line summary per interval at INFO
that only appears when something changed, and a line per hub event at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from workyard import Hub, Subscription, Task
from workyard.hub._summary import log_activity
from workyard.protocol import Answer
from workyard.testing import RecordingLink

StartHub = Callable[..., Awaitable[Hub]]
TAG = [Subscription.of("tag")]


def summaries(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "workyard.hub" and "tasks/s" in r.getMessage()]


async def test_the_summary_tells_rate_queue_and_workers_and_skips_idle_intervals(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.INFO, "workyard.hub")
    hub = await start_hub(ping_interval=3600.0)  # the fake link never pongs: no liveness
    nursery.start_soon(log_activity, hub, 10.0)
    await trio.testing.wait_all_tasks_blocked()
    link = RecordingLink()
    hub.attach("w1", TAG, link, capacity=2)
    tasks = [Task(id=f"s{i}", name="tag") for i in range(5)]
    await hub.submit(tasks)
    hub.answer("w1", Answer("s0", "done"))
    hub.answer("w1", Answer("s1", "error", error="boom"))
    await trio.sleep(10.5)  # virtual: the first interval ends
    assert summaries(caplog) == [
        "0.2 tasks/s (1 done, 1 failed in 10 s); 1 queued, 2 running; 1 worker"]
    await trio.sleep(30)  # three idle intervals: nothing to say
    assert len(summaries(caplog)) == 1
    hub.detach("w1", link)
    await trio.sleep(10)
    assert summaries(caplog)[1:] == [
        "0.0 tasks/s (0 done, 0 failed in 10 s); 3 queued, 0 running; 0 workers"]


async def test_interval_zero_logs_no_summary(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.INFO, "workyard.hub")
    hub = await start_hub()
    nursery.start_soon(log_activity, hub, 0.0)
    await hub.submit([Task(id="q", name="tag")])
    await trio.sleep(100)
    assert summaries(caplog) == []


async def test_at_debug_each_event_is_one_line(
    start_hub: StartHub, caplog: pytest.LogCaptureFixture, nursery: trio.Nursery
) -> None:
    caplog.set_level(logging.DEBUG, "workyard.hub")
    hub = await start_hub()
    nursery.start_soon(log_activity, hub, 0.0)
    await trio.testing.wait_all_tasks_blocked()
    hub.attach("w1", TAG, RecordingLink())
    await hub.submit([Task(id="d1", name="tag", attrs={"cloud": "aws"})])
    hub.answer("w1", Answer("d1", "done"))
    await trio.testing.wait_all_tasks_blocked()  # stored, announced, logged
    events = [r.getMessage() for r in caplog.records if r.getMessage().startswith("event ")]
    assert [e.split()[1] for e in events] == [
        "worker.attached", "task.submitted", "task.dispatched", "task.finished"]
    assert "task=d1 name=tag attrs={'cloud': 'aws'}" in events[1]
    assert "worker=w1 attempt=1" in events[2]
    assert all(r.levelno == logging.DEBUG for r in caplog.records
               if r.getMessage().startswith("event "))
