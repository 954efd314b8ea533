"""The dashboard: the page at `/`, its files under `/ui/`, the live event stream it
follows (`/events`, server-sent events) and the views it reads beyond the fleet
views (`/stats/...`, `/workers/{id}`, `/events/recent`, `/auth`), plus the admin's
action of detaching a worker.

The page is plain JavaScript with no build step (`static/`): `app.js` holds the
router, the API client and the live stream; each page is one file in
`static/pages/`, listed in the page by the server, so adding a page is adding a
file (see `static/pages/README.md`).
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import cast

import trio
from quart import Response, request, send_from_directory
from quart_trio import QuartTrio

from .._auth import Auth, Role, bearer
from .._errors import NotFound
from ..hub import Hub, Missed, QueueView, queue_views, worker_views
from ..protocol import encode
from ._app import json_response, number_arg, require
from ._bodies import (
    AnyEvent,
    AuthInfo,
    Detached,
    EventList,
    QueueDetail,
    QueueSummaries,
    QueueSummary,
    Share,
    WorkerDetail,
)
from ._observe import Observer, QueueWatch, jain, quantile

__all__ = ["STATIC", "add_dashboard_routes"]

STATIC = Path(str(resources.files("workyard.http") / "static"))
#: events a live stream may fall behind by before its page is told to reload
STREAM_BUFFER = 5000
#: seconds between two messages of one live stream: batches events at high rates
STREAM_INTERVAL = 0.1
#: seconds a live stream stays quiet before a comment keeps proxies from closing it
STREAM_KEEPALIVE = 15.0
#: seconds of the done/failed rates on the overview
RATE_WINDOW = 10

_BLANK_VIEW = QueueView(0, 0, 0, 0, 0)


def _summary(watch: QueueWatch | None, hub: Hub, name: str) -> QueueSummary:
    if watch is None:
        return QueueSummary(0.0, 0.0, None, None, None, None, None, {})
    recent = list(watch.series)[-RATE_WINDOW:]
    done = sum(p.done for p in recent) / len(recent) if recent else 0.0
    failed = sum(p.failed for p in recent) / len(recent) if recent else 0.0
    shares = _shares(watch, hub, name)
    return QueueSummary(
        done, failed,
        quantile(watch.recent_dispatch, 0.5), quantile(watch.recent_dispatch, 0.99),
        quantile(watch.recent_end_to_end, 0.5), quantile(watch.recent_end_to_end, 0.99),
        jain([s.dispatched for s in shares]),
        {str(k): v for k, v in sorted(watch.reschedules.items())})


def _shares(watch: QueueWatch | None, hub: Hub, name: str) -> list[Share]:
    """Every attached worker subscribed to `name`, with what it was given."""
    q = hub.scheduler.queues.get(name)
    states = hub.scheduler.workers
    members = sorted(q.workers) if q is not None else []
    spread = watch.spread if watch is not None else {}
    out = []
    for worker in members:
        state = states.get(worker)
        session = hub.sessions.attached.get(worker)
        if state is None or session is None or session.anonymous:
            continue
        outstanding = sum(1 for t in state.outstanding.values() if t.name == name)
        out.append(Share(worker, spread.get(worker, 0), outstanding))
    return out


def _roles(auth: Auth, token: str | None) -> list[str]:
    return [r.value for r in (Role.WORKER, Role.PRODUCER, Role.ADMIN) if auth.allows(token, r)]


def _page_scripts() -> list[str]:
    return sorted(p.name for p in (STATIC / "pages").glob("*.js"))


def _index(auth: Auth) -> str:
    template = (STATIC / "index.html").read_text(encoding="utf-8")
    scripts = "\n".join(f'<script src="/ui/pages/{html.escape(name)}"></script>'
                        for name in _page_scripts())
    return (template.replace("{{auth}}", "on" if auth.enabled else "off")
            .replace("{{pages}}", scripts))


def add_dashboard_routes(app: QuartTrio, hub: Hub, auth: Auth, observer: Observer,
                         streams: list[int]) -> None:
    """`streams[0]` counts the open live streams (for /metrics)."""

    @app.get("/")
    async def dashboard() -> Response:
        response = Response(_index(auth), content_type="text/html; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/ui/<path:filename>")
    async def static_file(filename: str) -> Response:
        # a missing file, or a path outside the folder: werkzeug's 404, told as JSON
        response = await send_from_directory(STATIC, filename)
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/auth")
    async def auth_info() -> Response:
        token = bearer(request.headers, request.args)
        return json_response(AuthInfo(auth.enabled, _roles(auth, token)))

    @app.get("/stats/queues")
    async def queue_summaries() -> Response:
        require(auth, Role.ANY)
        names = sorted(set(hub.scheduler.queues) | set(hub.queue_stats) | set(observer.queues))
        return json_response(QueueSummaries(
            {n: _summary(observer.queues.get(n), hub, n) for n in names}))

    @app.get("/stats/queues/<name>")
    async def queue_detail(name: str) -> Response:
        require(auth, Role.ANY)
        watch = observer.queues.get(name)
        view = queue_views(hub).get(name)
        if view is None and watch is None:
            raise NotFound(f"no queue {name!r}")
        return json_response(QueueDetail(
            name, view or _BLANK_VIEW, _summary(watch, hub, name),
            list(watch.series) if watch is not None else [], _shares(watch, hub, name)))

    @app.get("/workers/<worker_id>")
    async def worker_detail(worker_id: str) -> Response:
        require(auth, Role.ANY)
        view = next((v for v in worker_views(hub) if v.id == worker_id), None)
        history = observer.workers.get(worker_id)
        if view is None and history is None and hub.sessions.get(worker_id) is None:
            raise NotFound(f"no worker {worker_id!r}")
        state = hub.scheduler.workers.get(worker_id) if view is not None else None
        current = list(state.outstanding) if state is not None else []
        return json_response(WorkerDetail(worker_id, view, current,
                                          list(history) if history is not None else []))

    @app.delete("/workers/<worker_id>")
    async def detach_worker(worker_id: str) -> Response:
        """Close the worker's connection; its tasks are rescheduled in the same step."""
        require(auth, Role.ADMIN)
        session = hub.sessions.attached.get(worker_id)
        if session is None or session.link is None or session.anonymous:
            raise NotFound(f"no attached worker {worker_id!r}")
        state = hub.scheduler.workers.get(worker_id)
        requeued = len(state.outstanding) if state is not None else 0
        reason = "detached by an admin"
        link = session.link
        link.close(reason)
        hub.detach(worker_id, link, reason)
        return json_response(Detached(worker_id, requeued))

    @app.get("/events/recent")
    async def recent_events() -> Response:
        require(auth, Role.ANY)
        limit = int(number_arg("limit", 100, 1, 500))
        events = list(observer.recent)[-limit:]
        # the stream's events are all of the kinds `AnyEvent` names (for the schema)
        return json_response(EventList(cast("list[AnyEvent]", events)))

    @app.get("/ui/events")
    async def live_events() -> Response:
        """Server-sent events: each message is a JSON array of hub events, oldest first;
        a `missed` event in it means some were dropped, and the page reloads its state."""
        require(auth, Role.ANY)
        response = Response(_stream(hub, streams), content_type="text/event-stream")
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Accel-Buffering"] = "no"
        response.timeout = None
        return response


async def _stream(hub: Hub, streams: list[int]) -> AsyncIterator[bytes]:
    streams[0] += 1
    try:
        with hub.events.subscribe_batches(STREAM_BUFFER, idle=STREAM_KEEPALIVE) as batches:
            yield f"retry: 2000\nevent: hello\ndata: {hub.events.last_seq}\n\n".encode()
            async for batch in batches:
                if not batch:
                    yield b": keep-alive\n\n"
                    continue
                if len(batch) > STREAM_BUFFER:  # the page reloads instead of replaying
                    batch = [Missed(seq=batch[-1].seq, at=batch[-1].at, count=len(batch))]
                yield b"data: " + encode(batch) + b"\n\n"
                await trio.sleep(STREAM_INTERVAL)
    finally:
        streams[0] -= 1
