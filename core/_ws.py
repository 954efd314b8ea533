"""WebSocket workers at `GET /work/queue` (seed 000).

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
import math
import os

import trio
from quart import Response, websocket
from quart_trio import QuartTrio

from ._auth import Auth, Role, bearer
from ._hub import Hub
from ._model import Subscription, Task
from ._wire import (
    MAX_BATCH,
    Authorization,
    TaskFrame,
    decode_answers,
    decode_declarations,
    encode,
    error_frame,
    subscriptions_from_query,
)
from ._app import json_response

__all__ = ["add_websocket_routes"]

log = logging.getLogger("workyard.ws")

#: seconds a client has to send its first message (declarations or authorization)
FIRST_MESSAGE_TIMEOUT = 30.0
POLICY_VIOLATION = 1008

_ids = itertools.count(1)
_prefix = os.urandom(3).hex()


def new_worker_id() -> str:
    return f"worker-{_prefix}-{next(_ids)}"


class _Connection:
    """The hub's link to one WebSocket worker."""

    def __init__(self, per_frame: int = 0) -> None:
        #: 0: one task object per frame (seed 000); n: JSON arrays of up to n tasks
        self.per_frame = per_frame
        self.outbox, self._inbox = trio.open_memory_channel[Task](math.inf)
        self.scope: trio.CancelScope | None = None
        self.closed_because: str | None = None

    def deliver(self, task: Task) -> None:
        self.outbox.send_nowait(task)

    def close(self, reason: str) -> None:
        self.closed_because = reason
        if self.scope is not None:
            self.scope.cancel()

    def _waiting(self, limit: int) -> list[Task]:
        """Up to `limit` tasks already in the outbox, without waiting."""
        tasks: list[Task] = []
        while len(tasks) < limit:
            try:
                tasks.append(self._inbox.receive_nowait())
            except trio.WouldBlock:
                break
        return tasks

    async def send_tasks(self) -> None:
        """Frames out what the hub delivers; what is already waiting goes out without a
        scheduling round trip, and (with `per_frame`) in as few frames as it allows."""
        async for task in self._inbox:
            batch = [task]
            while batch:
                if self.per_frame:
                    batch += self._waiting(self.per_frame - 1)
                    frame = encode([TaskFrame.of(t) for t in batch])
                else:
                    frame = encode(TaskFrame.of(batch[0]))
                await websocket.send(frame.decode())
                batch = self._waiting(1)


def _capacity(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"`capacity` must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ValueError("`capacity` must be 0 (unlimited) or more")
    return value


def _per_frame(raw: str | None) -> int:
    """`max`: tasks per frame; given, every frame is a JSON array (a workyard extension)."""
    if raw is None or raw == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"`max` must be a whole number, not {raw!r}") from None
    if not 1 <= value <= MAX_BATCH:
        raise ValueError(f"`max` (tasks per frame) must be 1 to {MAX_BATCH}")
    return value


async def _first_message() -> str | bytes:
    with trio.fail_after(FIRST_MESSAGE_TIMEOUT):
        return await websocket.receive()


def add_websocket_routes(app: QuartTrio, hub: Hub, auth: Auth) -> None:
    @app.websocket("/work/queue")
    async def work_queue() -> Response | None:
        args = websocket.args
        token = bearer(websocket.headers, args)
        authorized = auth.allows(token, Role.WORKER)
        if token is not None and not authorized:
            return json_response({"error": "invalid worker token"}, 401)
        try:
            subscriptions: list[Subscription] = subscriptions_from_query(args)
            capacity = _capacity(args.get("capacity"))
            per_frame = _per_frame(args.get("max"))
        except ValueError as exc:
            return json_response({"error": str(exc)}, 400)
        worker_id = args.get("worker_id") or new_worker_id()

        await websocket.accept()
        try:
            while not authorized or not subscriptions:
                what = "authorization" if not authorized else "task declarations"
                try:
                    first = decode_declarations(await _first_message())
                except trio.TooSlowError:
                    await websocket.close(POLICY_VIOLATION, f"no {what} received in time")
                    return None
                if isinstance(first, Authorization):
                    authorized = auth.allows(first.bearer, Role.WORKER)
                    if not authorized:
                        await websocket.close(POLICY_VIOLATION, "invalid worker token")
                        return None
                elif not authorized:
                    await websocket.close(POLICY_VIOLATION, "authorization required first")
                    return None
                else:
                    subscriptions = first
        except ValueError as exc:
            log.info("worker %s refused: %s", worker_id, exc)
            await websocket.close(POLICY_VIOLATION, str(exc)[:120])
            return None

        conn = _Connection(per_frame)
        try:
            hub.attach(worker_id, subscriptions, conn, capacity=capacity)
        except ValueError as exc:
            await websocket.close(POLICY_VIOLATION, str(exc)[:120])
            return None
        try:
            async with trio.open_nursery() as nursery:
                conn.scope = nursery.cancel_scope
                nursery.start_soon(conn.send_tasks)
                while True:
                    frame = await websocket.receive()
                    try:
                        answers = decode_answers(frame)
                    except ValueError as exc:
                        log.warning("worker %s sent a malformed frame: %s", worker_id, exc)
                        await websocket.send(error_frame(f"malformed frame: {exc}"))
                        continue
                    for answer in answers:
                        hub.answer(worker_id, answer)
        finally:
            hub.detach(worker_id, conn)
        if conn.closed_because:
            await websocket.close(POLICY_VIOLATION, conn.closed_because[:120])
        return None
