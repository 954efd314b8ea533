"""What the hub says and refuses at start (issue 15, items 11 and 12): who can do what,
tokens that would lock a role out, and settings no hub can serve with — each refused
with one line and exit status 2 before anything listens."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import Served, StartServer, http_client
from trio_websocket import ConnectionRejected, open_websocket_url

from workyard import Settings
from workyard.cli import main

REFUSED = [
    # (arguments, what the one line must say)
    (["--producer-token", "p"], "no worker could get in"),
    (["--worker-token", "w"], "no producer could get in"),
    (["--capacity", "-1"], "--capacity -1: expected a whole number from 0 to 1000000"),
    (["--ping-timeout", "0"], "--ping-timeout 0: expected a number from 0.05"),
    (["--ping-interval", "0"], "--ping-interval 0: expected a number from 0.05"),
    (["--ping-interval", "nan"], "--ping-interval nan: expected a number"),
    (["--max-body", "10"], "--max-body 10: expected a whole number from 1024"),
    (["--max-frame", "0"], "--max-frame 0: expected a whole number from 1024"),
    (["--backlog", "0"], "--backlog 0: expected a whole number from 1 to 65535"),
    (["--port", "70000"], "--port 70000: expected a whole number from 0 to 65535"),
    (["--admin-token", "é"], "expected comma-separated tokens of visible ASCII"),
    (["--admin-token", "a b"], "expected comma-separated tokens of visible ASCII"),
    (["--allow-lockout", "maybe"], "--allow-lockout maybe: expected true or false"),
    (["--certfile", "hub.pem"], "--certfile is set but --keyfile is not: TLS needs both"),
    (["--keyfile", "hub-key.pem"], "--keyfile is set but --certfile is not: TLS needs both"),
    (["--certfile", "/no/such/hub.pem", "--keyfile", "/no/such/hub-key.pem"],
     "cannot read /no/such/hub.pem (No such file or directory)"),
    (["--certfile", __file__, "--keyfile", __file__],  # a file, but no PEM in it
     f"--keyfile {__file__}: not a PEM certificate chain and its private key"),
]


@pytest.mark.parametrize(("args", "said"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_workyard_serve_refuses_with_one_line_and_exit_status_2(
    capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    assert main(["serve", "--db", ":memory:", "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert said in err and err.count("\n") == 1, err


async def lockout_served(start_server: StartServer, **tokens: frozenset[str]) -> Served:
    return await start_server(Settings(port=0, db=":memory:", allow_lockout=True, **tokens))


async def test_with_allow_lockout_the_hub_starts_and_says_who_is_locked_out(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workyard.server")
    served = await lockout_served(start_server, producer_tokens=frozenset({"p"}))
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("auth on")]
    assert said == [("auth on: no worker can get in; producers with one of 1 producer or 0 "
                     "admin tokens; nobody can configure queues (no admin token); any token "
                     "reads /workers and /queues; /health is open")]
    with pytest.raises(ConnectionRejected) as rejected:  # even a producer's token
        async with open_websocket_url(served.ws("/work/queue?task=t&token=p")):
            pass  # pragma: no cover
    assert rejected.value.status_code == 401


async def test_the_start_line_names_every_role_and_token_query_parameters_are_read(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workyard.server")
    served = await start_server(Settings(port=0, db=":memory:", worker_tokens=frozenset({"w"}),
                                         producer_tokens=frozenset({"p", "q"}),
                                         admin_tokens=frozenset({"a"})))
    assert any(r.getMessage() == (
        "auth on: workers with one of 1 worker or 1 admin tokens; producers with one of 2 "
        "producer or 1 admin tokens; admins configure queues; any token reads /workers and "
        "/queues; /health is open") for r in caplog.records)
    async with http_client(served.url) as http:
        assert (await http.post("/tasks?token=p", json={"name": "t"})).status_code == 201
        assert (await http.post("/tasks?token=w", json={"name": "t"})).status_code == 401
        async with open_websocket_url(served.ws("/work/queue?task=t&token=w")) as ws:
            assert json.loads(await ws.get_message())["task_id"]
