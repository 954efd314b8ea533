"""HTTP polling workers (seed 002, Katar) and presque-style worker routes (seed 004).

Polling workers are scheduler workers with transport "polling": the same
matching, spread and counters as WebSocket workers, in one fleet.

    GET  /v1/queue/{queue}                → 200 {"configuration": {"interval": ms, ...}}
    PUT  /v1/queue/{queue}/configuration  (admin) replace a queue's application settings
    POST /v1/queue/{queue}                report finished tasks and/or take new ones
    POST /w/{queue}, DELETE /w/{queue}, GET /w/…   presque's worker registry and counters

A poll is `{}` (or `{"tasks": [{"_id", "status": "done"|"failed", "error"?,
"result"?}]}`, reports applied first) → 200 `{"tasks": [{"_id", "data", "name",
"attrs", "timeout"}]}` or 204. Beyond the seed: `worker_id` (body, `X-Worker-Id`
header or query), filters as query parameters (`?cloud=aws,gcp`, as on the
WebSocket), `max` tasks per poll (default 1, at most 100; 0 only reports and
keeps the worker alive) and `wait` seconds of long poll (at most 60), in the
query or the body.

Identity. A named poller of queue Q is the scheduler worker "{worker_id}@{Q}": it
stays attached between polls with no room, so it keeps its leases, and each poll
opens room for `max` tasks; a waiting poll is an idle candidate like an open
WebSocket. One worker id may poll several queues; the presque views add its
queues (and a WebSocket worker of the same id) together. Polling a queue with
other filters re-attaches the worker, which is refused (409) while it holds
leases taken under the old filters.

Anonymous pollers (seed 002 clients send no identity). Each anonymous poll is an
ephemeral worker "anonymous-poll-…", attached for the poll and kept while it holds
leases. A report without an id is accepted for a task one of whose attempts
went to an anonymous poller (the most recent such attempt answers). An anonymous
poller cannot prove it is alive, so its leases end only at the task's timeout.
Named ids may not start with "anonymous-".

Leases. A dispatched task is leased for its `timeout`: the hub's queue actors
reschedule it when it runs out, exactly as for a lost WebSocket worker. A named
poller with no poll open whose last request is older than `poll_liveness` is
detached and its leases rescheduled; so is one whose long poll is cut off after
tasks were handed to it. A report that comes after its lease ended is a late
answer: the first valid answer wins.

Bad reports (malformed entry, bad status, "failed" without error, unknown task,
task not leased to this worker) get a 4xx naming each task and problem; the
good entries of the same request still apply, and no new tasks are handed out.
A report for a task that is already final and was leased to this worker is a
harmless duplicate, not an error.

presque registry. Registration is optional and only feeds the views: `POST /w/Q`
records when the worker started and that it works on Q; `DELETE /w/Q` ends it
and detaches the poller "{worker_id}@Q" (its leases are rescheduled at once: the
worker said it is done). Counters are the hub's own: the live scheduler
counters of the worker's pollers and WebSocket connection, plus, for a
registered worker, those of its pollers detached since it registered.

Queue configurations are stored with the tasks and survive a restart.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth, Role
from .._config import Settings
from .._errors import Conflict, InvalidInput, NotFound
from .._model import Subscription, Task
from ..http import json_response, require
from ..hub import Hub
from ..protocol import (
    MAX_BATCH,
    MAX_NAME,
    MAX_POLL_TASKS,
    MAX_POLL_WAIT,
    Answer,
    PollBody,
    PolledTask,
    Registration,
    Report,
    error_text,
    filters_from_query,
)
from ..scheduling import WorkerState

__all__ = ["PollingFleet", "add_polling_routes"]

log = logging.getLogger("workyard.polling")

#: the seed's default polling interval, in milliseconds
DEFAULT_INTERVAL_MS = 30_000
ANONYMOUS = "anonymous-poll-"
WORKER_HEADER = "X-Worker-Id"
PRESQUE_HEADER = "X-presque-workerid"


_poll_body = msgspec.json.Decoder(PollBody)
_report = msgspec.json.Decoder(Report)
_registration = msgspec.json.Decoder(Registration)
_any = msgspec.json.Decoder()


def _error_text(raw: msgspec.Raw) -> str | None:
    """A report's `error`: a string as is, any other JSON value as its JSON text."""
    value = _any.decode(raw)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else bytes(raw).decode()


def _entry_id(raw: msgspec.Raw) -> str | None:
    """The `_id` of a report entry that is otherwise malformed, to name it in the error."""
    try:
        value = _any.decode(raw)
    except msgspec.DecodeError:
        return None
    task_id = value.get("_id") if isinstance(value, dict) else None
    return str(task_id) if isinstance(task_id, (str, int)) else None


def _name(value: str, what: str) -> str:
    if not value or len(value) > MAX_NAME or not value.isprintable():
        raise InvalidInput(f"{what} must be 1 to {MAX_NAME} printable characters, not {value!r}")
    return value


def worker_name(value: str) -> str:
    _name(value, "`worker_id`")
    if value.startswith("anonymous-"):
        raise InvalidInput("`worker_id` must not start with 'anonymous-' (reserved for "
                       "pollers without an identity)")
    return value


def _bounded(body_value: float | None, name: str, default: float, high: float) -> float:
    raw: Any = body_value if body_value is not None else request.args.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"`{name}` must be a number, not {raw!r}") from None
    if math.isnan(value) or not 0 <= value <= high:
        raise InvalidInput(f"`{name}` must be between 0 and {high:g}")
    return value


# --- pollers ---------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Poll:
    """One open poll: what was dispatched into it, and how it ended if cut short."""

    tasks: list[Task] = field(default_factory=list)
    wake: trio.Event = field(default_factory=trio.Event)
    #: the worker was detached meanwhile: its tasks were rescheduled, not ours to hand out
    gone: str | None = None


class _Poller:
    """The hub's `Link` to one polling worker: a worker id on one queue, or one anonymous poll."""

    __slots__ = ("key", "last_seen", "poll", "queue", "subscriptions", "unclaimed", "worker_id")

    def __init__(self, key: str, worker_id: str | None, queue: str,
                 subscriptions: list[Subscription], now: float) -> None:
        #: the scheduler's worker id
        self.key = key
        #: the worker's own id; None for an anonymous poller
        self.worker_id = worker_id
        self.queue = queue
        self.subscriptions = subscriptions
        self.last_seen = now
        self.poll: _Poll | None = None
        #: tasks delivered with no poll open (the scheduler never does that; kept, not lost)
        self.unclaimed: list[Task] = []

    def deliver(self, task: Task) -> None:
        if self.poll is None:
            self.unclaimed.append(task)
            return
        self.poll.tasks.append(task)
        self.poll.wake.set()

    def close(self, reason: str) -> None:
        if self.poll is not None:
            self.poll.gone = reason
            self.poll.wake.set()
            self.poll = None


@dataclass(slots=True)
class _Registered:
    """A presque registration, with the counts of the worker's pollers detached since."""

    started_at: float
    queues: set[str] = field(default_factory=set)
    processed: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one report entry was refused: its HTTP status, its task (if named) and the reason."""

    status: int
    task_id: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"_id": self.task_id, "status": self.status, "error": self.message}


def _subscription_key(subs: list[Subscription]) -> set[Any]:
    return {s.key for s in subs}


class PollingFleet:
    """Polling workers, presque registrations and queue configurations of one hub."""

    def __init__(self, hub: Hub, liveness: float) -> None:
        self.hub = hub
        self.liveness = liveness
        #: by scheduler worker id
        self.pollers: dict[str, _Poller] = {}
        self.registered: dict[str, _Registered] = {}
        self.configuration: dict[str, dict[str, Any]] = {}
        self._anonymous = itertools.count(1)
        self._prefix = os.urandom(3).hex()
        self._sweeping = False

    # -- attach and detach ------------------------------------------------------------

    def attach(self, worker_id: str | None, queue: str, subs: list[Subscription]) -> _Poller:
        """The poller for `worker_id` on `queue`, attached if it was not (a fresh one if anonymous)."""
        now = self.hub.now()
        if worker_id is None:
            key = f"{ANONYMOUS}{self._prefix}-{next(self._anonymous)}"
        else:
            key = f"{worker_id}@{queue}"
            poller = self.pollers.get(key)
            if poller is not None:
                if self._state(poller) is not None:
                    poller.last_seen = now
                    return poller
                del self.pollers[key]  # displaced by a connection that took over its id
        taken = self.hub.scheduler.workers.get(key)
        if taken is not None:
            raise Conflict(f"worker id {key!r} is in use by a "
                           f"{self.hub.transports.get(key, 'websocket')} worker")
        poller = _Poller(key, worker_id, queue, subs, now)
        self.hub.attach(key, subs, poller, capacity=0, transport="polling")
        self.pollers[key] = poller
        if not self._sweeping:
            self._sweeping = True
            self.hub.start_soon(self._sweep)
        return poller

    def resubscribe(self, poller: _Poller, subs: list[Subscription]) -> _Poller:
        """The poller with filters `subs`: re-attached if they changed and it holds no leases."""
        if _subscription_key(poller.subscriptions) == _subscription_key(subs):
            return poller
        held = self._state(poller)
        if held is not None and held.outstanding:
            raise Conflict(f"worker {poller.worker_id!r} holds {len(held.outstanding)} "
                           f"leased {poller.queue!r} task(s) taken with other filters; report "
                           "them before changing filters, or poll with another worker_id")
        self.drop(poller, "re-attached with other filters")
        return self.attach(poller.worker_id, poller.queue, subs)

    def drop(self, poller: _Poller, reason: str) -> None:
        """Detach a poller: its leases are rescheduled; a registered worker keeps its counts."""
        poller.close(reason)
        state = self._state(poller)
        registered = self.registered.get(poller.worker_id or "")
        if state is not None and registered is not None:
            counts = self.hub.worker_counts[poller.key]
            registered.processed += counts.processed
            registered.failed += counts.failed
        if self.pollers.get(poller.key) is poller:
            del self.pollers[poller.key]
        self.hub.detach(poller.key, poller)
        if poller.worker_id is not None:
            log.info("polling worker %s on %s detached: %s", poller.worker_id, poller.queue,
                     reason)

    def _state(self, poller: _Poller) -> WorkerState | None:
        """The scheduler's view of `poller` (None once detached or displaced)."""
        state = self.hub.scheduler.workers.get(poller.key)
        polling = self.hub.transports.get(poller.key) == "polling"
        return state if state is not None and polling else None

    def _release_anonymous(self, key: str) -> None:
        """An anonymous poller holding nothing and not polling has no reason to stay."""
        poller = self.pollers.get(key)
        if poller is None or poller.poll is not None:
            return
        state = self._state(poller)
        if state is None or not state.outstanding:
            self.drop(poller, "nothing left to report")

    async def _sweep(self) -> None:
        """Detaches named pollers silent for `liveness` seconds and idle anonymous ones."""
        while True:
            now = self.hub.now()
            soonest = now + self.liveness
            for poller in list(self.pollers.values()):
                if poller.poll is not None:
                    continue
                if poller.worker_id is None:
                    self._release_anonymous(poller.key)
                    continue
                due = poller.last_seen + self.liveness
                if due <= now:
                    self.drop(poller, f"no poll for {self.liveness:g} s; its leases are "
                              "rescheduled")
                else:
                    soonest = min(soonest, due)
            # Never rescan more often than 20 times a window, however many pollers.
            await trio.sleep(max(soonest - now, self.liveness / 20))

    # -- polls --------------------------------------------------------------------------

    async def take(self, poller: _Poller, room: int, wait: float) -> list[Task]:
        """Open a poll for up to `room` tasks; wait up to `wait` s for the first one."""
        if poller.poll is not None:  # a newer poll from the same worker supersedes it
            old, poller.poll = poller.poll, None
            self.hub.close_poll(poller.key, poller.queue)
            old.wake.set()
        poll = poller.poll = _Poll(tasks=poller.unclaimed[:room])
        del poller.unclaimed[:room]
        try:
            if room > len(poll.tasks):
                self.hub.open_poll(poller.key, poller.queue, room - len(poll.tasks))
            if not poll.tasks and wait > 0 and poll.gone is None:
                with trio.move_on_after(wait):
                    await poll.wake.wait()
        except trio.Cancelled:  # the client went away (or we stop): nobody will see these
            if poll.tasks and poll.gone is None:
                self.drop(poller, "its poll was cut off with tasks in it")
            raise
        finally:
            if poller.poll is poll:
                poller.poll = None
                self.hub.close_poll(poller.key, poller.queue)
            poller.last_seen = self.hub.now()
        if poll.gone is not None:
            raise Conflict(f"this poll ended: {poll.gone}")
        if poller.worker_id is None and not poll.tasks:
            self._release_anonymous(poller.key)
        return poll.tasks

    # -- reports ------------------------------------------------------------------------

    def _answerer(self, task: Task, worker_id: str | None) -> str | None:
        """The scheduler worker whose attempt at `task` this reporter may answer, if any."""
        if worker_id is None:
            return next((a.worker for a in reversed(task.attempts)
                         if a.worker.startswith(ANONYMOUS)), None)
        key = f"{worker_id}@{task.name}"
        return key if any(a.worker == key for a in task.attempts) else None

    async def report(self, worker_id: str | None, entries: list[msgspec.Raw]) -> list[Problem]:
        """Apply each report that is valid; return the problems with the others."""
        problems: list[Problem] = []
        whose = "an anonymous poller" if worker_id is None else f"worker {worker_id!r}"
        for i, raw in enumerate(entries):
            try:
                entry = _report.decode(raw)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                named = _entry_id(raw)
                where = f"tasks[{i}]" if named is None else f"tasks[{i}] (task {named!r})"
                problems.append(Problem(400, named, f"{where}: {error_text(exc)}"))
                continue
            task_id = str(entry.id)
            if entry.status not in ("done", "failed"):
                problems.append(Problem(400, task_id, f"task {task_id!r}: status must be "
                                        f"\"done\" or \"failed\", not {entry.status!r}"))
                continue
            error = _error_text(entry.error)
            if entry.status == "failed" and error is None:
                problems.append(Problem(400, task_id, f"task {task_id!r}: a \"failed\" report "
                                        "needs a non-empty `error`"))
                continue
            task = self.hub.scheduler.tasks.get(task_id)
            if task is None:  # final, or never existed
                final = await self.hub.get(task_id)
                if final is None:
                    problems.append(Problem(404, task_id, f"task {task_id!r}: no such task"))
                elif self._answerer(final, worker_id) is None:
                    problems.append(Problem(409, task_id, f"task {task_id!r}: not leased to "
                                            f"{whose}"))
                continue  # else a late duplicate of a task that is already final
            key = self._answerer(task, worker_id)
            if key is None:
                problems.append(Problem(409, task_id, f"task {task_id!r}: not leased to {whose}"))
                continue
            ok = entry.status == "done"
            ignored = self.hub.answer(key, Answer(task_id, "done" if ok else "error",
                                                  data=entry.result, error=error))
            if ignored is not None:  # cannot happen after the checks above; say so if it does
                problems.append(Problem(409, task_id, f"task {task_id!r}: {ignored}"))
            elif worker_id is None:
                self._release_anonymous(key)
        return problems

    # -- presque views ------------------------------------------------------------------

    def register(self, worker_id: str, queue: str) -> None:
        entry = self.registered.setdefault(worker_id, _Registered(started_at=self.hub.now()))
        entry.queues.add(queue)

    def unregister(self, worker_id: str, queue: str) -> None:
        entry = self.registered.get(worker_id)
        poller = self.pollers.get(f"{worker_id}@{queue}")
        if poller is not None:
            self.drop(poller, "unregistered (DELETE /w/)")
        if entry is not None:
            entry.queues.discard(queue)
            if not entry.queues:
                del self.registered[worker_id]

    def _owner(self, key: str) -> str | None:
        """The worker id behind a scheduler worker (None for anonymous pollers)."""
        poller = self.pollers.get(key)
        return key if poller is None else poller.worker_id

    def worker_ids(self) -> list[str]:
        owners = {owner for key in self.hub.scheduler.workers
                  if (owner := self._owner(key)) is not None}
        return sorted(owners | set(self.registered))

    def worker_view(self, worker_id: str) -> dict[str, Any] | None:
        live = [w for key, w in self.hub.scheduler.workers.items()
                if self._owner(key) == worker_id]
        counts = [self.hub.worker_counts[w.id] for w in live]
        entry = self.registered.get(worker_id)
        if entry is None and not live:
            return None
        started = entry.started_at if entry is not None else min(w.connected for w in live)
        return {
            "worker_id": worker_id,
            "started_at": int(started),
            "processed": (entry.processed if entry else 0) + sum(c.processed for c in counts),
            "failed": (entry.failed if entry else 0) + sum(c.failed for c in counts),
        }

    def queue_view(self, queue: str) -> dict[str, Any]:
        q = self.hub.scheduler.queues.get(queue)
        counts = self.hub.queue_counts.get(queue)
        workers = {self._owner(key) for key in (q.workers if q is not None else ())}
        workers |= {wid for wid, e in self.registered.items() if queue in e.queues}
        workers.discard(None)
        return {
            "queue_name": queue,
            "workers_list": sorted(workers),  # type: ignore[type-var]
            "processed": counts.processed if counts is not None else 0,
            "failed": counts.failed if counts is not None else 0,
        }

    def queue_configuration(self, queue: str) -> dict[str, Any]:
        return {"interval": DEFAULT_INTERVAL_MS, **self.configuration.get(queue, {})}


# --- routes ----------------------------------------------------------------------------


def _problem_response(problems: list[Problem], total: int) -> Response:
    statuses = {p.status for p in problems}
    status = statuses.pop() if len(statuses) == 1 else 400
    shown = "; ".join(p.message for p in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return json_response({
        "error": f"{len(problems)} of {total} reports rejected: {shown}{more}",
        "rejected": [p.to_json() for p in problems],
        "accepted": total - len(problems),
    }, status)


def _worker_id(body_value: str | None, *headers: str) -> str | None:
    """The worker's id from the body, else the first of `headers`, else `?worker_id=`."""
    candidates = [body_value, *(request.headers.get(h) for h in headers),
                  request.args.get("worker_id")]
    value = next((c for c in candidates if c is not None), None)
    return None if value is None else worker_name(value)


def add_polling_routes(app: QuartTrio, hub: Hub, settings: Settings) -> PollingFleet:
    auth = Auth(settings)
    fleet = PollingFleet(hub, settings.poll_liveness)
    app.extensions["workyard.polling"] = fleet

    @app.before_serving
    async def load_configurations() -> None:
        stored = await hub.store.queues.configurations()
        fleet.configuration.update(
            {queue: msgspec.json.decode(raw) for queue, raw in stored.items()})

    @app.get("/v1/queue/")
    @app.post("/v1/queue/")
    async def no_queue() -> Response:
        raise InvalidInput("the queue name is missing: use /v1/queue/{queue}")

    @app.get("/v1/queue/<queue>")
    async def configuration(queue: str) -> Response:
        require(auth, Role.WORKER)
        return json_response({"configuration": fleet.queue_configuration(_name(queue, "queue"))})

    @app.put("/v1/queue/<queue>/configuration")
    async def set_configuration(queue: str) -> Response:
        require(auth, Role.ADMIN)
        _name(queue, "queue")
        try:
            settings_ = msgspec.json.decode(await request.get_data(cache=False),
                                            type=dict[str, Any])
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidInput(f"the configuration must be a JSON object: {exc}") from None
        interval = settings_.get("interval", DEFAULT_INTERVAL_MS)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise InvalidInput("`interval` must be a positive number of milliseconds")
        await hub.store.queues.configure(queue, msgspec.json.encode(settings_))
        fleet.configuration[queue] = settings_
        return json_response({"configuration": fleet.queue_configuration(queue)})

    @app.post("/v1/queue/<queue>")
    async def poll(queue: str) -> Response:
        require(auth, Role.WORKER)
        _name(queue, "queue")
        raw = await request.get_data(cache=False)
        try:
            body = _poll_body.decode(raw) if raw.strip() else PollBody()
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise InvalidInput("the body must be a JSON object such as {} or "
                           f"{{\"tasks\": [...]}}: {error_text(exc)}") from None
        if len(body.tasks) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} reports per request, not {len(body.tasks)}")
        worker_id = _worker_id(body.worker_id, WORKER_HEADER)
        room = _bounded(body.max, "max", 1, MAX_POLL_TASKS)
        if room != int(room):
            raise InvalidInput("`max` must be a whole number")
        wait = _bounded(body.wait, "wait", 0.0, MAX_POLL_WAIT)
        try:
            subs = [Subscription.of(queue, filters_from_query(request.args))]
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

        poller = fleet.attach(worker_id, queue, subs) if worker_id is not None else None
        problems = await fleet.report(worker_id, body.tasks)
        if problems:
            return _problem_response(problems, len(body.tasks))
        if room == 0:
            return Response("", status=204)
        if poller is None:
            poller = fleet.attach(None, queue, subs)
        else:
            poller = fleet.resubscribe(poller, subs)
        tasks = await fleet.take(poller, int(room), wait)
        if not tasks:
            return Response("", status=204)
        return json_response({"tasks": [PolledTask.of(t) for t in tasks]})

    @app.post("/w/<queue>")
    async def register(queue: str) -> Response:
        require(auth, Role.WORKER)
        _name(queue, "queue")
        raw = await request.get_data(cache=False)
        try:
            body = _registration.decode(raw) if raw.strip() else Registration()
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            if PRESQUE_HEADER not in request.headers:
                raise InvalidInput(f"the body must be {{\"worker_id\": \"...\"}}: "
                               f"{error_text(exc)}") from None
            body = Registration()
        worker_id = _worker_id(body.worker_id, PRESQUE_HEADER, WORKER_HEADER)
        if worker_id is None:
            raise InvalidInput("`worker_id` is missing: send {\"worker_id\": \"...\"} or an "
                           f"{PRESQUE_HEADER} header")
        fleet.register(worker_id, queue)
        return Response("", status=201)

    @app.delete("/w/<queue>")
    async def unregister(queue: str) -> Response:
        require(auth, Role.WORKER)
        _name(queue, "queue")
        worker_id = _worker_id(None, PRESQUE_HEADER, WORKER_HEADER)
        if worker_id is None:
            raise InvalidInput("`worker_id` is missing: DELETE /w/{queue}?worker_id=...")
        fleet.unregister(worker_id, queue)
        return Response("", status=204)

    @app.get("/w")
    @app.get("/w/")
    @app.get("/w/<queue>")
    async def views(queue: str | None = None) -> Response:
        require(auth, Role.ANY)
        worker_id = request.args.get("worker_id")
        if worker_id:
            view = fleet.worker_view(worker_id)
            if view is None:
                raise NotFound(f"no worker {worker_id!r}")
            return json_response(view)
        queue = queue or request.args.get("queue_name")
        if queue:
            return json_response(fleet.queue_view(_name(queue, "queue")))
        return json_response(fleet.worker_ids())

    return fleet
