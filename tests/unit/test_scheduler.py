"""The pure scheduler: matching, spread, capacity, rescheduling, answers, deadlines.

No I/O and no clock: every call gets `now` and the test reads the returned effects.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest

from workyard import (
    Dispatch,
    Effect,
    Finished,
    Outcome,
    Policy,
    Requeued,
    Scheduler,
    Subscription,
    Task,
    TaskState,
)

_ids = itertools.count(1)


def sub(name: str, **filters: str) -> Subscription:
    return Subscription.of(name, filters)


def task(name: str = "tag", **fields: object) -> Task:
    attrs = fields.pop("attrs", {})
    return Task(id=f"t{next(_ids)}", name=name, attrs=attrs, **fields)  # type: ignore[arg-type]


def dispatched(effects: list[Effect]) -> list[tuple[str, str]]:
    """(worker, task id) for every Dispatch, in order."""
    return [(e.worker, e.task.id) for e in effects if isinstance(e, Dispatch)]


def finished(effects: list[Effect]) -> list[Task]:
    return [e.task for e in effects if isinstance(e, Finished)]


def seed_fleet(s: Scheduler) -> None:
    """Seed 000's example: worker1 cloud=aws,gcp; worker2 cloud=aws account=123."""
    s.attach("worker1", [sub("tag", cloud="aws,gcp")], now=0.0)
    s.attach("worker2", [sub("tag", cloud="aws", account="123")], now=0.0)


# --- matching (seed 000) -----------------------------------------------------------


def test_seed_example_most_specific_worker_wins() -> None:
    s = Scheduler()
    seed_fleet(s)
    t = task(attrs={"cloud": "aws", "account": "123"})
    assert dispatched(s.submit(t, now=1.0)) == [("worker2", t.id)]


def test_seed_example_most_specific_wins_even_when_busy() -> None:
    s = Scheduler()
    seed_fleet(s)
    ts = [task(attrs={"cloud": "aws", "account": "123"}) for _ in range(6)]
    for t in ts:
        s.submit(t, now=1.0)
    assert len(s.workers["worker2"].outstanding) == 6
    assert len(s.workers["worker1"].outstanding) == 0


def test_seed_example_gcp_goes_to_the_only_matching_worker() -> None:
    s = Scheduler()
    seed_fleet(s)
    t = task(attrs={"cloud": "gcp"})
    assert dispatched(s.submit(t, now=1.0)) == [("worker1", t.id)]


def test_extra_attrs_ignored_and_unmatched_task_waits() -> None:
    s = Scheduler()
    seed_fleet(s)
    other_account = task(attrs={"cloud": "aws", "account": "999", "region": "x"})
    assert dispatched(s.submit(other_account, now=1.0)) == [("worker1", other_account.id)]
    azure = task(attrs={"cloud": "azure"})
    assert s.submit(azure, now=1.0) == []
    assert azure.state is TaskState.QUEUED
    assert s.queues["tag"].queued == 1
    wrong_name = task("collect", attrs={"cloud": "aws"})
    assert s.submit(wrong_name, now=1.0) == []


def test_empty_filter_matches_every_task_of_its_name() -> None:
    s = Scheduler()
    s.attach("any", [sub("tag")], now=0.0)
    t = task(attrs={"cloud": "whatever"})
    assert dispatched(s.submit(t, now=0.0)) == [("any", t.id)]


# --- even spread ----------------------------------------------------------------------


def test_twenty_tasks_on_four_equal_workers_go_five_each() -> None:
    s = Scheduler()
    for i in range(4):
        s.attach(f"w{i}", [sub("tag")], now=0.0)
    effects = [e for _ in range(20) for e in s.submit(task(), now=1.0)]
    assert Counter(w for w, _ in dispatched(effects)) == {f"w{i}": 5 for i in range(4)}


def light_load_counts(policy: Policy) -> Counter[str]:
    """Each task is answered before the next is submitted: every worker is always idle."""
    s = Scheduler(policy)
    for i in range(4):
        s.attach(f"w{i}", [sub("tag")], now=0.0)
    counts: Counter[str] = Counter()
    for n in range(20):
        t = task()
        [(worker, _)] = dispatched(s.submit(t, now=n))
        counts[worker] += 1
        effects, ignored = s.complete(worker, t.id, ok=True, now=n + 0.5)
        assert ignored is None and finished(effects)[0].state is TaskState.DONE
    return counts


def test_light_load_ties_go_round_robin() -> None:
    assert light_load_counts(Policy.EVEN) == {f"w{i}": 5 for i in range(4)}


def test_light_load_attach_order_starves_later_workers() -> None:
    """The anchor's tie-break: the first attached idle worker gets everything."""
    assert light_load_counts(Policy.ATTACH_ORDER) == {"w0": 20}


def test_load_counts_over_all_task_names() -> None:
    s = Scheduler()
    s.attach("both", [sub("a"), sub("b")], now=0.0)
    s.attach("only_b", [sub("b")], now=0.0)
    s.submit(task("a"), now=0.0)  # "both" now has one outstanding
    b = task("b")
    assert dispatched(s.submit(b, now=0.0)) == [("only_b", b.id)]


# --- capacity -------------------------------------------------------------------------


def test_worker_at_capacity_is_no_candidate_and_task_waits_for_a_slot() -> None:
    s = Scheduler()
    s.attach("w", [sub("tag")], now=0.0, capacity=1)
    first, second = task(), task()
    assert dispatched(s.submit(first, now=0.0)) == [("w", first.id)]
    assert s.pick("tag", {}) is None
    assert s.submit(second, now=0.0) == []
    assert second.state is TaskState.QUEUED
    effects, _ = s.complete("w", first.id, ok=True, now=1.0)
    assert dispatched(effects) == [("w", second.id)]  # in the same step as the answer


def test_less_specific_worker_never_gets_the_task_while_a_more_specific_one_is_attached() -> None:
    s = Scheduler()
    s.attach("general", [sub("tag", cloud="aws,gcp")], now=0.0)
    s.attach("specific", [sub("tag", cloud="aws", account="123")], now=0.0, capacity=1)
    attrs = {"cloud": "aws", "account": "123"}
    first, waiting = task(attrs=attrs), task(attrs=attrs)
    s.submit(first, now=0.0)
    assert s.submit(waiting, now=0.0) == []
    assert [w.id for w in s.candidates("tag", attrs)] == ["specific"]
    assert waiting.state is TaskState.QUEUED and not s.workers["general"].outstanding
    # Once the specific worker is gone, the general one is a candidate again.
    effects = s.detach("specific", now=1.0)
    assert sorted(dispatched(effects)) == sorted([("general", first.id), ("general", waiting.id)])


# --- backlog --------------------------------------------------------------------------


def test_backlog_is_dispatched_by_the_attach_itself() -> None:
    s = Scheduler()
    low, high, low2 = task(priority=0), task(priority=5), task(priority=0)
    for t in (low, high, low2):
        assert s.submit(t, now=0.0) == []
    effects = s.attach("w", [sub("tag")], now=1.0, capacity=2)
    assert dispatched(effects) == [("w", high.id), ("w", low.id)]  # priority, then FIFO
    assert low2.state is TaskState.QUEUED


# --- rescheduling ---------------------------------------------------------------------


def test_detach_reschedules_to_another_worker_in_the_same_step() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    t = task()
    s.submit(t, now=0.0)
    s.attach("b", [sub("tag")], now=0.5)
    effects = s.detach("a", now=1.0)
    assert [type(e) for e in effects] == [Requeued, Dispatch]
    assert dispatched(effects) == [("b", t.id)]
    assert [a.outcome for a in t.attempts] == [Outcome.WORKER_LOST, None]
    assert t.worker == "b"


def test_detach_with_retries_exhausted_fails_saying_why() -> None:
    s = Scheduler()
    t = task(retries=1)
    s.submit(t, now=0.0)
    s.attach("a", [sub("tag")], now=0.0)
    assert dispatched(s.detach("a", now=1.0)) == []  # retried, but nobody is left
    assert t.state is TaskState.QUEUED
    s.attach("b", [sub("tag")], now=2.0)
    [failed] = finished(s.detach("b", now=3.0))
    assert failed.state is TaskState.FAILED
    assert "lost its worker" in failed.error and "retries=1" in failed.error
    assert "b" in failed.error
    assert t.id not in s.tasks and s.queues["tag"].running == 0


# --- deadlines ------------------------------------------------------------------------


def test_timeout_redispatches_to_another_worker_and_releases_the_slot() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    t = task(timeout=10.0)
    s.submit(t, now=0.0)
    s.attach("b", [sub("tag")], now=0.0)
    assert s.expire("tag", now=9.9) == []
    effects = s.expire("tag", now=10.0)
    assert dispatched(effects) == [("b", t.id)]
    assert t.attempts[0].outcome is Outcome.TIMEOUT
    assert len(s.workers["a"].outstanding) == 0  # no load counter drift
    assert s.next_deadline("tag") == 20.0


def test_deadlines_set_out_of_order_fire_earliest_first() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0, capacity=None)
    slow, quick, middling, late = (task(timeout=100.0, retries=0), task(timeout=10.0, retries=0),
                                   task(timeout=50.0, retries=0), task(timeout=200.0, retries=0))
    for now, t in enumerate((slow, quick, middling, late)):  # deadlines 100, 11, 52, 203
        s.submit(t, now=float(now))
    assert s.deadline_floor("tag") == s.next_deadline("tag") == 11.0
    fired = []
    for when in (11.0, 52.0, 100.0, 203.0):
        fired += [f.id for f in finished(s.expire("tag", now=when))]
        assert s.next_deadline("tag") == {11.0: 52.0, 52.0: 100.0, 100.0: 203.0}.get(when)
    assert fired == [quick.id, middling.id, slow.id, late.id]


def test_the_deadline_floor_may_be_an_ended_attempt_until_the_next_deadline_drops_it() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0, capacity=None)
    done, running = task(timeout=10.0), task(timeout=10.0)
    s.submit(done, now=0.0)
    s.submit(running, now=1.0)
    s.complete("a", done.id, ok=True, now=2.0)
    assert s.deadline_floor("tag") == 10.0  # ended, but not yet dropped
    assert s.next_deadline("tag") == 11.0
    assert s.deadline_floor("tag") == 11.0


def test_timeouts_exhaust_retries() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    t = task(timeout=1.0, retries=0)
    s.submit(t, now=0.0)
    [failed] = finished(s.expire("tag", now=1.0))
    assert failed.state is TaskState.FAILED and "timed out" in failed.error


def test_schedule_timeout_fails_a_task_nobody_takes() -> None:
    s = Scheduler()
    t = task(schedule_timeout=5.0)
    s.submit(t, now=0.0)
    [failed] = finished(s.expire("tag", now=5.0))
    assert failed.state is TaskState.FAILED and "schedule_timeout" in failed.error
    assert s.queues["tag"].queued == 0


def test_schedule_timeout_does_not_touch_a_task_that_was_taken() -> None:
    s = Scheduler()
    t = task(schedule_timeout=5.0, timeout=60.0)
    s.submit(t, now=0.0)
    s.attach("a", [sub("tag")], now=1.0)
    assert s.expire("tag", now=5.0) == []
    assert t.state is TaskState.RUNNING


# --- answers --------------------------------------------------------------------------


def test_error_answer_fails_the_task_with_the_workers_message() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    t = task()
    s.submit(t, now=0.0)
    effects, _ = s.complete("a", t.id, ok=False, now=1.0, error="disk full")
    [failed] = finished(effects)
    assert failed.state is TaskState.FAILED and failed.error == "disk full"
    assert failed.attempts[-1].outcome is Outcome.ERROR


def test_first_valid_answer_wins_and_late_duplicates_are_ignored() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    t = task(timeout=10.0)
    s.submit(t, now=0.0)
    s.attach("b", [sub("tag")], now=0.0)
    s.expire("tag", now=10.0)  # re-dispatched to b
    assert t.worker == "b"
    # a's late answer still arrives first: it wins, b's attempt is superseded.
    effects, ignored = s.complete("a", t.id, ok=True, now=11.0, result=b'"from a"')
    assert ignored is None
    [done] = finished(effects)
    assert done.state is TaskState.DONE and done.result == b'"from a"'
    assert [a.outcome for a in done.attempts] == [Outcome.DONE, Outcome.SUPERSEDED]
    assert not s.workers["b"].outstanding
    # b's answer and a's duplicate come too late.
    for worker in ("b", "a"):
        effects, ignored = s.complete(worker, t.id, ok=True, now=12.0, result=b'"late"')
        assert effects == [] and ignored is not None
    assert done.result == b'"from a"'


def test_answer_from_a_worker_never_assigned_the_task_is_ignored() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    s.attach("stranger", [sub("other")], now=0.0)
    t = task()
    s.submit(t, now=0.0)
    effects, ignored = s.complete("stranger", t.id, ok=True, now=1.0)
    assert effects == [] and "never assigned" in ignored
    assert t.state is TaskState.RUNNING and t.worker == "a"


def test_late_answer_while_requeued_still_wins() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    t = task(timeout=10.0)
    s.submit(t, now=0.0)
    s.expire("tag", now=10.0)  # timed out; a, the only worker, gets it again
    s.detach("a", now=11.0)  # lost: queued again, nobody left to take it
    assert t.state is TaskState.QUEUED
    effects, ignored = s.complete("a", t.id, ok=True, now=12.0)
    assert ignored is None and finished(effects)[0].state is TaskState.DONE
    assert s.queues["tag"].queued == 0


# --- cancel ---------------------------------------------------------------------------


def test_cancel_queued_task() -> None:
    s = Scheduler()
    t = task()
    s.submit(t, now=0.0)
    [cancelled] = finished(s.cancel(t.id, now=1.0))
    assert cancelled.state is TaskState.CANCELLED
    assert s.queues["tag"].queued == 0
    assert s.cancel(t.id, now=2.0) == []  # already final


def test_cancel_running_task_frees_the_slot_for_the_next() -> None:
    s = Scheduler()
    s.attach("w", [sub("tag")], now=0.0, capacity=1)
    running, waiting = task(), task()
    s.submit(running, now=0.0)
    s.submit(waiting, now=0.0)
    effects = s.cancel(running.id, now=1.0)
    assert finished(effects)[0].state is TaskState.CANCELLED
    assert running.attempts[-1].outcome is Outcome.CANCELLED
    assert dispatched(effects) == [("w", waiting.id)]
    effects, ignored = s.complete("w", running.id, ok=True, now=2.0)
    assert effects == [] and ignored is not None


# --- declarations -----------------------------------------------------------------------


def test_attach_rejects_nonsense() -> None:
    s = Scheduler()
    with pytest.raises(ValueError):
        s.attach("w", [], now=0.0)
    with pytest.raises(ValueError):
        s.attach("w", [sub("tag")], now=0.0, capacity=0)
    s.attach("w", [sub("tag")], now=0.0)
    with pytest.raises(ValueError, match="already attached"):
        s.attach("w", [sub("tag")], now=0.0)


def test_subscription_values_accept_commas_and_lists() -> None:
    as_text = Subscription.of("t", {"cloud": "aws, gcp"})
    assert as_text == Subscription.of("t", {"cloud": ["gcp", "aws"]})
    with pytest.raises(ValueError):
        Subscription.of("t", {"cloud": ""})
    with pytest.raises(ValueError):
        Subscription.of("", {})


# --- budgeted drains ------------------------------------------------------------------


def test_a_worker_attaching_to_a_large_backlog_takes_it_in_budgeted_steps() -> None:
    s = Scheduler(drain_budget=100)
    ts = [task() for _ in range(250)]
    for t in ts:
        s.submit(t, now=0.0)
    steps = [dispatched(s.attach("w", [sub("tag")], now=1.0))]
    while s.pending:
        steps.append(dispatched(s.drain(now=1.0)))
    assert [len(step) for step in steps] == [100, 100, 50]
    assert [tid for step in steps for _, tid in step] == [t.id for t in ts]
    assert s.drain(now=1.0) == [] and not s.pending


def test_submit_during_a_pending_drain_does_not_overtake_waiting_tasks() -> None:
    s = Scheduler(drain_budget=2)
    waiting = [task() for _ in range(4)]
    for t in waiting:
        s.submit(t, now=0.0)
    assert dispatched(s.attach("w", [sub("tag")], now=1.0)) == [("w", t.id) for t in waiting[:2]]
    assert s.pending
    late = task()
    order = [tid for _, tid in dispatched(s.submit(late, now=1.0))]  # continues the drain
    assert late.id not in order and late.state is TaskState.QUEUED  # behind the backlog
    while s.pending:
        order += [tid for _, tid in dispatched(s.drain(now=1.0))]
    assert order == [waiting[2].id, waiting[3].id, late.id]


def test_an_unlimited_budget_drains_in_one_call() -> None:
    s = Scheduler(drain_budget=None)
    for _ in range(1000):
        s.submit(task(), now=0.0)
    assert len(dispatched(s.attach("w", [sub("tag")], now=1.0))) == 1000
    assert not s.pending


# --- polling ----------------------------------------------------------------------------


def test_a_polling_worker_takes_only_tasks_of_the_queue_it_polls() -> None:
    s = Scheduler()
    s.attach("p", [sub("resize"), sub("crop")], now=0.0, polling=True)
    crop, resize = task("crop"), task("resize")
    assert s.submit(crop, now=0.0) == [] and s.submit(resize, now=0.0) == []  # no poll open
    assert dispatched(s.open_poll("p", "resize", 5, now=1.0)) == [("p", resize.id)]
    assert crop.state is TaskState.QUEUED
    assert s.workers["p"].rooms["resize"] == 4
    s.close_poll("p", "resize")
    assert s.submit(task("resize"), now=2.0) == []
    assert dispatched(s.open_poll("p", "crop", 1, now=3.0)) == [("p", crop.id)]
    assert s.submit(task("crop"), now=3.0) == []  # its room is used up


def test_a_polling_worker_counts_its_load_over_every_task_name() -> None:
    s = Scheduler()
    s.attach("p", [sub("a"), sub("b")], now=0.0, polling=True)
    s.attach("w", [sub("b")], now=0.0)
    s.open_poll("p", "a", 1, now=0.0)
    s.open_poll("p", "b", 1, now=0.0)
    s.submit(task("a"), now=0.0)  # p now has one outstanding
    b = task("b")
    assert dispatched(s.submit(b, now=0.0)) == [("w", b.id)]


# --- update -----------------------------------------------------------------------------


def test_update_changes_filters_and_keeps_outstanding_tasks() -> None:
    s = Scheduler()
    s.attach("w", [sub("tag", cloud="aws")], now=0.0, capacity=1)
    running, gcp = task(attrs={"cloud": "aws"}), task(attrs={"cloud": "gcp"})
    s.submit(running, now=0.0)
    assert s.submit(gcp, now=0.0) == []
    assert s.update("w", now=1.0, subscriptions=[sub("tag", cloud="gcp")]) == []  # still full
    assert list(s.workers["w"].outstanding) == [running.id]
    assert s.submit(task(attrs={"cloud": "aws"}), now=1.0) == []  # no longer its filter
    assert dispatched(s.update("w", now=2.0, capacity=2)) == [("w", gcp.id)]
    assert s.workers["w"].capacity == 2
    effects, ignored = s.complete("w", running.id, ok=True, now=3.0)
    assert ignored is None and finished(effects)[0].state is TaskState.DONE


def test_update_moves_a_worker_between_specificity_levels() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag", cloud="aws")], now=0.0, capacity=1)
    s.attach("b", [sub("tag", cloud="aws")], now=0.0, capacity=1)
    attrs = {"cloud": "aws"}
    for _ in range(3):
        s.submit(task(attrs=attrs), now=0.0)
    assert [w.id for w in s.candidates("tag", attrs)] == ["a", "b"]
    s.update("b", now=1.0, subscriptions=[sub("tag")])
    assert [w.id for w in s.candidates("tag", attrs)] == ["a"]
    s.update("a", now=1.0, subscriptions=[sub("other")])
    assert sorted(w.id for w in s.candidates("tag", attrs)) == ["b"]


# --- effects say who ----------------------------------------------------------------------


def test_finished_names_the_worker_that_ended_the_task() -> None:
    s = Scheduler()
    s.attach("a", [sub("tag")], now=0.0)
    done, lost = task(), task(retries=0)
    s.submit(done, now=0.0)
    s.submit(lost, now=0.0)
    effects, _ = s.complete("a", done.id, ok=True, now=1.0)
    assert [(e.task.id, e.worker) for e in effects if isinstance(e, Finished)] == [(done.id, "a")]
    assert [(e.task.id, e.worker) for e in s.detach("a", now=2.0)
            if isinstance(e, Finished)] == [(lost.id, "a")]
    queued = task(schedule_timeout=1.0)
    s.submit(queued, now=2.0)
    assert [e.worker for e in s.expire("tag", now=3.0) if isinstance(e, Finished)] == [None]


# --- backlog order and levels ----------------------------------------------------------------


def test_a_draining_backlog_dispatches_best_task_first_across_groups() -> None:
    s = Scheduler()
    ts = [task(attrs={"cloud": cloud}, priority=priority)
          for priority, cloud in [(0, "aws"), (0, "gcp"), (2, "gcp"), (1, "aws"), (2, "aws")]]
    for t in ts:
        s.submit(t, now=0.0)
    effects = s.attach("w", [sub("tag", cloud="aws,gcp")], now=1.0, capacity=4)
    assert dispatched(effects) == [("w", ts[i].id) for i in (2, 4, 3, 0)]
    effects, _ = s.complete("w", ts[2].id, ok=True, now=2.0)
    assert dispatched(effects) == [("w", ts[1].id)]


def test_a_draining_backlog_dispatch_order_is_priority_then_fifo() -> None:
    s = Scheduler()
    ts = [task(attrs={"k": f"v{i % 7}"}, priority=i % 3) for i in range(60)]
    for t in ts:
        s.submit(t, now=0.0)
    order = [tid for _, tid in dispatched(s.attach("w", [sub("tag")], now=1.0))]
    assert order == [t.id for t in sorted(ts, key=lambda t: (-t.priority, t.seq))]


def test_removing_the_most_specific_worker_hands_its_groups_to_the_next_level() -> None:
    s = Scheduler()
    s.attach("general", [sub("tag")], now=0.0, capacity=1)
    s.attach("middle", [sub("tag", cloud="aws")], now=0.0, capacity=1)
    s.attach("specific", [sub("tag", cloud="aws", account="1")], now=0.0, capacity=1)
    busy = [task(attrs={"cloud": "aws", "account": "1"}) for _ in range(3)]
    for t in busy:
        s.submit(t, now=0.0)
    s.submit(task(), now=0.0)  # keeps "general" busy
    assert [t.worker for t in busy] == ["specific", None, None]
    effects = s.detach("specific", now=1.0)
    assert dispatched(effects) == [("middle", busy[0].id)]  # the lost one keeps its place
    effects = s.detach("middle", now=2.0)
    assert dispatched(effects) == []  # "general" is busy: they wait at its level now
    assert [w.id for w in s.candidates("tag", busy[1].attrs)] == ["general"]
    effects = s.attach("specific2", [sub("tag", cloud="aws", account="1")], now=3.0, capacity=2)
    assert dispatched(effects) == [("specific2", busy[0].id), ("specific2", busy[1].id)]


def test_a_worker_listing_many_values_is_one_class_per_subscription() -> None:
    s = Scheduler()
    values = [f"r{i}" for i in range(4000)]
    s.attach("wide", [sub("tag", region=",".join(values))], now=0.0, capacity=2)
    s.attach("wide2", [sub("tag", region=",".join(values))], now=0.0, capacity=2)
    [wide] = s.workers["wide"].classes
    assert s.workers["wide2"].classes == [wide] and len(wide.members) == 2
    t = task(attrs={"region": "r3999"})
    assert dispatched(s.submit(t, now=0.0)) == [("wide", t.id)]
    assert len(wide.free) <= 4  # one entry per load change, not one per value


# --- equivalence with a brute-force reference ----------------------------------------------


class Reference:
    """The rules, obviously: each waiting task in (-priority, seq) order goes to the
    least loaded free worker of its most specific matching level, if any."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.workers: dict[str, dict[str, object]] = {}
        self.waiting: dict[str, Task] = {}
        self.held: dict[str, str] = {}  # task id -> worker
        self.assign_seq = itertools.count(1)
        self.attach_seq = itertools.count(1)

    def attach(self, wid: str, subs: list[Subscription], capacity: int | None) -> None:
        self.workers[wid] = {"subs": subs, "capacity": capacity, "last": 0,
                             "order": next(self.attach_seq)}

    def load(self, wid: str) -> int:
        return sum(1 for w in self.held.values() if w == wid)

    def run(self) -> list[tuple[str, str]]:
        out = []
        for t in sorted(self.waiting.values(), key=lambda t: (-t.priority, t.seq)):
            matching = [(max(s.specificity for s in w["subs"] if s.matches(t.name, t.attrs)), wid)
                        for wid, w in self.workers.items()
                        if any(s.matches(t.name, t.attrs) for s in w["subs"])]
            if not matching:
                continue
            top = max(spec for spec, _ in matching)
            free = [wid for spec, wid in matching if spec == top and (
                self.workers[wid]["capacity"] is None
                or self.load(wid) < self.workers[wid]["capacity"])]
            if not free:
                continue
            tie = "order" if self.policy is Policy.ATTACH_ORDER else "last"
            wid = min(free, key=lambda wid: (self.load(wid), self.workers[wid][tie]))
            self.workers[wid]["last"] = next(self.assign_seq)
            self.held[t.id] = wid
            del self.waiting[t.id]
            out.append((wid, t.id))
        return out


@pytest.mark.parametrize(("policy", "budget", "seed"), [
    (Policy.EVEN, None, 1), (Policy.EVEN, 3, 2), (Policy.ATTACH_ORDER, None, 3),
    (Policy.ATTACH_ORDER, 2, 4), (Policy.EVEN, 1, 5),
])
def test_dispatches_match_a_brute_force_reference(policy: Policy, budget: int | None,
                                                 seed: int) -> None:
    rng = random.Random(seed)
    s, ref = Scheduler(policy, drain_budget=budget), Reference(policy)
    names = itertools.count(1)
    total = 0

    def random_subs() -> list[Subscription]:
        subs = []
        for _ in range(rng.choice([1, 1, 2])):
            f = {}
            if rng.random() < 0.6:
                f["a"] = ",".join(rng.sample(["x", "y", "z"], rng.randint(1, 3)))
            if rng.random() < 0.4:
                f["b"] = ",".join(rng.sample(["1", "2"], rng.randint(1, 2)))
            subs.append(sub("tag", **f))
        return subs

    def settle(effects: list[Effect]) -> list[tuple[str, str]]:
        got = dispatched(effects)
        while s.pending:
            got += dispatched(s.drain(now=0.0))
        return got

    for _ in range(400):
        op = rng.random()
        if op < 0.15 or not ref.workers:
            wid, subs, cap = f"w{next(names)}", random_subs(), rng.choice([1, 2, 3, None])
            ref.attach(wid, subs, cap)
            got = settle(s.attach(wid, subs, now=0.0, capacity=cap))
        elif op < 0.25:
            wid = rng.choice(sorted(ref.workers))
            del ref.workers[wid]
            for tid in [tid for tid, w in ref.held.items() if w == wid]:
                del ref.held[tid]
                ref.waiting[tid] = s.tasks[tid]
            got = settle(s.detach(wid, now=0.0))
        elif op < 0.3:
            wid = rng.choice(sorted(ref.workers))
            subs = random_subs()
            ref.workers[wid]["subs"] = subs
            got = settle(s.update(wid, now=0.0, subscriptions=subs))
        elif op < 0.7:
            attrs = {k: rng.choice(vs) for k, vs in (("a", "xyzw"), ("b", "12"))
                     if rng.random() < 0.8}
            t = task(attrs=attrs, priority=rng.randint(0, 2), retries=10_000)
            s.number(t)
            ref.waiting[t.id] = t
            got = settle(s.submit(t, now=0.0))
        else:
            if not ref.held:
                continue
            tid = rng.choice(sorted(ref.held))
            wid = ref.held.pop(tid)
            effects, ignored = s.complete(wid, tid, ok=True, now=0.0)
            assert ignored is None
            got = settle(effects)
        assert got == ref.run()
        total += len(got)
    assert s.queues["tag"].queued == len(ref.waiting)
    assert total > 100  # the sequence exercised the drain, not only idle routing
