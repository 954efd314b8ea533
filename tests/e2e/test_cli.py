"""The `workyard` command as a user meets it: help, version, and start-up and submit
errors told in one line with what to do, exit status 2. Each runs the real command in
a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import trio
from conftest import NET_TIMEOUT, Served

WORKYARD = [sys.executable, "-m", "workyard.cli"]


def run(*argv: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`workyard ARGV`, bounded in time; WORKYARD_* variables of the caller left out."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WORKYARD_")}
    return subprocess.run([*WORKYARD, *argv], capture_output=True, text=True, check=False,
                          timeout=NET_TIMEOUT * 2, env={**clean, **(env or {})}, cwd=cwd)


def test_workyard_alone_prints_the_help_with_every_command() -> None:
    done = run()
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: workyard")
    for command in ("serve", "worker", "submit", "sim", "--version"):
        assert command in done.stdout


def test_version_prints_the_installed_version() -> None:
    done = run("--version")
    assert (done.returncode, done.stdout) == (0, f"workyard {version('workyard')}\n")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("workyard serve: ")
    return done.stderr


def test_a_port_in_use_is_one_line_naming_it_and_how_to_pick_another(busy_port: int) -> None:
    line = _one_line(run("serve", "--port", str(busy_port), "--db", ":memory:"))
    assert f"127.0.0.1:{busy_port}: the address is already in use" in line
    assert "--port (0 picks one)" in line


def test_a_worker_port_in_use_names_the_worker_port_flag(busy_port: int) -> None:
    line = _one_line(run("serve", "--port", "0", "--worker-port", str(busy_port),
                         "--db", ":memory:"))
    assert f":{busy_port}: the address is already in use" in line and "--worker-port" in line


def test_a_file_that_is_not_sqlite_is_one_line_naming_it(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list: eggs, milk, and a great deal more text than a header\n")
    line = _one_line(run("serve", "--port", "0", "--db", str(notes)))
    assert f"--db {notes}: the file is not an SQLite database" in line
    assert notes.read_text().startswith("shopping list")  # left as it was


def test_a_database_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    db = tmp_path / "a-file" / "hub.db"
    line = _one_line(run("serve", "--port", "0", "--db", str(db)))
    assert f"--db {db}: cannot create or open {tmp_path / 'a-file'}" in line
    assert "not a folder" in line


def test_a_missing_database_folder_is_created(tmp_path: Path) -> None:
    """Not an error: the store makes the folders of a new database."""
    db = tmp_path / "new" / "folder" / "hub.db"
    process = subprocess.Popen([*WORKYARD, "serve", "--port", "0", "--db", str(db)],
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # bounded: the process logs or exits
        assert "serving on http://127.0.0.1:" in first, first
        assert db.exists()
    finally:
        process.terminate()
        assert process.wait(NET_TIMEOUT) == 0


def test_an_address_the_machine_lacks_is_one_line() -> None:
    line = _one_line(run("serve", "--host", "192.0.2.1", "--admin-token", "t", "--port", "0",
                         "--db", ":memory:"))  # TEST-NET-1: assigned to nobody
    assert "cannot listen on 192.0.2.1: no such address on this machine" in line


@pytest.mark.parametrize(("argv", "env", "named"), [
    (["--port", "99999"], {}, "--port 99999: expected a whole number from 0 to 65535"),
    (["--log-level", "LOUD"], {}, "--log-level LOUD: expected one of"),
    ([], {"WORKYARD_PORT": "abc"}, "WORKYARD_PORT=abc: expected a whole number"),
])
def test_a_bad_setting_is_one_line_naming_it(argv: list[str], env: dict[str, str],
                                             named: str) -> None:
    line = _one_line(run("serve", *argv, env=env))
    assert line.startswith(f"workyard serve: {named}") and "--help" in line


def test_submit_to_a_hub_that_is_down_is_one_line_saying_so() -> None:
    with socket.socket() as sock:  # bound, not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        done = run("submit", "tag", "--url", url)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"workyard submit: cannot reach the hub at {url}")
    assert "workyard serve" in done.stderr and "--url" in done.stderr


async def test_submit_refused_by_the_hub_is_one_line_with_its_reason(server: Served) -> None:
    with trio.fail_after(NET_TIMEOUT * 2):
        done = await trio.run_process([*WORKYARD, "submit", "tag", "--timeout", "-1", "--url",
                                       server.url], capture_stdout=True, capture_stderr=True,
                                      check=False)
    err = done.stderr.decode()
    assert done.returncode == 2 and done.stdout == b""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"workyard submit: the hub at {server.url} refused: ")
    assert "$.timeout" in err and "(HTTP 400)" in err
    assert server.hub.unfinished == 0  # nothing was stored
