"""Partitioned ownership of task names across several leader hubs (docs/scale-out.md).

Task names hash into a fixed number of partitions (a stable hash, so every hub and
every run agrees); partitions are dealt to the hubs in turn, as lease rows in
PostgreSQL would hand them out to the hubs that hold them. The hub owning a
name's partition is the only one that schedules tasks of that name.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from workyard import Subscription

__all__ = ["PARTITIONS", "Partitioning", "capacity_shares"]

#: partitions of the name space: more than hubs will ever run, so ownership can move
#: one partition at a time
PARTITIONS = 64


@dataclass(frozen=True, slots=True)
class Partitioning:
    hubs: int
    partitions: int = PARTITIONS

    def __post_init__(self) -> None:
        if self.hubs < 1:
            raise ValueError("the partitioned model needs at least one hub")
        if self.partitions < self.hubs:
            raise ValueError("every hub needs at least one partition")

    def partition(self, name: str) -> int:
        return zlib.crc32(name.encode()) % self.partitions

    def owner(self, name: str) -> int:
        """The index of the hub that schedules tasks called `name`."""
        return self.partition(name) % self.hubs

    def split(self, subscriptions: Iterable[Subscription]) -> dict[int, tuple[Subscription, ...]]:
        """A worker's subscriptions by the hub owning each, its home hub first: the one
        owning most of them (the first of those on a tie), where its connection lands."""
        by_hub: dict[int, list[Subscription]] = {}
        for sub in subscriptions:
            by_hub.setdefault(self.owner(sub.name), []).append(sub)
        order = sorted(by_hub, key=lambda hub: -len(by_hub[hub]))  # stable: ties keep order
        return {hub: tuple(by_hub[hub]) for hub in order}


def capacity_shares(capacity: int, sizes: Iterable[int]) -> list[int]:
    """A worker's capacity split between the hubs it attaches to, in proportion to the
    subscriptions each holds (largest remainders first), at least 1 each: a worker with
    fewer slots than owners is over-committed, and the model counts it."""
    sizes = list(sizes)
    total = sum(sizes)
    shares = [capacity * n // total for n in sizes]
    left = capacity - sum(shares)
    by_remainder = sorted(range(len(sizes)), key=lambda i: -(capacity * sizes[i] % total))
    for i in by_remainder[:left]:
        shares[i] += 1
    return [max(1, share) for share in shares]
