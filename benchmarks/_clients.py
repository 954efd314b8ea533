"""Client processes for the benchmarks, driven over a multiprocessing pipe.

* `workers`: WebSocket workers (seed 000) that answer every task at once.
* `echo`: the same connections against an echo server, keeping a window of
  messages in flight; the round trips per second are the ceiling.
* `idle`: connections that attach and then only answer pings (memory benchmark).
* `pollers`: HTTP long-polling workers (seed 002 with workyard's `worker_id`,
  `max` and `wait`) that report every task done in their next poll.

Each process prints nothing; it sends ("ready", n) once connected and a final
report when told to stop (or, for `echo`, when its share is done).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import msgspec
from _netclient import Conn, HttpConn, connect, connect_http, run_loop

__all__ = ["ClientGroup"]

#: the size of a typical task frame, so echo messages cost what task frames cost
ECHO_MESSAGE = (b'{"task_id":"0123456789abcdef0123456789abcdef","task_name":"peak","attrs":{},'
                b'"data":{"i":12345},"timeout":60.0}')


class _TaskId(msgspec.Struct):
    task_id: str


#: one task per frame (seed 000), or a JSON array of them (the hub's `max` extension)
_decode_tasks = msgspec.json.Decoder(_TaskId | list[_TaskId]).decode  # type: ignore[arg-type]


def _answer(task_id: str) -> bytes:
    return b'{"task_id":"' + task_id.encode() + b'","result":"done","data":{"ok":true}}'


def _stop_when_told(pipe: Connection) -> Callable[[], bool]:
    stop = False

    def check() -> bool:
        nonlocal stop
        if not stop and pipe.poll():
            stop = pipe.recv() == "stop"
        return stop
    return check


def _open(host: str, port: int, paths: list[str]) -> list[Conn]:
    conns = []
    for path in paths:
        for attempt in range(50):  # a listen backlog that overflowed under a burst: retry
            try:
                conns.append(connect(host, port, path))
                break
            except (ConnectionError, TimeoutError, OSError):
                if attempt == 49:
                    raise
                time.sleep(0.1)
    return conns


def workers(pipe: Connection, host: str, port: int, paths: list[str], batch: bool) -> None:
    """Answer each task as soon as it arrives: one frame per answer (seed 000), or, when
    `batch`, the answers to everything one read brought in one JSON array."""
    conns = _open(host, port, paths)
    answered = 0

    def on_frame(conn: Conn, frame: bytes) -> None:
        nonlocal answered
        tasks = _decode_tasks(frame)
        for task in tasks if isinstance(tasks, list) else (tasks,):
            answered += 1
            if batch:
                conn.pending.append(_answer(task.task_id))
            else:
                conn.send(_answer(task.task_id))

    for conn in conns:
        conn.on_message = on_frame
    pipe.send(("ready", len(conns)))
    stopped = _stop_when_told(pipe)
    run_loop(conns, stopped, after_feed=_send_array if batch else None)
    pipe.send(("done", {"answered": answered}))


def _send_array(conn: Conn) -> None:
    pending = conn.pending
    if pending:
        conn.send(pending[0] if len(pending) == 1 else b"[" + b",".join(pending) + b"]")
        pending.clear()


def echo(pipe: Connection, host: str, port: int, paths: list[str], per_conn: int,
         window: int) -> None:
    """Once told "go", each connection sends `per_conn` messages, `window` in flight."""
    conns = _open(host, port, paths)
    sent = dict.fromkeys(conns, 0)
    outstanding = len(conns) * per_conn
    received = 0

    def on_echo(conn: Conn, frame: bytes) -> None:
        nonlocal received
        received += 1
        if sent[conn] < per_conn:
            sent[conn] += 1
            conn.send(ECHO_MESSAGE)

    for conn in conns:
        conn.on_message = on_echo
    pipe.send(("ready", len(conns)))
    assert pipe.recv() == "go"
    start = time.time()
    for conn in conns:
        for _ in range(min(window, per_conn)):
            conn.send(ECHO_MESSAGE)
        sent[conn] = min(window, per_conn)
        conn.flush()
    run_loop(conns, lambda: received >= outstanding)
    end = time.time()
    pipe.send(("done", {"start": start, "end": end, "round_trips": received}))
    assert pipe.recv() == "stop"


def idle(pipe: Connection, host: str, port: int, paths: list[str]) -> None:
    """Attach and stay: only pings are answered."""
    conns = _open(host, port, paths)
    pipe.send(("ready", len(conns)))
    run_loop(conns, _stop_when_told(pipe), tick=0.2)
    pipe.send(("done", {"open": sum(not c.closed for c in conns)}))


class _Polled(msgspec.Struct):
    id: str = msgspec.field(name="_id")


class _Poll(msgspec.Struct):
    tasks: list[_Polled]


_decode_poll = msgspec.json.Decoder(_Poll).decode


def pollers(pipe: Connection, host: str, port: int, worker_ids: list[str], queue: str,
            per_poll: int, wait: float) -> None:
    """Long-poll for up to `per_poll` tasks; each poll reports the previous poll's tasks done."""
    conns = [connect_http(host, port) for _ in worker_ids]
    answered = 0
    stopped = _stop_when_told(pipe)

    def poll(conn: HttpConn, worker_id: str, done: list[_Polled]) -> None:
        reports = b",".join(b'{"_id":"' + t.id.encode() + b'","status":"done"}' for t in done)
        conn.request("POST", f"/v1/queue/{queue}?worker_id={worker_id}&max={per_poll}"
                     f"&wait={wait:g}", b'{"tasks":[' + reports + b"]}")

    def on_response(worker_id: str) -> Callable[[HttpConn, int, bytes], None]:
        def handle(conn: HttpConn, status: int, body: bytes) -> None:
            nonlocal answered
            if status not in (200, 204):
                raise RuntimeError(f"poll answered {status}: {body[:200]!r}")
            if stopped():
                return
            tasks = _decode_poll(body).tasks if status == 200 else []
            answered += len(tasks)
            poll(conn, worker_id, tasks)
        return handle

    for conn, worker_id in zip(conns, worker_ids, strict=True):
        conn.on_response = on_response(worker_id)
        poll(conn, worker_id, [])
        conn.flush()
    pipe.send(("ready", len(conns)))
    run_loop(conns, stopped)
    pipe.send(("done", {"answered": answered}))


_ROLES: dict[str, Callable[..., None]] = {
    "workers": workers, "echo": echo, "idle": idle, "pollers": pollers,
}


def _main(role: str, pipe: Connection, *args: Any) -> None:
    _ROLES[role](pipe, *args)


class ClientGroup:
    """Several client processes sharing out connections, each with its own pipe."""

    def __init__(self, role: str, host: str, port: int, paths: list[str], processes: int,
                 *args: Any) -> None:
        ctx = mp.get_context("spawn")
        self.pipes: list[Connection] = []
        self.procs: list[mp.process.BaseProcess] = []
        for i in range(processes):
            share = paths[i::processes]
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_main, args=(role, child, host, port, share, *args),
                               daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def wait_ready(self, timeout: float = 120.0) -> int:
        total = 0
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            if not pipe.poll(timeout):
                raise TimeoutError(f"client process {proc.pid} did not connect in {timeout} s")
            kind, n = pipe.recv()
            assert kind == "ready", kind
            total += n
        return total

    def send(self, message: str) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def reports(self, timeout: float = 300.0) -> list[dict[str, Any]]:
        out = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError("a client process sent no report")
            kind, report = pipe.recv()
            assert kind == "done", kind
            out.append(report)
        return out

    def close(self) -> None:
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
