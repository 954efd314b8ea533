"""presque's worker registry (seed 004): who works on which queue, and their counts.

    POST /w/{queue}        register: record when the worker started and that it works on Q
    DELETE /w/{queue}      unregister: the worker stops polling Q (detached if that was its
                           last queue, its leases rescheduled at once: it said it is done)
    GET /w/                registered and attached worker ids
    GET /w/?worker_id=     {"worker_id", "started_at", "processed", "failed"}
    GET /w/{queue}         {"queue_name", "workers_list", "processed", "failed"}

Registration is optional and only feeds these views. The counts are the hub's own:
a worker's session counters (which survive its reconnects and detaches), whatever
transport it uses, and the queue's answers since the hub started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth, Role
from .._errors import InvalidInput, NotFound
from ..http import json_response, require
from ..hub import Hub
from ..protocol import Decoder, Registration, error_text
from ..transports import PollingFleet
from . import _params

__all__ = ["Registry", "add_registry_routes"]

PRESQUE_HEADER = "X-presque-workerid"

_registration: Decoder[Registration] = Decoder(Registration)


@dataclass(slots=True)
class _Registered:
    started_at: float
    queues: set[str] = field(default_factory=set)


class Registry:
    """presque registrations beside the hub's sessions."""

    def __init__(self, hub: Hub, fleet: PollingFleet) -> None:
        self.hub = hub
        self.fleet = fleet
        self.registered: dict[str, _Registered] = {}

    def register(self, worker_id: str, queue: str) -> None:
        entry = self.registered.setdefault(worker_id, _Registered(started_at=self.hub.now()))
        entry.queues.add(queue)

    def unregister(self, worker_id: str, queue: str) -> None:
        self.fleet.unsubscribe(worker_id, queue, "unregistered (DELETE /w/)")
        entry = self.registered.get(worker_id)
        if entry is not None:
            entry.queues.discard(queue)
            if not entry.queues:
                del self.registered[worker_id]

    def worker_ids(self) -> list[str]:
        attached = {s.id for s in self.hub.sessions if not s.anonymous}
        return sorted(attached | set(self.registered))

    def worker_view(self, worker_id: str) -> dict[str, Any] | None:
        entry = self.registered.get(worker_id)
        session = self.hub.sessions.get(worker_id)
        if entry is None and (session is None or not session.attached):
            return None
        started = entry.started_at if entry is not None else session.since  # type: ignore[union-attr]
        return {
            "worker_id": worker_id,
            "started_at": int(started),
            "processed": session.processed if session else 0,
            "failed": session.failed if session else 0,
        }

    def queue_view(self, queue: str) -> dict[str, Any]:
        workers = {s.id for s in self.hub.sessions if not s.anonymous
                   and any(sub.name == queue for sub in s.subscriptions)}
        workers |= {wid for wid, e in self.registered.items() if queue in e.queues}
        stats = self.hub.queue_stats.get(queue)
        return {
            "queue_name": queue,
            "workers_list": sorted(workers),
            "processed": stats.processed if stats else 0,
            "failed": stats.failed if stats else 0,
        }


def add_registry_routes(app: QuartTrio, registry: Registry, auth: Auth) -> None:
    @app.post("/w/<queue>")
    async def register(queue: str) -> Response:
        require(auth, Role.WORKER)
        _params.name(queue, "queue")
        raw = await request.get_data(cache=False)
        try:
            body = _registration.decode(raw) if raw.strip() else Registration()
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            if PRESQUE_HEADER not in request.headers:
                raise InvalidInput(f"the body must be {{\"worker_id\": \"...\"}}: "
                                   f"{error_text(exc)}") from None
            body = Registration()
        worker_id = _params.worker_id(body.worker_id, PRESQUE_HEADER, _params.WORKER_HEADER)
        if worker_id is None:
            raise InvalidInput("`worker_id` is missing: send {\"worker_id\": \"...\"} or an "
                               f"{PRESQUE_HEADER} header")
        registry.register(worker_id, queue)
        return Response("", status=201)

    @app.delete("/w/<queue>")
    async def unregister(queue: str) -> Response:
        require(auth, Role.WORKER)
        _params.name(queue, "queue")
        worker_id = _params.worker_id(None, PRESQUE_HEADER, _params.WORKER_HEADER)
        if worker_id is None:
            raise InvalidInput("`worker_id` is missing: DELETE /w/{queue}?worker_id=...")
        registry.unregister(worker_id, queue)
        return Response("", status=204)

    @app.get("/w")
    @app.get("/w/")
    @app.get("/w/<queue>")
    async def views(queue: str | None = None) -> Response:
        require(auth, Role.ANY)
        worker_id = request.args.get("worker_id")
        if worker_id:
            view = registry.worker_view(worker_id)
            if view is None:
                raise NotFound(f"no worker {worker_id!r}")
            return json_response(view)
        queue = queue or request.args.get("queue_name")
        if queue:
            return json_response(registry.queue_view(_params.name(queue, "queue")))
        return json_response(registry.worker_ids())
