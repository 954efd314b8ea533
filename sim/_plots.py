"""PNG plots of one or more runs of a scenario, made to compare policies at a glance.

* assignments.png — tasks assigned per worker as bars, one row per policy, each fleet
  group its own block of bars with its Jain's index: even spread is a flat block;
* latency.png — CDFs of wait (queued → assigned) and end to end (submitted → done) on
  a log axis, p50 and p99 per policy in the legend; tasks assigned at once (0 ms) are
  the CDF's starting height, and a panel where every wait is 0 says so;
* queue_depth.png — queued and running tasks over simulated time, integer ticks;
  policies whose lines are identical share one line and one legend entry.

Every title names the scenario and the policies shown.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._metrics import jain_index, percentile
from ._runner import RunResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["write_plots"]

#: points per CDF line: enough for a smooth curve, few enough for a small file
_CDF_POINTS = 400
#: one line style per policy, widest first, so that identical lines stay visible
_STYLES = (("-", 3.0, 0.45), ("--", 1.6, 0.9), (":", 1.4, 1.0))
#: one colour per fleet group (matplotlib's default cycle)
_GROUP_COLOURS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9")
#: above this many workers a group is drawn as a filled step outline, not single bars
_MAX_BARS = 400


def write_plots(runs: Sequence[RunResult], out: Path) -> list[Path]:
    """Write the three plots into `out`; returns their paths."""
    import matplotlib

    with matplotlib.rc_context({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3}):
        return [_assignments(runs, out / "assignments.png"),
                _latency(runs, out / "latency.png"),
                _queue_depth(runs, out / "queue_depth.png")]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no GUI backend

    return Figure(figsize=(width, height), layout="constrained")


def _label(run: RunResult) -> str:
    return "hub (even)" if run.policy == "even" else str(run.policy)


def _policies(runs: Sequence[RunResult]) -> str:
    return " vs ".join(_label(r) for r in runs)


def _title(runs: Sequence[RunResult], what: str) -> str:
    return f"{runs[0].scenario.name}: {what} — {_policies(runs)}"


def _line_style(which: Sequence[int], runs: int) -> dict[str, Any]:
    """The style of the line of runs `which` (indices) among `runs`: a line that some
    other run's line may overlap is drawn wider the earlier it comes, so both show."""
    i = which[0]
    if len(which) == runs:  # one line for every run: nothing to tell apart
        return {"ls": "-", "lw": 1.2, "color": "C0"}
    ls, lw, alpha = _STYLES[i % len(_STYLES)]
    return {"ls": ls, "lw": lw, "alpha": alpha, "color": f"C{i}"}


def _same(runs: Sequence[RunResult], key: Callable[[RunResult], object]) -> list[list[int]]:
    """Indices of `runs` grouped by equal `key`, in first-seen order: identical lines are
    drawn once, labelled with every policy they stand for."""
    groups: dict[object, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(key(run), []).append(i)
    return list(groups.values())


def _integer_ticks(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


# --- assignments -----------------------------------------------------------------------


def _assignments(runs: Sequence[RunResult], path: Path) -> Path:
    groups = [g.name for g in runs[0].scenario.fleet]
    fig = _figure(8, 1.2 + 1.9 * len(runs))
    axes = fig.subplots(len(runs), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    gap = max(1, len(runs[0].workers) // 40)  # room between groups, in workers
    tallest = max((w.assignments for run in runs for w in run.workers), default=0)
    for ax, run in zip(axes, runs):
        start = 0
        for g, name in enumerate(groups):
            counts = [w.assignments for w in run.workers if w.group == name]
            if not counts:
                continue
            colour = _GROUP_COLOURS[g % len(_GROUP_COLOURS)]
            xs = range(start, start + len(counts))
            if len(run.workers) <= _MAX_BARS:
                ax.bar(xs, counts, width=0.8, color=colour)
            else:  # thousands of bars: one filled outline per group draws the same shape
                ax.stairs(counts, range(start, start + len(counts) + 1), fill=True,
                          color=colour)
            ax.annotate(f"{name}\nJain {jain_index(counts):.3f}",
                        (start + len(counts) / 2, 1), xycoords=("data", "axes fraction"),
                        xytext=(0, -3), textcoords="offset points", ha="center", va="top",
                        fontsize=7.5, color="black",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": colour,
                              "alpha": 0.85})
            start += len(counts) + gap
        ax.set_ylabel(f"{_label(run)}\ntasks")
        ax.set_ylim(0, max(tallest, 1) * 1.35)  # room for the group labels above the bars
        ax.grid(axis="x", visible=False)
        _integer_ticks(ax)
    axes[-1].set_xlabel("worker (attach order within each group)")
    axes[-1].set_xticks([])
    fig.suptitle(_title(runs, "tasks assigned per worker, by fleet group"))
    fig.savefig(path, dpi=90)
    return path


# --- latency ---------------------------------------------------------------------------


def _cdf(ordered: Sequence[float]) -> tuple[float, list[float], list[float]]:
    """The share of zeros in `ordered` (sorted), and points of the CDF of its positive
    values as shares of all: zeros cannot sit on a log axis, so they are the height
    the curve starts from."""
    n = len(ordered)
    first = bisect.bisect_right(ordered, 0.0)
    if first == n:
        return (1.0 if n else 0.0), [], []
    m = n - first
    idx = sorted({first + min(m - 1, round(i * (m - 1) / _CDF_POINTS))
                  for i in range(_CDF_POINTS + 1)})
    return first / n, [ordered[i] for i in idx], [(i + 1) / n for i in idx]


def _seconds(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x * 1000:,.0f} ms" if x < 1 else f"{x:,.2f} s"


def _latency(runs: Sequence[RunResult], path: Path) -> Path:
    fig = _figure(9, 3.6)
    axes = fig.subplots(1, 2)
    for ax, attr, title in ((axes[0], "wait", "wait: queued → assigned"),
                            (axes[1], "e2e", "end to end: submitted → done")):
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("seconds (log)")
        drawn = False
        for which in _same(runs, lambda run: tuple(getattr(run, attr))):  # noqa: B023
            ordered = getattr(runs[which[0]], attr)
            zero, xs, ys = _cdf(ordered)
            p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
            label = (" = ".join(_label(runs[i]) for i in which)
                     + f": p50 {_seconds(p50)}, p99 {_seconds(p99)}"
                     + (f"; {zero:.0%} at 0 ms" if zero >= 0.005 else ""))
            if xs:
                ax.step([xs[0], *xs], [zero, *ys], where="post", label=label,
                        **_line_style(which, len(runs)))
                drawn = True
        if drawn:
            ax.set_xscale("log")
            ax.legend(loc="lower right", fontsize=7.5)
        else:  # a flat line on a meaningless axis says less than this
            ax.text(0.5, 0.5, "every task was assigned the moment it arrived:\n"
                    "wait 0 ms under every policy", transform=ax.transAxes, ha="center",
                    va="center")
            ax.set_xticks([])
    axes[0].set_ylabel("share of tasks at or below")
    fig.suptitle(_title(runs, "latency CDFs"))
    fig.savefig(path, dpi=90)
    return path


# --- queue depth -----------------------------------------------------------------------


def _queue_depth(runs: Sequence[RunResult], path: Path) -> Path:
    fig = _figure(8, 4.4)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, column, name in ((axes[0], 1, "queued"), (axes[1], 2, "running")):
        peak: float = 0
        for which in _same(runs, lambda run: tuple(r[column] for r in run.depth)):  # noqa: B023
            depth = runs[which[0]].depth
            values = [row[column] for row in depth]
            peak = max([peak, *values])
            ax.step([row[0] for row in depth], values, where="post",
                    label=" = ".join(_label(runs[i]) for i in which),
                    **_line_style(which, len(runs)))
        ax.set_ylabel(name)
        ax.set_ylim(0, max(peak, 1) * 1.1)
        _integer_ticks(ax)
        if peak == 0:
            ax.text(0.5, 0.5, f"no task {name} at any sample", transform=ax.transAxes,
                    ha="center", va="center")
        else:
            ax.legend(loc="upper right", fontsize=7.5)
    axes[1].set_xlabel("simulated seconds")
    fig.suptitle(_title(runs, "queue depth over time"))
    fig.savefig(path, dpi=90)
    return path
