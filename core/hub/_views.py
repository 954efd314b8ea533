"""Read models: what the fleet views show, built from the hub's sessions and scheduler.

Plain structs that HTTP routes encode and tests read by attribute; the hub itself
never assembles JSON.
"""

from __future__ import annotations

import msgspec

from ._hub import Hub

__all__ = ["QueueView", "WorkerView", "queue_views", "worker_views"]


class WorkerView(msgspec.Struct):
    id: str
    transport: str
    subscriptions: list[dict[str, object]]
    capacity: int | None
    outstanding: int
    processed: int
    failed: int
    lost: int
    #: when this attachment began
    connected_since: float
    #: when this worker id was first attached (kept across reconnects)
    since: float


class QueueView(msgspec.Struct):
    queued: int
    running: int
    workers: int
    processed: int
    failed: int


def worker_views(hub: Hub) -> list[WorkerView]:
    """Every attached worker except anonymous pollers, in attach order (heartbeat-only
    registry workers included: they have no subscriptions and nothing outstanding)."""
    states = hub.scheduler.workers
    return [
        WorkerView(s.id, s.transport, [sub.to_json() for sub in s.subscriptions], s.capacity,
                   len(state.outstanding) if (state := states.get(s.id)) else 0,
                   s.processed, s.failed, s.lost, s.connected, s.since)
        for s in hub.sessions if not s.anonymous
    ]


def queue_views(hub: Hub) -> dict[str, QueueView]:
    """Per task name, sorted by name."""
    views = {}
    for name, q in sorted(hub.scheduler.queues.items()):
        stats = hub.queue_stats.get(name)
        views[name] = QueueView(q.queued, q.running, len(q.workers),
                                stats.processed if stats else 0, stats.failed if stats else 0)
    return views
