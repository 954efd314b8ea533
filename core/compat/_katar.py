"""HTTP polling workers (seed 002, Katar): the routes over `transports.PollingFleet`.

    GET  /v1/queue/{queue}                → 200 {"configuration": {"interval": ms, ...}}
    PUT  /v1/queue/{queue}/configuration  (admin) replace a queue's application settings
    POST /v1/queue/{queue}                report finished tasks and/or take new ones

A poll is `{}` (or `{"tasks": [{"_id", "status": "done"|"failed", "error"?,
"result"?}]}`, reports applied first) → 200 `{"tasks": [{"_id", "data", "name",
"attrs", "timeout"}]}` or 204. Beyond the seed: `worker_id` (body, `X-Worker-Id`
header or query), filters as query parameters (`?cloud=aws,gcp`, as on the
WebSocket), `max` tasks per poll (default 1, at most 100; 0 only reports and
keeps the worker alive) and `wait` seconds of long poll (at most 60), in the
query or the body; `worker_pool` and `worker_group` (query) put a named poller in a
Taskcluster worker pool. Identity, leases and liveness are the transport's (see
`transports/_polling.py`).

Bad reports (malformed entry, bad status, "failed" without error, unknown task,
task not leased to this worker) get a 4xx naming each task and problem; the
good entries of the same request still apply, and no new tasks are handed out.

Queue configurations are stored and survive a restart.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth, Role
from .._errors import InvalidInput
from .._model import Subscription
from ..http import json_response, require
from ..http._lane import Lane, LaneRequest, LaneResponse, json_reply
from ..protocol import (
    MAX_BATCH,
    MAX_POLL_TASKS,
    MAX_POLL_WAIT,
    Decoder,
    PollBody,
    PolledTask,
    Report,
    error_text,
    filters_from_query,
)
from ..store import Store
from ..transports import PollingFleet, Problem
from . import _params

__all__ = ["QueueConfigurations", "add_polling_routes"]

#: the seed's default polling interval, in milliseconds
DEFAULT_INTERVAL_MS = 30_000

_poll_body: Decoder[PollBody] = Decoder(PollBody)
_report: Decoder[Report] = Decoder(Report)
_any: Decoder[Any] = Decoder()
_configuration: Decoder[dict[str, Any]] = Decoder(dict[str, Any])


class QueueConfigurations:
    """Each queue's application settings for its pollers, kept in the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._settings: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        stored = await self._store.queues.configurations()
        self._settings = {queue: msgspec.json.decode(raw) for queue, raw in stored.items()}

    def get(self, queue: str) -> dict[str, Any]:
        return {"interval": DEFAULT_INTERVAL_MS, **self._settings.get(queue, {})}

    async def set(self, queue: str, settings: dict[str, Any]) -> None:
        interval = settings.get("interval", DEFAULT_INTERVAL_MS)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise InvalidInput("`interval` must be a positive number of milliseconds")
        await self._store.queues.configure(queue, msgspec.json.encode(settings))
        self._settings[queue] = settings


def _entry_id(raw: msgspec.Raw) -> str | None:
    """The `_id` of a report entry that is otherwise malformed, to name it in the error."""
    try:
        value = _any.decode(raw)
    except msgspec.DecodeError:
        return None
    task_id = value.get("_id") if isinstance(value, dict) else None
    return str(task_id) if isinstance(task_id, (str, int)) else None


def _decode_reports(entries: list[msgspec.Raw]) -> list[Report | Problem]:
    """Each entry as a report, or as the problem that it is not one."""
    reports: list[Report | Problem] = []
    for i, raw in enumerate(entries):
        try:
            reports.append(_report.decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            named = _entry_id(raw)
            where = f"tasks[{i}]" if named is None else f"tasks[{i}] (task {named!r})"
            reports.append(Problem(InvalidInput(f"{where}: {error_text(exc)}"), named))
    return reports


def _problem_response(problems: list[Problem], total: int) -> LaneResponse:
    statuses = {p.error.status for p in problems}
    status = statuses.pop() if len(statuses) == 1 else 400
    shown = "; ".join(p.error.message for p in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return json_reply({
        "error": f"{len(problems)} of {total} reports rejected: {shown}{more}",
        "rejected": [{"_id": p.task_id, "status": p.error.status, "error": p.error.message}
                     for p in problems],
        "accepted": total - len(problems),
    }, status)


def add_polling_routes(app: QuartTrio, fleet: PollingFleet, auth: Auth,
                       configurations: QueueConfigurations) -> None:
    app.before_serving(configurations.load)
    lane: Lane = app.extensions["workyard.lane"]

    @app.get("/v1/queue/")
    @app.post("/v1/queue/")
    async def no_queue() -> Response:
        raise InvalidInput("the queue name is missing: use /v1/queue/{queue}")

    @app.get("/v1/queue/<queue>")
    async def configuration(queue: str) -> Response:
        require(auth, Role.WORKER)
        return json_response({"configuration": configurations.get(_params.name(queue, "queue"))})

    @app.put("/v1/queue/<queue>/configuration")
    async def set_configuration(queue: str) -> Response:
        require(auth, Role.ADMIN)
        _params.name(queue, "queue")
        try:
            settings = _configuration.decode(await request.get_data(cache=False))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidInput(f"the configuration must be a JSON object: {exc}") from None
        await configurations.set(queue, settings)
        return json_response({"configuration": configurations.get(queue)})

    @lane.route("POST", "/v1/queue/<queue>", waits=True)
    async def poll(req: LaneRequest) -> LaneResponse:
        require(auth, Role.WORKER, req)
        queue = _params.name(req.view_args["queue"], "queue")
        raw = await req.body()
        try:
            body = _poll_body.decode(raw) if raw.strip() else PollBody()
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidInput("the body must be a JSON object such as {} or "
                               f"{{\"tasks\": [...]}}: {error_text(exc)}") from None
        if len(body.tasks) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} reports per request, not {len(body.tasks)}")
        worker_id = _params.worker_id(body.worker_id, _params.WORKER_HEADER, req=req)
        room = _params.bounded(body.max, "max", 1, MAX_POLL_TASKS, req)
        if room != int(room):
            raise InvalidInput("`max` must be a whole number")
        wait = _params.bounded(body.wait, "wait", 0.0, MAX_POLL_WAIT, req)
        try:
            subscription = Subscription.of(queue, filters_from_query(req.args))
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

        # `worker_pool`/`worker_group`: the Taskcluster worker pool of a named poller
        pool = req.args.get("worker_pool") or None
        group = req.args.get("worker_group") or None
        if pool is not None and worker_id is None:
            raise InvalidInput("a poller in a worker pool needs a `worker_id`")
        # a named poller attaches first: its report is also its proof of life
        poller = fleet.poller(worker_id, subscription, worker_pool=pool,
                              worker_group=group) if worker_id is not None else None
        problems = await fleet.report(worker_id, _decode_reports(body.tasks))
        if problems:
            return _problem_response(problems, len(body.tasks))
        if room == 0:
            return LaneResponse(204, content_type=None)
        if poller is None:
            poller = fleet.poller(None, subscription)
        tasks = await fleet.take(poller, queue, int(room), wait)
        if not tasks:
            return LaneResponse(204, content_type=None)
        return json_reply({"tasks": [PolledTask.of(t) for t in tasks]})
