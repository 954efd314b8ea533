"""Rollups of machine statistics: what every store shares about them.

Raw samples (one per worker, metric, variant and report) are kept for the raw
retention; rollups keep, per series and fixed span (`SPANS`: 5 minutes and an hour,
epoch-aligned), the count, sum, min and max of its samples — and per span, which
workers reported and whether with a task — for longer. They are written in the same
transaction as the samples (the group commit), or held back (`Backlog`) and written
with a later one, the spans they are for marked pending with the samples: a store
rolls those up again from the raw rows when it starts, so they always agree.

A bucket of a query is a whole number of spans when the span divides the interval,
so a query reads the coarsest such span for the part of its range that covers whole
spans, the finer ones for what that leaves at its ends (`plan`), and raw samples only
for the ragged edges finer than any span: results are exactly what the raw samples
give, as long as rollups are kept at least as long as raw samples.

A metric sent as a list (variants "0", "1", ...; a number's variant is "total") has
one more rollup series, its variant "" (`POOLED`): its variants pooled, so a query
that pools variants (get_stats without split_by_variant) reads one series per metric
(variants "" and "total") and one row per bucket, with nothing to sort.

A report is added to the rollups as an increment, once. A report that repeats one
already stored (same worker and millisecond: its readings replace the old ones) makes
its buckets be computed again from the raw samples instead (`Rollups.repeat`), which
is exact because raw samples are purged in whole spans of the coarsest size only.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec

from ._interface import AGGREGATIONS, StatBucket, StatSeries

__all__ = ["POOLED", "SCALAR", "SPANS", "Backlog", "Plan", "Rollups", "as_series", "join_series",
           "plan", "raw_cutoff", "readings_template", "span_for"]

_encode = msgspec.json.Encoder().encode

#: rollup spans in ms, finest first; each divides the next
SPANS = (300_000, 3_600_000)
#: the variant of a rollup series that pools a listed metric's variants
POOLED = ""
#: the variant of a number (not a list)
SCALAR = "total"

K = TypeVar("K", bound=Hashable)


def readings_template(series: Sequence[int]) -> str:
    """A report's readings as the SQL stores keep them, a JSON object of values by
    series id, as a %-format of its values: `%r` writes a float's shortest exact text."""
    return "{" + ",".join([f'"{s}":%r' for s in series]) + "}"


def span_for(interval: int) -> int | None:
    """The coarsest rollup span that divides `interval` (ms), or None."""
    for span in reversed(SPANS):
        if interval % span == 0:
            return span
    return None


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a query's readings come from: for each (span, lo, hi) of `rollups`, the
    rollups of that span for `lo <= start < hi` (whole spans), coarsest first; raw
    readings for the inclusive ranges in `raw` (ragged ends finer than any span)."""

    rollups: tuple[tuple[int, int, int], ...]
    raw: tuple[tuple[int, int], ...]

    def reads(self, span: int, start: int) -> bool:
        """Whether the query reads the rollup of `span` that starts at `start`."""
        return any(s == span and lo <= start < hi for s, lo, hi in self.rollups)


def plan(since: int, until: int, interval: int) -> Plan:
    """Split the inclusive range `since..until` for buckets of `interval` ms: whole
    spans of the coarsest rollup that divides the interval, then of each finer one for
    what is left at the ends, raw readings only for the rest. A span that divides the
    interval lies within one bucket, so any mix of them sums to the same buckets."""
    rollups: list[tuple[int, int, int]] = []
    ranges = [(since, until)]
    for span in reversed(SPANS):
        if interval % span:
            continue
        rest = []
        for a, b in ranges:
            lo, hi = -(-a // span) * span, (b + 1) // span * span
            if lo < hi:
                rollups.append((span, lo, hi))
                rest += [(x, y) for x, y in ((a, lo - 1), (hi, b)) if x <= y]
            else:
                rest.append((a, b))
        ranges = rest
    return Plan(tuple(rollups), tuple(ranges))


def raw_cutoff(before: int) -> int:
    """Where a purge of raw samples stops: `before` rounded down to the coarsest span,
    so no rollup bucket is left half backed by raw samples (see `Rollups.repeat`)."""
    return before // SPANS[-1] * SPANS[-1]


@dataclass(slots=True)
class Rollups(Generic[K]):
    """The rollup writes of one transaction, keyed by a store's series key `K`:
    increments for new reports, and buckets to compute again for repeated ones."""

    #: (span, series, start) -> [count, total, low, high]
    add: dict[tuple[int, K, int], list[float]] = field(default_factory=dict)
    #: (span, start, worker) -> whether it reported with a task
    active: dict[tuple[int, int, str], bool] = field(default_factory=dict)
    #: (span, start, worker): every rollup of the worker's in that bucket (its series,
    #: pooled series and activity) to compute again from its raw readings and reports
    redo: set[tuple[int, int, str]] = field(default_factory=set)

    def report(self, worker: str, ts: int, task: str | None,
               readings: Iterable[tuple[K, float]]) -> None:
        """A report not stored before: add it to its buckets."""
        busy = task is not None
        active, add = self.active, self.add
        for span in SPANS:
            start = ts // span * span
            key = (span, start, worker)
            active[key] = active.get(key, False) or busy
        starts = [(span, ts // span * span) for span in SPANS]
        for series, value in readings:
            for span, start in starts:
                bucket = (span, series, start)
                a = add.get(bucket)
                if a is None:
                    add[bucket] = [1, value, value, value]
                else:  # not min() and max(): this runs for every reading, in every span
                    a[0] += 1
                    a[1] += value
                    if value < a[2]:  # noqa: PLR1730
                        a[2] = value
                    if value > a[3]:  # noqa: PLR1730
                        a[3] = value

    def repeat(self, worker: str, ts: int) -> None:
        """A report that replaces a stored one: its buckets are computed again once its
        readings are written."""
        self.redo.update((span, ts // span * span, worker) for span in SPANS)

    def absorb(self, other: Rollups[K]) -> None:
        """Add `other`'s writes to these (a later transaction's, kept back together)."""
        add = self.add
        for key, (count, total, low, high) in other.add.items():
            a = add.get(key)
            if a is None:
                add[key] = [count, total, low, high]
            else:
                a[0] += count
                a[1] += total
                a[2] = min(a[2], low)
                a[3] = max(a[3], high)
        for akey, busy in other.active.items():
            self.active[akey] = self.active.get(akey, False) or busy
        self.redo |= other.redo

    def __bool__(self) -> bool:
        return bool(self.add or self.active or self.redo)


@dataclass(slots=True)
class Backlog(Generic[K]):
    """Rollup increments held back, for a store that writes many transactions' at
    once: new reports summed per series and 5-minute span (`report`), and who reported
    per span. The pooled series and the coarser spans are derived from these sums
    (`increments`), so a worker's reports of one span become one increment, and
    pooling and the hour cost a step per bucket, not per reading."""

    #: (series, 5-minute start) -> [count, total, low, high]
    sums: dict[tuple[K, int], list[float]] = field(default_factory=dict)
    #: (5-minute start, worker) -> whether it reported with a task
    active: dict[tuple[int, str], bool] = field(default_factory=dict)

    def report(self, worker: str, ts: int, task: str | None, series: Sequence[K],
               values: Sequence[float]) -> None:
        """A report not stored before: its readings `values` of `series`."""
        start = ts // SPANS[0] * SPANS[0]
        if task is not None:
            self.active[start, worker] = True
        else:
            self.active.setdefault((start, worker), False)
        sums = self.sums
        for s, value in zip(series, values, strict=True):
            a = sums.get((s, start))
            if a is None:
                sums[s, start] = [1, value, value, value]
            else:  # not min() and max(): this runs for every reading
                a[0] += 1
                a[1] += value
                if value < a[2]:  # noqa: PLR1730
                    a[2] = value
                if value > a[3]:  # noqa: PLR1730
                    a[3] = value

    def increments(self, pooled: Mapping[K, K]) -> dict[tuple[K, int], list[float]]:
        """The 5-minute sums, with those of the pooled series (`POOLED`; `pooled` names
        each listed metric's variant series' pooled one). A coarser span's increment is
        the sum of its 5-minute ones: the store adds each to both."""
        out = dict(self.sums)
        for (s, start), a in self.sums.items():
            p = pooled.get(s)
            if p is not None:
                b = out.get((p, start))
                if b is None:
                    out[p, start] = a.copy()
                else:
                    b[0] += a[0]
                    b[1] += a[1]
                    b[2] = min(b[2], a[2])
                    b[3] = max(b[3], a[3])
        return out

    def take(self, n: int) -> Backlog[K]:
        """The first `n` sums (no activity), to write part of the backlog; `drop` them
        once written."""
        return Backlog(dict(itertools.islice(self.sums.items(), n)))

    def drop(self, part: Backlog[K]) -> None:
        """Forget the sums of `part` (taken with `take`), written now."""
        for key in part.sums:
            del self.sums[key]

    def __len__(self) -> int:
        return len(self.sums)


def as_series(buckets: Sequence[StatBucket],
              aggregations: Collection[str] = AGGREGATIONS) -> list[StatSeries]:
    """`buckets` (in `StatsStore.buckets` order) as one `StatSeries` per series, with
    the arrays of `aggregations` only (the others "[]")."""
    out: list[StatSeries] = []
    i, n = 0, len(buckets)
    while i < n:
        first = buckets[i]
        j = i
        while j < n and buckets[j][:3] == first[:3]:
            j += 1
        run = buckets[i:j]
        out.append(StatSeries(
            first.worker, first.metric, first.variant,
            _encode([b.start for b in run]).decode(),
            _encode([b.total / b.count for b in run]).decode() if "avg" in aggregations else "[]",
            _encode([b.low for b in run]).decode() if "min" in aggregations else "[]",
            _encode([b.high for b in run]).decode() if "max" in aggregations else "[]"))
        i = j
    return out


def _cat(*arrays: str) -> str:
    """JSON arrays joined into one."""
    inner = [a[1:-1] for a in arrays if len(a) > 2]
    return "[" + ",".join(inner) + "]"


def join_series(head: Sequence[StatSeries], middle: Sequence[StatSeries],
                tail: Sequence[StatSeries], order: Sequence[str]) -> list[StatSeries]:
    """Series of three consecutive parts of a range, joined per series, in `order` of
    metrics (then worker, variant as `StatsStore.series` gives them)."""
    parts: dict[tuple[str, str, str], list[StatSeries]] = {}
    for part in (head, middle, tail):
        for s in part:
            parts.setdefault((s.worker, s.metric, s.variant), []).append(s)
    rank = {m: i for i, m in enumerate(order)}
    out = []
    for (worker, metric, variant), run in sorted(
            parts.items(), key=lambda kv: (kv[0][0], rank[kv[0][1]], kv[0][2])):
        out.append(StatSeries(worker, metric, variant, *(
            _cat(*(getattr(s, name) for s in run)) for name in ("dates", "avg", "low", "high"))))
    return out
