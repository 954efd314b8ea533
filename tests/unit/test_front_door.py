"""The front door's routing decision on the first bytes of a connection (pure)."""

from __future__ import annotations

import pytest

from workyard.server._front import MAX_HEAD, is_websocket_upgrade

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
