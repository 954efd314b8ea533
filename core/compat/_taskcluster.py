"""Taskcluster's worker-manager API (seed 003) at `/api/worker-manager/v1/`, so the real
`taskcluster` client (rootUrl = the hub's base URL) manages worker pools unchanged.

    PUT    /worker-pool/<id>      create (an identical re-create answers the pool)
    POST   /worker-pool/<id>      update
    DELETE /worker-pool/<id>      drain: providerId becomes null-provider (see hub/_pools.py)
    GET    /worker-pool/<id>      the pool, with its real counters and `pendingTasks`
    GET    /worker-pools          ?limit&continuationToken
    GET    /workers/<id>          ?limit&continuationToken&state
    GET    /workers/<id>/<group>/<workerId>

and Taskcluster's queue `pendingTasks` at `/api/queue/v1/pending/<taskQueueId>` (a
task queue id is a worker pool id): the waiting tasks only a new worker of that pool
would take, counted by the scheduler from the subscriptions the pool's `config`
declares (`hub/_pools.py`), for a provisioner to scale on.

The client percent-encodes the `/` in a pool id, which the server decodes: the routes
take the rest of the path and tell the calls apart by segment count. Errors have
Taskcluster's body `{code, message, requestInfo}` and codes (InvalidRequestArguments,
InputValidationError, InputError, ResourceNotFound, RequestConflict,
AuthenticationFailed); bad input is never a 5xx, which the client would retry.

Auth: pool changes need the admin role — Hawk credentials configured with
`--taskcluster-client ID:TOKEN` (checked with mohawk), or a bearer admin token; reads
any configured role or credentials. With no tokens at all (loopback only), everything
is accepted.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import mohawk
import mohawk.exc
import msgspec
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth, Role, bearer
from .._config import Settings
from .._errors import Conflict, NotFound, WorkyardError
from ..http import json_response
from ..hub import Hub
from ..hub._pools import Pool, StoppedWorker, capacity_of, offer_of
from ..hub._sessions import Session
from ..outbox._exchanges import iso
from ..store import PoolRecord

__all__ = ["HawkCredentials", "TaskclusterError", "add_taskcluster_routes"]

log = logging.getLogger("workyard.taskcluster")

PREFIX = "/api/worker-manager/v1"
QUEUE_PREFIX = "/api/queue/v1"
POOL_ID = re.compile(r"^[a-zA-Z0-9-_]{1,38}/[a-z]([-a-z0-9]{0,36}[a-z0-9])?$")
PROVIDER_ID = re.compile(r"^([a-zA-Z0-9-_]*)$")
EMAIL = re.compile(r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")
MAX_DESCRIPTION = 10240
#: Taskcluster's default and largest page
MAX_LIMIT = 1000
REQUIRED = ("providerId", "description", "config", "owner", "emailOnError")
#: an update may repeat these (workerPoolId must match the URL; the times are ignored)
UPDATE_EXTRA = ("workerPoolId", "created", "lastModified")
#: a worker's `expires` in answers: Taskcluster's default for a worker record
WORKER_EXPIRES = 24 * 3600.0

_any = msgspec.json.Decoder()
_canonical = msgspec.json.Encoder(order="sorted").encode


class TaskclusterError(Exception):
    """An error as Taskcluster reports it: `code` and status, and the message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


def _invalid_arguments(message: str) -> TaskclusterError:
    return TaskclusterError("InvalidRequestArguments", 400, message)


def _schema(problems: Iterable[str]) -> TaskclusterError:
    return TaskclusterError("InputValidationError", 400,
                            "Request payload must match the schema:\n" + "\n".join(problems))


_CODES = {400: "InputError", 401: "AuthenticationFailed", 404: "ResourceNotFound",
          409: "RequestConflict", 413: "InputTooLarge"}


def _from_workyard(exc: WorkyardError) -> TaskclusterError:
    return TaskclusterError(_CODES.get(exc.status, "InternalServerError"), exc.status,
                            exc.message)


# -- Hawk ---------------------------------------------------------------------------


class HawkCredentials:
    """The configured Taskcluster clients, and the nonces seen lately (replay guard)."""

    KEEP_NONCES = 10_000

    def __init__(self, specs: Iterable[str]) -> None:
        self.clients: dict[str, str] = {}
        for spec in specs:
            client_id, sep, token = spec.partition(":")
            if not sep or not client_id or not token:
                raise ValueError(f"--taskcluster-client takes CLIENT_ID:ACCESS_TOKEN, not "
                                 f"{spec.split(':')[0]!r}:…")
            self.clients[client_id] = token
        self._nonces: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    def _lookup(self, client_id: str) -> dict[str, str]:
        token = self.clients.get(client_id)
        if token is None:
            raise LookupError(client_id)
        return {"id": client_id, "key": token, "algorithm": "sha256"}

    def _seen(self, sender_id: str, nonce: str, timestamp: str) -> bool:
        key = (sender_id, nonce, timestamp)
        if key in self._nonces:
            return True
        self._nonces[key] = None
        while len(self._nonces) > self.KEEP_NONCES:
            self._nonces.popitem(last=False)
        return False

    def check(self, header: str, url: str, method: str, content: bytes,
              content_type: str) -> str:
        """The client id of a valid Hawk `header`; raises AuthenticationFailed."""
        try:
            receiver = mohawk.Receiver(self._lookup, header, url, method, content=content,
                                       content_type=content_type, seen_nonce=self._seen)
        except mohawk.exc.HawkFail as exc:
            raise TaskclusterError("AuthenticationFailed", 401,
                                   f"Hawk authentication failed: {exc}") from None
        return str(receiver.resource.credentials["id"])


# -- validation ---------------------------------------------------------------------


def _pool_id(value: str) -> str:
    if not POOL_ID.match(value):
        raise _invalid_arguments(f"workerPoolId {value!r} must match {POOL_ID.pattern}")
    return value


def _body(raw: bytes, *, update: bool, worker_pool_id: str) -> PoolRecord:
    """A create or update payload as a record (times are the hub's to set)."""
    try:
        payload = _any.decode(raw) if raw.strip() else None
    except msgspec.DecodeError as exc:
        raise _schema([f"the payload is not JSON: {exc}"]) from None
    if not isinstance(payload, dict):
        raise _schema(["the payload must be a JSON object"])
    allowed = {*REQUIRED, *(UPDATE_EXTRA if update else ())}
    problems = [f"data must NOT have additional property {k!r}" for k in payload
                if k not in allowed]
    problems += [f"data must have required property {k!r}" for k in REQUIRED
                 if k not in payload]
    provider = payload.get("providerId")
    if "providerId" in payload and not (
            isinstance(provider, str) and 1 <= len(provider) <= 38
            and PROVIDER_ID.match(provider)):
        problems.append("data/providerId must be 1 to 38 characters matching "
                        f"{PROVIDER_ID.pattern}")
    description = payload.get("description")
    if "description" in payload and not (  # NUL: PostgreSQL's text cannot hold it
            isinstance(description, str) and len(description) <= MAX_DESCRIPTION
            and "\x00" not in description):
        problems.append(f"data/description must be a string of at most {MAX_DESCRIPTION} "
                        "characters, without NUL")
    if "config" in payload and not isinstance(payload["config"], dict):
        problems.append("data/config must be object")
    owner = payload.get("owner")
    if "owner" in payload and not (isinstance(owner, str) and EMAIL.match(owner)):
        problems.append('data/owner must match format "email"')
    if "emailOnError" in payload and not isinstance(payload["emailOnError"], bool):
        problems.append("data/emailOnError must be boolean")
    for key in ("created", "lastModified"):
        if update and key in payload and not isinstance(payload[key], str):
            problems.append(f"data/{key} must be string")
    if problems:
        raise _schema(problems)
    if update and payload.get("workerPoolId", worker_pool_id) != worker_pool_id:
        raise TaskclusterError("InputError", 400,
                               "workerPoolId in the payload must match the one in the URL")
    offer_of(payload["config"])  # what it declares its workers take: InputError if bad
    # every field was checked above: strings, and a bool
    return PoolRecord(worker_pool_id, str(provider), str(description),
                      _canonical(payload["config"]), str(owner), payload["emailOnError"],
                      0.0, 0.0)


def _limit() -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return MAX_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise _invalid_arguments(f"limit must be a whole number, not {raw!r}") from None
    if value < 1:
        raise _invalid_arguments("limit must be 1 or more")
    return min(value, MAX_LIMIT)


def _token(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode()


def _after() -> str | None:
    """The position a continuationToken stands for (None: from the start)."""
    raw = request.args.get("continuationToken")
    if not raw:
        return None
    try:
        return base64.urlsafe_b64decode(raw.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _invalid_arguments("continuationToken is not one this server gave") from None


def _page(keys: list[str], items: dict[str, Any], name: str) -> dict[str, Any]:
    """One page of `items` (by sorted `keys`) after the request's token."""
    after, limit = _after(), _limit()
    start = 0 if after is None else next((i for i, k in enumerate(keys) if k > after),
                                         len(keys))
    chosen = keys[start:start + limit]
    answer: dict[str, Any] = {name: [items[k] for k in chosen]}
    if start + limit < len(keys):
        answer["continuationToken"] = _token(chosen[-1])
    return answer


# -- answers ------------------------------------------------------------------------


def pool_json(pool: Pool, pending: int) -> dict[str, Any]:
    r = pool.record
    stopped = list(pool.stopped.values())
    running = pool.running_capacity
    answer: dict[str, Any] = {
        "workerPoolId": r.worker_pool_id, "providerId": r.provider_id,
        "description": r.description, "config": _any.decode(r.config), "owner": r.owner,
        "emailOnError": r.email_on_error, "created": iso(r.created),
        "lastModified": iso(r.last_modified), "currentCapacity": running,
        "requestedCount": 0, "runningCount": len(pool.workers), "stoppingCount": 0,
        "stoppedCount": len(stopped), "requestedCapacity": 0, "runningCapacity": running,
        "stoppingCapacity": 0, "stoppedCapacity": sum(w.capacity for w in stopped),
        "pendingTasks": pending,
    }
    return answer


def _running(pool: Pool, s: Session) -> dict[str, Any]:
    return {"workerPoolId": pool.record.worker_pool_id, "workerGroup": s.worker_group,
            "workerId": s.id, "providerId": pool.record.provider_id,
            "created": iso(s.connected), "expires": iso(s.connected + WORKER_EXPIRES),
            "state": "running", "capacity": capacity_of(s), "lastModified": iso(s.connected),
            "lastChecked": iso(s.last_seen)}


def _stopped(pool: Pool, w: StoppedWorker) -> dict[str, Any]:
    return {"workerPoolId": pool.record.worker_pool_id, "workerGroup": w.worker_group,
            "workerId": w.worker_id, "providerId": pool.record.provider_id,
            "created": iso(w.started), "expires": iso(w.started + WORKER_EXPIRES),
            "state": "stopped", "capacity": w.capacity, "lastModified": iso(w.stopped),
            "lastChecked": iso(w.stopped)}


def _workers(pool: Pool) -> dict[str, dict[str, Any]]:
    """The pool's workers by `group/id`: running ones, then remembered stopped ones."""
    found = {f"{w.worker_group}/{w.worker_id}": _stopped(pool, w) for w in pool.stopped.values()}
    found.update({f"{s.worker_group}/{s.id}": _running(pool, s) for s in pool.workers.values()})
    return found


# -- routes -------------------------------------------------------------------------

Handler = Callable[..., Awaitable[Response]]


def add_taskcluster_routes(app: QuartTrio, hub: Hub, settings: Settings, auth: Auth) -> None:
    hawk = HawkCredentials(settings.taskcluster_clients)

    def api(name: str, write: bool = False) -> Callable[[Handler], Handler]:
        """Taskcluster's error bodies and auth around a route named `name` (the API
        method, as `requestInfo.method` reports it)."""
        def wrap(handler: Handler) -> Handler:
            @functools.wraps(handler)
            async def route(**params: Any) -> Response:
                raw = await request.get_data(cache=True, as_text=False, parse_form_data=False)
                try:
                    await _authenticate(raw, write)
                    return await handler(**params)
                except TaskclusterError as exc:
                    return _error(exc, name, params, raw)
                except WorkyardError as exc:
                    return _error(_from_workyard(exc), name, params, raw)
            return route
        return wrap

    async def _authenticate(raw: bytes, write: bool) -> None:
        if not auth.enabled:
            return
        header = request.headers.get("Authorization", "")
        if header[:5].lower() == "hawk ":
            hawk.check(header, _signed_url(), request.method, raw,
                       request.headers.get("Content-Type", ""))
            return  # configured Taskcluster clients are admins
        token = bearer(request.headers)
        if auth.allows(token, Role.ADMIN if write else Role.ANY):
            return
        raise TaskclusterError(
            "AuthenticationFailed", 401,
            "this call needs Taskcluster credentials (Hawk) or a bearer "
            + ("admin token" if write else "token"))

    def _counted(pool: Pool) -> dict[str, Any]:
        return pool_json(pool, hub.pending_tasks().get(pool.record.worker_pool_id, 0))

    @app.get(PREFIX + "/ping")
    async def worker_manager_ping() -> Response:
        return json_response({"alive": True, "uptime": hub.now()})

    @app.route(PREFIX + "/worker-pool/<path:workerPoolId>",
               methods=["GET", "PUT", "POST", "DELETE"])
    async def worker_pool(workerPoolId: str) -> Response:
        return await _by_method[request.method](workerPoolId=workerPoolId)

    @api("createWorkerPool", write=True)
    async def create_pool(workerPoolId: str) -> Response:
        record = _body(await request.get_data(cache=True, as_text=False, parse_form_data=False), update=False,
                       worker_pool_id=_pool_id(workerPoolId))
        try:
            pool, _ = await hub.pools.create(record)
        except Conflict as exc:
            raise TaskclusterError("RequestConflict", 409, exc.message) from None
        return json_response(_counted(pool))

    @api("updateWorkerPool", write=True)
    async def update_pool(workerPoolId: str) -> Response:
        record = _body(await request.get_data(cache=True, as_text=False, parse_form_data=False), update=True,
                       worker_pool_id=_pool_id(workerPoolId))
        try:
            pool = await hub.pools.update(record)
        except NotFound as exc:
            raise TaskclusterError("ResourceNotFound", 404, exc.message) from None
        return json_response(_counted(pool))

    @api("deleteWorkerPool", write=True)
    async def delete_pool(workerPoolId: str) -> Response:
        try:
            pool = await hub.pools.delete(_pool_id(workerPoolId))
        except NotFound as exc:
            raise TaskclusterError("ResourceNotFound", 404, exc.message) from None
        return json_response(_counted(pool))

    @api("workerPool")
    async def get_pool(workerPoolId: str) -> Response:
        pool = hub.pools.get(_pool_id(workerPoolId))
        if pool is None:
            raise TaskclusterError("ResourceNotFound", 404,
                                   f"worker pool {workerPoolId!r} not found")
        return json_response(_counted(pool))

    _by_method = {"PUT": create_pool, "POST": update_pool, "DELETE": delete_pool,
                  "GET": get_pool}

    @app.get(PREFIX + "/worker-pools")
    @api("listWorkerPools")
    async def list_pools() -> Response:
        pools, pending = hub.pools.pools, hub.pending_tasks()
        return json_response(_page(sorted(pools), {k: pool_json(p, pending.get(k, 0))
                                                   for k, p in pools.items()}, "workerPools"))

    @app.get(QUEUE_PREFIX + "/pending/<path:taskQueueId>")
    @api("pendingTasks")
    async def pending_tasks(taskQueueId: str) -> Response:
        """Taskcluster's queue.pendingTasks for a worker pool's task queue."""
        if hub.pools.get(_pool_id(taskQueueId)) is None:
            raise TaskclusterError("ResourceNotFound", 404,
                                   f"no worker pool {taskQueueId!r}: pending tasks are "
                                   "counted for worker pools")
        provisioner, worker_type = taskQueueId.split("/")
        return json_response({"taskQueueId": taskQueueId, "provisionerId": provisioner,
                              "workerType": worker_type,
                              "pendingTasks": hub.pending_tasks()[taskQueueId]})

    @app.get(PREFIX + "/workers/<path:rest>")
    @api("listWorkersForWorkerPool")
    async def list_workers(rest: str) -> Response:
        parts = rest.split("/")
        if len(parts) not in (2, 3, 4):
            raise _invalid_arguments("expected /workers/<workerPoolId>[/<workerGroup>"
                                     "[/<workerId>]]")
        pool_id = _pool_id("/".join(parts[:2]))
        pool = hub.pools.get(pool_id)
        if pool is None:
            raise TaskclusterError("ResourceNotFound", 404, f"worker pool {pool_id!r} not found")
        found = _workers(pool)
        if len(parts) == 4:
            worker = found.get(f"{parts[2]}/{parts[3]}")
            if worker is None:
                raise TaskclusterError("ResourceNotFound", 404,
                                       f"worker {parts[2]}/{parts[3]} not found in {pool_id}")
            return json_response(worker)
        if len(parts) == 3:
            found = {k: v for k, v in found.items() if v["workerGroup"] == parts[2]}
        state = request.args.get("state")
        if state:
            if state not in ("requested", "running", "stopping", "stopped"):
                raise _invalid_arguments("state must be requested, running, stopping or "
                                         "stopped")
            found = {k: v for k, v in found.items() if v["state"] == state}
        return json_response(_page(sorted(found), found, "workers"))


def _signed_url() -> str:
    """The URL as the client signed it: scheme, Host header and the raw (still
    percent-encoded) path and query."""
    raw_path = request.scope.get("raw_path") or request.path.encode()
    url = f"{request.scheme}://{request.headers.get('Host', '')}{raw_path.decode('latin-1')}"
    query = request.scope.get("query_string", b"")
    return f"{url}?{query.decode('latin-1')}" if query else url


def _error(exc: TaskclusterError, name: str, params: dict[str, Any], raw: bytes) -> Response:
    try:
        payload = _any.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        payload = raw.decode("utf-8", "replace")
    body = {"code": exc.code, "message": exc.message,
            "requestInfo": {"method": name, "params": params, "payload": payload,
                            "time": iso(time.time())}}
    if exc.status >= 500:
        log.error("%s failed: %s", name, exc.message)
    return json_response(body, exc.status)
