"""Locust users that play a worker fleet and its producers against a real hub.

They run under gevent in locust's processes, so they speak the wire protocols
with plain clients (websocket-client, locust's FastHttpUser) and import no trio
code. `user_classes(plan)` turns each worker group and producer stream of a
plan into a concrete User class with a `fixed_count`.

Latency reaches locust's own statistics through request events, so its tables,
charts and CSVs show them beside the HTTP requests:

* type `dispatch`, named by task: the producer's submit → a worker received it;
* type `e2e`, named by task: the producer's submit → the producer holds the
  final result (a task that ended failed counts as a failure);
* type `WS` / `poll`: worker connections, churn drops and protocol errors.

Both are measured from the submit time the producer puts in the task's data
(`{"t": epoch seconds}`); producers and workers share the machine's clock.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlencode, urlsplit

import gevent
import gevent.event
import gevent.pool
import websocket
from locust import FastHttpUser, User, task
from locust.env import Environment

from .plan import Plan, Stream, WorkerGroup

__all__ = ["Clock", "PollingWorker", "Producer", "WebSocketWorker", "user_classes"]

FINAL_STATES = frozenset({"done", "failed", "cancelled"})
#: result long-polls a producer keeps open at once; results beyond go unobserved
#: by locust (the hub-side figures still count them)
MAX_RESULT_WAITS = 500
#: seconds one result long-poll may wait at the hub before asking again
RESULT_WAIT = 10.0
#: tasks in one POST /tasks (the hub's limit)
MAX_BATCH = 1000


class Clock:
    """When this process's arrivals began (the scenario's time 0); producers, result
    waits and the drain watcher read it."""

    started: float | None = None
    plan: Plan | None = None

    @classmethod
    def start(cls, plan: Plan) -> None:
        cls.plan, cls.started = plan, time.time()

    @classmethod
    def hard_end(cls) -> float:
        assert cls.started is not None and cls.plan is not None
        return cls.started + cls.plan.duration + cls.plan.drain


class TaskFailed(Exception):
    """A task ended failed or cancelled; shown in locust's failure table."""


def _fire(env: Environment, kind: str, name: str, seconds: float,
          exception: Exception | None = None) -> None:
    env.events.request.fire(request_type=kind, name=name, response_time=seconds * 1000.0,
                            response_length=0, exception=exception, context={})


def _submitted_at(data: Any) -> float | None:
    t = data.get("t") if isinstance(data, dict) else None
    return t if isinstance(t, (int, float)) else None


_instances = itertools.count(1)


class _Worker:
    """What both worker transports share: identity, service time, injected errors."""

    group: ClassVar[WorkerGroup]
    environment: Environment

    def _setup_worker(self) -> None:
        self.worker_id = self.group.worker_id(os.getpid(), next(_instances))
        self.rng = random.Random()

    def _received(self, frame_data: Any, name: str) -> float | None:
        submitted = _submitted_at(frame_data)
        if submitted is not None:
            _fire(self.environment, "dispatch", name, time.time() - submitted)
        return submitted

    def _work(self, submitted: float | None) -> tuple[bool, Any]:
        """Spend the service time; returns (ok, result data or error text)."""
        gevent.sleep(self.group.service.sample(self.rng))
        if self.rng.random() < self.group.error_rate:
            return False, "injected error"
        return True, {"t": submitted, "by": self.worker_id}

    def _uptime(self) -> float | None:
        """Seconds until this connection drops (None: it doesn't)."""
        churn = self.group.churn
        return None if churn is None else self.rng.expovariate(1.0 / churn.mtbf)

    def _downtime(self) -> float:
        churn = self.group.churn
        return 0.0 if churn is None else churn.reconnect.sample(self.rng)


class WebSocketWorker(_Worker, User):
    """A worker on `GET /work/queue`: declares its subscriptions in the first message,
    runs up to `capacity` tasks at once, and drops its connection as its churn says.
    """

    abstract = True

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._setup_worker()
        parts = urlsplit(self.host or "")
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urlencode({"worker_id": self.worker_id, "capacity": self.group.capacity})
        self.url = f"{scheme}://{parts.netloc}/work/queue?{query}"
        self.declarations = json.dumps(
            [{"name": s.name, "filter": s.filter} for s in self.group.subscriptions])

    def wait_time(self) -> float:
        return self._downtime()

    @task
    def connection(self) -> None:
        """One connection's life: connect, declare, work until it ends."""
        began = time.perf_counter()
        try:
            ws = websocket.create_connection(self.url, timeout=10, enable_multithread=True)
            ws.send(self.declarations)
        except (OSError, websocket.WebSocketException) as exc:
            _fire(self.environment, "WS", "connect", time.perf_counter() - began, exc)
            gevent.sleep(1.0)
            return
        _fire(self.environment, "WS", "connect", time.perf_counter() - began)
        ws.settimeout(None)
        handlers = gevent.pool.Group()
        dropped = False

        def drop() -> None:  # a crash: no answers, no close frame
            nonlocal dropped
            dropped = True
            handlers.kill()
            _fire(self.environment, "WS", "disconnect (churn)", 0.0)
            ws.shutdown()

        uptime = self._uptime()
        dropper = None if uptime is None else gevent.spawn_later(uptime, drop)
        try:
            while True:
                message = json.loads(ws.recv())
                if "task_id" not in message:
                    _fire(self.environment, "WS", "hub error frame", 0.0,
                          RuntimeError(str(message.get("error", message))[:200]))
                    continue
                handlers.spawn(self._handle, ws, message)
        except (OSError, websocket.WebSocketException, json.JSONDecodeError) as exc:
            if not dropped:
                _fire(self.environment, "WS", "connection lost", 0.0, exc)
        finally:
            if dropper is not None:
                dropper.kill()
            handlers.kill()
            ws.shutdown()

    def _handle(self, ws: websocket.WebSocket, message: dict[str, Any]) -> None:
        submitted = self._received(message.get("data"), message.get("task_name", "?"))
        ok, outcome = self._work(submitted)
        answer = ({"task_id": message["task_id"], "result": "done", "data": outcome} if ok
                  else {"task_id": message["task_id"], "result": "error", "error": outcome})
        try:
            ws.send(json.dumps(answer))
        except (OSError, websocket.WebSocketException):
            pass  # the receive loop reports the broken connection


class PollingWorker(_Worker, FastHttpUser):
    """A worker on `POST /v1/queue/{queue}` (one subscription) with `capacity` slots,
    polling as the simulator's polling workers do.

    While it has free slots it holds a poll open for up to `poll.wait` s, asking
    for up to `poll.max` of them; it polls again at once after a poll that brought
    tasks and after `poll.interval` s after an empty one. Every finished task is
    reported at once: with the next poll when the worker was full and about to
    poll anyway, else in a report-only poll (`max=0`). A churn drop loses what is
    running and ends its leases with `DELETE /w/{queue}`, as the simulator's
    detach does; the worker comes back under the same id.
    """

    abstract = True
    network_timeout = 90.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._setup_worker()
        sub = self.group.subscriptions[0]
        self.query = {k: ",".join(v) for k, v in sub.filter.items()}
        self.queue = sub.name
        self.reports: list[dict[str, Any]] = []
        self.running = gevent.pool.Group()
        #: tasks in hand (not `len(self.running)`: a finished handler leaves the group late)
        self.busy = 0
        self.slot_freed = gevent.event.Event()
        self.full = False

    def wait_time(self) -> float:
        return self._downtime()

    @task
    def connection(self) -> None:
        """Poll until a churn drop."""
        uptime = self._uptime()
        until = math.inf if uptime is None else time.time() + uptime
        while time.time() < until:
            self._poll_once(until)
        self.running.kill()
        self.busy, self.reports = 0, []
        self.client.delete(f"/w/{self.queue}?{urlencode({'worker_id': self.worker_id})}",
                           name="DELETE /w/{queue} (churn)")

    def _poll_once(self, until: float) -> None:
        poll, capacity = self.group.poll, self.group.capacity
        left = until - time.time()
        free = capacity - self.busy
        if free <= 0:
            self.full = True
            self.slot_freed.wait(left)
            self.slot_freed.clear()
            self.full = False
            return
        reports, self.reports = self.reports, []
        tasks = self._post(reports, min(free, poll.max or free), min(poll.wait, left))
        if tasks is None:
            gevent.sleep(min(poll.interval, left))
            return
        self.busy += len(tasks)
        for t in tasks:
            self.running.spawn(self._handle, t)
        if not tasks:
            gevent.sleep(min(poll.interval, max(0.0, until - time.time())))

    def _post(self, reports: list[dict[str, Any]], room: int,
              wait: float) -> list[dict[str, Any]] | None:
        """One poll; returns the tasks it brought, or None if it failed. Reports that may
        not have arrived (no answer, 5xx) are kept for the next poll; a 4xx names bad
        reports and applies the others, so none are sent again."""
        query = urlencode({**self.query, "max": str(room), "wait": f"{max(wait, 0.0):.3f}"})
        with self.client.post(f"/v1/queue/{self.queue}?{query}", json={"tasks": reports},
                              headers={"X-Worker-Id": self.worker_id},
                              name=f"poll {self.queue}" if room else f"report {self.queue}",
                              catch_response=True) as resp:
            if resp.status_code == 204:
                return []
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                if resp.status_code == 0 or resp.status_code >= 500:
                    self.reports = reports + self.reports
                return None
            return resp.json().get("tasks", [])

    def _handle(self, t: dict[str, Any]) -> None:
        submitted = self._received(t.get("data"), t.get("name", "?"))
        ok, outcome = self._work(submitted)
        report = ({"_id": t["_id"], "status": "done", "result": outcome} if ok
                  else {"_id": t["_id"], "status": "failed", "error": outcome})
        self.busy -= 1
        if self.full:  # the worker polls as soon as this slot frees: the report rides along
            self.reports.append(report)
            self.slot_freed.set()
        else:
            self._post([report], 0, 0.0)


class Producer(FastHttpUser):
    """Submits its share of a stream's arrivals, every `window` seconds in one batched
    POST, while the test submits; waits for every result with a long-poll per task.

    A stream's only producer draws with the simulator's seed, so it submits the very
    tasks the simulator submits for the same scenario, at the same instants (to
    within `window`).
    """

    abstract = True
    stream: ClassVar[Stream]
    #: the stream's position in the plan's workload
    index: ClassVar[int]
    ids_dir: ClassVar[str]
    seed: ClassVar[int]
    concurrency = MAX_RESULT_WAITS + 4
    network_timeout = RESULT_WAIT + 30.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        alone = self.stream.producers == 1
        self.rng = random.Random(f"{self.seed}:arrivals:{self.index}" if alone else None)
        self.waits = gevent.pool.Pool(MAX_RESULT_WAITS)
        self.done_submitting = False

    def wait_time(self) -> float:
        return 0.05

    @task
    def produce(self) -> None:
        """The whole submitting phase in one go; afterwards only results are awaited."""
        if self.done_submitting or Clock.started is None or Clock.plan is None:
            return
        self.done_submitting = True
        stream, start = self.stream, Clock.started
        arrivals = stream.arrivals(self.rng, Clock.plan.duration, 1.0 / stream.producers)
        upcoming = next(arrivals, None)
        tick = start
        while upcoming is not None:
            tick = max(tick + stream.window, time.time())
            gevent.sleep(max(0.0, tick - time.time()))
            due: list[dict[str, Any]] = []
            while upcoming is not None and start + upcoming[0] <= tick:
                _, attrs, priority = upcoming
                due.append({"name": stream.name, "attrs": attrs, "priority": priority,
                            "timeout": stream.timeout, "retries": stream.retries})
                upcoming = next(arrivals, None)
            for first in range(0, len(due), MAX_BATCH):
                self._submit(due[first:first + MAX_BATCH])

    def _submit(self, tasks: list[dict[str, Any]]) -> None:
        submitted = time.time()
        for t in tasks:
            t["data"] = {"t": submitted}
        with self.client.post("/tasks", json={"tasks": tasks}, name="POST /tasks",
                              catch_response=True) as resp:
            if resp.status_code != 201:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
                return
            ids: list[str] = resp.json()["ids"]
        _record_ids(self.ids_dir, ids)
        for task_id in ids:
            if self.waits.full():  # never stall the arrivals: this result goes unobserved
                _fire(self.environment, "producer", "result not awaited (too many waiting)", 0.0)
                continue
            self.waits.spawn(self._await_result, task_id, submitted)

    def _await_result(self, task_id: str, submitted: float) -> None:
        while time.time() < Clock.hard_end():
            resp = self.client.get(f"/tasks/{task_id}?wait={RESULT_WAIT:g}",
                                   name="GET /tasks/{id}?wait")
            if resp.status_code != 200:
                gevent.sleep(0.5)
                continue
            found = resp.json()
            if found.get("state") in FINAL_STATES:
                failed = (None if found["state"] == "done"
                          else TaskFailed(f"{found['state']}: {found.get('error')}"))
                _fire(self.environment, "e2e", self.stream.name, time.time() - submitted,
                      failed)
                return


_ids_file: Any = None


def _record_ids(folder: str, ids: list[str]) -> None:
    """Append accepted ids to this process's file, so the runner can check every one."""
    global _ids_file
    if not folder:
        return
    if _ids_file is None:
        _ids_file = open(Path(folder) / f"{os.getpid()}.txt", "a", encoding="ascii")  # noqa: SIM115
    _ids_file.write("\n".join(ids) + "\n")
    _ids_file.flush()


def _class_name(prefix: str, group: str) -> str:
    return prefix + re.sub(r"\W", "_", group)


def user_classes(plan: Plan) -> list[type[User]]:
    """One User class per fleet group and per workload stream, with their counts."""
    classes: list[type[User]] = []
    for group in plan.fleet:
        base: type[User] = WebSocketWorker if group.transport == "websocket" else PollingWorker
        classes.append(type(_class_name("Worker_", group.name), (base,),
                            {"group": group, "fixed_count": group.count, "abstract": False}))
    for i, stream in enumerate(plan.workload):
        classes.append(type(_class_name(f"Producer{i}_", stream.name), (Producer,),
                            {"stream": stream, "index": i, "ids_dir": plan.ids_dir,
                             "seed": plan.seed, "fixed_count": stream.producers,
                             "abstract": False}))
    return classes
