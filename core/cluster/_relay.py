"""What a follower does with what only the leader can serve.

Only the leader schedules, so a follower serves producers (`POST /tasks`, and the
task reads, from the store) and hands the rest to the leader at the URL it advertised:

* a worker's WebSocket connection (seed 000, `/work/queue`) is relayed byte for byte
  (`relay_connection`): the upgrade request as it came, then both directions until
  either side closes. The worker talks to the leader through this hub; when the
  leader goes, the relay ends and the worker reconnects, to whichever hub leads then;
* any other HTTP request (polling workers, seed 002, the registries, the views) is
  relayed request by request (`relay_request`), the answer streamed back as it comes
  (long polls and event streams included).

With no leader known (none elected yet, or the leader unreachable) the client gets a
503 (before a WebSocket upgrade: an HTTP 503) saying so; clients retry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx
import trio
from quart import Response, request
from werkzeug.datastructures import Headers

from .._errors import Unavailable
from ..protocol import encode

__all__ = ["FOLLOWER_ROUTES", "leader_address", "relay_connection", "relay_request"]

log = logging.getLogger("workyard.cluster")

RECEIVE_BYTES = 64 * 1024
#: seconds to reach the leader before telling the client to retry
CONNECT_TIMEOUT = 5.0
#: what a follower answers itself: (method, path prefix)
FOLLOWER_ROUTES = (("POST", "/tasks"), ("GET", "/tasks"), ("GET", "/health"),
                   ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"))
#: headers that describe one hop, not the request or answer
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                  "upgrade", "proxy-authorization", "proxy-authenticate", "host",
                  "content-length"})


def served_by_follower(method: str, path: str) -> bool:
    return any(method == m and (path == p or path.startswith(p + "/"))
               for m, p in FOLLOWER_ROUTES)


def leader_address(leader: str | None, own: str | None) -> tuple[str, int]:
    """(host, port) of the leader's URL; `Unavailable` when there is none to relay to."""
    if leader is None or leader == own:
        raise Unavailable("no leader is elected right now (the hubs are electing one); "
                          "retry in a moment")
    parts = urlsplit(leader)
    if parts.hostname is None:
        raise Unavailable(f"the leader advertised an unusable URL {leader!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


async def _refuse(stream: trio.abc.Stream, problem: Unavailable) -> None:
    body = encode(problem.body())
    head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nretry-after: 1\r\nconnection: close\r\n\r\n" % len(body))
    try:
        await stream.send_all(head + body)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream,
                done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(RECEIVE_BYTES):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()


async def relay_connection(stream: trio.abc.Stream, received: bytes, leader: str | None,
                           own: str | None) -> None:
    """Relay one connection (its first bytes already read: `received`) to the leader."""
    try:
        host, port = leader_address(leader, own)
        with trio.fail_after(CONNECT_TIMEOUT):
            upstream = await trio.open_tcp_stream(host, port)
    except Unavailable as exc:
        await _refuse(stream, exc)
        return
    except (OSError, trio.TooSlowError) as exc:
        await _refuse(stream, Unavailable(f"the leader {leader} cannot be reached ({exc}); "
                                          "retry in a moment"))
        return
    async with upstream:
        await upstream.send_all(received)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, stream, upstream, nursery.cancel_scope)
            nursery.start_soon(_pipe, upstream, stream, nursery.cancel_scope)


async def relay_request(client: httpx.AsyncClient, leader: str | None,
                        own: str | None) -> Response:
    """The current request, answered by the leader."""
    leader_address(leader, own)
    assert leader is not None
    body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
    url = leader.rstrip("/") + request.path
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    outgoing = client.build_request(request.method, url, content=body, headers=headers)
    try:
        answer = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the leader {leader} did not answer ({exc or type(exc).__name__}); "
                          "retry in a moment") from None

    async def relayed() -> AsyncIterator[bytes]:
        try:
            async for chunk in answer.aiter_raw():
                yield chunk
        except httpx.HTTPError as exc:
            log.info("relay of %s %s cut off: %s", outgoing.method, request.path, exc)
        finally:
            await answer.aclose()

    response = Response(relayed(), status=answer.status_code,
                        headers=Headers([(k, v) for k, v in answer.headers.multi_items()
                                         if k.lower() not in _HOP]))
    response.timeout = None  # a long poll or an event stream lasts as long as it lasts
    return response
