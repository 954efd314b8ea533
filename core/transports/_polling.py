"""Polling workers: leases and long polls, with no HTTP in them.

The HTTP routes of seed 002 (`compat`) and the simulator both drive this code, so
a simulated poller lives by the same leases and liveness as a real one.

Identity. A named poller is one hub worker, whatever queues it polls: polling a
second queue adds a subscription to its session, polling a queue with other
filters replaces that queue's subscription in place (its leases and counters
stay), and its outstanding tasks are counted once across queues for the even
spread. Between polls it stays attached with no room, keeping its leases; each
poll opens room for `max` tasks of that queue, and a waiting poll is an idle
candidate like an open WebSocket.

Anonymous pollers (seed 002 clients send no identity). Each anonymous poll is an
ephemeral worker "anonymous-poll-…", attached for the poll and kept while it holds
leases. A report without an id is accepted for a task one of whose attempts went
to an anonymous poller (the most recent such attempt answers). An anonymous
poller cannot prove it is alive, so its leases end only at the task's timeout.

Leases. A dispatched task is leased for its `timeout`: the hub's queue actors
reschedule it when it runs out, exactly as for a lost WebSocket worker. A named
poller is alive while a poll is open and for `poll_liveness` seconds after its
last request (the hub's liveness watch); a poller whose long poll is cut off
after tasks were handed to it is detached at once. A report after its lease
ended is a late answer: the first valid answer wins.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .._errors import Conflict, InvalidInput, NotFound, WorkyardError
from .._model import Subscription, Task
from ..hub import Hub, Liveness, Session
from ..protocol import RESERVED_WORKER_PREFIX, Answer, Decoder, Report

__all__ = ["ANONYMOUS", "Poll", "Poller", "PollingFleet", "Problem"]

log = logging.getLogger("workyard.polling")

ANONYMOUS = RESERVED_WORKER_PREFIX + "poll-"
TRANSPORT = "polling"


@dataclass(eq=False, slots=True)
class Poll:
    """One open poll: what was dispatched into it, and how it ended if cut short."""

    tasks: list[Task] = field(default_factory=list)
    wake: trio.Event = field(default_factory=trio.Event)
    #: the worker was detached meanwhile: its tasks were rescheduled, not ours to hand out
    gone: str | None = None
    #: called when the poll has something to answer with (the simulator's clock hook)
    notify: Callable[[], None] | None = None

    def ready(self) -> None:
        self.wake.set()
        if self.notify is not None:
            self.notify()


class Poller:
    """The hub's `Link` to one polling worker: its open polls, one per queue."""

    __slots__ = ("anonymous", "polls", "session", "unclaimed", "worker_id")

    def __init__(self, worker_id: str, anonymous: bool) -> None:
        self.worker_id = worker_id
        self.anonymous = anonymous
        self.polls: dict[str, Poll] = {}
        #: tasks delivered with no poll open for their queue (the scheduler never does
        #: that; kept, not lost)
        self.unclaimed: dict[str, list[Task]] = {}
        self.session: Session | None = None

    def deliver(self, task: Task) -> None:
        poll = self.polls.get(task.name)
        if poll is None:
            self.unclaimed.setdefault(task.name, []).append(task)
            return
        poll.tasks.append(task)
        poll.ready()

    def close(self, reason: str) -> None:
        for poll in self.polls.values():
            poll.gone = reason
            poll.ready()
        self.polls.clear()


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one report entry was refused: its error and its task (if named)."""

    error: WorkyardError
    task_id: str | None


class PollingFleet:
    """The polling workers of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._anonymous = itertools.count(1)
        self._prefix = os.urandom(3).hex()

    # -- attach and detach ------------------------------------------------------------

    def poller(self, worker_id: str | None, subscription: Subscription, *,
               worker_pool: str | None = None, worker_group: str | None = None) -> Poller:
        """The poller of `worker_id`, attached (or resubscribed) to poll `subscription`'s
        queue with its filters; a fresh one for each anonymous poll. A named poller may
        belong to a worker pool (declared on its first poll)."""
        if worker_id is None:
            if worker_pool is not None:
                raise InvalidInput("a poller in a worker pool needs a `worker_id`")
            return self._attach(f"{ANONYMOUS}{self._prefix}-{next(self._anonymous)}",
                                [subscription], anonymous=True)
        session = self.hub.sessions.attached.get(worker_id)
        if session is None:
            return self._attach(worker_id, [subscription], anonymous=False,
                                worker_pool=worker_pool, worker_group=worker_group)
        if session.transport != TRANSPORT or not isinstance(session.link, Poller):
            raise Conflict(f"worker id {worker_id!r} is in use by a {session.transport} worker")
        if worker_pool is not None and worker_pool != session.worker_pool:
            raise Conflict(f"worker {worker_id!r} is attached in worker pool "
                           f"{session.worker_pool!r}; it cannot move to {worker_pool!r}")
        self.hub.alive(session)
        others = [s for s in session.subscriptions if s.name != subscription.name]
        if len(others) + 1 != len(session.subscriptions) or subscription not in \
                session.subscriptions:
            self.hub.update(worker_id, subscriptions=[*others, subscription])
        return session.link

    def _attach(self, key: str, subs: list[Subscription], *, anonymous: bool,
                worker_pool: str | None = None, worker_group: str | None = None) -> Poller:
        poller = Poller(key, anonymous)
        poller.session = self.hub.attach(key, subs, poller, capacity=0, transport=TRANSPORT,
                                         liveness=Liveness.POLL, anonymous=anonymous,
                                         worker_pool=worker_pool, worker_group=worker_group)
        return poller

    def unsubscribe(self, worker_id: str, queue: str, reason: str) -> None:
        """`worker_id` stops polling `queue`; a worker left with no queue is detached
        and its leases rescheduled at once (it said it is done)."""
        session = self.hub.sessions.attached.get(worker_id)
        if session is None or not isinstance(session.link, Poller):
            return
        rest = [s for s in session.subscriptions if s.name != queue]
        if not rest:
            self.drop(session.link, reason)
        elif len(rest) != len(session.subscriptions):
            self.hub.update(worker_id, subscriptions=rest)

    def drop(self, poller: Poller, reason: str) -> None:
        """Detach a poller: its leases are rescheduled."""
        poller.close(reason)
        self.hub.detach(poller.worker_id, poller, reason)

    def _release_anonymous(self, poller: Poller) -> None:
        """An anonymous poller holding nothing and not polling has no reason to stay."""
        if not poller.anonymous or poller.polls:
            return
        state = self.hub.scheduler.workers.get(poller.worker_id)
        if state is None or not state.outstanding:
            self.drop(poller, "nothing left to report")

    # -- polls --------------------------------------------------------------------------

    async def take(self, poller: Poller, queue: str, room: int, wait: float) -> list[Task]:
        """Open a poll for up to `room` tasks of `queue`; wait up to `wait` s for the
        first one. Raises Conflict if the worker was detached meanwhile."""
        poll = self.open(poller, queue, room)
        try:
            if not poll.tasks and wait > 0 and poll.gone is None:
                with trio.move_on_after(wait):
                    await poll.wake.wait()
        except trio.Cancelled:  # the client went away (or we stop): nobody will see these
            self.close(poller, queue, poll, cut_off=True)
            raise
        return self.close(poller, queue, poll)

    def open(self, poller: Poller, queue: str, room: int) -> Poll:
        """The first half of `take`: open the poll (tasks may arrive in it at once)."""
        hub, session = self.hub, poller.session
        assert session is not None
        old = poller.polls.pop(queue, None)
        if old is not None:  # a newer poll from the same worker supersedes it
            hub.close_poll(poller.worker_id, queue)
            old.ready()
        waiting = poller.unclaimed.get(queue, [])
        poll = poller.polls[queue] = Poll(tasks=waiting[:room])
        del waiting[:room]
        session.holds += 1
        if room > len(poll.tasks):
            hub.open_poll(poller.worker_id, queue, room - len(poll.tasks))
        return poll

    def close(self, poller: Poller, queue: str, poll: Poll, *,
              cut_off: bool = False) -> list[Task]:
        """The second half of `take`: end the poll, and answer with what it got. A poll
        cut off with tasks in it (nobody will see them) detaches its worker."""
        hub, session = self.hub, poller.session
        assert session is not None
        if cut_off and poll.tasks and poll.gone is None:
            self.drop(poller, "its poll was cut off with tasks in it")
        session.holds -= 1
        if poller.polls.get(queue) is poll:
            del poller.polls[queue]
            hub.close_poll(poller.worker_id, queue)
        hub.alive(session)
        if cut_off:
            return []
        if poll.gone is not None:
            raise Conflict(f"this poll ended: {poll.gone}")
        if not poll.tasks:
            self._release_anonymous(poller)
        return poll.tasks

    # -- reports ------------------------------------------------------------------------

    def _answerer(self, task: Task, worker_id: str | None) -> str | None:
        """The worker whose attempt at `task` this reporter may answer, if any."""
        if worker_id is None:
            return next((a.worker for a in reversed(task.attempts)
                         if a.worker.startswith(ANONYMOUS)), None)
        return worker_id if any(a.worker == worker_id for a in task.attempts) else None

    async def report(self, worker_id: str | None,
                     reports: list[Report | Problem]) -> list[Problem]:
        """Apply each report that is valid; return the problems with the others, in
        order (entries the caller could not even decode come as their problem).

        A report for a task that is already final and was leased to this worker is a
        harmless duplicate, not a problem."""
        problems: list[Problem] = []
        whose = "an anonymous poller" if worker_id is None else f"worker {worker_id!r}"
        for entry in reports:
            if isinstance(entry, Problem):
                problems.append(entry)
                continue
            task_id = str(entry.id)
            try:
                error = _error_of(entry)
            except InvalidInput as exc:
                problems.append(Problem(exc, task_id))
                continue
            task = self.hub.scheduler.tasks.get(task_id)
            if task is None:  # final, or never existed
                final = await self.hub.get(task_id)
                if final is None:
                    problems.append(Problem(NotFound(f"task {task_id!r}: no such task"),
                                            task_id))
                elif self._answerer(final, worker_id) is None:
                    problems.append(Problem(
                        Conflict(f"task {task_id!r}: not leased to {whose}"), task_id))
                continue
            key = self._answerer(task, worker_id)
            if key is None:
                problems.append(Problem(
                    Conflict(f"task {task_id!r}: not leased to {whose}"), task_id))
                continue
            ok = entry.status == "done"
            ignored = self.hub.answer(key, Answer(task_id, "done" if ok else "error",
                                                  data=entry.result, error=error))
            if ignored is not None:  # cannot happen after the checks above; say so if it does
                problems.append(Problem(Conflict(f"task {task_id!r}: {ignored}"), task_id))
            elif worker_id is None:
                session = self.hub.sessions.attached.get(key)
                if session is not None and isinstance(session.link, Poller):
                    self._release_anonymous(session.link)
        return problems



_any: Decoder[Any] = Decoder()


def _error_of(report: Report) -> str | None:
    """A report's error text (a string as is, any other JSON value as its JSON), checked
    against its status: a "failed" report must say why."""
    task_id = str(report.id)
    if report.status not in ("done", "failed"):
        raise InvalidInput(f"task {task_id!r}: status must be \"done\" or \"failed\", "
                           f"not {report.status!r}")
    value = _any.decode(report.error)
    error = None if value is None or value == "" else (
        value if isinstance(value, str) else bytes(report.error).decode())
    if report.status == "failed" and error is None:
        raise InvalidInput(f"task {task_id!r}: a \"failed\" report needs a non-empty `error`")
    return error
