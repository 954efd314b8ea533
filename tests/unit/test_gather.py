"""`gather`: parts of a read at once, their results in order, a failure as itself."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from workyard._gather import gather
from workyard.store import StoreError


async def test_results_come_back_in_the_order_of_the_calls_whatever_order_they_finish_in(
        autojump_clock: trio.testing.MockClock) -> None:
    async def after(seconds: float, value: str) -> str:
        await trio.sleep(seconds)
        return value

    started = trio.current_time()
    got = await gather(lambda: after(3, "a"), lambda: after(1, "b"), lambda: after(2, "c"))
    assert got == ["a", "b", "c"]
    assert trio.current_time() - started == pytest.approx(3)  # at once, not one by one


async def test_a_failing_call_cancels_the_others_and_its_error_is_raised_unwrapped() -> None:
    cancelled = []

    async def fails() -> None:
        await trio.testing.wait_all_tasks_blocked()
        raise StoreError("closed")

    async def waits() -> None:
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(True)
            raise

    with pytest.raises(StoreError, match="closed"):
        await gather(waits, fails)
    assert cancelled == [True]


async def test_nothing_to_await_is_nothing_returned() -> None:
    assert await gather() == []
