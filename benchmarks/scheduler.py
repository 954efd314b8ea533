"""Cost of one dispatch decision as the fleet grows: the pure scheduler, no I/O.

For each fleet size (10 … 10,000 attached workers) and number of distinct filters
(1, 10, 100), workers declare one task name with filters of mixed shape and
specificity:

    filter j = {"region": rj}                              (j % 3 == 0)
               {"region": rj, "cloud": c(j%4)}             (j % 3 == 1)
               {"region": rj, "cloud": c(j%4), "team": tj} (j % 3 == 2)

Every filter is declared by at least one worker (with fewer workers than filters,
each worker declares several); each task's attrs match exactly one filter, chosen
at random. A window of as many tasks as there are workers stays in flight: each
step submits one task (the decision: find the most specific candidates, pick the
least loaded, assign) and completes the oldest (which re-indexes its worker).

The cost of a dispatch is one step's CPU time (this thread's, so load elsewhere on
the machine does not count): the decision itself plus the re-indexing it entails
when the task completes, amortized over everything the scheduler does lazily (heap
compaction, stale entries). Steps run in blocks of `--block`, round robin over all
cells so a burst of load elsewhere touches every cell alike; each cell reports the
median over its blocks. Also reported: the median wall time of `submit` alone.

Three backlog measurements follow, each in fresh schedulers per run:

* drain: `--backlog` tasks wait in 1 / 10 / 100 / 1,000 distinct attribute groups
  (`--groups`) for one worker (capacity 1) whose filter allows every group; each
  answer dispatches the next waiting task. Cost of a dispatch: the answer's CPU
  time, median over blocks (refilled between blocks, untimed).
* wide filters: the same drain of one-value tasks by 10 workers whose filters
  list 1 or `--wide` values (10,000 by default: built directly, past the
  subscription's combination limit, to show the index cost alone).
* attach to a backlog: a capacity-unlimited worker attaches to `--backlog`
  waiting tasks (in 100 groups); the longest single scheduler call (attach, then
  each `drain()` the hub makes between checkpoints) in wall time, with the
  default `drain_budget` and with none.

    python benchmarks/scheduler.py
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections import deque
from typing import Any

from _common import MISSED, machine, median, target, write_result

from workyard import Dispatch, Scheduler, Subscription, Task
from workyard.scheduling import Finished

NAME = "job"


def filter_of(j: int) -> dict[str, str]:
    f = {"region": f"r{j}"}
    if j % 3 >= 1:
        f["cloud"] = f"c{j % 4}"
    if j % 3 == 2:
        f["team"] = f"t{j}"
    return f


def build(workers: int, filters: int) -> Scheduler:
    s = Scheduler()
    for i in range(workers):
        mine = range(i, filters, workers) if filters > workers else [i % filters]
        subs = [Subscription.of(NAME, filter_of(j)) for j in mine]
        s.attach(f"w{i}", subs, now=0.0, capacity=32)
    return s


class Cell:
    """One fleet (workers x filters) with a window of tasks in flight, stepped in blocks."""

    def __init__(self, workers: int, filters: int, rng: random.Random) -> None:
        self.workers, self.filters, self.rng = workers, filters, rng
        t0 = time.perf_counter()
        self.s = build(workers, filters)
        self.attach_us = (time.perf_counter() - t0) / workers * 1e6
        self.attrs = [filter_of(j) for j in range(filters)]
        self.inflight: deque[tuple[str, str]] = deque()
        self.seq = 0
        for _ in range(workers):  # fill the window
            t = self.task()
            self.inflight.append((self.dispatch(t), t.id))
        self.submit_us: list[float] = []
        self.step_us: list[float] = []

    def task(self) -> Task:
        self.seq += 1
        attrs = self.attrs[self.rng.randrange(self.filters)]
        return Task(id=f"t{self.seq}", name=NAME, attrs=attrs)

    def dispatch(self, t: Task) -> str:
        effects = self.s.submit(t, now=1.0)
        assert type(effects[0]) is Dispatch, effects
        return effects[0].worker

    def block(self, steps: int) -> None:
        """`steps` steps; records the step's mean CPU cost and the decision's median wall time."""
        s, inflight, clock = self.s, self.inflight, time.perf_counter
        tasks = [self.task() for _ in range(steps)]
        decisions = []
        cpu0 = time.thread_time()
        for t in tasks:
            a = clock()
            effects = s.submit(t, now=1.0)
            decisions.append(clock() - a)
            inflight.append((effects[0].worker, t.id))
            worker, task_id = inflight.popleft()
            s.complete(worker, task_id, ok=True, now=1.0)
        cpu = time.thread_time() - cpu0
        self.submit_us.append(median(decisions) * 1e6)
        self.step_us.append(cpu / steps * 1e6)


def measure_run(args: argparse.Namespace, rng: random.Random) -> list[dict[str, Any]]:
    """One run: fresh schedulers for every cell, timed in interleaved blocks."""
    cells = [Cell(w, f, rng) for f in args.filters for w in args.workers]
    for cell in cells:  # warm up
        cell.block(args.block)
    gc.collect()
    # Blocks go round robin over the cells, so a burst of load elsewhere on the
    # machine touches every cell alike; each cell reports its median block.
    for _ in range(args.blocks):
        for cell in cells:
            cell.block(args.block)
    rows = []
    for cell in cells:
        rows.append({"workers": cell.workers, "filters": cell.filters,
                     "step_us": median(cell.step_us), "submit_us": median(cell.submit_us),
                     "attach_us": cell.attach_us})
        print(f"{cell.filters:4d} filters {cell.workers:6d} workers: dispatch "
              f"{rows[-1]['step_us']:6.2f} us CPU (submit p50 {rows[-1]['submit_us']:5.2f} us), "
              f"attach {cell.attach_us:7.2f} us/worker", flush=True)
    del cells
    gc.collect()
    return rows


class Drain:
    """A backlog waiting for one busy worker; each answer dispatches the next task."""

    def __init__(self, groups: int, backlog: int, values: int = 0, workers: int = 1) -> None:
        self.groups, self.values, self.backlog = groups, values, backlog
        self.s = Scheduler()
        self.seq = 0
        self.held: deque[tuple[str, str]] = deque()
        for _ in range(backlog):
            self.s.submit(self.task(), now=0.0)
        for i in range(workers):
            if values:  # past Subscription.of's combination limit on purpose
                sub = Subscription(NAME, {"g": frozenset(f"g{j}" for j in range(values))})
            else:
                sub = Subscription.of(NAME, {"g": [f"g{j}" for j in range(groups)]})
            for e in self.s.attach(f"w{i}", [sub], now=0.0, capacity=1):
                assert type(e) is Dispatch
                self.held.append((e.worker, e.task.id))
        self.step_us: list[float] = []

    def task(self) -> Task:
        self.seq += 1
        return Task(id=f"t{self.seq}", name=NAME, attrs={"g": f"g{self.seq % self.groups}"})

    def block(self, steps: int) -> None:
        s, held = self.s, self.held
        answers = [held.popleft() for _ in range(min(steps, len(held)))]
        cpu0 = time.thread_time()
        for worker, task_id in answers:
            effects, _ = s.complete(worker, task_id, ok=True, now=1.0)
            for e in effects:
                if type(e) is Dispatch:
                    held.append((e.worker, e.task.id))
        self.step_us.append((time.thread_time() - cpu0) / len(answers) * 1e6)
        for _ in range(len(answers)):  # refill, untimed
            s.submit(self.task(), now=1.0)


def measure_drains(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drain cost per dispatch by number of groups, and by filter width."""
    by_groups = [Drain(g, args.backlog) for g in args.groups]
    by_width = [Drain(1, args.backlog, values=v, workers=10) for v in (1, args.wide)]
    cells = by_groups + by_width
    for cell in cells:
        cell.block(args.block)
    gc.collect()
    for _ in range(args.blocks):
        for cell in cells:
            cell.block(args.block)
    drain = [{"groups": c.groups, "dispatch_us": median(c.step_us)} for c in by_groups]
    wide = [{"values": c.values, "dispatch_us": median(c.step_us),
             "tasks_per_s": 1e6 / median(c.step_us)} for c in by_width]
    for row in drain:
        print(f"drain, {row['groups']:5d} groups ({args.backlog:,} waiting): "
              f"{row['dispatch_us']:6.2f} us CPU per dispatch", flush=True)
    for row in wide:
        print(f"drain, workers listing {row['values']:6d} values: {row['dispatch_us']:6.2f} us "
              f"CPU per dispatch ({row['tasks_per_s']:,.0f} tasks/s)", flush=True)
    return drain, wide


def measure_attach(args: argparse.Namespace, budget: int | None) -> dict[str, Any]:
    """A capacity-unlimited worker attaches to the backlog; the longest call, in wall time."""
    s = Scheduler(drain_budget=budget)
    for i in range(args.backlog):
        s.submit(Task(id=f"t{i}", name=NAME, attrs={"g": f"g{i % 100}"}), now=0.0)
    gc.collect()
    clock = time.perf_counter
    a = clock()
    effects = s.attach("big", [Subscription.of(NAME)], now=1.0)
    calls = [clock() - a]
    dispatched = len(effects)
    while s.pending:
        a = clock()
        effects = s.drain(now=1.0)
        calls.append(clock() - a)
        dispatched += len(effects)
    assert dispatched == args.backlog and not any(type(e) is Finished for e in effects)
    row = {"drain_budget": budget, "calls": len(calls), "longest_call_ms": max(calls) * 1e3,
           "total_ms": sum(calls) * 1e3}
    print(f"attach to {args.backlog:,} waiting, drain_budget={budget}: {len(calls)} calls, "
          f"longest {row['longest_call_ms']:.2f} ms, total {row['total_ms']:.1f} ms", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--filters", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--runs", type=int, default=3, help="runs, each with fresh schedulers")
    parser.add_argument("--blocks", type=int, default=15, help="timed blocks per cell and run")
    parser.add_argument("--block", type=int, default=2000, help="steps per block")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 10, 100, 1000],
                        help="distinct attribute groups of the drain benchmark")
    parser.add_argument("--backlog", type=int, default=20000, help="waiting tasks")
    parser.add_argument("--wide", type=int, default=10000, help="values of a wide filter")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/scheduler.json)")
    args = parser.parse_args(argv)
    started = machine()

    smallest, largest = min(args.workers), max(args.workers)
    rng = random.Random(args.seed)
    runs = [measure_run(args, rng) for _ in range(args.runs)]
    drains = [measure_drains(args) for _ in range(args.runs)]
    attaches = [[measure_attach(args, b) for b in (256, None)] for _ in range(args.runs)]
    rows: list[dict[str, Any]] = []
    for i, first in enumerate(runs[0]):
        rows.append({
            "workers": first["workers"],
            "filters": first["filters"],
            **{key: round(median([run[i][key] for run in runs]), 2)
               for key in ("step_us", "submit_us", "attach_us")},
        })
    ratios = {}
    for filters in args.filters:
        per_run = []
        for run in runs:  # the ratio within each run, then the median over runs
            by = {r["workers"]: r for r in run if r["filters"] == filters}
            per_run.append(by[largest]["step_us"] / by[smallest]["step_us"])
        ratios[str(filters)] = round(median(per_run), 2)
    fewest, most = min(args.groups), max(args.groups)
    drain_rows = [{"groups": g, "dispatch_us": round(median(
        [next(r["dispatch_us"] for r in run[0] if r["groups"] == g) for run in drains]), 2)}
        for g in args.groups]
    wide_rows = [{"values": v, "dispatch_us": round(median(
        [next(r["dispatch_us"] for r in run[1] if r["values"] == v) for run in drains]), 2)}
        for v in (1, args.wide)]
    for row in wide_rows:
        row["tasks_per_s"] = round(1e6 / row["dispatch_us"])
    attach_rows = [{"drain_budget": b, **{key: round(median([run[i][key] for run in attaches]), 2)
                                          for key in ("calls", "longest_call_ms", "total_ms")}}
                   for i, b in enumerate((256, None))]

    def within(run: tuple[list[dict[str, Any]], list[dict[str, Any]]], rows: int, key: str,
               a: int, b: int) -> float:
        by = {r[key]: r["dispatch_us"] for r in run[rows]}
        return by[b] / by[a]

    summary = {
        "ratio_largest_to_smallest": ratios,
        "worst_ratio": max(ratios.values()),
        "target": 1.5,
        "fleet": [smallest, largest],
        "drain_ratio": round(median([within(r, 0, "groups", fewest, most) for r in drains]), 2),
        "drain_groups": [fewest, most],
        "drain_target": 2.0,
        "wide_ratio": round(median([within(r, 1, "values", 1, args.wide) for r in drains]), 2),
        "wide_values": args.wide,
        "wide_target": 1.0,
        "longest_call_ms": attach_rows[0]["longest_call_ms"],
        "longest_call_target_ms": 50.0,
        "unbudgeted_call_ms": attach_rows[1]["longest_call_ms"],
    }
    result = {"benchmark": "scheduler", "machine": started, "settings": vars(args),
              "summary": summary, "cells": rows, "drain": drain_rows, "wide": wide_rows,
              "attach_backlog": attach_rows, "runs": runs,
              "drain_runs": [{"groups": d, "wide": w} for d, w in drains],
              "attach_runs": attaches}
    path = write_result("scheduler", result, args.out)
    met, verdict = target(summary["worst_ratio"], "<=", summary["target"])
    drain_met, drain_verdict = target(summary["drain_ratio"], "<=", 2)
    call_met, call_verdict = target(summary["longest_call_ms"], "<=", 50)
    print(f"median of {args.runs}: dispatch cost at {largest} workers / at {smallest}: {ratios} "
          f"{verdict}; drain at {most} groups / at {fewest}: {summary['drain_ratio']} "
          f"{drain_verdict}; {args.wide} values / 1: {summary['wide_ratio']} (target <= 1, "
          f"noise allowing); longest call {summary['longest_call_ms']} ms {call_verdict} "
          f"-> {path}")
    return 0 if met and drain_met and call_met else MISSED


if __name__ == "__main__":
    sys.exit(main())
