"""The embedded event stream: Server-Sent Events on the main port, no broker needed.

    GET /events?exchange=E&pattern=P[&exchange=E2&pattern=P2...][&since=SEQ]

Each `exchange` is bound with the `pattern` at the same position (AMQP topic syntax,
`*` one word, `#` zero or more; `#` when patterns are left out). Every message is

    id: <seq>
    event: <exchange>
    data: {"exchange", "routingKey", "seq", "payload"}

Outbox events (worker-manager, and workyard's `worker-pool-removed`) have a `seq` and
are resumable: `since=SEQ` (or the `Last-Event-ID` header an EventSource sends when
it reconnects) replays the outbox after it, within the event retention, then goes on
live; a gap the retention already purged is announced by a `missed` event. Hub task
and worker events (`exchange/workyard/v1/task-*`, `worker-attached`, ...) are live
only: no `id`, and `seq` null.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from .._auth import Auth, Role
from .._errors import InvalidInput
from ..store import OutboxRow
from ._exchanges import HUB_EXCHANGE_PREFIX, POOL_REMOVED, Binding, hub_event_message
from ._feed import Behind, Subscription

if TYPE_CHECKING:
    from ..hub import Hub

__all__ = ["add_stream_routes", "bridge_hub_events", "sse_frame"]

#: seconds between keep-alive comments (they also find out a client that left)
KEEPALIVE = 15.0
PAGE = 500
MAX_BINDINGS = 64

_str = msgspec.json.Encoder().encode


def is_hub_exchange(exchange: str) -> bool:
    return exchange.startswith(HUB_EXCHANGE_PREFIX) and exchange != POOL_REMOVED


def sse_frame(row: OutboxRow) -> bytes:
    seq = row.seq if row.seq > 0 else None
    data = (b'{"exchange":' + _str(row.exchange) + b',"routingKey":' + _str(row.routing_key)
            + b',"seq":' + _str(seq) + b',"payload":' + row.body + b"}")
    head = f"id: {seq}\n" if seq is not None else ""
    return (head + f"event: {row.exchange}\n").encode() + b"data: " + data + b"\n\n"


def _bindings() -> list[Binding]:
    exchanges = request.args.getlist("exchange")
    patterns = request.args.getlist("pattern")
    if not exchanges:
        raise InvalidInput("bind at least one `exchange` (with an optional `pattern`)")
    if len(exchanges) > MAX_BINDINGS:
        raise InvalidInput(f"at most {MAX_BINDINGS} bindings")
    if patterns and len(patterns) != len(exchanges):
        raise InvalidInput("give one `pattern` per `exchange`, or none (`#` for each)")
    return [Binding(e, patterns[i] if patterns else "#") for i, e in enumerate(exchanges)]


def _since() -> int | None:
    raw = request.args.get("since") or request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"`since` must be a seq (a whole number), not {raw!r}") from None
    if value < 0:
        raise InvalidInput("`since` must be 0 or more")
    return value


async def _replay(hub: Hub, sub: Subscription, after: int) -> AsyncIterator[bytes]:
    """The outbox after `after` that `sub` binds, then `sub` continues live from there."""
    first = True
    while True:
        rows = await hub.store.outbox.read(after, PAGE)
        if first and rows and after > 0 and rows[0].seq > after + 1:
            gap = rows[0].seq - after - 1
            yield (f"event: missed\ndata: {{\"after\": {after}, \"count\": {gap}}}\n\n").encode()
        first = False
        for row in rows:
            if sub.wants(row):
                yield sse_frame(row)
        if rows:
            after = rows[-1].seq
        if len(rows) < PAGE:
            break
    sub.skip_to(after)


def add_stream_routes(app: QuartTrio, hub: Hub, auth: Auth) -> None:
    from ..http import require

    @app.get("/events")
    async def events() -> Response:
        require(auth, Role.ANY)
        bindings = _bindings()
        since = _since()

        async def body() -> AsyncIterator[bytes]:
            with hub.feed.subscribe(bindings) as sub:
                yield b": workyard event stream\n\n"
                if since is not None:
                    async for frame in _replay(hub, sub, since):
                        yield frame
                while True:
                    try:
                        with trio.move_on_after(KEEPALIVE) as idle:
                            row = await sub.next()
                    except Behind as behind:  # too slow for the live feed: read the store
                        sub.rows.clear()
                        sub.behind = False
                        async for frame in _replay(hub, sub, behind.seq):
                            yield frame
                        continue
                    if idle.cancelled_caught:
                        yield b": keepalive\n\n"
                        continue
                    yield sse_frame(row)

        response = Response(body(), mimetype="text/event-stream",
                            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        response.timeout = None  # a stream lasts as long as its client
        return response


async def bridge_hub_events(hub: Hub) -> None:
    """Hand the hub's task and worker events to the stream's subscribers, live — only
    while some subscriber binds a workyard exchange, so nobody else pays for it."""
    feed = hub.feed
    while True:
        await feed.hub_wanted.wait()
        with hub.events.subscribe() as stream:
            async for event in stream:
                if not feed.hub_subscribers:
                    break
                if type(event).__name__ == "Missed":
                    continue
                exchange, key, body = hub_event_message(event)
                feed.live(OutboxRow(0, exchange, key, body, event.at))
