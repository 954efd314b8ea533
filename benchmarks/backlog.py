"""How long the hub holds the event loop while one worker takes a large backlog.

A hub on an in-memory store holds `--tasks` queued tasks spread over `--groups`
distinct attribute groups; then one worker with no capacity limit attaches and takes
them all. The scheduler dispatches at most its drain budget per call and the hub's
drain actor carries on between checkpoints, so producers, other workers and pings
keep being served. Measured with a trio instrument around every task step: the
longest single step (the longest the event loop was held), the total time to
dispatch the backlog, and — as a witness — the worst delay seen by a ticker task
that asks to run every millisecond meanwhile.

    python benchmarks/backlog.py                 # 20,000 tasks, 1 and 1,000 groups
    python benchmarks/backlog.py --budget 0      # no budget: one call does it all
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

import trio
import trio.abc
import trio.lowlevel
from _common import machine, median, write_result

from workyard import Hub, Subscription, Task
from workyard.testing import MemoryStore, RecordingLink

TARGET_STALL_MS = 50.0


class LongestStep(trio.abc.Instrument):
    """The longest single task step: how long the event loop was held at once."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started: float | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is not None:  # not the step that was running when we were added
            self.longest = max(self.longest, time.perf_counter() - self._started)
            self._started = None


async def ticker(worst: list[float], stop: trio.Event) -> None:
    """Asks to run every millisecond; records how late it got to."""
    while not stop.is_set():
        asked = time.perf_counter()
        await trio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - asked - 0.001)


async def one_run(tasks: int, groups: int, budget: int | None) -> dict[str, Any]:
    hub = Hub(MemoryStore(), drain_budget=budget)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        backlog = [Task(id=f"t{i}", name="job", attrs={"region": f"r{i % groups}"})
                   for i in range(tasks)]
        for i in range(0, tasks, 1000):
            await hub.submit(backlog[i:i + 1000])
        gc.collect()
        link, worst, stop = RecordingLink(), [0.0], trio.Event()
        nursery.start_soon(ticker, worst, stop)
        await trio.sleep(0.01)
        instrument = LongestStep()
        trio.lowlevel.add_instrument(instrument)
        await trio.lowlevel.checkpoint()  # from here on, every step is measured: the attach's too
        started = time.perf_counter()
        hub.attach("taker", [Subscription.of("job")], link, capacity=0)
        await trio.lowlevel.checkpoint()
        while len(link.tasks) < tasks:
            await trio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - started
        trio.lowlevel.remove_instrument(instrument)
        stop.set()
        nursery.cancel_scope.cancel()
    return {"longest_step_ms": instrument.longest * 1e3, "ticker_worst_ms": worst[0] * 1e3,
            "drain_s": elapsed, "dispatches_per_s": tasks / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--groups", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--budget", type=int, default=256, help="0: no drain budget")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", help="JSON file (default benchmarks/results/backlog.json)")
    args = parser.parse_args()
    budget = args.budget or None
    cells = []
    for groups in args.groups:
        runs = [trio.run(one_run, args.tasks, groups, budget) for _ in range(args.runs)]
        cell = {key: median([r[key] for r in runs]) for key in runs[0]}
        cell.update(groups=groups, tasks=args.tasks, budget=budget, runs=runs)
        cells.append(cell)
        verdict = "ok" if cell["longest_step_ms"] < TARGET_STALL_MS else "MISS"
        print(f"{args.tasks:,} tasks in {groups:,} groups, budget {budget}: longest step "
              f"{cell['longest_step_ms']:.1f} ms (target < {TARGET_STALL_MS:g}: {verdict}), "
              f"ticker worst {cell['ticker_worst_ms']:.1f} ms, drained in "
              f"{cell['drain_s']:.2f} s ({cell['dispatches_per_s']:,.0f} dispatches/s)")
    write_result("backlog", {"machine": machine(), "cells": cells}, args.out)


if __name__ == "__main__":
    main()
