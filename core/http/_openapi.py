"""OpenAPI 3.1 for every HTTP route, generated from the msgspec structs the routes
encode and decode (`msgspec.json.schema_components`), at `/openapi.json`; `/docs`
renders it.

Each route is described once below by what it takes and answers — its types, not
their schemas. `test_openapi.py` fails if a route of the app is missing here (or
described but not served), and the fuzz test calls every one of them with
generated requests and checks each answer against its schema.

The WebSocket worker route (`GET /work/queue`, seed 000) is not an HTTP operation:
the document's description points to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import _json_schema
from quart import Response
from quart_trio import QuartTrio

from .._auth import Auth, Role
from .._model import Task
from ..protocol import Name, PollBody, PolledBatch, Registration, TaskSpec, WaitQuery
from ._bodies import (
    AnyObject,
    AuthInfo,
    Configuration,
    Detached,
    ErrorBody,
    EventList,
    Health,
    PollQuery,
    PresqueHeaders,
    QueueDetail,
    QueueList,
    QueueSettings,
    QueueSummaries,
    RecentQuery,
    RegisteredQueue,
    RegisteredWorker,
    RegistryQuery,
    Submitted,
    SubmittedBatch,
    TaskBatch,
    TaskList,
    TaskListQuery,
    TaskWaitQuery,
    WaitedTasks,
    WorkerDetail,
    WorkerIdHeader,
    WorkerList,
)
from ._dashboard import STATIC

__all__ = ["FOREIGN_PREFIXES", "OPERATIONS", "UNDOCUMENTED", "Operation", "add_openapi_routes",
           "openapi"]

#: routes of the app that are not operations of its API: the WebSocket worker route,
#: quart's own static route (the package has no folder for it: it answers 404), and
#: the worker-manager event stream (server-sent events, described in the README)
UNDOCUMENTED = frozenset({("GET", "/work/queue"), ("GET", "/static/{filename}"),
                          ("GET", "/events")})
#: routes of protocols described by their own references, whose clients are generated
#: from those: Taskcluster's worker-manager (and its queue's pendingTasks), ClearML's
#: `workers.*` and `auth.login`
FOREIGN_PREFIXES = ("/api/worker-manager/", "/api/queue/", "/<any(", "/v{version}/<any(")


@dataclass(frozen=True)
class Media:
    """A body that is not JSON: its media type and, if it has one, a schema type."""

    media_type: str
    schema: Any = None


@dataclass(frozen=True)
class OneOf:
    """A JSON body of one of several types (which one depends on the request)."""

    types: tuple[Any, ...]


NoBody = None


@dataclass(frozen=True)
class Operation:
    method: str
    #: OpenAPI form: /tasks/{task_id}
    path: str
    summary: str
    tag: str
    #: the role a token must hold when tokens are configured; None: no token needed
    role: Role | None = None
    body: Any = None
    body_required: bool = False
    query: type[msgspec.Struct] | None = None
    #: any other query parameter is a filter (`?cloud=aws,gcp`)
    filters: bool = False
    headers: type[msgspec.Struct] | None = None
    responses: Mapping[int, Any] = field(default_factory=dict)
    #: statuses the store's failure (503) can add
    store: bool = False
    description: str = ""

    def statuses(self) -> dict[int, Any]:
        """Its responses with the errors it can answer, each an `ErrorBody`."""
        out = dict(self.responses)
        errors = []
        if self.body is not None or self.query is not None or "{" in self.path \
                or self.filters or self.headers is not None:
            errors.append(400)
        if self.role is not None:
            errors.append(401)
        if self.body is not None:
            errors.append(413)
        if self.store:
            errors.append(503)
        for status in errors:
            out.setdefault(status, ErrorBody)
        return dict(sorted(out.items()))


#: path parameters by name
PATH_TYPES: dict[str, Any] = {"queue": Name, "name": Name}

_JSON = "application/json"
_HTML = Media("text/html")

OPERATIONS: tuple[Operation, ...] = (
    # -- producers
    Operation("POST", "/tasks", "Submit one task, or a batch of up to 1000", "tasks",
              Role.PRODUCER, body=OneOf((TaskSpec, TaskBatch)), body_required=True,
              responses={201: OneOf((Submitted, SubmittedBatch)), 200: Submitted}, store=True,
              description="201 once durably stored; a known `key` answers 200 with the "
                          "existing task's id and `created: false`."),
    Operation("GET", "/tasks/{task_id}", "A task: state, attempts, payload and result",
              "tasks", Role.PRODUCER, query=TaskWaitQuery,
              responses={200: Task, 404: ErrorBody}, store=True),
    Operation("POST", "/tasks/wait", "Wait for many tasks at once: the final ones, once "
              "`min` of them are (default: all) or after `wait` seconds", "tasks",
              Role.PRODUCER, body=WaitQuery, body_required=True,
              responses={200: WaitedTasks}, store=True,
              description="Up to 1000 `ids` per request (a repeated id counts once). "
                          "Answers once at least `min` of them are final and stored, or "
                          "once `wait` seconds passed (0: at once), whichever is first, "
                          "with those final by then; the others are named in `pending`, "
                          "ids of no task in `unknown`."),
    Operation("DELETE", "/tasks/{task_id}", "Cancel a task that is not final", "tasks",
              Role.PRODUCER, responses={200: Task, 404: ErrorBody, 409: ErrorBody},
              store=True),
    Operation("GET", "/tasks", "Tasks, newest first", "tasks", Role.PRODUCER,
              query=TaskListQuery, responses={200: TaskList}, store=True),
    # -- fleet views
    Operation("GET", "/workers", "Attached workers", "fleet", Role.ANY,
              responses={200: WorkerList}),
    Operation("GET", "/queues", "Queues by task name", "fleet", Role.ANY,
              responses={200: QueueList}),
    Operation("GET", "/health", "Liveness and counts", "fleet", responses={200: Health}),
    Operation("GET", "/workers/{worker_id}", "A worker: now, its current tasks and its "
              "last attempts", "fleet", Role.ANY, responses={200: WorkerDetail, 404: ErrorBody}),
    Operation("DELETE", "/workers/{worker_id}", "Detach a worker; its tasks are "
              "rescheduled at once", "fleet", Role.ADMIN,
              responses={200: Detached, 404: ErrorBody}),
    Operation("GET", "/stats/queues", "Every queue's rates, latencies and fairness",
              "fleet", Role.ANY, responses={200: QueueSummaries}),
    Operation("GET", "/stats/queues/{name}", "One queue: its last ten minutes and its "
              "spread over its workers", "fleet", Role.ANY,
              responses={200: QueueDetail, 404: ErrorBody}),
    Operation("GET", "/events/recent", "The last events of the hub's stream", "fleet",
              Role.ANY, query=RecentQuery, responses={200: EventList}),
    Operation("GET", "/ui/events", "The hub's events, live, for the dashboard (server-sent "
              "events)", "fleet",
              Role.ANY, responses={200: Media("text/event-stream")},
              description="Each message's data is a JSON array of events (the schema of "
                          "`/events/recent`'s `events`); an event of type `missed` says "
                          "some were dropped: reload the views."),
    Operation("GET", "/metrics", "Prometheus metrics", "fleet", Role.ANY,
              responses={200: Media("text/plain")}),
    Operation("GET", "/auth", "What the presented token may do", "fleet",
              responses={200: AuthInfo}),
    # -- polling workers (seed 002)
    Operation("GET", "/v1/queue/{queue}", "A queue's configuration for its pollers",
              "polling", Role.WORKER, responses={200: Configuration}),
    Operation("PUT", "/v1/queue/{queue}/configuration", "Replace a queue's configuration",
              "polling", Role.ADMIN, body=QueueSettings, body_required=True,
              responses={200: Configuration}, store=True),
    Operation("POST", "/v1/queue/{queue}", "Report finished tasks, then take new ones",
              "polling", Role.WORKER, body=PollBody, query=PollQuery, filters=True,
              headers=WorkerIdHeader,
              responses={200: PolledBatch, 204: NoBody, 404: ErrorBody, 409: ErrorBody},
              store=True, description="A 4xx for bad reports names each of them; the good "
                                      "ones of the same request still apply."),
    Operation("GET", "/v1/queue/", "(no queue named: always 400)", "polling",
              responses={400: ErrorBody}),
    Operation("POST", "/v1/queue/", "(no queue named: always 400)", "polling",
              responses={400: ErrorBody}),
    # -- presque registry (seed 004)
    Operation("POST", "/w/{queue}", "Register a worker on a queue", "registry", Role.WORKER,
              body=Registration, headers=PresqueHeaders, responses={201: NoBody}),
    Operation("DELETE", "/w/{queue}", "Unregister a worker from a queue", "registry",
              Role.WORKER, query=RegistryQuery, headers=PresqueHeaders,
              responses={204: NoBody}),
    Operation("GET", "/w", "Registered workers, or one worker or queue", "registry",
              Role.ANY, query=RegistryQuery,
              responses={200: OneOf((list[str], RegisteredWorker, RegisteredQueue)),
                         404: ErrorBody}),
    Operation("GET", "/w/", "Registered workers, or one worker or queue", "registry",
              Role.ANY, query=RegistryQuery,
              responses={200: OneOf((list[str], RegisteredWorker, RegisteredQueue)),
                         404: ErrorBody}),
    Operation("GET", "/w/{queue}", "A queue's workers and counts", "registry", Role.ANY,
              query=RegistryQuery, responses={200: OneOf((RegisteredWorker, RegisteredQueue)),
                                              404: ErrorBody}),
    # -- this document and the dashboard
    Operation("GET", "/openapi.json", "This document", "docs",
              responses={200: AnyObject}),
    Operation("GET", "/docs", "This document, to read", "docs", responses={200: _HTML}),
    Operation("GET", "/", "The dashboard", "docs", responses={200: _HTML}),
    Operation("GET", "/ui/{filename}", "The dashboard's files", "docs",
              responses={200: Media("*/*"), 404: ErrorBody}),
)


def _schema_types(op: Operation) -> list[Any]:
    found: list[Any] = []

    def add(kind: Any) -> None:
        if isinstance(kind, OneOf):
            found.extend(kind.types)
        elif isinstance(kind, Media):
            if kind.schema is not None:
                found.append(kind.schema)
        elif kind is not None:
            found.append(kind)

    add(op.body)
    for kind in op.statuses().values():
        add(kind)
    for struct in (op.query, op.headers):
        if struct is not None:
            found.append(struct)
    found.extend(PATH_TYPES.get(p, str) for p in _path_params(op.path))
    return found


def _path_params(path: str) -> list[str]:
    return re.findall(r"{(\w+)}", path)


def openapi(auth_enabled: bool = False, operations: Sequence[Operation] = OPERATIONS
            ) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `operations`."""
    types: list[Any] = []
    for op in operations:
        types.extend(_schema_types(op))
    unique = list(dict.fromkeys(types))
    with _raw_defaults():
        schemas, components = msgspec.json.schema_components(
            unique, schema_hook=_any_object, ref_template="#/components/schemas/{name}")
    schema_of = dict(zip(unique, schemas))
    parameter_structs = {s.__name__ for op in operations for s in (op.query, op.headers) if s}

    def schema(kind: Any) -> dict[str, Any]:
        if isinstance(kind, OneOf):
            return {"oneOf": [schema_of[t] for t in kind.types]}
        return schema_of[kind]

    def content(kind: Any) -> dict[str, Any] | None:
        if kind is None:
            return None
        if isinstance(kind, Media):
            body = {} if kind.schema is None else {"schema": schema(kind.schema)}
            if kind.schema is None and not kind.media_type.endswith("json"):
                body = {"schema": {"type": "string"}}
            return {kind.media_type: body}
        return {_JSON: {"schema": schema(kind)}}

    def struct_params(struct: type[msgspec.Struct], where: str) -> list[dict[str, Any]]:
        described = components[struct.__name__]
        required = set(described.get("required", ()))
        return [{"name": name, "in": where, "required": name in required,
                 "schema": _not_null(prop)} for name, prop in described["properties"].items()]

    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        parameters = [{"name": p, "in": "path", "required": True,
                       "schema": schema_of[PATH_TYPES.get(p, str)]}
                      for p in _path_params(op.path)]
        if op.query is not None:
            parameters += struct_params(op.query, "query")
        if op.filters:
            parameters.append({
                "name": "filters", "in": "query", "style": "form", "explode": True,
                "description": "every other parameter filters the tasks by attribute: "
                               "`?cloud=aws,gcp&account=123`",
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}})
        if op.headers is not None:
            parameters += struct_params(op.headers, "header")
        entry: dict[str, Any] = {"summary": op.summary, "tags": [op.tag],
                                 "operationId": _operation_id(op)}
        if op.description:
            entry["description"] = op.description
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {"required": op.body_required, "content": content(op.body)}
        responses: dict[str, Any] = {}
        for status, kind in op.statuses().items():
            described: dict[str, Any] = {"description": _reason(status)}
            body = content(kind)
            if body is not None:
                described["content"] = body
            responses[str(status)] = described
        entry["responses"] = responses
        if op.role is not None:
            entry["x-role"] = op.role.value
            if auth_enabled:
                entry["security"] = [{"bearer": []}, {"accessToken": []}]
        paths.setdefault(op.path, {})[op.method.lower()] = entry

    for name in parameter_structs:
        components.pop(name, None)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "workyard",
            "version": _version(),
            "description": (
                "A task hub for worker fleets. Producers submit tasks; workers attach "
                "over a WebSocket (`GET /work/queue`, seed 000: see the README) or poll "
                "over HTTP (`/v1/queue/...`). "
                + ("Every operation with an `x-role` needs a bearer token of that role "
                   "(or an admin token)." if auth_enabled else
                   "This hub has no tokens configured: every operation is open "
                   "(`x-role` says which token each needs when tokens are set).")),
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "accessToken": {"type": "apiKey", "in": "query", "name": "access_token"},
            },
        },
    }


@contextmanager
def _raw_defaults() -> Iterator[None]:
    """Let msgspec describe fields whose default is raw JSON (`data = null`).

    msgspec renders a default with `to_builtins`, which refuses `msgspec.Raw`; for
    the time of one generation its schema module gets a `to_builtins` that decodes it.
    """
    original = _json_schema.to_builtins

    def to_builtins(value: Any, **kwargs: Any) -> Any:
        return original(value, enc_hook=_decode_raw, **kwargs)

    _json_schema.to_builtins = to_builtins  # type: ignore[attr-defined,assignment]
    try:
        yield
    finally:
        _json_schema.to_builtins = original  # type: ignore[attr-defined]


def _any_object(kind: Any) -> dict[str, Any]:
    """`object` (e.g. a subscription's JSON form) is any JSON value."""
    if kind is object:
        return {"description": "any JSON value"}
    raise NotImplementedError(f"no schema for {kind!r}")


def _decode_raw(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value)
    raise NotImplementedError(f"no JSON for a default of type {type(value).__name__}")


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without its `null`: an absent parameter is the None."""
    options = [o for o in schema.get("anyOf", ()) if o != {"type": "null"}]
    if "anyOf" not in schema or len(options) == len(schema["anyOf"]):
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**rest, **options[0]} if len(options) == 1 else {**rest, "anyOf": options}


def _operation_id(op: Operation) -> str:
    words = re.sub(r"[{}]", "", op.path).strip("/").replace("/", "_").replace(".", "_")
    return f"{op.method.lower()}_{words or 'root'}"


def _reason(status: int) -> str:
    return {200: "OK", 201: "Created", 204: "No Content", 400: "Bad request",
            401: "A token of the operation's role is required", 404: "Not found",
            409: "Conflicts with the current state", 413: "Body too large",
            503: "The store is unavailable: retry"}.get(status, str(status))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("workyard")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


def add_openapi_routes(app: QuartTrio, auth: Auth) -> None:
    document: list[bytes] = []

    @app.get("/openapi.json")
    async def openapi_json() -> Response:
        if not document:
            document.append(msgspec.json.encode(openapi(auth.enabled)))
        return Response(document[0], content_type=_JSON)

    @app.get("/docs")
    async def docs() -> Response:
        return Response((STATIC / "docs.html").read_text(encoding="utf-8"),
                        content_type="text/html; charset=utf-8")
