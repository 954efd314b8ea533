"""`workyard worker` (a demo worker) and `workyard submit`, on top of workyard.client."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

from ..client import Handlers, HubError, Job, PollingWorker, Producer, Worker, WorkerRejected

__all__ = ["add_commands"]

log = logging.getLogger("workyard.cli")

DEFAULT_URL = "http://127.0.0.1:8470"


def _pairs(values: list[str] | None, flag: str, *, merge: bool) -> dict[str, str]:
    """`["k=a,b", "x=y"]` → `{"k": "a,b", "x": "y"}`; a repeated key joins its values
    with a comma if `merge`, else is an error."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"workyard: {flag} takes KEY=VALUE, not {item!r}")
        if key in out and not merge:
            raise SystemExit(f"workyard: {flag} {key} is given twice")
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


# --- worker ----------------------------------------------------------------------------


def demo_handler(mode: str, sleep: float) -> Callable[[Job], Awaitable[Any]]:
    """echo: return the data; sleep: wait `data["sleep"]` (or `sleep`) seconds, then echo;
    fail: raise."""

    async def handle(job: Job) -> Any:
        if mode == "fail":
            log.info("task %s (%s): failing it on purpose (--mode fail)", job.id, _what(job))
            raise RuntimeError(f"{job.name} failed on purpose (--mode fail)")
        started = time.monotonic()
        if mode == "sleep":
            seconds = job.data.get("sleep", sleep) if isinstance(job.data, dict) else sleep
            await trio.sleep(float(seconds))
        # one line per task at INFO, so a user watching the terminal sees work flow
        if log.isEnabledFor(logging.INFO):
            log.info("task %s (%s): done in %.2f s", job.id, _what(job),
                     time.monotonic() - started)
        return job.data

    return handle


def _what(job: Job) -> str:
    return " ".join([job.name, *(f"{k}={v}" for k, v in sorted(job.attrs.items()))])


def _setup_logging(level: str) -> None:
    from . import _setup_logging as setup

    setup(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


def _worker(args: argparse.Namespace) -> int:
    _setup_logging(args.log_level)
    handlers = Handlers()
    handle = demo_handler(args.mode, args.sleep)
    filters = _pairs(args.filter, "--filter", merge=True)
    for name in dict.fromkeys(args.task):
        handlers.add(name, handle, **filters)
    options: dict[str, Any] = {"worker_id": args.worker_id, "token": args.token,
                               "concurrency": args.concurrency, "handlers": handlers,
                               "report_stats": args.report_stats}
    worker: Worker | PollingWorker
    if args.poll:
        worker = PollingWorker(args.url, **options)
    else:
        worker = Worker(args.url, capacity=args.capacity, **options)
    try:
        trio.run(_run_until_signalled, worker.run)
    except WorkerRejected as exc:
        log.error("%s", exc)
        return 2
    return 0


async def _run_until_signalled(run: Callable[[], Awaitable[None]]) -> None:
    """Run `run` until it returns or raises, or SIGINT/SIGTERM arrives (then stop cleanly)."""
    failure: list[BaseException] = []

    async def guarded() -> None:
        try:
            await run()
        except WorkerRejected as exc:
            failure.append(exc)
        nursery.cancel_scope.cancel()

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded)
            async for signum in signals:
                log.info("stopping (%s)", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    if failure:
        raise failure[0]


# --- submit ----------------------------------------------------------------------------


def _submit(args: argparse.Namespace) -> int:
    """Submit, and tell a refusal or an unreachable hub in one line (exit 2)."""
    _setup_logging(args.log_level)
    try:
        return _submit_and_wait(args)
    except HubError as exc:
        print(f"workyard submit: the hub at {args.url} refused: {exc.message} "
              f"(HTTP {exc.status})", file=sys.stderr)
    except httpx.TransportError as exc:
        print(f"workyard submit: cannot reach the hub at {args.url} ({exc or type(exc).__name__})"
              "; is `workyard serve` running? Pass --url or set WORKYARD_URL to reach another",
              file=sys.stderr)
    return 2


def _submit_and_wait(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise SystemExit("workyard: --count must be 1 or more")
    if args.key is not None and args.count > 1:
        raise SystemExit("workyard: --key names one task; it cannot be used with --count")
    try:
        data = json.loads(args.data) if args.data is not None else None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"workyard: --data is not valid JSON: {exc}") from None
    attrs = _pairs(args.attr, "--attr", merge=False)
    task: dict[str, Any] = {"name": args.name, "data": data, "attrs": attrs,
                            "priority": args.priority, "timeout": args.timeout,
                            "retries": args.retries}
    if args.key is not None:
        task["key"] = args.key
    with Producer(args.url, token=args.token) as hub:
        if args.count == 1:
            ids = [hub.submit(**task)]
        else:
            ids = hub.submit_many([task] * args.count)
        log.info("submitted %d %s task(s)", len(ids), args.name)
        if args.wait is None:
            for task_id in ids:
                print(task_id)
            return 0
        final = {task["id"]: task for task in hub.results(ids, wait=args.wait)}
        unfinished = 0
        for task_id in ids:  # one not final by then: as it stands
            result = final.get(task_id) or hub.result(task_id, wait=0)
            unfinished += result["state"] != "done"
            print(json.dumps(result), flush=True)
    if unfinished:
        log.warning("%d of %d task(s) did not finish as done", unfinished, len(ids))
    return 1 if unfinished else 0


# --- argparse --------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("WORKYARD_URL", DEFAULT_URL),
                   help="the hub's base URL, or several hubs on one database comma-separated "
                   f"(tried in turn) (default $WORKYARD_URL or {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("WORKYARD_TOKEN"),
                   help="bearer token (default $WORKYARD_TOKEN)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="run a demo worker (echo, sleep or fail)",
                       description="A demo worker: echo returns the task's data, sleep waits "
                       "then echoes, fail raises. Stops cleanly on Ctrl-C or SIGTERM.")
    _common(w)
    w.add_argument("--task", action="append", required=True, metavar="NAME",
                   help="a task name to take (repeat for more)")
    w.add_argument("--filter", action="append", metavar="KEY=V1,V2",
                   help="take only tasks whose attribute KEY is one of the values (repeatable)")
    w.add_argument("--mode", choices=["echo", "sleep", "fail"], default="echo")
    w.add_argument("--sleep", type=float, default=1.0, metavar="S",
                   help="seconds to sleep in sleep mode unless the data says {\"sleep\": S}")
    w.add_argument("--concurrency", type=int, default=8, metavar="N",
                   help="handlers run at once (default 8)")
    w.add_argument("--capacity", type=int, metavar="N",
                   help="tasks the hub may push ahead (default: the concurrency; 0: unlimited)")
    w.add_argument("--worker-id", metavar="ID", help="default: host-pid-random")
    w.add_argument("--poll", action="store_true",
                   help="poll over HTTP instead of holding a WebSocket")
    w.add_argument("--report-stats", type=float, metavar="S",
                   help="every S seconds, report this machine's CPU, memory, disk and "
                        "network to the hub's ClearML registry (workers.status_report)")
    w.set_defaults(run=_worker)

    s = sub.add_parser("submit", help="submit tasks, optionally wait for their results",
                       description="Submit COUNT copies of a task. Prints the ids, or with "
                       "--wait each task as a JSON line once final; exits 1 if any is not done.")
    _common(s)
    s.add_argument("name", metavar="NAME", help="task name")
    s.add_argument("--attr", action="append", metavar="KEY=VALUE", help="task attribute")
    s.add_argument("--data", metavar="JSON", help="task data as JSON")
    s.add_argument("--count", type=int, default=1, metavar="N", help="how many (batched)")
    s.add_argument("--priority", type=int, default=0, metavar="P")
    s.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds a worker has per attempt (default 60)")
    s.add_argument("--retries", type=int, default=3, metavar="N",
                   help="attempts lost to timeouts or lost workers that are retried (default 3)")
    s.add_argument("--key", metavar="K", help="idempotency key")
    s.add_argument("--wait", type=float, metavar="S",
                   help="wait up to S seconds in all for the results and print them")
    s.set_defaults(run=_submit)

