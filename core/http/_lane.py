"""The fast lane: the hot HTTP routes as plain async handlers, served without quart.

A route is (method, path pattern) → `async def handler(request: LaneRequest) ->
LaneResponse`. The lane is the only implementation of its routes, reached two ways:

* on HTTP/1.1 connections whose request is a lane route, the main port's front door
  parses it with h11 and answers it itself (`server/_lane_server.py`): no hypercorn,
  no quart, one send per response. That is where the hot routes' time went (a profile of POST
  /tasks: hypercorn + h11 and their two sends per response about half the hub's
  CPU, quart and werkzeug another sixth, workyard's own work a tenth);
* everywhere else (HTTP/2, a keep-alive connection hypercorn already serves, HEAD),
  through quart: `mount` adds every route to the app as a rule whose view calls the
  same handler, so quart's routing, 405s, HEAD, OPTIONS, error handlers and the
  OpenAPI check see the lane's routes as before.

Adding a route (say, from a compat module):

    lane: Lane = app.extensions["workyard.lane"]

    @lane.route("POST", "/things/<thing_id>")      # or ("GET", "POST"), ...
    async def poke(request: LaneRequest) -> LaneResponse:
        require(auth, Role.WORKER, request)        # tokens, as any route
        body = await request.body()                # --max-body and the body timeout apply
        return json_reply({"poked": request.view_args["thing_id"]})

Patterns are werkzeug's (quart's) rules, converters included (`<any(a,b):service>`).
A route whose handler may wait long for something other than the store (a long poll)
says so, `lane.route("POST", "/things/wait", waits=True)`: the lane server then watches
its socket while it runs, so that a client that leaves cancels it (as hypercorn would)
and, say, a poll cut off gives its tasks back. Other handlers are not watched (that
took a task and two more socket waits per request): one whose client left runs to
its end, and its answer goes nowhere.
Raise a `WorkyardError` (or werkzeug's HTTPException) for a 4xx: the answer is the
app's JSON error, exactly as from a quart route; anything else is logged and a 500.
Routes must be added before the server starts (`build_app` does it).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers, MultiDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.routing.exceptions import RoutingException

from .._errors import TooLarge, WorkyardError
from ..protocol import encode

__all__ = ["Lane", "LaneRequest", "LaneResponse", "error_reply", "json_reply"]

log = logging.getLogger("workyard.http")

#: (method, path) pairs whose route `Lane.match` remembers (paths with ids take many)
MATCHES_CACHED = 4096

#: reads the whole request body; raises werkzeug's RequestEntityTooLarge / RequestTimeout
BodyReader = Callable[[], Awaitable[bytes]]


@dataclass(slots=True, eq=False)
class LaneRequest:
    """What a handler reads of a request: the names quart's `request` uses for them."""

    method: str
    path: str
    #: the query, parsed as quart parses it (an ImmutableMultiDict, which quart's types
    #: call a MultiDict)
    args: MultiDict[str, str]
    headers: Headers
    #: the path pattern's parameters
    view_args: dict[str, Any]
    remote_addr: str | None
    _read_body: BodyReader

    async def body(self) -> bytes:
        return await self._read_body()


@dataclass(slots=True)
class LaneResponse:
    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_reply(body: Any, status: int = 200) -> LaneResponse:
    return LaneResponse(status, encode(body))


def error_reply(exc: Exception, where: str) -> LaneResponse:
    """The app's answer to an exception a handler raised: the same bodies and statuses
    as its quart error handlers (`_app.create_app`), which call this too."""
    if isinstance(exc, WorkyardError):
        reply = json_reply(exc.body(), exc.status)
    elif isinstance(exc, HTTPException):
        reply = json_reply({"error": exc.description or exc.name}, exc.code or 500)
    else:
        log.error("unexpected error on %s", where, exc_info=exc)
        return json_reply({"error": f"internal error: {type(exc).__name__}"}, 500)
    if reply.status == TooLarge.status:  # the rest of the body is never read: don't let
        reply.headers.append(("Connection", "close"))  # the client reuse the connection
    return reply


Handler = Callable[[LaneRequest], Awaitable[LaneResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    methods: tuple[str, ...]
    pattern: str
    handler: Handler
    #: whether the handler may wait long (a long poll): its client is watched meanwhile
    waits: bool = False


class Lane:
    """The table of lane routes, and the one way they are answered (`answer`)."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._map = Map()  # quart's defaults: a slash off or doubled is quart's to redirect
        self._adapter = self._map.bind("lane", "/")
        #: called with (pattern, method, status) after each answer the lane gives itself
        self.counted: Callable[[str, str, int], None] | None = None
        self.methods: frozenset[bytes] = frozenset()
        self._matched = functools.lru_cache(maxsize=MATCHES_CACHED)(self._match)
        self._mounted: QuartTrio | None = None

    def route(self, method: str | tuple[str, ...], pattern: str, *, waits: bool = False
              ) -> Callable[[Handler], Handler]:
        """Add `handler` for `method` (or each of several) on `pattern`; `waits`: it may
        wait long, so the client is watched while it runs (see the module's docstring)."""
        methods = (method,) if isinstance(method, str) else tuple(method)

        def add(handler: Handler) -> Handler:
            index = len(self.routes)
            self.routes.append(Route(methods, pattern, handler, waits))
            self._map.add(Rule(pattern, endpoint=index, methods=list(methods)))
            self._matched.cache_clear()
            self.methods = self.methods | {m.encode() for m in methods}
            if self._mounted is not None:
                _mount_one(self._mounted, self.routes[index])
            return handler
        return add

    def match(self, method: str, path: str) -> tuple[Route, dict[str, Any]] | None:
        """The route of `method path` and its parameters; None if it is not the lane's
        (then quart answers it, a 404 or 405 included). HEAD and OPTIONS go to quart."""
        if method in ("HEAD", "OPTIONS"):
            return None
        found = self._matched(method, path)
        if found is None:
            return None
        index, args = found
        return self.routes[index], dict(args)  # the handler's own: it may change them

    def _match(self, method: str, path: str) -> tuple[int, Mapping[str, Any]] | None:
        """werkzeug's match (remembered as `_matched`: it was a tenth of a lane
        request's time, twice over, as the front door routes each request and then the
        lane server does)."""
        try:
            return self._adapter.match(path, method)
        except (HTTPException, RoutingException):  # no such rule, method, or a redirect
            return None

    async def answer(self, route: Route, request: LaneRequest) -> LaneResponse:
        """Run the handler; an exception becomes the app's error answer."""
        try:
            reply = await route.handler(request)
        except Exception as exc:  # noqa: BLE001 - bad input is a 4xx, anything else a logged 500
            reply = error_reply(exc, f"{request.method} {request.path}")
        if self.counted is not None:
            self.counted(route.pattern, request.method, reply.status)
        return reply

    def mount(self, app: QuartTrio) -> None:
        """Add every route (and any added later) to `app`, calling the same handler."""
        self._mounted = app
        for route in self.routes:
            _mount_one(app, route)


def _mount_one(app: QuartTrio, route: Route) -> None:
    async def view(**view_args: Any) -> Response:
        lane_request = LaneRequest(
            request.method, request.path, request.args, request.headers, view_args,
            request.remote_addr,
            lambda: request.get_data(cache=False, as_text=False, parse_form_data=False))
        reply = await route.handler(lane_request)  # errors: the app's own handlers
        return to_quart(reply)

    name = f"lane:{','.join(route.methods)}:{route.pattern}"
    app.add_url_rule(route.pattern, name, view, methods=list(route.methods))


def to_quart(reply: LaneResponse) -> Response:
    response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers:
        response.headers[name] = value
    return response
