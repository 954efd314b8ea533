"""The HTTP polling worker client: for when a worker cannot hold a WebSocket.

It speaks the hub's polling routes (seed 002 plus workyard's extensions): one
lane per task name keeps a long poll parked while it has free slots, runs the
tasks it gets with at most `concurrency` handlers at once, and reports each
finished task at once in a new poll, which supersedes the parked one on the hub,
so a result never waits for a poll to come back. While every slot is busy, a
report-only request every `heartbeat` seconds keeps the worker inside the hub's
liveness window. A failed request is retried with backoff and its reports are
sent again (a duplicate report is harmless). On stop, unsent reports go out and
`DELETE /w/{queue}` hands back whatever the worker still holds, so the hub
reschedules it at once instead of waiting for leases to run out.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import trio

from .._model import Subscription
from ..protocol import MAX_POLL_TASKS, MAX_POLL_WAIT, PolledBatch, PolledTask
from ._handlers import H, Handlers, Job
from ._machine import report_stats
from ._urls import RETRY_STATUSES, HubURLs
from ._worker import WorkerRejected, default_worker_id

__all__ = ["PollingWorker"]

log = logging.getLogger("workyard.client")

_batch = msgspec.json.Decoder(PolledBatch)
_error_body = msgspec.json.Decoder(dict[str, Any])


def _report(answer: dict[str, Any]) -> dict[str, Any]:
    """A `Handlers.run` answer as a seed 002 report entry."""
    if answer["result"] == "done":
        return {"_id": answer["task_id"], "status": "done", "result": answer.get("data")}
    return {"_id": answer["task_id"], "status": "failed", "error": answer.get("error") or "error"}


@dataclass(eq=False)
class _Lane:
    """One task name's polling loop state."""

    subscription: Subscription
    limiter: trio.CapacityLimiter
    #: tasks received and not yet finished
    held: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)
    #: a poll with room is out (the newest one is `generation`)
    parked: bool = False
    generation: int = 0
    last_sent: float = -math.inf
    failures: int = 0
    retry_at: float = -math.inf
    changed: trio.Event = field(default_factory=trio.Event)
    ready: trio.Event = field(default_factory=trio.Event)
    jobs: trio.Nursery | None = None

    @property
    def path(self) -> str:
        return f"/v1/queue/{quote(self.subscription.name, safe='')}"

    @property
    def params(self) -> dict[str, str]:
        return {k: ",".join(sorted(v)) for k, v in self.subscription.filter.items()}


class PollingWorker:
    """A worker that takes tasks from a hub by HTTP long polling.

        worker = PollingWorker("http://127.0.0.1:8470", concurrency=8)

        @worker.handler("tag", cloud=["aws", "gcp"])
        async def tag(job: Job) -> dict:
            return {"ok": True}

        await worker.run()

    `concurrency` is per task name. One filter per task name: the hub leases by
    worker id and queue (use a second worker for a second filter).
    """

    def __init__(
        self,
        url: str | list[str],
        *,
        worker_id: str | None = None,
        token: str | None = None,
        concurrency: int = 8,
        handlers: Handlers | None = None,
        wait: float = 30.0,
        heartbeat: float = 15.0,
        timeout: float = 10.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        report_stats: float | None = None,
    ) -> None:
        if not 1 <= concurrency <= MAX_POLL_TASKS:
            raise ValueError(f"concurrency must be 1 to {MAX_POLL_TASKS}")
        if not 0 <= wait <= MAX_POLL_WAIT:
            raise ValueError(f"wait must be 0 to {MAX_POLL_WAIT:g} seconds")
        if heartbeat <= 0:
            raise ValueError("heartbeat must be positive (and below the hub's poll liveness)")
        #: the hubs it may poll (several hubs on one database: any of them relays to the
        #: leader); a poll that fails for want of a hub moves on to the next
        self.urls = HubURLs(url)
        self.worker_id = worker_id or default_worker_id()
        self.token = token
        self.concurrency = concurrency
        self.handlers = handlers if handlers is not None else Handlers()
        self.wait = wait
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        if report_stats is not None and report_stats <= 0:
            raise ValueError("report_stats must be a positive number of seconds")
        #: seconds between machine-stats reports to the hub's ClearML registry; None: none
        self.report_stats = report_stats
        self._lanes: list[_Lane] = []
        self._scope: trio.CancelScope | None = None
        self._rejected: WorkerRejected | None = None

    def handler(self, name: str, **filter: str | list[str]) -> Callable[[H], H]:
        """Decorator registering an async handler for task `name` (see `Handlers.handler`)."""
        return self.handlers.handler(name, **filter)

    @property
    def running(self) -> int:
        """Tasks received and not yet finished, over all task names."""
        return sum(lane.held for lane in self._lanes)

    def backoff(self, failures: int) -> float:
        """Seconds to wait before retry number `failures` (0-based): exponential, jittered."""
        ceiling = min(self.backoff_max, self.backoff_min * 2.0 ** min(failures, 32))
        return ceiling * random.uniform(0.5, 1.0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work until cancelled. `task_status.started()` fires once the hub knows every lane.

        Raises `WorkerRejected` if the hub refuses this worker (token, filters, id).
        """
        subs = self.handlers.subscriptions
        if not subs:
            raise ValueError("register at least one handler before running the worker")
        names = [s.name for s in subs]
        if len(set(names)) != len(names):
            raise ValueError("a polling worker takes one filter per task name; run another "
                             "PollingWorker (another worker_id) for another filter")
        self._lanes = [_Lane(s, trio.CapacityLimiter(self.concurrency)) for s in subs]
        self._rejected = None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = httpx.Timeout(self.timeout, read=self.timeout + self.wait)
        async with httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout) as client:
            try:
                async with trio.open_nursery() as nursery:
                    self._scope = nursery.cancel_scope
                    for lane in self._lanes:
                        nursery.start_soon(self._drive, client, lane)
                    if self.report_stats is not None:
                        nursery.start_soon(partial(
                            report_stats, self.url, self.worker_id, self.token,
                            self.report_stats, names,
                            lambda: next(iter(self.handlers.current), None)))
                    for lane in self._lanes:
                        await lane.ready.wait()
                    log.info("polling worker %s on %s: %s (concurrency %d per task)",
                             self.worker_id, self.url, ", ".join(names), self.concurrency)
                    task_status.started()
            finally:
                if self._rejected is None:
                    with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                        await self._goodbye(client)
        if self._rejected is not None:
            raise self._rejected

    # -- one lane -------------------------------------------------------------------------

    async def _drive(self, client: httpx.AsyncClient, lane: _Lane) -> None:
        async with trio.open_nursery() as jobs:
            lane.jobs = jobs
            while not lane.ready.is_set():  # a report-only hello attaches us and checks the token
                await self._exchange(client, lane, [], 0, None)
                await trio.sleep_until(lane.retry_at)
            while True:
                now = trio.current_time()
                room = max(0, self.concurrency - lane.held)
                idle_too_long = not lane.parked and now - lane.last_sent >= self.heartbeat
                if now >= lane.retry_at and (lane.reports or (room and not lane.parked)
                                             or idle_too_long):
                    reports, lane.reports = lane.reports, []
                    generation = None
                    if room:
                        lane.parked, lane.generation = True, lane.generation + 1
                        generation = lane.generation
                    lane.last_sent = now
                    jobs.start_soon(self._exchange, client, lane, reports, room, generation)
                if now < lane.retry_at:
                    deadline = lane.retry_at
                elif lane.parked:
                    deadline = math.inf
                else:
                    deadline = lane.last_sent + self.heartbeat
                with trio.move_on_at(deadline):
                    await lane.changed.wait()
                lane.changed = trio.Event()

    async def _exchange(self, client: httpx.AsyncClient, lane: _Lane,
                        reports: list[dict[str, Any]], room: int, generation: int | None) -> None:
        """One request: send `reports`, ask for up to `room` tasks, start what comes back."""
        body = {"worker_id": self.worker_id, "tasks": reports, "max": room,
                "wait": self.wait if room else 0}
        try:
            response = await client.post(lane.path, params=lane.params,
                                         content=msgspec.json.encode(body))
        except httpx.HTTPError as exc:
            self._next_hub(client)
            self._retry(lane, reports, f"{type(exc).__name__}: {exc}")
        else:
            if response.status_code in RETRY_STATUSES:
                self._next_hub(client)
            self._handle(lane, response, reports)
        finally:
            if generation is not None and generation == lane.generation:
                lane.parked = False
            lane.changed.set()

    def _handle(self, lane: _Lane, response: httpx.Response, reports: list[dict[str, Any]]) -> None:
        status = response.status_code
        if status in (200, 204):
            try:
                tasks = _batch.decode(response.content).tasks if status == 200 else []
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._retry(lane, [], f"malformed response from the hub: {exc}")
                return
            lane.failures = 0
            lane.ready.set()
            for polled in tasks:
                lane.held += 1
                assert lane.jobs is not None
                lane.jobs.start_soon(self._run_job, lane, polled)
            return
        try:
            error = _error_body.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError):
            error = {"error": response.text[:200]}
        if "rejected" in error:  # some reports were refused for good: say which, go on
            lane.ready.set()
            for problem in error["rejected"]:
                log.warning("worker %s: the hub refused the report for task %s: %s",
                            self.worker_id, problem.get("_id"), problem.get("error"))
            return
        message = f"HTTP {status} {error.get('error', '')}".rstrip()
        if status in (400, 401, 403, 404) or (status == 409 and "in use" in message):
            self._stop(WorkerRejected(f"hub refused worker {self.worker_id}: {message}"))
        else:  # 409 (a poll cut short), 429, 5xx: try again
            self._retry(lane, reports, message)

    @property
    def url(self) -> str:
        """The hub URL it polls now."""
        return self.urls.current

    def _next_hub(self, client: httpx.AsyncClient) -> None:
        if len(self.urls) > 1 and str(client.base_url).rstrip("/") == self.url:
            client.base_url = self.urls.advance()

    def _retry(self, lane: _Lane, reports: list[dict[str, Any]], why: str) -> None:
        lane.reports[:0] = reports
        delay = self.backoff(lane.failures)
        lane.failures += 1
        lane.retry_at = trio.current_time() + delay
        log.warning("worker %s (%s): %s; retrying in %.2fs", self.worker_id,
                    lane.subscription.name, why, delay)

    def _stop(self, exc: WorkerRejected) -> None:
        if self._rejected is None:
            self._rejected = exc
        if self._scope is not None:
            self._scope.cancel()

    async def _run_job(self, lane: _Lane, polled: PolledTask) -> None:
        try:
            job = Job.from_polled(polled)
        except msgspec.DecodeError as exc:  # the hub relays valid JSON; report it if not
            answer = {"task_id": polled.id, "result": "error", "error": f"undecodable data: {exc}"}
        else:
            async with lane.limiter:
                answer = await self.handlers.run(job)
        lane.held -= 1
        lane.reports.append(_report(answer))
        lane.changed.set()

    async def _goodbye(self, client: httpx.AsyncClient) -> None:
        """Send unsent reports, then leave each queue so the hub reschedules what we held."""
        for lane in self._lanes:
            try:
                if lane.reports:
                    await client.post(lane.path, params=lane.params, content=msgspec.json.encode(
                        {"worker_id": self.worker_id, "tasks": lane.reports, "max": 0}))
                    lane.reports = []
                await client.delete(f"/w/{quote(lane.subscription.name, safe='')}",
                                    params={"worker_id": self.worker_id})
            except httpx.HTTPError as exc:
                log.info("worker %s: could not say goodbye on %s: %s", self.worker_id,
                         lane.subscription.name, exc)
