"""The HTTP face of the hub: the producer API and the fleet views (quart-trio).

Worker protocols register their own routes (`compat`).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from quart import Response, has_request_context, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .._auth import Auth, Role, bearer
from .._config import Settings
from .._errors import Conflict, InvalidInput, NotFound, TooLarge, Unauthorized, WorkyardError
from .._model import TaskState
from ..hub import Hub, queue_views, worker_views
from ..protocol import BODY_TIMEOUT, MAX_LIST, MAX_TASK_WAIT, decode_submission, encode

__all__ = ["create_app", "json_response"]

log = logging.getLogger("workyard.http")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(encode(body), status=status, content_type="application/json")


def require(auth: Auth, role: Role) -> None:
    if not auth.allows(bearer(request.headers, request.args), role):
        raise Unauthorized(f"a valid {role.value} bearer token is required")


def number_arg(name: str, default: float, low: float, high: float) -> float:
    raw = request.args.get(name)
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

    @app.errorhandler(WorkyardError)
    async def workyard_error(exc: WorkyardError) -> Response:
        response = json_response(exc.body(), exc.status)
        if exc.status == TooLarge.status:
            response.headers["Connection"] = "close"  # as below: the body was not read
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        response = json_response({"error": exc.description or exc.name}, exc.code or 500)
        if exc.code == 413:  # the rest of the body is never read: don't let the client reuse
            response.headers["Connection"] = "close"  # the connection (hypercorn stalls it)
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # an HTTP/2 WebSocket (extended CONNECT) reaches the app in a websocket context,
        # where touching `request` would raise a second error inside this handler
        where = (f"{request.method} {request.path}" if has_request_context()
                 else f"WebSocket {websocket.path}")
        log.exception("unexpected error on %s", where)
        return json_response({"error": f"internal error: {type(exc).__name__}"}, 500)

    @app.post("/tasks")
    async def submit() -> Response:
        require(auth, Role.PRODUCER)
        body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        specs, batch = decode_submission(body)
        now = hub.now()
        tasks = [spec.to_task(now) for spec in specs]
        ids = await hub.submit(tasks)  # the store's failures are Unavailable (503)
        if batch:
            return json_response({"ids": ids}, 201)
        created = ids[0] == tasks[0].id
        return json_response({"id": ids[0], "created": created}, 201 if created else 200)

    @app.get("/tasks/<task_id>")
    async def get_task(task_id: str) -> Response:
        require(auth, Role.PRODUCER)
        wait = number_arg("wait", 0.0, 0.0, MAX_TASK_WAIT)
        task = await (hub.wait(task_id, wait) if wait > 0 else hub.get(task_id))
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return json_response(task)

    @app.delete("/tasks/<task_id>")
    async def cancel_task(task_id: str) -> Response:
        require(auth, Role.PRODUCER)
        task = await hub.get(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        if task.state.final:
            raise Conflict(f"task {task_id!r} is already {task.state.value}", task=task)
        return json_response(await hub.cancel(task_id))

    @app.get("/tasks")
    async def list_tasks() -> Response:
        require(auth, Role.PRODUCER)
        state_arg = request.args.get("state")
        try:
            state = TaskState(state_arg) if state_arg else None
        except ValueError:
            raise InvalidInput(f"`state` must be one of {', '.join(TaskState)}") from None
        limit = int(number_arg("limit", 100, 1, MAX_LIST))
        name = request.args.get("name")
        return json_response({"tasks": await hub.find(name=name, state=state, limit=limit)})

    @app.get("/workers")
    async def workers() -> Response:
        require(auth, Role.ANY)
        return json_response({"workers": worker_views(hub)})

    @app.get("/queues")
    async def queues() -> Response:
        require(auth, Role.ANY)
        return json_response({"queues": queue_views(hub)})

    @app.get("/health")
    async def health() -> Response:
        body: dict[str, Any] = {"ok": True, "workers": len(hub.sessions),
                                "unfinished": hub.unfinished}
        if hub.election is not None:  # several hubs on one database: who schedules
            body["role"] = "leader" if hub.leading else "follower"
            body["leader"] = hub.election.leader_url
        return json_response(body)

    return app

