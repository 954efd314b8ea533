"""The JSON bodies of the HTTP routes, as msgspec structs.

Routes encode these (or the read models and wire structs they hold), and the
OpenAPI document is generated from the same types, so what is documented is
what is sent.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

from .._model import Task, TaskState
from ..hub import (
    Missed,
    QueueView,
    TaskCancelled,
    TaskDispatched,
    TaskFinished,
    TaskRequeued,
    TaskSubmitted,
    WorkerAttached,
    WorkerCapacityChanged,
    WorkerDetached,
    WorkerView,
)
from ..protocol import (
    MAX_BATCH,
    MAX_LIST,
    MAX_POLL_TASKS,
    MAX_POLL_WAIT,
    MAX_TASK_WAIT,
    TaskSpec,
)
from ._observe import HistoryEntry, Point

__all__ = [
    "AuthInfo",
    "Detached",
    "ErrorBody",
    "EventList",
    "Health",
    "QueueDetail",
    "QueueList",
    "QueueSummaries",
    "QueueSummary",
    "Share",
    "Submitted",
    "SubmittedBatch",
    "TaskBatch",
    "TaskList",
    "WaitedTasks",
    "WorkerDetail",
    "WorkerList",
]

Ratio = Annotated[float, Meta(ge=0, le=1)]


class ErrorBody(msgspec.Struct):
    """Every 4xx and 5xx: the message to read, sometimes with more fields (e.g. the
    task a 409 is about, the rejected reports of a poll)."""

    error: str


class Submitted(msgspec.Struct):
    """POST /tasks with one task: its id, and whether this request created it (a known
    `key` returns the existing task with `created: false`)."""

    id: str
    created: bool


class SubmittedBatch(msgspec.Struct):
    """POST /tasks with `{"tasks": [...]}`: the ids in submission order."""

    ids: list[str]


class TaskBatch(msgspec.Struct, forbid_unknown_fields=True):
    """POST /tasks with several tasks: all stored, or none."""

    tasks: Annotated[list[TaskSpec], Meta(min_length=1, max_length=MAX_BATCH)]


class TaskList(msgspec.Struct):
    tasks: list[Task]


class WaitedTasks(msgspec.Struct):
    """POST /tasks/wait: each id named once, in the order asked."""

    #: the tasks that are final, as stored
    finished: list[Task]
    #: ids of the tasks not final yet
    pending: list[str]
    #: ids of no task (never submitted, or purged)
    unknown: list[str]


class WorkerList(msgspec.Struct):
    workers: list[WorkerView]


class QueueList(msgspec.Struct):
    queues: dict[str, QueueView]


class Health(msgspec.Struct, omit_defaults=True):
    ok: bool
    #: attached workers
    workers: int
    #: tasks not final
    unfinished: int
    #: several hubs on one PostgreSQL database: "leader" (it schedules) or "follower"
    role: str | None = None
    #: the leader's advertised URL, as this hub last read it
    leader: str | None = None


class AuthInfo(msgspec.Struct):
    """What the presented token may do: the dashboard shows actions by it."""

    #: tokens are configured (else everything is open, on loopback only)
    enabled: bool
    #: roles the token holds: worker, producer, admin (all of them with auth off)
    roles: list[str]


class QueueSummary(msgspec.Struct):
    """A queue at a glance, beside its `QueueView` counts."""

    #: answers per second over the last ten seconds
    done_rate: float
    failed_rate: float
    #: seconds from submission to first dispatch, over its last 1000 dispatches
    dispatch_p50: float | None
    dispatch_p99: float | None
    #: seconds from submission to done or failed, over its last 1000 answers
    end_to_end_p50: float | None
    end_to_end_p99: float | None
    #: Jain's index of the tasks dispatched to its attached workers (1: perfectly even)
    fairness: Ratio | None
    #: attempts put back in the queue, by why they ended
    reschedules: dict[str, int]


class QueueSummaries(msgspec.Struct):
    queues: dict[str, QueueSummary]


class Share(msgspec.Struct):
    """One worker's part of a queue."""

    worker: str
    dispatched: int
    outstanding: int


class QueueDetail(msgspec.Struct):
    name: str
    view: QueueView
    summary: QueueSummary
    #: one point a second for the last ten minutes, oldest first: [at, queued, running,
    #: done/s, failed/s, dispatch p50, dispatch p99, end-to-end p50, end-to-end p99]
    series: list[Point]
    spread: list[Share]


class WorkerDetail(msgspec.Struct):
    id: str
    #: the worker as attached now; None once it has detached
    view: WorkerView | None
    #: tasks it runs now
    current: list[str]
    #: its last 50 attempts, oldest first
    history: list[HistoryEntry]


class Detached(msgspec.Struct):
    """DELETE /workers/{id}: the worker's connection is closed and its tasks rescheduled."""

    worker: str
    requeued: int


#: any event of the hub's stream, told apart by its `type`
AnyEvent = (TaskSubmitted | TaskDispatched | TaskRequeued | TaskFinished | TaskCancelled
            | WorkerAttached | WorkerDetached | WorkerCapacityChanged | Missed)


class EventList(msgspec.Struct):
    events: list[AnyEvent]


# -- query parameters, documented (the routes read them from the query string) -----


class TaskWaitQuery(msgspec.Struct):
    #: long-poll: seconds to wait for a final state
    wait: Annotated[float, Meta(ge=0, le=MAX_TASK_WAIT)] = 0.0


class TaskListQuery(msgspec.Struct):
    name: str | None = None
    state: TaskState | None = None
    limit: Annotated[int, Meta(ge=1, le=MAX_LIST)] = 100


class RecentQuery(msgspec.Struct):
    limit: Annotated[int, Meta(ge=1, le=500)] = 100


class PollQuery(msgspec.Struct):
    worker_id: str | None = None
    #: tasks to take (0: only report and keep the worker alive)
    max: Annotated[int, Meta(ge=0, le=MAX_POLL_TASKS)] = 1
    #: seconds of long poll
    wait: Annotated[float, Meta(ge=0, le=MAX_POLL_WAIT)] = 0.0


class RegistryQuery(msgspec.Struct):
    #: one worker's registration and counters
    worker_id: str | None = None
    #: one queue's workers and counters
    queue_name: str | None = None


class WorkerIdHeader(msgspec.Struct):
    worker_id: str | None = msgspec.field(default=None, name="X-Worker-Id")


class PresqueHeaders(msgspec.Struct):
    presque: str | None = msgspec.field(default=None, name="X-presque-workerid")
    worker_id: str | None = msgspec.field(default=None, name="X-Worker-Id")


# -- presque and Katar views ------------------------------------------------------


class QueueSettings(msgspec.Struct):
    """A queue's application settings for its pollers; fields beyond `interval` are
    kept and handed out as they are."""

    #: milliseconds between polls
    interval: Annotated[float, Meta(gt=0)] = 30_000


class Configuration(msgspec.Struct):
    configuration: QueueSettings


class RegisteredWorker(msgspec.Struct):
    worker_id: str
    #: unix seconds
    started_at: int
    processed: int
    failed: int


class RegisteredQueue(msgspec.Struct):
    queue_name: str
    workers_list: list[str]
    processed: int
    failed: int


#: the shape of an arbitrary JSON object in the document
AnyObject = dict[str, Any]
