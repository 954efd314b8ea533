"""PNG plots of one or more runs of a scenario, one line per policy.

* assignments.png — tasks per worker, workers in attach order, groups marked;
* latency.png — CDFs of wait (queued → assigned) and end-to-end latency;
* queue_depth.png — queued and running tasks over simulated time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ._runner import RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_plots"]

#: points per CDF line: enough for a smooth curve, few enough for a small file
_CDF_POINTS = 400
#: one line style per policy, so that identical lines stay visible
_STYLES = ("-", "--", ":")


def write_plots(runs: Sequence[RunResult], out: Path) -> list[Path]:
    """Write the three plots into `out`; returns their paths."""
    import matplotlib

    with matplotlib.rc_context({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3}):
        return [_assignments(runs, out / "assignments.png"),
                _latency(runs, out / "latency.png"),
                _queue_depth(runs, out / "queue_depth.png")]


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state, no GUI backend

    return Figure(figsize=(width, height), layout="tight")


def _label(run: RunResult) -> str:
    return "hub (even)" if run.policy == "even" else str(run.policy)


def _style(i: int) -> str:
    return _STYLES[i % len(_STYLES)]


def _assignments(runs: Sequence[RunResult], path: Path) -> Path:
    fig = _figure(8, 3.6)
    ax = fig.subplots()
    many = len(runs[0].workers) > 300  # then one pixel per worker keeps the file small
    lines = []
    for i, run in enumerate(runs):
        counts = [w.assignments for w in run.workers]
        if many:
            lines += ax.plot(range(len(counts)), counts, ",", label=_label(run))
        else:
            lines += ax.plot(range(len(counts)), counts, lw=0.8, ls=_style(i), marker=".", ms=3,
                             label=_label(run))
    start = 0
    for group in runs[0].scenario.fleet:
        if start:
            ax.axvline(start - 0.5, color="grey", lw=0.6, ls="--")
        ax.annotate(group.name, (start, 1), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", fontsize=8, color="grey")
        start += group.count
    ax.set_xlabel("worker (attach order)")
    ax.set_ylabel("tasks assigned")
    ax.set_title(f"{runs[0].scenario.name}: assignments per worker")
    if many:  # pixel markers are invisible in a legend: show dots instead
        from matplotlib.lines import Line2D

        ax.legend(handles=[Line2D([], [], ls="none", marker="o", ms=4, color=line.get_color(),
                                  label=line.get_label()) for line in lines])
    else:
        ax.legend()
    fig.savefig(path, dpi=90)
    return path


def _cdf(ordered: Sequence[float]) -> tuple[list[float], list[float]]:
    n = len(ordered)
    if n == 0:
        return [], []
    idx = sorted({min(n - 1, round(i * (n - 1) / _CDF_POINTS)) for i in range(_CDF_POINTS + 1)})
    return [ordered[i] for i in idx], [(i + 1) / n for i in idx]


def _latency(runs: Sequence[RunResult], path: Path) -> Path:
    fig = _figure(8, 3.4)
    axes = fig.subplots(1, 2)
    for ax, attr, title in ((axes[0], "wait", "wait: queued → assigned"),
                            (axes[1], "e2e", "end to end: submitted → done")):
        longest = 0.0
        for i, run in enumerate(runs):
            xs, ys = _cdf(getattr(run, attr))
            ax.step(xs, ys, where="post", lw=1, ls=_style(i), label=_label(run))
            longest = max([longest, *xs[-1:]])
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylim(0, 1.01)
        if attr == "e2e":
            ax.set_xscale("log")
        else:
            ax.set_xlim(0, longest * 1.02 or 1.0)
    axes[0].set_ylabel("share of tasks")
    axes[0].legend()
    fig.savefig(path, dpi=90)
    return path


def _queue_depth(runs: Sequence[RunResult], path: Path) -> Path:
    fig = _figure(8, 4.2)
    axes = fig.subplots(2, 1, sharex=True)
    for i, run in enumerate(runs):
        ts = [t for t, _, _ in run.depth]
        axes[0].plot(ts, [q for _, q, _ in run.depth], lw=1, ls=_style(i), label=_label(run))
        axes[1].plot(ts, [r for _, _, r in run.depth], lw=1, ls=_style(i), label=_label(run))
    axes[0].set_ylabel("queued")
    axes[1].set_ylabel("running")
    axes[1].set_xlabel("simulated seconds")
    axes[0].set_title(f"{runs[0].scenario.name}: queue depth")
    axes[0].legend()
    fig.savefig(path, dpi=90)
    return path
