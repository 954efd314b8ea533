"""What a person watching `workyard serve` reads: a one-line summary of the hub every
few seconds at INFO, and one line per hub event at DEBUG.

The summary samples the read models (`queue_views`, the attached sessions) and is
written only when something changed since the last one, so an idle hub stays quiet.
Per-event lines come from a subscription to `hub.events`, opened only when DEBUG is
on, so at INFO they cost nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from ._events import Event
from ._hub import Hub
from ._views import queue_views

__all__ = ["Sample", "log_activity", "sample"]

log = logging.getLogger("workyard.hub")


@dataclass(frozen=True, slots=True)
class Sample:
    """The hub at one instant, as the summary line tells it."""

    #: answers since the hub started
    done: int
    failed: int
    queued: int
    running: int
    workers: int

    def line(self, previous: Sample, seconds: float) -> str:
        """The summary of the `seconds` since `previous`."""
        done, failed = self.done - previous.done, self.failed - previous.failed
        return (f"{(done + failed) / seconds:,.1f} tasks/s ({done:,} done, {failed:,} failed "
                f"in {seconds:g} s); {self.queued:,} queued, {self.running:,} running; "
                f"{self.workers:,} worker{'' if self.workers == 1 else 's'}")


def sample(hub: Hub) -> Sample:
    views = queue_views(hub).values()
    return Sample(done=sum(v.processed for v in views), failed=sum(v.failed for v in views),
                  queued=sum(v.queued for v in views), running=sum(v.running for v in views),
                  workers=len(hub.sessions.attached))


async def log_activity(hub: Hub, interval: float) -> None:
    """Log the summary every `interval` seconds (0: never) and, at DEBUG, every event,
    until cancelled."""
    async with trio.open_nursery() as nursery:
        if log.isEnabledFor(logging.DEBUG):
            nursery.start_soon(_log_events, hub)
        if interval > 0:
            nursery.start_soon(_log_summaries, hub, interval)


async def _log_summaries(hub: Hub, interval: float) -> None:
    last = sample(hub)
    while True:
        await trio.sleep(interval)
        now = sample(hub)
        if now != last:  # an idle hub stays quiet
            log.info("%s", now.line(last, interval))
        last = now


async def _log_events(hub: Hub) -> None:
    with hub.events.subscribe() as events:
        async for event in events:
            log.debug("event %s", _describe(event))


def _describe(event: Event) -> str:
    """`task.dispatched task=… name=tag worker=w1 attempt=1`: the event's fields, one line."""
    fields = {f: getattr(event, f) for f in event.__struct_fields__ if f not in ("seq", "at")}
    kind = event.__struct_config__.tag
    return f"{kind} " + " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
