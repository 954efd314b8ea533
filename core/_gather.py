"""A few calls at once, for a read made of independent parts (e.g. get_stats' queries on
several store connections): their results in order, and a failure raised as itself,
not wrapped in an ExceptionGroup, so that callers keep their `except StoreError`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

__all__ = ["gather"]

T = TypeVar("T")


async def gather(*calls: Callable[[], Awaitable[T]]) -> list[T]:
    """Await every call concurrently; the results in the calls' order. If one fails,
    the others are cancelled and its exception (the first that is not `trio.Cancelled`)
    is raised."""
    results: list[T | None] = [None] * len(calls)

    async def run(i: int, call: Callable[[], Awaitable[T]]) -> None:
        results[i] = await call()

    try:
        async with trio.open_nursery() as nursery:
            for i, call in enumerate(calls):
                nursery.start_soon(run, i, call)
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        raise next((e for e in leaves if not isinstance(e, trio.Cancelled)), leaves[0]) \
            from None
    return results  # type: ignore[return-value]  # every call has set its result


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found
