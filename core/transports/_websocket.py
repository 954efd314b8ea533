"""WebSocket workers at `GET /work/queue` (seed 000), on any WebSocket server.

The protocol is written once, in `serve_worker`, against two small interfaces:
`WorkerUpgrade` (the upgrade request: query, headers, accept or refuse with an
HTTP status) and `WorkerSocket` (an accepted connection: receive, send, close).
One server carries it, trio + wsproto (`_lean.py`), for WebSocket workers on the main
port and on the optional worker port alike; the interfaces keep the protocol apart
from that server's details.

Each connection is an actor: a nursery holding a sender (hub → worker frames)
and the receive loop (worker answers). However the connection ends — the peer
closes, a ping goes unanswered, the server shuts down, the same worker id
reconnects — the nursery unwinds and `finally` detaches the worker, which
reschedules everything it held in that same step.

Beyond seed 000, a worker may pass `max=N` (1 to 1000): the hub then sends JSON
arrays of up to N task objects per frame, as many as are waiting, which spares
the per-frame cost of the stack under load. Answers may be arrays whatever `max`.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import trio
from werkzeug.datastructures import Headers, MultiDict

from .._auth import Auth, Role, bearer
from .._errors import Conflict, InvalidInput, Unauthorized, Unavailable, WorkyardError
from .._model import Subscription, Task
from ..hub import Hub, Session
from ..protocol import (
    FIRST_MESSAGE_TIMEOUT,
    MAX_BATCH,
    MAX_NAME,
    Authorization,
    TaskFrame,
    check_declaration,
    check_worker_id,
    declared_pool,
    decode_answers,
    decode_declarations,
    encode,
    error_frame,
    subscriptions_from_query,
)

__all__ = ["FRAMES", "FrameCounts", "WorkerSocket", "WorkerUpgrade", "new_worker_id", "serve_worker"]

log = logging.getLogger("workyard.ws")

_ids = itertools.count(1)
_prefix = os.urandom(3).hex()


def new_worker_id() -> str:
    return f"worker-{_prefix}-{next(_ids)}"


class WorkerSocket(Protocol):
    """An accepted WebSocket, as the worker protocol uses it."""

    async def receive(self) -> str | bytes:
        """The next message. Raises (or is cancelled) once the connection has ended."""

    async def send(self, frame: str | bytes) -> None:
        """Send one text frame (`bytes`: text already encoded as UTF-8)."""

    async def close(self, code: int, reason: str) -> None:
        """Close with `code` and `reason`, without waiting long for a dead peer."""

    async def ping(self) -> None:
        """Send a ping; return once the peer's pong arrives (perhaps never)."""


class WorkerUpgrade(Protocol):
    """A WebSocket upgrade request for `/work/queue`, not yet answered."""

    #: query parameters
    args: MultiDict[str, str]
    #: request headers, looked up case-insensitively
    headers: Headers

    async def refuse(self, status: int, body: bytes) -> None:
        """Answer the upgrade with an HTTP error (a JSON `body`) instead of accepting it."""

    async def accept(self) -> WorkerSocket:
        """Complete the upgrade."""


@dataclass(slots=True)
class FrameCounts:
    """WebSocket worker frames this process received and sent (for /metrics)."""

    received: int = 0
    sent: int = 0


FRAMES = FrameCounts()


class _Connection:
    """The hub's link to one WebSocket worker."""

    def __init__(self, socket: WorkerSocket, per_frame: int = 0) -> None:
        self.socket = socket
        #: 0: one task object per frame (seed 000); n: JSON arrays of up to n tasks
        self.per_frame = per_frame
        #: tasks delivered and not yet framed, oldest first
        self._outbox: deque[Task] = deque()
        self._delivered = trio.Event()
        self.scope: trio.CancelScope | None = None
        self.closed_because: str | None = None

    def deliver(self, task: Task) -> None:
        self._outbox.append(task)
        self._delivered.set()

    def close(self, reason: str) -> None:
        self.closed_because = reason
        if self.scope is not None:
            self.scope.cancel()

    async def send_tasks(self) -> None:
        """Frames out what the hub delivers: everything delivered by the time it wakes
        (with `per_frame`, in as few frames as that allows), then it waits again."""
        outbox = self._outbox
        while True:
            await self._delivered.wait()
            self._delivered = trio.Event()
            while outbox:
                if self.per_frame:
                    batch = [outbox.popleft() for _ in range(min(self.per_frame, len(outbox)))]
                    frame = encode([TaskFrame.of(t) for t in batch])
                else:
                    frame = encode(TaskFrame.of(outbox.popleft()))
                if not frame.isascii():
                    # the edge admits UTF-8 only; "replace" keeps a task stored before
                    # that from failing every worker it goes to
                    frame = frame.decode("utf-8", "replace").encode()
                await self.socket.send(frame)
                FRAMES.sent += 1


def _whole_number(raw: str | None, name: str, low: int, high: int | None = None) -> int | None:
    """A query parameter as a whole number within bounds; None when absent."""
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"`{name}` must be a whole number, not {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"{low} or more" if high is None else f"{low} to {high}"
        raise InvalidInput(f"`{name}` must be {bounds}")
    return value


def _refusal(exc: Exception) -> WorkyardError:
    """What to tell the worker: a WorkyardError as it is, any other ValueError (the
    model's and the scheduler's checks) as invalid input."""
    return exc if isinstance(exc, WorkyardError) else InvalidInput(str(exc))


async def _first_messages(socket: WorkerSocket, auth: Auth, authorized: bool,
                          subscriptions: list[Subscription], pool: list[str | None]
                          ) -> list[Subscription]:
    """Read first messages until the worker is authorized and has declared its tasks (and,
    in `pool`, the worker pool and group the declaration names, unless the query did)."""
    while not authorized or not subscriptions:
        what = "authorization" if not authorized else "task declarations"
        try:
            with trio.fail_after(FIRST_MESSAGE_TIMEOUT):
                frame = await socket.receive()
                first = decode_declarations(frame)
        except trio.TooSlowError:
            late = Unauthorized if not authorized else InvalidInput
            raise late(f"no {what} received in time") from None
        if isinstance(first, Authorization):
            authorized = auth.allows(first.bearer, Role.WORKER)
            if not authorized:
                raise Unauthorized("invalid worker token")
        elif not authorized:
            raise Unauthorized("authorization required first")
        else:
            subscriptions = first
            if pool[0] is None:
                pool[:] = declared_pool(frame)
    return subscriptions


async def serve_worker(upgrade: WorkerUpgrade, hub: Hub, auth: Auth) -> None:
    """The whole life of one worker connection: check the upgrade, read the first
    messages, attach, relay tasks and answers, and detach however it ends."""
    args = upgrade.args
    token = bearer(upgrade.headers, args)
    authorized = auth.allows(token, Role.WORKER)
    try:
        if token is not None and not authorized:
            raise Unauthorized("invalid worker token")
        raw_id = args.get("worker_id")
        worker_id = new_worker_id() if raw_id is None else check_worker_id(raw_id)
        subscriptions = check_declaration(subscriptions_from_query(args))
        capacity = _whole_number(args.get("capacity"), "capacity", 0)  # 0: unlimited
        # `max`: tasks per frame; given, every frame is a JSON array (a workyard extension)
        per_frame = _whole_number(args.get("max"), "max", 1, MAX_BATCH) or 0
        # `worker_pool`/`worker_group`: Taskcluster's worker pool (checked before the
        # upgrade when in the query, so a draining pool refuses with a 400)
        pool: list[str | None] = [args.get("worker_pool") or None,
                                  args.get("worker_group") or None]
        if pool[0] is not None:
            hub.pools.admit(pool[0], pool[1], args.get("worker_id") or "worker-0")
    except (WorkyardError, ValueError) as exc:
        refusal = _refusal(exc)
        await upgrade.refuse(refusal.status, encode(refusal.body()))
        return

    socket = await upgrade.accept()
    conn = _Connection(socket, per_frame)
    try:
        subscriptions = await _first_messages(socket, auth, authorized, subscriptions, pool)
        session = hub.attach(worker_id, subscriptions, conn, capacity=capacity,
                             worker_pool=pool[0], worker_group=pool[1])
    except (WorkyardError, ValueError) as exc:
        refusal = _refusal(exc)
        log.info("worker %s refused: %s", worker_id, refusal.message)
        await socket.close(refusal.close_code, refusal.reason)
        return
    try:
        async with trio.open_nursery() as nursery:
            conn.scope = nursery.cancel_scope
            nursery.start_soon(conn.send_tasks)
            nursery.start_soon(_prove_alive, socket, hub, session)
            while True:
                frame = await socket.receive()
                FRAMES.received += 1
                try:
                    answers = decode_answers(frame)
                except ValueError as exc:
                    log.warning("worker %s sent a malformed frame: %s", worker_id, exc)
                    await socket.send(error_frame(f"malformed frame: {exc}"))
                    continue
                for answer in answers:
                    if hub.answer(worker_id, answer) is not None:
                        await _tell_if_not_ours(socket, hub, worker_id, answer.task_id)
    finally:
        hub.detach(worker_id, conn, conn.closed_because or "connection closed")
    if conn.closed_because:  # the hub dropped it: another connection took over its id, or
        # the hub stopped leading (then the worker should come back: try again later)
        displaced = (Conflict if hub.leading else Unavailable)(conn.closed_because)
        await socket.close(displaced.close_code, displaced.reason)


async def _tell_if_not_ours(socket: WorkerSocket, hub: Hub, worker_id: str,
                            task_id: str) -> None:
    """An ignored answer gets an error frame when its task is unknown or was never this
    worker's (a silent drop hides a worker's bug); a late answer for a task this worker
    held, now final (cancelled, timed out, answered), is the usual race and stays quiet."""
    task = hub.scheduler.tasks.get(task_id) or await hub.get(task_id)
    shown = repr(task_id[:MAX_NAME])
    if task is None:
        await socket.send(error_frame(f"answer ignored: no task {shown}"))
    elif not any(a.worker == worker_id for a in task.attempts):
        await socket.send(error_frame(f"answer ignored: task {shown} was never assigned "
                                      f"to worker {worker_id!r}"))


async def _prove_alive(socket: WorkerSocket, hub: Hub, session: Session) -> None:
    """Ping every `ping_interval`; each pong is proof of life for the hub's liveness
    watch, which drops the worker once none came for ping_interval + ping_timeout."""
    while True:
        await trio.sleep(hub.ping_interval)
        await socket.ping()
        hub.alive(session)
