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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--filters", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--runs", type=int, default=3, help="runs, each with fresh schedulers")
    parser.add_argument("--blocks", type=int, default=15, help="timed blocks per cell and run")
    parser.add_argument("--block", type=int, default=2000, help="steps per block")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/scheduler.json)")
    args = parser.parse_args(argv)
    started = machine()

    smallest, largest = min(args.workers), max(args.workers)
    rng = random.Random(args.seed)
    runs = [measure_run(args, rng) for _ in range(args.runs)]
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
    summary = {
        "ratio_largest_to_smallest": ratios,
        "worst_ratio": max(ratios.values()),
        "target": 1.5,
        "fleet": [smallest, largest],
    }
    result = {"benchmark": "scheduler", "machine": started, "settings": vars(args),
              "summary": summary, "cells": rows, "runs": runs}
    path = write_result("scheduler", result, args.out)
    met, verdict = target(summary["worst_ratio"], "<=", summary["target"])
    print(f"median of {args.runs}: dispatch cost at {largest} workers / at {smallest}: {ratios} "
          f"{verdict} -> {path}")
    return 0 if met else MISSED


if __name__ == "__main__":
    sys.exit(main())
