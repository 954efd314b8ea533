"""The front door's routing decision on the first bytes of a connection (pure)."""

from __future__ import annotations

import pytest

from workyard.http._lane import Lane, LaneRequest, LaneResponse
from workyard.server._front import MAX_HEAD, is_websocket_upgrade, route_of
from workyard.server._lane_server import LaneServer

UPGRADE_HEAD = (b"GET /work/queue?task=a HTTP/1.1\r\nHost: hub\r\nUpgrade: WebSocket\r\n"
                b"Connection: Upgrade\r\n\r\n")


@pytest.mark.parametrize(("data", "expected"), [
    (UPGRADE_HEAD, True),
    (UPGRADE_HEAD + b"\x81\x05first frame, sent early", True),
    (UPGRADE_HEAD.replace(b"/work/queue?task=a", b"/elsewhere"), True),  # the lean 404
    (UPGRADE_HEAD.replace(b"\r\n", b"\n"), True),  # bare line feeds, as h11 allows
    (UPGRADE_HEAD[:-4], None),  # the head is not complete yet
    (b"", None),
    (b"GE", None),
    (b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n", False),
    (b"GET /work/queue HTTP/1.1\r\nHost: hub\r\nX-Upgrade: no\r\n\r\n", False),
    (b"POST /tasks HTTP/1.1\r\n", False),  # not a GET: known at once, head or not
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", False),
    (b"\x16\x03\x01", False),
    (b"GET /" + b"x" * MAX_HEAD, False),  # too long a head: hypercorn answers it
], ids=["upgrade", "with-a-frame", "other-path", "bare-lf", "incomplete", "empty", "prefix",
        "plain-get", "no-upgrade-header", "post", "h2-preface", "tls", "too-long"])
def test_only_a_complete_websocket_upgrade_head_goes_to_the_lean_server(
    data: bytes, expected: bool | None
) -> None:
    assert is_websocket_upgrade(data) is expected


def _lane_server() -> LaneServer:
    lane = Lane()

    async def handler(request: LaneRequest) -> LaneResponse:
        return LaneResponse(204)

    lane.route("POST", "/tasks")(handler)
    lane.route("GET", "/tasks/<task_id>")(handler)

    async def nowhere(stream: object, received: bytes) -> None:
        raise AssertionError("not used")

    return LaneServer(lane, nowhere, max_body=1024, body_timeout=1, keep_alive=1)


@pytest.mark.parametrize(("data", "expected"), [
    (b"POST /tasks HTTP/1.1\r\nHost: hub\r\n\r\n{}", "lane"),
    (b"POST /tasks HTTP/1.1\r\nHost: hub\r\n", None),  # its head is not complete yet
    (b"POS", None),
    (b"POST /elsewhere HTTP/1.1\r\n", "http"),  # known at its request line
    (b"PUT /tasks HTTP/1.1\r\n", "http"),  # quart's 405
    (b"GET /tasks/abc?wait=30 HTTP/1.1\r\nHost: hub\r\n\r\n", "lane"),
    (b"HEAD /tasks/abc HTTP/1.1\r\nHost: hub\r\n\r\n", "http"),
    (b"GET /tasks/abc/ HTTP/1.1\r\nHost: hub\r\n\r\n", "http"),  # quart's 404
    (b"GET /tasks/a HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", "lean"),  # the lean 404
    (b"POST http://hub/tasks HTTP/1.1\r\n\r\n", "http"),  # absolute form: hypercorn's
    (b"POST /tasks HTTP/2.0\r\n\r\n", "http"),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "http"),
    (b"POST /ta%ZZsks HTTP/1.1\r\n\r\n", "http"),
    (b"POST /tasks\xff HTTP/1.1\r\n\r\n", "http"),
    (b"POST /tasks HTTP/1.1\r\n" + b"X: y\r\n" * 3000, "http"),  # too long a head
], ids=["complete", "incomplete", "prefix", "other-path", "other-method", "get-wait", "head",
        "slash", "upgrade", "absolute", "http2", "h2-preface", "bad-escape", "non-ascii",
        "too-long"])
def test_a_request_goes_to_the_lane_only_once_its_complete_head_is_a_lane_route(
    data: bytes, expected: str | None
) -> None:
    assert route_of(data, _lane_server()) == expected
