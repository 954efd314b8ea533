"""Worker sessions: one per worker id, counters that outlive a connection, and one
liveness mechanism for every transport."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from workyard import Hub, Outcome, SQLiteStore, Subscription, Task, TaskState
from workyard.hub import Liveness, worker_views
from workyard.protocol import Answer
from workyard.testing import RecordingLink

StartHub = Callable[..., Awaitable[Hub]]

_ids = itertools.count(1)
TAG = [Subscription.of("tag")]


def task(**fields: object) -> Task:
    return Task(id=f"s{next(_ids)}", name="tag", **fields)  # type: ignore[arg-type]


async def test_counters_survive_a_reconnect_under_the_same_id(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    first = RecordingLink()
    hub.attach("w", TAG, first)
    ok, bad, lost = task(), task(), task()
    await hub.submit([ok, bad, lost])
    hub.answer("w", Answer(ok.id, "done"))
    hub.answer("w", Answer(bad.id, "error", error="no"))
    since = hub.sessions.attached["w"].since
    await trio.sleep(5)
    hub.detach("w", first, "connection closed")  # `lost` was still running on it
    assert worker_views(hub) == []
    await trio.sleep(5)
    hub.attach("w", TAG, RecordingLink())
    [view] = worker_views(hub)
    assert (view.processed, view.failed, view.lost) == (1, 1, 1)
    assert view.since == since and view.connected_since == since + 10


async def test_a_silent_polling_session_is_detached_after_its_window(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub(poll_liveness=30.0)
    link = RecordingLink()
    session = hub.attach("p", TAG, link, capacity=0, transport="polling",
                         liveness=Liveness.POLL)
    held = task()
    await hub.submit([held])
    hub.open_poll("p", "tag", 1)
    assert link.ids == [held.id]
    await trio.sleep(20)
    hub.alive(session)  # a request proves it alive: the window starts again
    await trio.sleep(29)
    assert "p" in hub.sessions.attached
    await trio.sleep(1.5)
    assert "p" not in hub.sessions.attached
    assert link.closed is not None and "no poll for 30 s" in link.closed
    assert held.state is TaskState.QUEUED and held.attempts[-1].outcome is Outcome.WORKER_LOST


async def test_a_connection_whose_pongs_stop_is_dropped_after_interval_plus_timeout(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub(ping_interval=20.0, ping_timeout=10.0)
    silent, spare = RecordingLink(), RecordingLink()
    session = hub.attach("ws", TAG, silent)
    t = task()
    await hub.submit([t])
    other = hub.attach("spare", TAG, spare)  # takes what `ws` loses
    start = trio.current_time()
    await trio.sleep(20)
    hub.alive(session)  # the pongs of the first pings
    hub.alive(other)
    await trio.sleep(20)
    hub.alive(other)  # only `spare` answers the second
    await trio.sleep(9.9)
    assert "ws" in hub.sessions.attached and spare.ids == []
    await trio.sleep(0.2)  # the second ping's pong never came
    assert "ws" not in hub.sessions.attached
    assert silent.closed == "no answer to pings for 30 s"
    assert spare.ids == [t.id] and trio.current_time() - start == pytest.approx(50.1)


async def test_a_held_session_stays_alive_past_its_window(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub(poll_liveness=10.0)
    session = hub.attach("p", TAG, RecordingLink(), capacity=0, transport="polling",
                         liveness=Liveness.POLL)
    session.holds += 1  # a long poll in progress
    await trio.sleep(100)
    assert "p" in hub.sessions.attached
    session.holds -= 1
    hub.alive(session)
    await trio.sleep(10.5)
    assert "p" not in hub.sessions.attached


async def test_anonymous_sessions_leave_nothing_behind(start_hub: StartHub) -> None:
    hub = await start_hub()
    link = RecordingLink()
    hub.attach("anonymous-poll-1", TAG, link, transport="polling", liveness=Liveness.POLL,
               anonymous=True)
    assert worker_views(hub) == []  # not a worker anyone named
    hub.detach("anonymous-poll-1", link)
    assert hub.sessions.get("anonymous-poll-1") is None


async def run_until_stopped(hub: Hub, work: Callable[[Hub], Awaitable[None]]) -> None:
    """Run `hub` just long enough for `work`, then stop it as a crash would: nothing
    after the last write."""
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        await work(hub)
        nursery.cancel_scope.cancel()


async def test_a_restart_counts_the_running_attempt_as_lost(hub_db: str) -> None:
    t = task(retries=1)

    async def dispatch(hub: Hub) -> None:
        hub.attach("w", TAG, RecordingLink())
        await hub.submit([t])
        assert t.state is TaskState.RUNNING

    await run_until_stopped(Hub(SQLiteStore(hub_db)), dispatch)

    async def check(hub: Hub) -> None:
        revived = hub.scheduler.tasks[t.id]
        assert revived.state is TaskState.QUEUED
        assert [(a.worker, a.outcome) for a in revived.attempts] == [("w", Outcome.WORKER_LOST)]

    await run_until_stopped(Hub(SQLiteStore(hub_db)), check)


async def test_a_restart_fails_a_task_whose_retries_it_exhausts(hub_db: str) -> None:
    t = task(retries=0)

    async def dispatch(hub: Hub) -> None:
        hub.attach("w", TAG, RecordingLink())
        await hub.submit([t])

    await run_until_stopped(Hub(SQLiteStore(hub_db)), dispatch)

    async def check(hub: Hub) -> None:
        final = await hub.wait(t.id, 5)
        assert final is not None and final.state is TaskState.FAILED
        assert "hub restart" in (final.error or "")

    await run_until_stopped(Hub(SQLiteStore(hub_db)), check)


async def test_a_heartbeat_session_lives_its_own_window_from_its_last_proof_of_life(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub(heartbeat_liveness=600.0)
    own, default = RecordingLink(), RecordingLink()
    session = hub.attach("agent", [], own, transport="clearml", liveness=Liveness.HEARTBEAT,
                         window=30.0)
    hub.attach("daemon", [], default, transport="clearml", liveness=Liveness.HEARTBEAT)
    await trio.sleep(20)
    hub.alive(session)  # a status report
    await trio.sleep(29)
    assert own.closed is None and "agent" in hub.sessions.attached
    await trio.sleep(2)
    assert own.closed == "no status report for 30 s"
    assert "agent" not in hub.sessions.attached
    await trio.sleep(600 - 51 - 1)
    assert default.closed is None
    await trio.sleep(2)
    assert default.closed == "no status report for 600 s"


async def test_a_heartbeat_session_with_no_subscriptions_takes_no_task(
    start_hub: StartHub, autojump_clock: trio.testing.MockClock
) -> None:
    hub = await start_hub()
    registry_only = RecordingLink()
    hub.attach("agent", [], registry_only, transport="clearml", liveness=Liveness.HEARTBEAT)
    await hub.submit([task()])
    assert registry_only.tasks == []
    [view] = worker_views(hub)
    assert (view.id, view.transport, view.subscriptions, view.outstanding) == (
        "agent", "clearml", [], 0)
