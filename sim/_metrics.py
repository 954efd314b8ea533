"""Metrics: fairness and latency figures, and the JSON-ready summary of a run.

The functions at the top are plain statistics on lists of numbers, checked by
hand in the tests. `summarize` turns a `RunResult` into the dict that becomes
metrics.json: only simulated quantities, rounded, in a fixed order, so the
same scenario and seed give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ._runner import RunResult

__all__ = [
    "coefficient_of_variation",
    "fairness",
    "jain_index",
    "max_min_ratio",
    "percentile",
    "summarize",
]

#: metrics.json lists every worker only for fleets up to this size
MAX_LISTED_WORKERS = 1000


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index (Σx)² / (n·Σx²): 1 when all are equal, 1/n when one has all."""
    if not values:
        raise ValueError("Jain's index of no values")
    squares = sum(x * x for x in values)
    return 1.0 if squares == 0 else sum(values) ** 2 / (len(values) * squares)


def max_min_ratio(values: Sequence[float]) -> float:
    """Largest over smallest: 1 when all are equal, infinite when someone got nothing."""
    if not values:
        raise ValueError("max/min of no values")
    low, high = min(values), max(values)
    if low == 0:
        return 1.0 if high == 0 else math.inf
    return high / low


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Population standard deviation over the mean (0 when all are equal)."""
    if not values:
        raise ValueError("coefficient of variation of no values")
    mean = sum(values) / len(values)
    if mean == 0:
        return 0.0
    return math.sqrt(sum((x - mean) ** 2 for x in values) / len(values)) / mean


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The q-th percentile of sorted values, interpolating linearly between ranks."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def fairness(values: Sequence[float]) -> dict[str, float | None]:
    """Jain's index, max/min ratio (None for infinite) and coefficient of variation."""
    ratio = max_min_ratio(values)
    return {
        "jain": _round(jain_index(values)),
        "max_min": None if math.isinf(ratio) else _round(ratio),
        "cv": _round(coefficient_of_variation(values)),
    }


def summarize(run: RunResult) -> dict[str, Any]:
    """The JSON-ready metrics of one run (no wall-clock figures)."""
    groups: dict[str, Any] = {}
    for group in run.scenario.fleet:
        members = [w for w in run.workers if w.group == group.name]
        counts = [w.assignments for w in members]
        hourly = [3600 * w.assignments / w.attached for w in members if w.attached > 0]
        groups[group.name] = {
            "workers": len(members),
            "assignments": {"min": min(counts), "mean": _round(sum(counts) / len(counts)),
                            "max": max(counts)},
            **fairness(counts),
            #: fairness of assignments per attached hour: what matters when workers churn
            "jain_per_attached_hour": _round(jain_index(hourly)) if hourly else None,
            "utilisation": _round(sum(w.utilisation for w in members) / len(members)),
        }
    summary: dict[str, Any] = {
        "policy": str(run.policy),
        "submitted": run.submitted,
        "done": run.done,
        "failed": run.failed,
        "unfinished": run.unfinished,
        "lost": run.lost,
        "violations": run.violations,
        "reschedules": run.reschedules,
        "duplicates": run.duplicates,
        "aborted": run.aborted,
        "ignored_answers": run.ignored_answers,
        "simulated_seconds": _round(run.end),
        "events": run.events,
        "throughput": _round(run.done / run.end) if run.end else None,
        "wait": _latency(run.wait),
        "e2e": _latency(run.e2e),
        "queue_depth": {
            "max": max((q for _, q, _ in run.depth), default=0),
            "samples": [[_round(t), q, r] for t, q, r in run.depth],
        },
        "groups": groups,
    }
    if run.scale_out is not None:  # the partitioned model's figures (`--hubs`)
        summary["scale_out"] = run.scale_out
    if len(run.workers) <= MAX_LISTED_WORKERS:
        summary["workers"] = [
            {"id": w.id, "group": w.group, "assignments": w.assignments,
             "completed": w.completed, "busy": _round(w.busy), "attached": _round(w.attached),
             "utilisation": _round(w.utilisation)}
            for w in run.workers
        ]
    return summary


def _latency(ordered: Sequence[float]) -> dict[str, float | None]:
    """Seconds: mean and p50/p95/p99/max of sorted latencies."""
    return {
        "count": len(ordered),
        "mean": _round(sum(ordered) / len(ordered)) if ordered else None,
        **{f"p{q}": _round(percentile(ordered, q)) for q in (50, 95, 99)},
        "max": _round(ordered[-1]) if ordered else None,
    }


def _round(x: float | None) -> Any:
    return None if x is None else round(x, 6)
