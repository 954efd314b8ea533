"""WebSocket requests that reach the app are refused cleanly (issue 15, item 9): the
catch-all error handler once raised "Not within a request context" on a WebSocket
route, a second traceback. The main port's HTTP/1.1 upgrades never reach the app now;
an HTTP/2 WebSocket (RFC 8441 extended CONNECT) still can, through hypercorn."""

from __future__ import annotations

import logging

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest
import trio
from conftest import NET_TIMEOUT, Served, http_client


async def h2_websocket_status(served: Served, path: str) -> int | None:
    """The status an HTTP/2 extended CONNECT for a WebSocket at `path` gets; None if the
    server does not offer extended CONNECT (then no WebSocket can reach the app)."""
    url = httpx.URL(served.url)
    stream = await trio.open_tcp_stream(url.host, url.port or 0)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    async with stream:
        await stream.send_all(conn.data_to_send())
        with trio.fail_after(NET_TIMEOUT):
            offered = None
            while offered is None:
                for event in conn.receive_data(await stream.receive_some(65536)):
                    if isinstance(event, h2.events.RemoteSettingsChanged):
                        setting = event.changed_settings.get(
                            h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                        offered = bool(setting and setting.new_value)
                await stream.send_all(conn.data_to_send())
            if not offered:
                return None
            conn.send_headers(1, [(":method", "CONNECT"), (":protocol", "websocket"),
                                  (":scheme", "http"), (":path", path),
                                  (":authority", f"{url.host}:{url.port}"),
                                  ("sec-websocket-version", "13")])
            await stream.send_all(conn.data_to_send())
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.ResponseReceived):
                        return int(dict(event.headers)[b":status"])
                await stream.send_all(conn.data_to_send())


@pytest.mark.parametrize("path", ["/work/queue?task=t", "/elsewhere"])
async def test_an_http2_websocket_is_refused_with_a_4xx_and_no_traceback(
    server: Served, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status = await h2_websocket_status(server, path)
    assert status is None or 400 <= status < 500, status
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    async with http_client(server.url) as http:
        assert (await http.get("/health")).status_code == 200
