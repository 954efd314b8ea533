"""The HTTP face of the hub: the producer API and the fleet views (quart-trio).

The producer routes are the fast lane's (`_lane.py`): the front door serves them
without quart, and quart through the same handlers. Worker protocols register their
own routes (`compat`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Protocol

from quart import Response, has_request_context, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .._auth import Auth, Role, bearer
from .._config import Settings
from .._errors import Conflict, InvalidInput, NotFound, Unauthorized, WorkyardError
from .._model import TaskState
from ..hub import Hub, queue_views, worker_views
from ..protocol import (
    BODY_TIMEOUT,
    MAX_LIST,
    MAX_TASK_WAIT,
    decode_submission,
    decode_wait,
    encode,
)
from ._lane import Lane, LaneRequest, LaneResponse, error_reply, json_reply, to_quart

__all__ = ["create_app", "json_response"]

log = logging.getLogger("workyard.http")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(encode(body), status=status, content_type="application/json")


class Incoming(Protocol):
    """What the checks read of a request: quart's `request` or a `LaneRequest`."""

    @property
    def headers(self) -> Any: ...
    @property
    def args(self) -> Any: ...


def require(auth: Auth, role: Role, req: Incoming | None = None) -> None:
    """Refuse the request (401) unless its token holds `role`; `req` defaults to
    quart's current request."""
    req = request if req is None else req
    if not auth.allows(bearer(req.headers, req.args), role):
        raise Unauthorized(f"a valid {role.value} bearer token is required")


def number_arg(name: str, default: float, low: float, high: float,
               req: Incoming | None = None) -> float:
    raw = (request if req is None else req).args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(f"`{name}` must be a number, not {raw!r}") from None
    if not (low <= value <= high) or math.isnan(value):
        raise InvalidInput(f"`{name}` must be between {low:g} and {high:g}")
    return value


def create_app(hub: Hub, settings: Settings) -> QuartTrio:
    app = QuartTrio("workyard")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body
    app.config["BODY_TIMEOUT"] = BODY_TIMEOUT
    auth = Auth(settings)
    app.extensions["workyard.hub"] = hub
    app.extensions["workyard.auth"] = auth
    lane = app.extensions["workyard.lane"] = Lane()
    lane.mount(app)

    @app.errorhandler(WorkyardError)
    async def workyard_error(exc: WorkyardError) -> Response:
        return to_quart(error_reply(exc, ""))  # a 413 closes: its body was not read

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        response = to_quart(error_reply(exc, ""))  # hypercorn would stall a reused 413 one
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # as RFC 9110 asks
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # an HTTP/2 WebSocket (extended CONNECT) reaches the app in a websocket context,
        # where touching `request` would raise a second error inside this handler
        where = (f"{request.method} {request.path}" if has_request_context()
                 else f"WebSocket {websocket.path}")
        log.exception("unexpected error on %s", where)
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)

    @lane.route("POST", "/tasks")
    async def submit(req: LaneRequest) -> LaneResponse:
        require(auth, Role.PRODUCER, req)
        specs, batch = decode_submission(await req.body())
        now = hub.now()
        tasks = [spec.to_task(now) for spec in specs]
        ids = await hub.submit(tasks)  # the store's failures are Unavailable (503)
        if batch:
            return json_reply({"ids": ids}, 201)
        created = ids[0] == tasks[0].id
        return json_reply({"id": ids[0], "created": created}, 201 if created else 200)

    @lane.route("POST", "/tasks/wait", waits=True)
    async def wait_for_tasks(req: LaneRequest) -> LaneResponse:
        require(auth, Role.PRODUCER, req)
        ids, wait, at_least = decode_wait(await req.body())
        finished, pending, unknown = await hub.wait_many(ids, wait, at_least)
        return json_reply({"finished": finished, "pending": pending, "unknown": unknown})

    @lane.route("GET", "/tasks/<task_id>", waits=True)  # ?wait=
    async def get_task(req: LaneRequest) -> LaneResponse:
        require(auth, Role.PRODUCER, req)
        task_id = req.view_args["task_id"]
        wait = number_arg("wait", 0.0, 0.0, MAX_TASK_WAIT, req)
        task = await (hub.wait(task_id, wait) if wait > 0 else hub.get(task_id))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return json_reply(task)

    @lane.route("DELETE", "/tasks/<task_id>")
    async def cancel_task(req: LaneRequest) -> LaneResponse:
        require(auth, Role.PRODUCER, req)
        task_id = req.view_args["task_id"]
        task = await hub.get(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        if task.state.final:
            raise Conflict(f"task {task_id!r} is already {task.state.value}", task=task)
        return json_reply(await hub.cancel(task_id))

    @lane.route("GET", "/tasks")
    async def list_tasks(req: LaneRequest) -> LaneResponse:
        require(auth, Role.PRODUCER, req)
        state_arg = req.args.get("state")
        try:
            state = TaskState(state_arg) if state_arg else None
        except ValueError:
            raise InvalidInput(f"`state` must be one of {', '.join(TaskState)}") from None
        limit = int(number_arg("limit", 100, 1, MAX_LIST, req))
        name = req.args.get("name")
        return json_reply({"tasks": await hub.find(name=name, state=state, limit=limit)})

    @app.get("/workers")
    async def workers() -> Response:
        require(auth, Role.ANY)
        return json_response({"workers": worker_views(hub)})

    @app.get("/queues")
    async def queues() -> Response:
        require(auth, Role.ANY)
        return json_response({"queues": queue_views(hub)})

    @lane.route("GET", "/health")
    async def health(req: LaneRequest) -> LaneResponse:
        body: dict[str, Any] = {"ok": True, "workers": len(hub.sessions),
                                "unfinished": hub.unfinished}
        if hub.election is not None:  # several hubs on one database: who schedules
            body["role"] = "leader" if hub.leading else "follower"
            body["leader"] = hub.election.leader_url
        return json_reply(body)

    return app

