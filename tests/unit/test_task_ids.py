"""Task ids: UUID version 7, so that they grow with time (the store's index on them
appends at its end)."""

from __future__ import annotations

import uuid

import pytest

from workyard.protocol import _tasks
from workyard.protocol._tasks import TaskSpec, new_task_id


def test_task_ids_are_uuid7_and_those_of_a_later_millisecond_sort_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tasks, "time_ns", lambda: 1_700_000_000_000 * 1_000_000)
    earlier = [new_task_id() for _ in range(200)]
    monkeypatch.setattr(_tasks, "time_ns", lambda: 1_700_000_000_001 * 1_000_000)
    later = [new_task_id() for _ in range(200)]
    assert max(earlier) < min(later)
    assert len(set(earlier + later)) == 400
    for task_id in earlier + later:
        parsed = uuid.UUID(task_id)
        assert parsed.hex == task_id and len(task_id) == 32
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert parsed.int >> 80 == 1_700_000_000_000 + (task_id in later)


def test_a_submitted_task_gets_a_fresh_id() -> None:
    a, b = TaskSpec(name="x").to_task(0.0), TaskSpec(name="x").to_task(0.0)
    assert a.id != b.id and uuid.UUID(a.id).version == 7
