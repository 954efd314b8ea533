"""What a load run proved, computed after the drain from what the hub recorded.

Pure functions over the hub's final tasks (with their attempts), snapshots of
`GET /workers` taken during the run, and the ids producers were given:

* tasks not final after the drain: `unfinished` ones the hub still holds (queued,
  or running on a worker, when the drain limit struck) and `lost` ones it does not
  (must be 0), as the simulator counts them;
* throughput and hub-side latency, defined as the simulator defines them
  (done tasks per second from the start of arrivals to the last final state;
  created → done and created → first dispatch, percentiles interpolated);
* Jain's index within each fleet group (equally specific, equally able
  workers), of tasks processed and of tasks assigned (the simulator's measure);
* most-specific violations: attempts given to a worker while a more specific
  matching worker was attached (the hub must never do this).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workyard import Outcome, Subscription, Task, TaskState
from workyard.sim import jain_index, percentile

from .plan import Plan, group_of

__all__ = [
    "Attachment",
    "Figures",
    "Snapshot",
    "Summary",
    "Violation",
    "attachments",
    "counts_by_worker",
    "summarize",
    "violations",
]

#: seconds of clock slack when deciding whether a worker was attached at an instant
SLACK = 0.05
#: attempt outcomes in which the worker processed the task (answered it)
ANSWERED = frozenset({Outcome.DONE, Outcome.ERROR})


@dataclass(frozen=True, slots=True)
class Snapshot:
    """`GET /workers` as seen at `at` (when the request was sent)."""

    at: float
    workers: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Attachment:
    """One connection of one worker, attached at least from `since` to `until`."""

    worker: str
    since: float
    until: float
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class Violation:
    task: str
    worker: str
    specificity: int
    #: a more specific matching worker attached at the time
    better: str
    better_specificity: int
    at: float


def _subscriptions(worker: Mapping[str, Any]) -> tuple[Subscription, ...]:
    return tuple(Subscription.of(s["name"], s.get("filter") or {})
                 for s in worker["subscriptions"])


def attachments(snapshots: Iterable[Snapshot]) -> list[Attachment]:
    """Connections seen in the snapshots; a worker that reconnects has a new `connected_since`."""
    spans: dict[tuple[str, float], Attachment] = {}
    for snap in snapshots:
        for w in snap.workers:
            key = (w["id"], w["connected_since"])
            seen = spans.get(key)
            spans[key] = Attachment(w["id"], w["connected_since"], snap.at,
                                    seen.subscriptions if seen else _subscriptions(w))
    return list(spans.values())


def _specificity(subs: Iterable[Subscription], task: Task) -> int | None:
    """How specifically these subscriptions match the task (None: they don't)."""
    levels = [s.specificity for s in subs if s.matches(task.name, task.attrs)]
    return max(levels) if levels else None


def violations(tasks: Iterable[Task], attached: Sequence[Attachment],
               subscriptions_of: Mapping[str, tuple[Subscription, ...]]) -> list[Violation]:
    """Attempts whose worker was less specific than another matching worker attached then.

    `subscriptions_of` gives each worker's declarations. Only connections seen by a
    snapshot are rivals, and only while they were seen, so a worker that attached or
    left between snapshots never makes a false violation.
    """
    by_name: dict[str, list[Attachment]] = defaultdict(list)
    for a in attached:
        for name in {s.name for s in a.subscriptions}:
            by_name[name].append(a)
    found: list[Violation] = []
    for task in tasks:
        rivals = by_name.get(task.name, ())
        for attempt in task.attempts:
            mine = _specificity(subscriptions_of.get(attempt.worker, ()), task)
            mine = -1 if mine is None else mine  # a worker that doesn't match at all
            at = attempt.started
            for other in rivals:
                if not (other.since + SLACK <= at <= other.until - SLACK):
                    continue
                theirs = _specificity(other.subscriptions, task)
                if theirs is not None and theirs > mine:
                    found.append(Violation(task.id, attempt.worker, mine, other.worker,
                                           theirs, at))
                    break
    return found


def counts_by_worker(tasks: Iterable[Task]) -> tuple[Counter[str], Counter[str]]:
    """Per worker id, over all its connections: (tasks processed, i.e. answered done or
    error; tasks assigned, i.e. attempts however they ended)."""
    processed: Counter[str] = Counter()
    assigned: Counter[str] = Counter()
    for task in tasks:
        for attempt in task.attempts:
            assigned[attempt.worker] += 1
            if attempt.outcome in ANSWERED:
                processed[attempt.worker] += 1
    return processed, assigned


@dataclass
class Summary:
    submitted: int
    final: dict[str, int]
    #: not final, and neither queued nor running at the hub
    lost: int
    #: not final, but queued or running at the hub when the drain limit struck
    unfinished: int
    #: accepted ids the hub has no record of (counted in `lost`)
    unknown_ids: int
    #: seconds from the start of arrivals to the last final state
    span: float
    #: done tasks per second over `span`
    throughput: float
    #: created → done, seconds
    e2e: dict[str, float | None]
    #: created → first dispatch, seconds
    wait: dict[str, float | None]
    groups: dict[str, dict[str, Any]]
    violations: list[Violation] = field(default_factory=list)
    retried: int = 0


def summarize(plan: Plan, tasks: Sequence[Task], submitted: set[str],
              snapshots: Sequence[Snapshot], *, held: int = 0,
              load_start: float | None = None) -> Summary:
    """Everything the report says about the hub. `held`: tasks queued or running at the
    hub after the drain (from `GET /queues`); `load_start`: when arrivals began."""
    by_id = {t.id: t for t in tasks}
    final = Counter(t.state.value for t in tasks if t.state.final)
    not_final = sum(1 for i in submitted if i in by_id and not by_id[i].state.final)
    unknown = sum(1 for i in submitted if i not in by_id)
    unfinished = min(held, not_final)
    start = load_start if load_start is not None else min((t.created for t in tasks), default=0.0)
    end = max((t.finished for t in tasks if t.finished is not None), default=start)
    span = max(end - start, 1e-9)
    done = [t for t in tasks if t.state is TaskState.DONE and t.finished is not None]

    processed, assigned = counts_by_worker(tasks)
    members: dict[str, set[str]] = {g.name: set() for g in plan.fleet}
    for snap in snapshots:
        for w in snap.workers:
            members.setdefault(group_of(w["id"]), set()).add(w["id"])
    for worker in assigned:
        members.setdefault(group_of(worker), set()).add(worker)
    groups: dict[str, dict[str, Any]] = {}
    for g in plan.fleet:
        ids = sorted(members[g.name])
        done_by = [processed[w] for w in ids]
        given = [assigned[w] for w in ids]
        groups[g.name] = {
            "workers": len(ids), "planned": g.count,
            "specificity": max((len(s.filter) for s in g.subscriptions), default=0),
            "processed": sum(done_by), "min": min(done_by, default=0),
            "max": max(done_by, default=0),
            "jain": jain_index(done_by) if ids else None,
            "assigned": sum(given), "jain_assigned": jain_index(given) if ids else None,
        }
    declared = {g.name: tuple(Subscription.of(s.name, s.filter) for s in g.subscriptions)
                for g in plan.fleet}
    attached = attachments(snapshots)
    subs_of = {a.worker: a.subscriptions for a in attached}
    subs_of.update({w: declared[group_of(w)] for t in tasks for a in t.attempts
                    if group_of(w := a.worker) in declared})
    return Summary(
        submitted=len(submitted), final=dict(final), lost=not_final - unfinished + unknown,
        unfinished=unfinished, unknown_ids=unknown,
        span=span, throughput=len(done) / span,
        e2e=latency([t.finished - t.created for t in done]),  # type: ignore[operator]
        wait=latency([t.attempts[0].started - t.created for t in tasks if t.attempts]),
        groups=groups, violations=violations(tasks, attached, subs_of),
        retried=sum(1 for t in tasks if len(t.attempts) > 1),
    )


def latency(values: Iterable[float]) -> dict[str, float | None]:
    """Seconds: p50/p95/p99 (interpolated, as the simulator's) and max."""
    ordered = sorted(values)
    return {"count": len(ordered), **{f"p{q}": percentile(ordered, q) for q in (50, 95, 99)},
            "max": ordered[-1] if ordered else None}


@dataclass(frozen=True)
class Figures:
    """The figures a load run and a simulation of the same scenario both produce."""

    throughput: float | None
    #: seconds from submission to done
    p50: float | None
    p99: float | None
    #: per fleet group, Jain's index of tasks assigned per worker
    jain: dict[str, float | None]
    violations: int | None
    lost: int | None
    unfinished: int | None

    @classmethod
    def of(cls, summary: Summary) -> Figures:
        return cls(summary.throughput, summary.e2e["p50"], summary.e2e["p99"],
                   {g: v["jain_assigned"] for g, v in summary.groups.items()},
                   len(summary.violations), summary.lost, summary.unfinished)
