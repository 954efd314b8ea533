"""Property-based fuzzing of ClearML's workers.* bodies (seed 001): whatever the body,
every action answers in ClearML's envelope with HTTP status = result_code, a 2xx or a
4xx — never a 500, and never the 503/429 the SDK retries without end — and a 400 says
which field (or that the body is not an object)."""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workyard import Hub, Settings
from workyard.compat import ClearML
from workyard.compat._clearml import ACTIONS
from workyard.testing import MemoryStore

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

NOW_MS = int(time.time() * 1000)
NUMBERS = st.sampled_from([0, -1, 1, 0.5, 1e11, 1e15, 1e300, -1e300, 2**63, 10**30,
                           NOW_MS, NOW_MS + 10**12, NOW_MS - 10**12, 600, 3600, 1e-300])
TEXT = st.one_of(st.text(max_size=20), st.sampled_from(
    ["", "a" * 300, "\x00", "\ud800", "avg", "max", "median", "cpu_usage", "gpu_usage",
     "-tag", "(", "none"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), NUMBERS,
                    st.floats(allow_nan=False, allow_infinity=False), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)
FIELDS = ["worker", "timeout", "queues", "tags", "system_tags", "timestamp", "task", "queue",
          "machine_stats", "last_seen", "worker_pattern", "from_date", "to_date", "interval",
          "items", "worker_ids", "split_by_variant", "key", "aggregation", "category"]
ITEM = st.dictionaries(st.sampled_from(["key", "aggregation", "category"]), JSON, max_size=3)
STATS = st.dictionaries(st.sampled_from(["cpu_usage", "gpu_usage", "memory_used", "bad key!"]),
                        st.one_of(SCALARS, st.lists(st.one_of(NUMBERS, st.none(), TEXT),
                                                     max_size=70)), max_size=4)
NEAR = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)
BODIES = st.one_of(
    NEAR,
    st.fixed_dictionaries({"worker": TEXT, "timestamp": NUMBERS, "machine_stats": STATS}),
    st.fixed_dictionaries({"from_date": NUMBERS, "to_date": NUMBERS, "interval": NUMBERS,
                           "items": st.lists(ITEM, max_size=3)}),
    JSON)


def _answer(action: str, body: bytes) -> tuple[int, dict[str, Any]]:
    async def main() -> tuple[int, bytes]:
        async with trio.open_nursery() as nursery:
            hub = Hub(store=MemoryStore())
            await nursery.start(hub.run)
            got = await ClearML(hub, Settings()).handle("workers", action, None, {}, body, {},
                                                        "127.0.0.1")
            nursery.cancel_scope.cancel()
        return got

    status, raw = trio.run(main)
    return status, json.loads(raw)


@FUZZ
@given(st.sampled_from(ACTIONS), st.one_of(BODIES.map(lambda v: json.dumps(v).encode()),
                                          st.binary(max_size=40)))
def test_every_workers_action_answers_any_body_in_the_envelope_with_a_2xx_or_4xx(
        action: str, body: bytes) -> None:
    status, answer = _answer(action, body)
    meta = answer["meta"]
    assert meta["result_code"] == status and status in (200, 400), meta
    if status == 400:
        assert "validation error" in meta["result_msg"] or meta["result_subcode"] in (
            16, 1002), meta
        assert meta["result_subcode"] in (12, 16, 1002), meta
