"""What `workyard serve` does to the garbage collector once it serves."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from workyard.cli import YOUNG_COLLECTION, _settle_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_settling_the_gc_leaves_startup_objects_out_and_collects_young_ones_less_often() -> None:
    before = gc.get_threshold()
    startup = object.__new__(type("Startup", (), {}))  # something alive at startup
    _settle_gc()
    assert gc.get_freeze_count() > 0
    assert startup not in gc.get_objects()  # frozen: no collection walks it again
    assert gc.get_threshold() == (YOUNG_COLLECTION, *before[1:])
