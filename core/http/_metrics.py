"""Prometheus `/metrics`: a collector that reads the hub at scrape time.

Nothing is updated on the dispatch path for metrics: gauges and answer counters
come from the read models (scheduler queues, `hub.queue_stats`, sessions) when
Prometheus asks, histograms and reschedule counters from the `Observer`, which
follows the event stream. A scrape costs O(queues) (plus O(workers) with
per-worker series switched on), whatever the task rate.

Per-worker series (`workyard_worker_*`) are off by default; `--metrics-per-worker N`
exposes them for at most N workers (those with the most outstanding tasks), so a
fleet of thousands cannot blow up the scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..hub import Hub
from ..transports import FRAMES
from ._observe import Histogram, Observer

__all__ = ["HubCollector", "RequestCounts", "metrics_registry"]


@dataclass(slots=True)
class RequestCounts:
    """HTTP requests answered, by (route, method, status): counted after each response."""

    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def count(self, route: str, method: str, status: int) -> None:
        key = (route, method, str(status))
        self.counts[key] = self.counts.get(key, 0) + 1


def _histogram(family: HistogramMetricFamily, labels: list[str], h: Histogram) -> None:
    family.add_metric(labels, h.cumulative(), sum_value=h.sum)


class HubCollector(Collector):
    def __init__(self, hub: Hub, observer: Observer, requests: RequestCounts, *,
                 per_worker: int = 0, sse_clients: list[int] | None = None) -> None:
        self.hub = hub
        self.observer = observer
        self.requests = requests
        self.per_worker = per_worker
        self._sse = sse_clients if sse_clients is not None else [0]

    def collect(self) -> Iterator[Metric]:
        hub, observer = self.hub, self.observer
        queues = hub.scheduler.queues
        names = sorted(set(queues) | set(hub.queue_stats) | set(observer.queues))

        queued = GaugeMetricFamily("workyard_queue_queued", "tasks waiting for a worker",
                                   labels=["queue"])
        running = GaugeMetricFamily("workyard_queue_running", "tasks on a worker now",
                                    labels=["queue"])
        workers = GaugeMetricFamily("workyard_queue_workers",
                                    "attached workers subscribed to the queue", labels=["queue"])
        submitted = CounterMetricFamily("workyard_tasks_submitted", "tasks submitted "
                                        "(since this hub started)", labels=["queue"])
        processed = CounterMetricFamily("workyard_tasks_processed",
                                        "tasks answered done", labels=["queue"])
        failed = CounterMetricFamily("workyard_tasks_failed", "tasks answered with an error",
                                     labels=["queue"])
        cancelled = CounterMetricFamily("workyard_tasks_cancelled", "tasks cancelled",
                                        labels=["queue"])
        reschedules = CounterMetricFamily(
            "workyard_task_reschedules", "attempts that ended without an answer and put "
            "the task back in its queue", labels=["queue", "reason"])
        dispatch = HistogramMetricFamily(
            "workyard_dispatch_latency_seconds", "from submission to first dispatch",
            labels=["queue"])
        end_to_end = HistogramMetricFamily(
            "workyard_end_to_end_latency_seconds", "from submission to done or failed",
            labels=["queue"])
        for name in names:
            q, stats, watch = queues.get(name), hub.queue_stats.get(name), observer.queues.get(name)
            queued.add_metric([name], q.queued if q else 0)
            running.add_metric([name], q.running if q else 0)
            workers.add_metric([name], len(q.workers) if q else 0)
            processed.add_metric([name], stats.processed if stats else 0)
            failed.add_metric([name], stats.failed if stats else 0)
            if watch is not None:
                submitted.add_metric([name], watch.submitted)
                cancelled.add_metric([name], watch.cancelled)
                for reason, n in sorted(watch.reschedules.items()):
                    reschedules.add_metric([name, reason], n)
                _histogram(dispatch, [name], watch.dispatch)
                _histogram(end_to_end, [name], watch.end_to_end)
        yield from (queued, running, workers, submitted, processed, failed, cancelled,
                    reschedules, dispatch, end_to_end)

        attached = GaugeMetricFamily("workyard_workers_attached", "attached workers",
                                     labels=["transport", "pool"])
        by_kind: dict[tuple[str, str], int] = {}
        for session in hub.sessions:
            if not session.anonymous:
                key = (session.transport, str(getattr(session, "pool", None) or ""))
                by_kind[key] = by_kind.get(key, 0) + 1
        for (transport, pool), n in sorted(by_kind.items()):
            attached.add_metric([transport, pool], n)
        yield attached
        yield GaugeMetricFamily("workyard_tasks_unfinished", "tasks not final",
                                value=hub.unfinished)
        if self.per_worker:
            yield from self._per_worker()

        commits = observer.commits
        seconds = HistogramMetricFamily("workyard_store_commit_seconds",
                                        "one store transaction (group commit)")
        _histogram(seconds, [], commits.seconds)
        units = HistogramMetricFamily("workyard_store_commit_units",
                                      "units of work per store transaction")
        _histogram(units, [], commits.units)
        yield seconds
        yield units

        yield CounterMetricFamily("workyard_events_published",
                                  "events on the hub's stream", value=hub.events.last_seq)
        yield GaugeMetricFamily("workyard_events_lag", "events published but not yet read "
                                "by the slowest subscriber (dashboard, metrics)",
                                value=hub.events.backlog)
        yield CounterMetricFamily("workyard_events_dropped", "events subscribers lost by "
                                  "falling behind", value=hub.events.dropped)
        yield GaugeMetricFamily("workyard_dashboard_streams", "open live-event streams",
                                value=self._sse[0])

        frames = CounterMetricFamily("workyard_websocket_frames", "WebSocket worker frames "
                                     "(this process)", labels=["direction"])
        frames.add_metric(["received"], FRAMES.received)
        frames.add_metric(["sent"], FRAMES.sent)
        yield frames

        requests = CounterMetricFamily("workyard_http_requests", "HTTP requests answered",
                                       labels=["route", "method", "status"])
        for labels, n in sorted(self.requests.counts.items()):
            requests.add_metric(list(labels), n)
        yield requests

    def _per_worker(self) -> Iterator[Metric]:
        states = self.hub.scheduler.workers
        sessions = [s for s in self.hub.sessions if not s.anonymous]
        sessions.sort(key=lambda s: (-len(states[s.id].outstanding), s.id))
        shown = sessions[:self.per_worker]
        outstanding = GaugeMetricFamily("workyard_worker_outstanding",
                                        "tasks on the worker now", labels=["worker"])
        processed = CounterMetricFamily("workyard_worker_processed",
                                        "tasks the worker answered done", labels=["worker"])
        failed = CounterMetricFamily("workyard_worker_failed",
                                     "tasks the worker answered with an error",
                                     labels=["worker"])
        for s in shown:
            outstanding.add_metric([s.id], len(states[s.id].outstanding))
            processed.add_metric([s.id], s.processed)
            failed.add_metric([s.id], s.failed)
        yield from (outstanding, processed, failed)
        yield GaugeMetricFamily("workyard_worker_series_omitted", "attached workers left "
                                "out of the per-worker series (over --metrics-per-worker)",
                                value=len(sessions) - len(shown))


def metrics_registry(collector: HubCollector) -> CollectorRegistry:
    """A registry of its own per app: several hubs (tests) never share series."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
