"""Locust entry point: the users of the plan named by `WORKYARD_LOAD_PLAN`.

`python loadtest/run.py` writes the plan and starts locust with this file; to
drive a hub by hand, write one with `run.py SCENARIO --plan-only` and run
`WORKYARD_LOAD_PLAN=plan.json locust -f loadtest/locustfile.py --host URL`.

Arrivals start (time 0 of the scenario) once the hub lists the whole fleet as
attached, as in the simulator, where every worker attaches before the first
arrival; each locust process watches for that itself. Producers stop
submitting `duration` seconds later. The master (or the only process) then
watches `GET /queues` and stops the test as soon as the hub holds no queued or
running task, or when `drain` seconds run out, and writes what it saw to the
plan's `drain_file`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.plan import ATTACH_LIMIT, PLAN_ENV, Plan
from loadtest.users import Clock, user_classes

#: seconds after the last submission before the watcher starts looking
SETTLE = 0.5
#: seconds between looks at GET /queues
LOOK_EVERY = 0.2
#: seconds to wait once idle, so the producers' result long-polls return
GRACE = 1.0

PLAN = Plan.load(os.environ[PLAN_ENV])
globals().update({cls.__name__: cls for cls in user_classes(PLAN)})


def _get(host: str, path: str) -> Any:
    with urllib.request.urlopen(f"{host}{path}", timeout=5) as resp:
        return json.load(resp)


def _hub_busy(host: str) -> int:
    """Tasks the hub holds that are queued or running."""
    queues: dict[str, dict[str, int]] = _get(host, "/queues")["queues"]
    return sum(q["queued"] + q["running"] for q in queues.values())


def _await_fleet(host: str) -> None:
    """Until the hub lists every planned worker (a poller attaches with its first poll)."""
    planned = sum(g.count for g in PLAN.fleet)
    deadline = time.time() + ATTACH_LIMIT
    while time.time() < deadline:
        try:
            if len(_get(host, "/workers")["workers"]) >= planned:
                return
        except OSError:
            pass
        gevent.sleep(LOOK_EVERY / 2)


def _watch_drain(environment: Environment) -> None:
    assert Clock.started is not None and environment.host
    load_end = Clock.started + PLAN.duration
    gevent.sleep(max(0.0, load_end + SETTLE - time.time()))
    drained_at: float | None = None
    busy = -1
    while time.time() < Clock.hard_end():
        try:
            busy = _hub_busy(environment.host)
        except OSError:
            busy = -1
        if busy == 0:
            drained_at = time.time()
            break
        gevent.sleep(LOOK_EVERY)
    if drained_at is not None:
        gevent.sleep(GRACE)
    outcome: dict[str, Any] = {"load_start": Clock.started, "load_end": load_end,
                               "drained_at": drained_at, "still_busy": max(busy, 0)}
    if PLAN.drain_file:
        Path(PLAN.drain_file).write_text(json.dumps(outcome, indent=1))
    assert environment.runner is not None
    environment.runner.quit()


def _start(environment: Environment) -> None:
    assert environment.host
    _await_fleet(environment.host)
    Clock.start(PLAN)
    if not isinstance(environment.runner, WorkerRunner):
        _watch_drain(environment)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    gevent.spawn(_start, environment)
