"""Several real `workyard serve` processes on one PostgreSQL database, for the cluster
tests and the failover benchmark: start them, ask who leads, kill one with -9, and cut
their database off through a TCP proxy (never the machine's PostgreSQL itself).

Every wait here is a bounded poll of observable state (a log line, /health), since the
hubs are other processes."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import trio

#: bound of any single wait for another process (start-up, an election)
WAIT = 20.0


def in_schema(url: str, schema: str) -> str:
    """`url` with its connections' search_path set to `schema` (libpq's `options`)."""
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}options={quote(f'-csearch_path={schema}')}"


def via(url: str, port: int) -> str:
    """`url` (postgresql://user@host:port/db...) pointed at 127.0.0.1:`port` instead."""
    return re.sub(r"@[^/]+/", f"@127.0.0.1:{port}/", url, count=1)


@dataclass
class HubProcess:
    """One `workyard serve`, its log in a file (a pipe left unread would stall it)."""

    process: trio.Process
    log: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def health(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        try:
            response = await client.get(f"{self.url}/health", timeout=2.0)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    async def kill(self) -> None:
        """kill -9, and wait for it to be gone."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        with trio.fail_after(WAIT):
            await self.process.wait()

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with trio.move_on_after(WAIT):
                await self.process.wait()
            if self.process.returncode is None:
                await self.kill()


async def start_hub(db: str, log: Path, *extra: str) -> HubProcess:
    """`workyard serve --db DB` on a free port, trying for the leadership every 0.1 s (the
    heartbeat at its default, 1 s, which a loaded machine answers); returns once
    it serves (its URL read from its log)."""
    out = log.open("wb")
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "workyard.cli", "serve", "--port", "0", "--db", db,
         "--election-interval", "0.1", "--summary-interval", "0",
         *extra], stderr=out, stdout=subprocess.DEVNULL)
    out.close()
    hub = HubProcess(process, log)
    try:
        with trio.fail_after(WAIT):
            while not (found := re.search(r"serving on (http://\S+)", hub.text())):
                if process.poll() is not None:
                    raise RuntimeError(f"workyard serve exited: {hub.text()}")
                await trio.sleep(0.02)
    except BaseException:
        with trio.CancelScope(shield=True):
            await hub.kill()
        raise
    hub.url = found.group(1)
    return hub


async def start_hubs(db: str, folder: Path, count: int, *extra: str) -> list[HubProcess]:
    """`count` hubs on `db`, the first started alone so that it is the leader."""
    hubs = [await start_hub(db, folder / "hub-0.log", *extra)]
    async with httpx.AsyncClient(verify=False) as client:
        await wait_leader(client, hubs)
    for i in range(1, count):
        hubs.append(await start_hub(db, folder / f"hub-{i}.log", *extra))
    return hubs


async def wait_leader(client: httpx.AsyncClient, hubs: Sequence[HubProcess], *,
                      timeout: float = WAIT) -> HubProcess:
    """The hub that says it leads, once exactly one of the living ones does and every
    other one names it."""
    with trio.fail_after(timeout):
        while True:
            alive = [h for h in hubs if h.process.returncode is None]
            health = [await h.health(client) for h in alive]
            leaders = [h for h, b in zip(alive, health) if b and b.get("role") == "leader"]
            if len(leaders) == 1 and all(
                    b is not None and (b.get("role") == "leader" or b.get("leader") ==
                                       leaders[0].url) for b in health):
                return leaders[0]
            await trio.sleep(0.02)


@dataclass
class TcpProxy:
    """127.0.0.1:`port` → `target`, byte for byte; `cut()` drops every connection and
    refuses new ones until `restore()` (a database outage, without stopping it)."""

    target: tuple[str, int]
    port: int = 0
    _cut: bool = False
    _scopes: set[trio.CancelScope] = field(default_factory=set)
    _listeners: list[trio.SocketListener] = field(default_factory=list)

    async def run(self, *, task_status: trio.TaskStatus[TcpProxy] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        self._listeners = listeners
        await trio.serve_listeners(self._serve, listeners, task_status=task_status)

    def started(self) -> TcpProxy:
        return self

    def cut(self) -> None:
        self._cut = True
        for scope in list(self._scopes):
            scope.cancel()

    def restore(self) -> None:
        self._cut = False

    async def _serve(self, client: trio.SocketStream) -> None:
        async with client:
            if self._cut:
                return
            try:
                upstream = await trio.open_tcp_stream(*self.target)
            except OSError:
                return
            async with upstream:
                with trio.CancelScope() as scope:
                    self._scopes.add(scope)
                    try:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
                            nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)
                    finally:
                        self._scopes.discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream,
                done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        done.cancel()
