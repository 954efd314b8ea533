"""A bounded fuzz run against a served hub (issue 15, "make the class impossible"):
random and boundary requests on every HTTP route and every WebSocket frame type, then
the hub must have answered no 5xx, logged no traceback, still be alive, and still hold
every task it acknowledged. Seeded, so a failure replays; bounded in count and time."""

from __future__ import annotations

import json
import logging
import os
import random
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from conftest import Served, StartServer, http_client
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from workyard import Settings
from workyard.protocol import (
    MAX_BATCH,
    MAX_DEPTH,
    MAX_NAME,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MIN_PRIORITY,
)

#: WORKYARD_FUZZ_SEED replays (or varies) a run
SEED = int(os.environ.get("WORKYARD_FUZZ_SEED", "15"))
HTTP_REQUESTS = 1500
WEBSOCKET_SESSIONS = 150
#: seconds of fuzzing at most (a loaded machine stops early rather than fail); the run
#: itself must end within twice that, or it hangs somewhere
TIME_BUDGET = 30.0

NUMBERS = [0, -1, 1, 0.5, MIN_PRIORITY, MIN_PRIORITY - 1, MAX_PRIORITY, MAX_PRIORITY + 1,
           2**64, MAX_RETRIES, MAX_RETRIES + 1, MAX_SECONDS, MAX_SECONDS + 1, 1e308, "1e999",
           "NaN", "1", None, True, MAX_BATCH + 1, 100, 101, 60, 61]
TEXTS = ["t", "", "a" * (MAX_NAME + 1), "anonymous-poll-1", "w\nforged", "\x00", "é",
         "\\ud800", "../../etc", "%00", "Bearer é", "q", "t,u", " ", "💥"]


@dataclass
class Tally:
    inputs: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)
    deadline: float = float("inf")

    def saw(self, what: str, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 500:
            self.server_errors.append(f"{status} for {what}")


class Fuzzer:
    """Random and boundary inputs from its own seeded generator; `ids` (the tasks
    acknowledged so far) may be shared, so that answers and look-ups name real tasks."""

    def __init__(self, seed: int, ids: list[str]) -> None:
        self.rng = random.Random(seed)
        self.ids = ids

    def pick(self, options: list[Any]) -> Any:
        return self.rng.choice(options)

    def value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth < 3 and roll < 0.15:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if depth < 3 and roll < 0.3:
            return {self.pick(TEXTS): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        return self.pick(NUMBERS + TEXTS)

    def task(self) -> dict[str, Any]:
        if self.rng.random() < 0.5:  # a valid one, for workers to take and answer
            return {"name": self.pick(["t", "u"]), "data": self.value(),
                    "attrs": {"cloud": self.pick(["aws", "gcp"])}}
        spec: dict[str, Any] = {"name": self.pick(["t", "t", "u", *TEXTS])}
        for key in ("attrs", "data", "priority", "timeout", "retries", "schedule_timeout", "key",
                    "bogus"):
            if self.rng.random() < 0.25:
                spec[key] = ({"cloud": self.pick(TEXTS)} if key == "attrs" and
                             self.rng.random() < 0.7 else self.value())
        return spec

    def raw(self, value: Any) -> bytes:
        """`value` as JSON, now and then mangled, nested too deep or not JSON at all."""
        body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
        roll = self.rng.random()
        if roll < 0.08:
            cut = self.rng.randint(0, len(body))
            return body[:cut] + self.rng.randbytes(self.rng.randint(0, 4)) + body[cut:]
        if roll < 0.12:
            levels = self.pick([MAX_DEPTH, MAX_DEPTH + 1, 1000])
            return b'{"name": "t", "data": ' + b"[" * levels + b"]" * levels + b"}"
        if roll < 0.15:
            return self.rng.randbytes(self.rng.randint(0, 40))
        return body

    def query(self) -> str:
        params = [(self.pick(["max", "worker_id", "capacity", "cloud", "state", "limit",
                              "name", "task", "access_token", "token"]), str(self.value()))
                  for _ in range(self.rng.randint(0, 3))]
        return urllib.parse.urlencode(params)

    def http_request(self) -> tuple[str, str, bytes | None]:
        task_id = urllib.parse.quote(self.pick(self.ids), safe="")
        queue = urllib.parse.quote(self.pick(TEXTS), safe="")
        body = None
        method, path = self.pick([
            ("POST", "/tasks"), ("POST", "/tasks"), ("POST", "/tasks"),
            ("GET", f"/tasks/{task_id}"), ("DELETE", f"/tasks/{task_id}"), ("GET", "/tasks"),
            ("GET", "/workers"), ("GET", "/queues"), ("GET", "/health"),
            ("POST", f"/v1/queue/{queue}"), ("POST", "/v1/queue/t"), ("GET", f"/v1/queue/{queue}"),
            ("PUT", f"/v1/queue/{queue}/configuration"), ("POST", f"/w/{queue}"),
            ("DELETE", f"/w/{queue}"), ("GET", "/w/"), ("GET", f"/w/{queue}"),
            ("PATCH", "/tasks"), ("GET", "/nowhere"), ("POST", "/v1/queue/"),
        ])
        if method in ("POST", "PUT", "DELETE", "PATCH"):
            if path == "/tasks":
                value: Any = self.task() if self.rng.random() < 0.6 else {
                    "tasks": [self.task() for _ in range(self.rng.randint(0, 4))]}
            elif path.startswith("/v1/queue"):
                value = {"tasks": [{"_id": self.pick(self.ids), "status": self.pick(
                    ["done", "failed", "bogus", 1]), "result": self.value()}
                    for _ in range(self.rng.randint(0, 2))],
                    "max": self.pick([0, 0, 1, 100, 101, -1, "x"]),
                    "wait": self.pick([0, 0, 0, 0.01, 61, -1]),
                    "worker_id": self.pick(["p1", "p2", *TEXTS])}
                if "configuration" in path:
                    value = {"interval": self.value(), "x": self.value()}
            else:
                value = {"worker_id": self.pick(["p1", *TEXTS])}
            body = self.raw(value)
        query = self.query() if self.rng.random() < 0.4 else ""
        return method, f"{path}?{query}" if query else path, body

    def ws_query(self) -> str:
        params = [("task", self.pick(["t", "t", "u", "t,u", *TEXTS]))]
        if self.rng.random() < 0.5:
            params.append(("worker_id", self.pick([f"w{self.rng.randint(1, 5)}", *TEXTS])))
        for key in ("capacity", "max", "cloud"):
            if self.rng.random() < 0.2:
                params.append((key, str(self.value())))
        if self.rng.random() < 0.15:
            params = []  # declarations in the first frame
        return urllib.parse.urlencode(params)

    def frame(self, offered: list[str]) -> str:
        roll = self.rng.random()
        if roll < 0.5 and offered:
            answer: Any = {"task_id": self.pick(offered), "result": self.pick(
                ["done", "error", "bogus"]), "data": self.value(), "error": self.value()}
        elif roll < 0.6:
            answer = [{"task_id": self.pick(self.ids), "result": "done"}
                      for _ in range(self.rng.randint(0, 3))]
        elif roll < 0.7:
            answer = [{"name": self.pick(TEXTS), "filter": {"cloud": self.value()}}]
        elif roll < 0.75:
            answer = {"kind": "authorization", "jwt": self.pick(TEXTS)}
        else:
            answer = self.value()
        return self.raw(answer).decode("utf-8", "replace")


async def fuzz_http(served: Served, fuzzer: Fuzzer, tally: Tally) -> None:
    async with http_client(served.url) as http:
        for _ in range(HTTP_REQUESTS):
            if trio.current_time() > tally.deadline:
                break
            method, path, body = fuzzer.http_request()
            response = await http.request(method, path, content=body)
            tally.inputs += 1
            tally.saw(f"{method} {path} {body!r:.200}", response.status_code)
            if method == "POST" and path.startswith("/tasks") and response.status_code == 201:
                answer = response.json()
                ids = answer.get("ids") or [answer["id"]]
                tally.acknowledged.update(ids)
                fuzzer.ids.extend(ids)


async def fuzz_websockets(served: Served, fuzzer: Fuzzer, tally: Tally) -> None:
    for _ in range(WEBSOCKET_SESSIONS):
        if trio.current_time() > tally.deadline:
            break
        tally.inputs += 1
        try:
            async with open_websocket_url(served.ws(f"/work/queue?{fuzzer.ws_query()}")) as ws:
                offered: list[str] = []
                for _ in range(fuzzer.rng.randint(1, 6)):
                    await ws.send_message(fuzzer.frame(offered))
                    tally.inputs += 1
                    with trio.move_on_after(0.05):  # what the hub sends back, if anything
                        frame = json.loads(await ws.get_message())
                        for task in frame if isinstance(frame, list) else [frame]:
                            if isinstance(task, dict) and "task_id" in task:
                                offered.append(task["task_id"])
        except ConnectionRejected as rejected:
            tally.saw(f"upgrade {rejected!r:.200}", rejected.status_code)
        except (ConnectionClosed, HandshakeError) as closed:
            reason = getattr(closed, "reason", None)
            if reason is not None and reason.code == 1011:  # the hub's internal error
                tally.server_errors.append(f"close 1011: {reason.reason}")


async def test_a_bounded_fuzz_run_leaves_no_5xx_no_traceback_and_every_acknowledged_task(
    start_server: StartServer, hub_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    served = await start_server(Settings(port=0, db=hub_db, ping_interval=0.5,
                                         ping_timeout=0.5))
    ids = ["no-such-task"]
    started = trio.current_time()
    tally = Tally(deadline=started + TIME_BUDGET)
    with trio.fail_after(2 * TIME_BUDGET):
        async with trio.open_nursery() as nursery:  # HTTP and WebSocket inputs interleave
            nursery.start_soon(fuzz_http, served, Fuzzer(SEED, ids), tally)
            nursery.start_soon(fuzz_websockets, served, Fuzzer(SEED + 1, ids), tally)
        async with http_client(served.url) as http:
            assert (await http.get("/health")).json()["ok"] is True  # the process is alive
            lost = [task_id for task_id in sorted(tally.acknowledged)
                    if (await http.get(f"/tasks/{task_id}")).status_code != 200]
    tracebacks = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    print(f"\nfuzz: {tally.inputs} inputs in {trio.current_time() - started:.1f} s; statuses "
          f"{dict(sorted(tally.statuses.items()))}; 5xx {len(tally.server_errors)}; tracebacks "
          f"{len(tracebacks)}; acknowledged {len(tally.acknowledged)}, lost {len(lost)}")
    assert tally.server_errors == []
    assert [r.getMessage() for r in tracebacks] == []
    assert lost == []
    assert len(tally.acknowledged) > 10 and tally.statuses.get(400, 0) > 30  # it did fuzz
