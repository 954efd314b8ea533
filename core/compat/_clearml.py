"""ClearML's worker registry (seed 001): `workers.*` and `auth.login`, so the real
`clearml` SDK and clearml-agent work against the hub unchanged.

    /auth.login                       HTTP Basic or Bearer in, a signed JWT out
    /workers.<action>, /vX.Y/...      register, unregister, status_report, get_all,
                                      get_stats, get_activity_report, get_metric_keys

GET, POST or PUT with a JSON body; unknown keys are ignored and an explicit null
means absent. Every answer, errors included, is ClearML's envelope `{"meta": {...},
"data": {...}}` with HTTP status = `meta.result_code` — never 503 or 429, which the
SDK retries without end.

One registry of workers. A worker registered here that the hub does not know
otherwise is a heartbeat session (`Liveness.HEARTBEAT`): not in the scheduler, gone
`timeout` seconds after its last register or status_report, and shown in `GET
/workers` beside the hub's own workers. A worker id that is attached to the hub by
another transport keeps its connection: its ClearML registration (tags, queues,
machine statistics) rides along with it. `get_all` lists every attached hub worker,
its queues being the task names it subscribed to and its task the one it runs now.

Statistics go to the store's `stats` aggregate (group commit) and are read back in
ClearML's buckets — aligned to the epoch, dates in milliseconds, avg/min/max pooled
over every sample and variant — without its flaws: any `interval` >= 1, the last
bucket kept, zero readings stored, no cap of workers or metrics per query,
`aggregation` and `category` both read, task and queue ids free-form, tags left as
they are when a report omits them. Hub workers that send no statistics are sampled
every `SAMPLE_EVERY` seconds, so `get_activity_report` counts them too.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import jwt
import msgspec
import regex
import trio
from msgspec import Meta
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from .._auth import Auth, Role
from .._config import Settings
from .._gather import gather
from ..http._lane import Lane, LaneRequest, LaneResponse
from ..hub import Hub, Liveness, Session
from ..protocol import MAX_NAME
from ..store import RecordStats, StatSeries, StoreError
from ..store._rollups import SPANS

__all__ = ["ClearML", "add_clearml_routes"]

log = logging.getLogger("workyard.clearml")

#: the newest API version of the real server, what an unversioned path means
API_VERSION = "2.31"
SERVER_VERSION = "2.0.0"
TRANSPORT = "clearml"
#: a registration's `timeout` when 0 or absent is the hub's `heartbeat_liveness`
MAX_TIMEOUT = 365 * 24 * 3600
#: seconds a JWT from auth.login is valid unless `expiration_sec` asks for less
TOKEN_LIFETIME = 30 * 24 * 3600
#: seconds between activity samples of hub workers, and between sweeps of the registry
SAMPLE_EVERY = 30.0
#: a report's timestamp may be this far ahead of the hub's clock (ms)
MAX_AHEAD_MS = 24 * 3600 * 1000
#: dates beyond this (seconds since the epoch, the year 5138) are refused
MAX_DATE = 1e11
#: buckets one get_stats or get_activity_report may ask for
MAX_POINTS = 100_000
MAX_ITEMS = 100
MAX_IDS = 10_000
MAX_METRICS = 100
MAX_VARIANTS = 64
#: seconds one get_all's `worker_pattern` may spend matching, over all workers: a
#: pattern that backtracks without end (`(a|a)*$`) is refused, not left to stall the hub
PATTERN_BUDGET = 0.05
_METRIC = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VERSION = re.compile(r"\d{1,3}\.\d{1,3}")
AGGREGATIONS = ("avg", "min", "max")

ACTIONS = ("register", "unregister", "status_report", "get_all", "get_stats",
           "get_activity_report", "get_metric_keys")
#: services of the real server: their unknown endpoints get its 404 envelope
SERVICES = ("auth", "workers", "queues", "tasks", "events", "models", "projects", "users",
            "debug", "server", "organization", "pipelines", "reports", "login")

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]
Names = Annotated[list[Name], Meta(max_length=1000)]
Tags = Annotated[list[Annotated[str, Meta(max_length=MAX_NAME)]], Meta(max_length=100)]
Date = Annotated[float, Meta(ge=0, le=MAX_DATE)]


# -- requests --------------------------------------------------------------------------


class _Register(msgspec.Struct):
    worker: Name
    timeout: int | None = None
    queues: Names | None = None
    tags: Tags | None = None
    system_tags: Tags | None = None


class _Unregister(msgspec.Struct):
    worker: Name


Reading = float | Annotated[list[float | None], Meta(max_length=MAX_VARIANTS)] | None


class _Report(msgspec.Struct):
    worker: Name
    #: milliseconds since the epoch (what every client sends; the docs say seconds)
    timestamp: Annotated[float, Meta(ge=0)]
    task: Name | None = None
    queue: Name | None = None
    queues: Names | None = None
    tags: Tags | None = None
    system_tags: Tags | None = None


class _StatusReport(_Report):
    machine_stats: dict[str, Reading] | None = None


class _RawStatusReport(_Report):
    """A report that `_StatusReport` refused, its values to decode one by one
    (`_decode_report`), so that an error names its metric."""

    machine_stats: dict[str, msgspec.Raw] | None = None


class _GetAll(msgspec.Struct):
    last_seen: Annotated[int, Meta(ge=0)] | None = None
    tags: Tags | None = None
    system_tags: Tags | None = None
    worker_pattern: Annotated[str, Meta(max_length=MAX_NAME)] | None = None


class _StatItem(msgspec.Struct):
    key: Annotated[str, Meta(min_length=1, max_length=64)]
    aggregation: str | None = None
    #: what the SDK's typed StatItem sends in place of `aggregation`
    category: str | None = None


class _Range(msgspec.Struct):
    from_date: Date
    to_date: Date
    interval: Annotated[int, Meta(ge=1, le=10 * 365 * 24 * 3600)]


class _GetStats(_Range):
    items: Annotated[list[_StatItem], Meta(min_length=1, max_length=MAX_ITEMS)]
    worker_ids: Annotated[list[Name], Meta(max_length=MAX_IDS)] | None = None
    split_by_variant: bool | None = None


class _GetMetricKeys(msgspec.Struct):
    worker_ids: Annotated[list[Name], Meta(max_length=MAX_IDS)] | None = None


_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(t) for t in (_Register, _Unregister, _StatusReport, _RawStatusReport,
                                         _GetAll, _GetStats, _Range, _GetMetricKeys)}
_reading: msgspec.json.Decoder[Reading] = msgspec.json.Decoder(Reading)  # type: ignore[arg-type]
_encode = msgspec.json.Encoder().encode


# -- the envelope ----------------------------------------------------------------------


class Failure(Exception):
    """An answer other than 200/0, in ClearML's codes."""

    def __init__(self, code: int, subcode: int, message: str) -> None:
        super().__init__(message)
        self.code, self.subcode, self.message = code, subcode, message


def invalid(field_name: str | None, detail: str) -> Failure:
    """400/12, worded as the real server words it, naming the field."""
    if field_name is None:
        return Failure(400, 12, f"validation error ({detail})")
    return Failure(400, 12, f"validation error (error for field '{field_name}'. {detail})")


_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


def _validation(exc: msgspec.ValidationError | msgspec.DecodeError) -> Failure:
    """msgspec's error as ClearML's 400/12, naming the field (`items[0].key`)."""
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return invalid(None, f"the body is not valid JSON: {exc}")
    match = _AT.match(str(exc))
    assert match is not None
    detail, path = match["detail"], (match["path"] or "").lstrip(".")
    missing = _MISSING.match(detail)
    if missing:
        name = f"{path}.{missing['name']}" if path else missing["name"]
        return invalid(name, "field is required!")
    if not path:
        return invalid(None, f"the body must be a JSON object ({detail})")
    if detail == "Expected `str`, got `null`" or detail.endswith("got `null`"):
        return invalid(path, "field is required!")
    return invalid(path, detail.replace("`", ""))


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def envelope(endpoint: str, requested: str, actual: str, data: Any = None, *,
             code: int = 200, subcode: int = 0, message: str = "OK") -> bytes:
    trx = uuid.uuid4().hex
    return _encode({
        "meta": {"id": trx, "trx": trx,
                 "endpoint": {"name": endpoint, "requested_version": requested,
                              "actual_version": actual},
                 "result_code": code, "result_subcode": subcode, "result_msg": message,
                 "error_stack": None, "error_data": {}},
        "data": {} if data is None else data,
    })


# -- the registry ----------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """A ClearML registration: what the hub's session does not know of a worker."""

    id: str
    user: str | None
    ip: str | None
    registered: float
    last_activity: float
    timeout: float
    last_report: float | None = None
    queues: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    system_tags: list[str] = field(default_factory=list)
    task: str | None = None
    queue: str | None = None
    task_since: float | None = None


class _RegistryLink:
    """The link of a heartbeat session: it takes no tasks, and nothing needs closing."""

    def deliver(self, task: Any) -> None:  # pragma: no cover - not in the scheduler
        raise RuntimeError("a heartbeat worker takes no tasks")

    def close(self, reason: str) -> None:
        pass


@dataclass(slots=True)
class _Caller:
    user: str | None
    ip: str | None


class ClearML:
    """The registry and its answers, independent of the HTTP framework: `handle`
    takes an endpoint, its headers and body, and returns (status, envelope bytes)."""

    def __init__(self, hub: Hub, settings: Settings, *, secret: bytes | None = None) -> None:
        self.hub = hub
        self.settings = settings
        self.auth = Auth(settings)
        #: signs the JWTs of auth.login; a new one each start (the SDK logs in again on 401)
        self.secret = secret or secrets.token_bytes(32)
        self.entries: dict[str, _Entry] = {}
        #: per hub worker: its answer count at the last activity sample
        self._answered: dict[str, int] = {}

    # -- transport ---------------------------------------------------------------------

    async def handle(self, service: str, action: str, version: str | None,
                     headers: Headers | Mapping[str, str], body: bytes,
                     query: Mapping[str, str], peer: str | None) -> tuple[int, bytes]:
        endpoint = f"{service}.{action}"
        requested = version or API_VERSION
        actual = API_VERSION
        try:
            if version is not None:
                if not _VERSION.fullmatch(version):
                    raise Failure(400, 0, f"invalid API version {version!r}")
                if _version(version) < _version(API_VERSION):
                    actual = version
            if endpoint == "auth.login":
                data = self._login(headers, query)
            elif service != "workers" or action not in ACTIONS:
                raise Failure(404, 0, f"Unable to find endpoint for name {endpoint} and "
                                      f"version {actual}")
            else:
                caller = self._authenticate(headers, peer)
                data = await getattr(self, action)(body, caller)
        except Failure as exc:
            return exc.code, envelope(endpoint, requested, actual, code=exc.code,
                                      subcode=exc.subcode, message=exc.message)
        except StoreError as exc:  # not 503: the SDK would retry it forever
            log.error("%s failed: %s", endpoint, exc)
            return 500, envelope(endpoint, requested, actual, code=500, subcode=100,
                                 message=f"the store could not serve it: {exc}")
        except Exception as exc:  # a bug: still ClearML's envelope, which the SDK reads
            log.exception("%s failed", endpoint)
            return 500, envelope(endpoint, requested, actual, code=500, subcode=0,
                                 message=f"internal error: {type(exc).__name__}")
        return 200, envelope(endpoint, requested, actual, data)

    # -- credentials -------------------------------------------------------------------

    def _login(self, headers: Headers | Mapping[str, str], query: Mapping[str, str]
               ) -> dict[str, Any]:
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        user: str | None
        if scheme == "basic":
            user = self._basic(value)
        elif scheme == "bearer" and value:
            user = self._bearer(value)
        elif self.auth.enabled:
            raise Failure(401, 20, "Unauthorized (missing credentials)")
        else:
            user = None
        lifetime = TOKEN_LIFETIME
        raw = query.get("expiration_sec")
        if raw:
            try:
                lifetime = min(max(int(raw), 60), TOKEN_LIFETIME)
            except ValueError:
                raise invalid("expiration_sec", "expected an integer") from None
        now = int(time.time())
        token = jwt.encode({
            "identity": {"user": user or "workyard", "company": "workyard", "role": "user"},
            "api_version": API_VERSION, "server_version": SERVER_VERSION,
            "feature_set": "basic", "env": "workyard", "iat": now, "exp": now + lifetime,
        }, self.secret, algorithm="HS256")
        return {"token": token}

    def _basic(self, value: str) -> str | None:
        """The access key of HTTP Basic credentials whose secret is a worker token."""
        try:
            key, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Failure(401, 10, "Unauthorized (invalid credentials)") from None
        if self.auth.enabled and not self.auth.allows(secret, Role.WORKER):
            raise Failure(401, 10, "Unauthorized (invalid credentials)")
        return key or None

    def _bearer(self, token: str) -> str | None:
        """The user a bearer speaks for: one of our JWTs, or a configured worker token."""
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"])
        except jwt.ExpiredSignatureError:
            if self.auth.enabled:
                raise Failure(401, 31, "Unauthorized (expired token)") from None
            return None
        except jwt.InvalidTokenError:
            if self.auth.allows(token, Role.WORKER):  # open mode: anything goes
                return None
            raise Failure(401, 30, "Unauthorized (invalid token)") from None
        user = claims.get("identity", {}).get("user")
        return user if isinstance(user, str) else None

    def _authenticate(self, headers: Headers | Mapping[str, str], peer: str | None) -> _Caller:
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and value:
            return _Caller(self._bearer(value), peer)
        if scheme == "basic":
            return _Caller(self._basic(value), peer)
        if self.auth.enabled:
            raise Failure(401, 20, "Unauthorized (missing credentials)")
        return _Caller(None, peer)

    # -- the registry ------------------------------------------------------------------

    def _live(self, entry: _Entry, now: float) -> bool:
        """A registration counts while its worker is attached: as a heartbeat session
        of its own, or by another transport and reporting within its timeout."""
        session = self.hub.sessions.attached.get(entry.id)
        if session is None:
            return False
        return session.transport == TRANSPORT or entry.last_activity + entry.timeout > now

    def _session(self, entry: _Entry) -> Session:
        """Attach `entry` as a heartbeat session unless the hub already has the worker."""
        hub = self.hub
        session = hub.sessions.attached.get(entry.id)
        window = float(entry.timeout)
        if session is None:
            return hub.attach(entry.id, [], _RegistryLink(), transport=TRANSPORT,
                              liveness=Liveness.HEARTBEAT, window=window)
        if session.transport == TRANSPORT:
            shrank = session.window is not None and window < session.window
            session.window = window
            hub.alive(session)
            if shrank:
                hub.liveness.watch(session)
        return session

    def _timeout(self, timeout: int | None) -> float:
        if timeout is None or timeout == 0:
            return self.hub.liveness.windows[Liveness.HEARTBEAT]
        if timeout < 0 or timeout > MAX_TIMEOUT:
            raise Failure(400, 1002, "worker registration failed (invalid timeout: "
                                     f"{timeout}; 0 to {MAX_TIMEOUT} seconds)")
        return float(timeout)

    async def register(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode(_Register, body)
        _check_name(req.worker, "worker")
        now = self.hub.now()
        timeout = self._timeout(req.timeout)
        old = self.entries.get(req.worker)
        entry = _Entry(req.worker, caller.user, caller.ip, now, now, timeout,
                       queues=list(req.queues or ()), tags=list(req.tags or ()),
                       system_tags=list(req.system_tags or ()))
        if old is not None and self._live(old, now):
            entry.registered, entry.last_report = old.registered, old.last_report
        self.entries[req.worker] = entry
        self._session(entry)
        return {}

    async def unregister(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode(_Unregister, body)
        self.entries.pop(req.worker, None)
        session = self.hub.sessions.attached.get(req.worker)
        if session is not None and session.transport == TRANSPORT and session.link:
            self.hub.detach(req.worker, session.link, "unregistered (workers.unregister)")
        return {}

    async def status_report(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode_report(body)
        _check_name(req.worker, "worker")
        if req.task is not None:  # stored with the report
            _check_name(req.task, "task")
        now = self.hub.now()
        readings = _readings(req.machine_stats)
        ts = _report_ms(req.timestamp, now, self.settings.stats_retention)
        entry = self.entries.get(req.worker)
        if entry is None or not self._live(entry, now):  # unknown: registered on the fly
            entry = _Entry(req.worker, caller.user, caller.ip, now, now,
                           self.hub.liveness.windows[Liveness.HEARTBEAT],
                           queues=list(entry.queues) if entry else [],
                           tags=list(entry.tags) if entry else [])
            self.entries[req.worker] = entry
        if req.task != entry.task:
            entry.task_since = now if req.task is not None else None
        entry.task, entry.queue = req.task, req.queue
        if req.queues:
            entry.queues = list(req.queues)
        if req.tags is not None:
            entry.tags = list(req.tags)
        if req.system_tags is not None:
            entry.system_tags = list(req.system_tags)
        entry.last_activity = entry.last_report = now
        entry.user, entry.ip = caller.user or entry.user, caller.ip or entry.ip
        self._session(entry)
        await self.hub.store.stats.record(RecordStats(req.worker, ts, req.task, readings))
        return {}

    # -- reading -----------------------------------------------------------------------

    async def get_all(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode(_GetAll, body)
        now = self.hub.now()
        last_seen = 3600 if req.last_seen is None else req.last_seen
        pattern = None
        if req.worker_pattern:
            try:
                pattern = regex.compile(req.worker_pattern)
            except regex.error as exc:
                raise invalid("worker_pattern", f"not a regular expression: {exc}") from None
        deadline = time.monotonic() + PATTERN_BUDGET
        workers = []
        for session in list(self.hub.sessions):
            if session.anonymous:
                continue
            entry = self.entries.get(session.id)
            if entry is not None and not self._live(entry, now):
                entry = None
            worker = self._worker(session, entry, now)
            if last_seen and worker["_seen"] < now - last_seen:
                continue
            if pattern is not None and not _matches(pattern, session.id, deadline):
                continue
            if not (_tags_match(worker["tags"], req.tags)
                    and _tags_match(worker["system_tags"], req.system_tags)):
                continue
            del worker["_seen"]
            workers.append(worker)
        return {"workers": workers}

    def _worker(self, session: Session, entry: _Entry | None, now: float) -> dict[str, Any]:
        hub = self.hub
        queues: dict[str, dict[str, Any]] = {}
        names = [s.name for s in session.subscriptions] + (entry.queues if entry else [])
        for name in names:
            q = hub.scheduler.queues.get(name)
            queues.setdefault(name, {"id": name, "name": name,
                                     "num_tasks": q.queued if q is not None else 0})
        task = queue = None
        state = hub.scheduler.workers.get(session.id)
        running = [t for t in state.outstanding.values()] if state is not None else []
        if running:  # the hub knows best: the task it gave this worker longest ago
            current = min(running, key=lambda t: t.attempts[-1].started if t.attempts else now)
            started = current.attempts[-1].started if current.attempts else now
            task = {"id": current.id, "name": current.name,
                    "running_time": int(max(0.0, now - started))}
            queue = {"id": current.name, "name": current.name}
        elif entry is not None and entry.task is not None:
            known = hub.scheduler.tasks.get(entry.task)
            task = {"id": entry.task, "name": known.name if known else entry.task,
                    "running_time": int(now - (entry.task_since or now))}
            if entry.queue is not None:
                queue = {"id": entry.queue, "name": entry.queue}
        elif entry is not None and entry.queue is not None:
            queue = {"id": entry.queue, "name": entry.queue}
        tags = list(entry.tags) if entry else []
        for sub in session.subscriptions:
            for key, values in sorted(sub.filter.items()):
                tags += [f"{key}={v}" for v in sorted(values) if f"{key}={v}" not in tags]
        seen = max(session.last_seen, entry.last_activity if entry else 0.0)
        window = hub.liveness.window(session)
        return {
            "id": session.id,
            "user": {"id": entry.user, "name": entry.user} if entry and entry.user else None,
            "company": {"id": "workyard", "name": "workyard"},
            "ip": entry.ip if entry else None,
            "register_time": _iso(entry.registered if entry else session.connected),
            "last_activity_time": _iso(seen),
            "last_report_time": _iso(entry.last_report if entry and entry.last_report
                                     else None),
            "task": task,
            "queue": queue,
            "queues": list(queues.values()),
            "tags": tags,
            "system_tags": [f"transport:{session.transport}",
                            *(entry.system_tags if entry else [])],
            "key": f"worker_workyard_{session.id}",
            "register_timeout": int(entry.timeout if entry else
                                    window if math.isfinite(window) else 0),
            "_seen": seen,
        }

    async def get_stats(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode(_GetStats, body)
        since, until, interval = _range(req)
        aggregations: dict[str, list[str]] = {}
        for i, item in enumerate(req.items):
            chosen = item.aggregation or item.category or "avg"
            if chosen not in AGGREGATIONS:
                name = "aggregation" if item.aggregation else "category"
                raise invalid(f"items[{i}].{name}", f"expected one of avg, min, max, not "
                                                    f"{chosen!r}")
            wanted = aggregations.setdefault(item.key, [])
            if chosen not in wanted:
                wanted.append(chosen)
        # One read per set of aggregations asked, so each builds only the arrays it needs;
        # all at once (a store may run them on several connections, and cores).
        groups: dict[tuple[str, ...], list[str]] = {}
        for metric, wanted in aggregations.items():
            groups.setdefault(tuple(wanted), []).append(metric)

        def read(chosen: tuple[str, ...], metrics: list[str]) -> Callable[
                [], Awaitable[list[StatSeries]]]:
            return lambda: self.hub.store.stats.series(
                since=since, until=until, interval=interval, metrics=metrics,
                workers=req.worker_ids or None, by_variant=bool(req.split_by_variant),
                aggregations=chosen)

        rows = [row for part in await gather(*(read(*group) for group in groups.items()))
                for row in part]
        order = {m: i for i, m in enumerate(aggregations)}
        rows.sort(key=lambda r: (r.worker, order[r.metric], r.variant))
        return {"workers": _series(rows, aggregations, bool(req.split_by_variant))}

    async def get_activity_report(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode(_Range, body)
        since, until, interval = _range(req)
        rows = await self.hub.store.stats.activity(since=since, until=until, interval=interval)
        dates = [r.start for r in rows]
        return {"total": {"dates": dates, "counts": [r.workers for r in rows]},
                "active": {"dates": dates, "counts": [r.active for r in rows]}}

    async def get_metric_keys(self, body: bytes, caller: _Caller) -> dict[str, Any]:
        req = _decode(_GetMetricKeys, body)
        keys = await self.hub.store.stats.metric_keys(req.worker_ids or None)
        categories: dict[str, list[str]] = {}
        for key in keys:
            categories.setdefault(key.split("_", 1)[0], []).append(key)
        return {"categories": [{"name": name, "metric_keys": metric_keys}
                               for name, metric_keys in sorted(categories.items())]}

    # -- the actor ---------------------------------------------------------------------

    async def run(self) -> None:
        """Every `SAMPLE_EVERY` seconds: record the activity of hub workers that send no
        statistics of their own, forget lapsed registrations, and purge old samples."""
        purged_at = self.hub.now()
        while True:
            await trio.sleep(SAMPLE_EVERY)
            now = self.hub.now()
            await self.sample(now)
            for worker_id in [w for w, e in self.entries.items() if not self._live(e, now)]:
                del self.entries[worker_id]
            if now - purged_at >= self.hub.purge_interval:
                purged_at = now
                settings = self.settings
                cutoff = int((now - settings.stats_retention) * 1000)
                # rollups are kept at least as long as the raw readings they sum
                rollups = {span: min(cutoff, int((now - keep) * 1000)) for span, keep in zip(
                    SPANS, (settings.stats_5m_retention, settings.stats_1h_retention),
                    strict=True)}
                try:
                    purged = await self.hub.store.stats.purge(cutoff, rollups)
                except StoreError as exc:
                    log.error("could not purge machine statistics: %s", exc)
                else:
                    if purged:
                        log.info("purged %d machine statistics samples older than %g s",
                                 purged, self.settings.stats_retention)

    async def sample(self, now: float) -> None:
        """Record one activity report per hub worker that sent no status report since
        the previous sample: with a task if it holds one, or answered one meanwhile."""
        ts = int(now * 1000)
        states = self.hub.scheduler.workers
        answered: dict[str, int] = {}
        changes = []
        for session in self.hub.sessions:
            if session.anonymous or session.transport == TRANSPORT:
                continue
            entry = self.entries.get(session.id)
            if entry is not None and entry.last_report and entry.last_report > now - SAMPLE_EVERY:
                continue  # it reports for itself
            count = answered[session.id] = session.processed + session.failed + session.lost
            state = states.get(session.id)
            task: str | None = None
            if state is not None and state.outstanding:
                task = next(iter(state.outstanding))
            elif count != self._answered.get(session.id, count):
                task = ""  # it ran tasks since the last sample; none right now
            changes.append(RecordStats(session.id, ts, task))
        self._answered = answered
        if changes:
            try:
                await self.hub.store.commit(*changes)
            except StoreError as exc:
                log.error("could not record the activity of hub workers: %s", exc)


# -- helpers -------------------------------------------------------------------------


def _version(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor)


T = TypeVar("T")


def _decode(kind: type[T], body: bytes) -> T:
    try:
        return _decoders[kind].decode(body if body.strip() else b"{}")  # type: ignore[no-any-return]
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise _validation(exc) from None


def _check_name(value: str, name: str) -> None:
    if not value.isprintable():
        raise invalid(name, "expected printable characters")


def _report_ms(timestamp: float, now: float, retention: float) -> int:
    """A report's time in ms. Every client sends ms; a value below 1e11 (1973 in ms)
    can only be seconds, as the docs describe it. A report older than the raw retention
    is refused: it would be purged at once, and a repeat of a purged report would count
    twice in the rollups (`store._rollups`)."""
    ms = int(timestamp * 1000) if timestamp < 1e11 else int(timestamp)
    if ms > now * 1000 + MAX_AHEAD_MS:
        raise invalid("timestamp", f"{int(timestamp)} is more than a day ahead of the "
                                   f"server's clock (milliseconds since the epoch)")
    if ms < (now - retention) * 1000:
        raise invalid("timestamp", f"{int(timestamp)} is older than the statistics' raw "
                                   f"retention ({retention:g} s, --stats-retention)")
    return ms


def _decode_report(body: bytes) -> _StatusReport:
    """A status report decoded in one go; if that fails, again with each metric's value
    decoded on its own, checked in the order of `status_report` and `_readings`, so
    that the error names the field (the first bad metric, or its name)."""
    try:
        return _decoders[_StatusReport].decode(body if body.strip() else b"{}")  # type: ignore[no-any-return]
    except (msgspec.ValidationError, msgspec.DecodeError):
        raw = _decode(_RawStatusReport, body)
    _check_name(raw.worker, "worker")
    fields = msgspec.structs.asdict(raw)
    fields["machine_stats"] = _decode_stats(raw.machine_stats)
    return _StatusReport(**fields)


def _decode_stats(stats: dict[str, msgspec.Raw] | None) -> dict[str, Reading] | None:
    """Each metric's value decoded on its own, after its name is checked, so that an
    error names the metric."""
    if not stats:
        return None
    _check_count(stats)
    decoded: dict[str, Reading] = {}
    for metric, raw in stats.items():
        _check_metric(metric)
        try:
            decoded[metric] = _reading.decode(raw)  # floats: msgspec turns integers into floats
        except msgspec.ValidationError as exc:
            match = _AT.match(str(exc))
            assert match is not None
            raise invalid(f"machine_stats.{metric[:64]}" + (match["path"] or ""),
                          match["detail"].replace("`", "")) from None
    return decoded


def _check_count(stats: dict[str, Any]) -> None:
    if len(stats) > MAX_METRICS:
        raise invalid("machine_stats", f"at most {MAX_METRICS} metrics, not {len(stats)}")


def _check_metric(metric: str) -> None:
    if not _metric_name(metric):
        raise invalid(f"machine_stats.{metric[:64]}",
                      "a metric name is 1 to 64 letters, digits, '_', '.' or '-'")


def _readings(stats: dict[str, Reading] | None) -> list[tuple[str, str, float]]:
    """A report's machine stats as (metric, variant, value): "total" for a number, the
    index for each element of a list. Nulls are skipped; zeros are readings."""
    if not stats:
        return []
    _check_count(stats)
    readings: list[tuple[str, str, float]] = []
    for metric, value in stats.items():
        _check_metric(metric)
        if value is None:
            continue
        if type(value) is list:
            readings += [(metric, _VARIANTS[i], v) for i, v in enumerate(value)
                         if v is not None]
        else:
            readings.append((metric, "total", value))  # type: ignore[arg-type]
    return readings


#: a list element's variant by its index
_VARIANTS = tuple(str(i) for i in range(MAX_VARIANTS))


@functools.lru_cache(maxsize=4096)
def _metric_name(metric: str) -> bool:
    """Whether `metric` is a valid name (a fleet sends the same few again and again)."""
    return _METRIC.fullmatch(metric) is not None


def _range(req: _Range) -> tuple[int, int, int]:
    if req.from_date >= req.to_date:
        raise Failure(400, 16, f"invalid time range: from_date ({req.from_date:g}) must be "
                               f"before to_date ({req.to_date:g})")
    if (req.to_date - req.from_date) / req.interval > MAX_POINTS:
        raise invalid("interval", f"{req.interval} s gives more than {MAX_POINTS} points "
                                  "between from_date and to_date")
    return int(req.from_date * 1000), int(req.to_date * 1000), req.interval * 1000


def _matches(pattern: regex.Pattern[str], worker: str, deadline: float) -> bool:
    """Whether `pattern` is found in `worker`, within what is left of the budget (the
    `regex` library stops a match at a timeout; `re` would run it to its end)."""
    try:
        return pattern.search(worker, timeout=max(deadline - time.monotonic(), 1e-3)) \
            is not None
    except TimeoutError:
        raise invalid("worker_pattern", f"matching it took over {PATTERN_BUDGET:g} s "
                                        "(it backtracks): write it more simply") from None


def _tags_match(tags: Sequence[str], wanted: Sequence[str] | None) -> bool:
    """Any listed tag matches; `-tag` excludes."""
    if not wanted:
        return True
    include = [t for t in wanted if not t.startswith("-")]
    exclude = {t[1:] for t in wanted if t.startswith("-")}
    if exclude.intersection(tags):
        return False
    return not include or any(t in tags for t in include)


def _series(rows: list[StatSeries], aggregations: dict[str, list[str]],
            split: bool) -> list[dict[str, Any]]:
    """Store series as get_stats' answer: per worker, per metric (and variant if split),
    dates in ms and one value list per aggregation. The store's JSON arrays go into the
    answer as they are (`msgspec.Raw`): no Python work per point."""
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        pick = {"avg": r.avg, "min": r.low, "max": r.high}
        series: dict[str, Any] = {"metric": r.metric}
        if split:
            series["variant"] = r.variant
        series["dates"] = msgspec.Raw(r.dates.encode())
        series["stats"] = [{"aggregation": a, "values": msgspec.Raw(pick[a].encode())}
                           for a in aggregations[r.metric]]
        by_worker.setdefault(r.worker, []).append(series)
    return [{"worker": worker, "metrics": by_worker[worker]} for worker in sorted(by_worker)]


# -- the routes ------------------------------------------------------------------------


def add_clearml_routes(app: QuartTrio, clearml: ClearML) -> None:
    """`/<service>.<action>` and `/v<X.Y>/<service>.<action>` for ClearML's services, on
    the fast lane (`http/_lane.py`): the front door answers them without quart."""
    services = ", ".join(SERVICES)
    lane: Lane = app.extensions["workyard.lane"]

    @app.before_serving
    async def start() -> None:
        clearml.hub.start_soon(clearml.run)

    async def endpoint(request: LaneRequest) -> LaneResponse:
        service, action = request.view_args["service"], request.view_args["action"]
        version = request.view_args.get("version")
        try:
            body = await request.body()
        except HTTPException as exc:  # too large, or too slow: ClearML's envelope
            code = exc.code or 400
            message = (f"the request body is too large (at most {clearml.settings.max_body} "
                       "bytes)" if code == 413 else f"the request body: {exc.description}")
            return LaneResponse(code, envelope(f"{service}.{action}", version or API_VERSION,
                                               API_VERSION, code=code, subcode=0,
                                               message=message),
                                headers=[("Connection", "close")])
        status, data = await clearml.handle(service, action, version, request.headers, body,
                                            request.args, request.remote_addr)
        return LaneResponse(status, data)

    for pattern in (f"/<any({services}):service>.<action>",
                    f"/v<version>/<any({services}):service>.<action>"):
        lane.route(("GET", "POST", "PUT"), pattern)(endpoint)
