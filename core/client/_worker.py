"""The WebSocket worker client: connect, declare, run handlers, reconnect.

One connection at a time. While it lasts, a receive loop moves task frames into
a local queue and `concurrency` runner tasks take jobs from it and send the
answers back: the answers that are ready while one is being sent go out together
in the next frame, as a JSON array (`_Answers`), so a busy worker pays for a
frame per batch rather than per task. The hub never pushes more than `capacity`
tasks (which defaults to `concurrency`), so the local queue stays short. When the connection is lost
the runners are cancelled and the local queue is dropped: the hub has already
rescheduled every task this worker held, so finishing them would be wasted work.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable
from functools import partial
from urllib.parse import urlencode, urlsplit, urlunsplit

import msgspec
import trio
import trio.lowlevel
from trio_websocket import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from .._errors import POLICY_VIOLATION
from ..protocol import MAX_BATCH, MAX_FRAME, ErrorFrame, decode_hub_frame
from ._handlers import H, Handlers, Job
from ._machine import report_stats
from ._urls import HubURLs

__all__ = ["Worker", "WorkerRejected", "ws_url"]

log = logging.getLogger("workyard.client")

_encode = msgspec.json.Encoder().encode


class _Answers:
    """Answers on their way to the hub over one connection.

    The runner that finds no send in progress sends, after one scheduler round: the
    runners finishing in the same round (the tasks of one frame, typically) hand
    theirs over meanwhile, and they go together. Answers handed over while a frame is
    out wait in `_ready` too, for the next one. Each frame is an array if it holds
    more than one answer. No sender task, so a lone answer costs no extra hop.
    """

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._ready: list[dict[str, object]] = []
        self._sending = False

    async def send(self, answer: dict[str, object]) -> None:
        """Send `answer` (now, or with the frame after the one going out). Raises
        ConnectionClosed if the connection is gone."""
        self._ready.append(answer)
        if self._sending:
            return  # the runner sending now takes it along next
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            while self._ready:
                ready, self._ready = self._ready, []
                await self._ws.send_message(
                    _encode(ready[0] if len(ready) == 1 else ready).decode())
        finally:
            self._sending = False


class WorkerRejected(Exception):
    """The hub refused this worker for a reason that reconnecting will not fix."""


def ws_url(url: str, path: str, params: dict[str, str]) -> str:
    """`http://host:port[/prefix]` → `ws://host:port[/prefix]/path?params` (https → wss)."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"the hub URL must start with http://, https://, ws:// or wss://: {url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + path, urlencode(params), ""))


def default_worker_id() -> str:
    """Stable for this process, so a reconnect takes over the previous connection's place."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """A worker that takes tasks from a hub over a WebSocket.

        worker = Worker("http://127.0.0.1:8470", concurrency=8)

        @worker.handler("tag", cloud=["aws", "gcp"])
        async def tag(job: Job) -> dict:
            return {"ok": True}

        await worker.run()
    """

    def __init__(
        self,
        url: str | list[str],
        *,
        worker_id: str | None = None,
        token: str | None = None,
        concurrency: int = 8,
        capacity: int | None = None,
        handlers: Handlers | None = None,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        report_stats: float | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be 1 or more")
        if capacity is not None and capacity < 0:
            raise ValueError("capacity must be 0 (unlimited) or more")
        #: the hubs it may connect to (several hubs on one database: any of them relays
        #: to the leader); it moves on to the next when a connection fails or ends
        self.urls = HubURLs(url)
        self.worker_id = worker_id or default_worker_id()
        self.token = token
        self.concurrency = concurrency
        #: tasks the hub may push before we answer; 0 lets the hub push without limit
        self.capacity = concurrency if capacity is None else capacity
        self.handlers = handlers if handlers is not None else Handlers()
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        if report_stats is not None and report_stats <= 0:
            raise ValueError("report_stats must be a positive number of seconds")
        #: seconds between machine-stats reports to the hub's ClearML registry; None: none
        self.report_stats = report_stats
        #: handlers running right now
        self.running = 0
        #: connections made so far (the first one included)
        self.connections = 0
        self._queue: trio.MemoryReceiveChannel[Job] | None = None

    @property
    def url(self) -> str:
        """The hub URL it connects to now."""
        return self.urls.current

    def handler(self, name: str, **filter: str | list[str]) -> Callable[[H], H]:
        """Decorator registering an async handler for task `name` (see `Handlers.handler`)."""
        return self.handlers.handler(name, **filter)

    @property
    def queued(self) -> int:
        """Tasks received on the current connection and not yet started."""
        return 0 if self._queue is None else self._queue.statistics().current_buffer_used

    def backoff(self, failures: int) -> float:
        """Seconds to wait before reconnect number `failures` (0-based): exponential, jittered."""
        ceiling = min(self.backoff_max, self.backoff_min * 2.0 ** min(failures, 32))
        return ceiling * random.uniform(0.5, 1.0)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Work until cancelled, reconnecting whenever the connection is lost.

        `task_status.started()` fires once the first connection is open and declared.
        Raises `WorkerRejected` if the hub refuses this worker outright. Cancelling
        it cancels the running handlers and closes the socket; the hub sees the
        close and reschedules their tasks at once.
        """
        if not self.handlers:
            raise ValueError("register at least one handler before running the worker")
        if self.report_stats is None:
            await self._connect(task_status)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(
                report_stats, self.url, self.worker_id, self.token, self.report_stats,
                [s.name for s in self.handlers.subscriptions],
                lambda: next(iter(self.handlers.current), None)))
            await self._connect(task_status)
            nursery.cancel_scope.cancel()

    async def _connect(self, task_status: trio.TaskStatus[None]) -> None:
        """The connection loop of `run`. With several hub URLs, a failed or ended
        connection moves on to the next URL; once each was tried, it backs off."""
        # `max`: tasks already waiting for us come as one JSON array frame (a workyard
        # extension), which costs hub and worker one frame per batch, not per task
        per_frame = min(MAX_BATCH, self.capacity or self.concurrency)
        params = {"worker_id": self.worker_id, "capacity": str(self.capacity),
                  "max": str(per_frame)}
        headers = [(b"Authorization", f"Bearer {self.token}".encode())] if self.token else []
        failures = 0
        while True:
            url = ws_url(self.url, "/work/queue", params)
            try:
                async with open_websocket_url(url, extra_headers=headers,
                                              max_message_size=MAX_FRAME) as ws:
                    failures = 0
                    why = await self._serve(ws, task_status)
                    task_status = trio.TASK_STATUS_IGNORED
            except ConnectionRejected as exc:
                if 400 <= exc.status_code < 500 and exc.status_code not in (408, 429):
                    raise WorkerRejected(_rejection(exc)) from None
                why = _rejection(exc)
            except (HandshakeError, ConnectionClosed, OSError) as exc:
                why = f"{type(exc).__name__}: {exc.__cause__ or exc}"
            delay = self.backoff(failures // len(self.urls))
            failures += 1
            if len(self.urls) > 1:
                if failures % len(self.urls):
                    delay = min(delay, self.backoff_min / 10)  # the next hub, at once
                self.urls.advance()
            log.warning("worker %s: %s; reconnecting to %s in %.2fs", self.worker_id, why,
                        self.url, delay)
            await trio.sleep(delay)

    async def _serve(self, ws: WebSocketConnection, task_status: trio.TaskStatus[None]) -> str:
        """Run one connection until it closes; returns why it closed."""
        declaration = [s.to_json() for s in self.handlers.subscriptions]
        await ws.send_message(_encode(declaration).decode())
        self.connections += 1
        log.info("worker %s connected to %s (concurrency %d, capacity %s)", self.worker_id,
                 self.url, self.concurrency, self.capacity or "unlimited")
        task_status.started()
        put, take = trio.open_memory_channel[Job](math.inf)
        self._queue = take
        try:
            answers = _Answers(ws)
            async with trio.open_nursery() as nursery:
                for _ in range(self.concurrency):
                    nursery.start_soon(self._run_jobs, answers, take)
                closed = await self._receive(ws, put)
                nursery.cancel_scope.cancel()
        finally:
            self._queue = None
        if closed.code == POLICY_VIOLATION:  # a refusal: reconnecting will not change it
            raise WorkerRejected(f"hub closed the connection: {closed.reason}")
        return f"connection closed ({closed.code} {closed.reason or closed.name})"

    async def _receive(self, ws: WebSocketConnection,
                       put: trio.MemorySendChannel[Job]) -> CloseReason:
        """Move task frames into the local queue until the connection closes."""
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed as exc:
                return exc.reason or CloseReason(1006, "connection lost")
            try:
                message = decode_hub_frame(frame)
                if isinstance(message, ErrorFrame):
                    log.warning("worker %s: the hub reports an error: %s", self.worker_id,
                                message.error)
                    continue
                for job in [Job.from_frame(task) for task in message]:
                    put.send_nowait(job)
            except (msgspec.DecodeError, ValueError) as exc:
                log.warning("worker %s: ignoring a malformed frame from the hub (%s): %.200r",
                            self.worker_id, exc, frame)

    async def _run_jobs(self, answers: _Answers,
                        take: trio.MemoryReceiveChannel[Job]) -> None:
        async for job in take:
            self.running += 1
            try:
                answer = await self.handlers.run(job)
            finally:
                self.running -= 1
            try:
                await answers.send(answer)
            except ConnectionClosed:
                return  # the receive loop sees the close and ends the connection


def _rejection(exc: ConnectionRejected) -> str:
    body = (exc.body or b"").decode(errors="replace")
    try:
        body = str(msgspec.json.decode(exc.body or b"")["error"])
    except (msgspec.DecodeError, KeyError, TypeError):
        pass
    return f"hub refused the connection: HTTP {exc.status_code} {body}".rstrip()
