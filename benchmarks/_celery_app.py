"""The Celery side of `peer_celery.py`: one app, its two tasks, configured from the
environment so that the producer and each `celery worker` process agree.

    PEER_REDIS      broker and result backend (redis://127.0.0.1:6379/0)
    PEER_QUEUE      the queue of this run (unique, so no other user's keys are touched)
    PEER_PREFETCH   worker_prefetch_multiplier (Celery's default: 4)
    PEER_ACKS_LATE  "1": task_acks_late (default off)
    PEER_WORKER     this worker's name, returned by `busy`
"""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("peer", broker=os.environ.get("PEER_REDIS", "redis://127.0.0.1:6379/0"),
             backend=os.environ.get("PEER_REDIS", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue=os.environ.get("PEER_QUEUE", "peer"),
    worker_prefetch_multiplier=int(os.environ.get("PEER_PREFETCH", "4")),
    task_acks_late=os.environ.get("PEER_ACKS_LATE") == "1",
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
WORKER = os.environ.get("PEER_WORKER", "")


@app.task(name="noop")
def noop(i: int) -> int:
    return i


@app.task(name="busy")
def busy(seconds: float) -> list[object]:
    """Sleep, as a task that takes time; say who ran it and for how long."""
    start = time.perf_counter()
    time.sleep(seconds)
    return [WORKER, time.perf_counter() - start]
