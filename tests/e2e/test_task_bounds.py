"""Every numeric field of a submitted task has a documented range, checked at the edge:
a value outside it is a 400 naming the field, alone or inside a batch, and nothing is
stored; the values at the ends of each range are accepted and survive the store."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from workyard.protocol import MAX_PRIORITY, MAX_RETRIES, MAX_SECONDS, MIN_PRIORITY

OUT_OF_RANGE = [
    ("priority", MAX_PRIORITY + 1),  # 9223372036854775808: once it killed the SQLite writer
    ("priority", MIN_PRIORITY - 1),
    ("priority", 10**30),
    ("retries", -1),
    ("retries", MAX_RETRIES + 1),
    ("timeout", 0),
    ("timeout", -1),
    ("timeout", MAX_SECONDS + 1),
    ("timeout", "1e999"),  # JSON's way to say infinity
    ("schedule_timeout", 0),
    ("schedule_timeout", MAX_SECONDS + 1),
    ("schedule_timeout", "1e999"),
]


def _task(field: str, value: Any) -> str:
    raw = value if isinstance(value, str) else json.dumps(value)
    return f'{{"name": "t", "{field}": {raw}}}'


async def _post(http: httpx.AsyncClient, body: str) -> httpx.Response:
    return await http.post("/tasks", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
async def test_a_value_out_of_range_is_a_400_naming_the_field(
    http: httpx.AsyncClient, field: str, value: Any
) -> None:
    response = await _post(http, _task(field, value))
    assert response.status_code == 400, response.text
    assert f"`$.{field}`" in response.json()["error"]
    assert (await http.get("/tasks")).json() == {"tasks": []}


@pytest.mark.parametrize(("field", "value"), OUT_OF_RANGE)
async def test_a_value_out_of_range_in_a_batch_is_a_400_naming_the_task_and_field(
    http: httpx.AsyncClient, field: str, value: Any
) -> None:
    response = await _post(http, f'{{"tasks": [{{"name": "ok"}}, {_task(field, value)}]}}')
    assert response.status_code == 400, response.text
    assert f"`$.tasks[1].{field}`" in response.json()["error"]
    assert (await http.get("/tasks")).json() == {"tasks": []}


async def test_the_ends_of_each_range_are_accepted_and_stored(http: httpx.AsyncClient) -> None:
    ends = [
        {"name": "t", "priority": MAX_PRIORITY, "retries": MAX_RETRIES,
         "timeout": MAX_SECONDS, "schedule_timeout": MAX_SECONDS},
        {"name": "t", "priority": MIN_PRIORITY, "retries": 0, "timeout": 0.001,
         "schedule_timeout": 0.001},
    ]
    response = await http.post("/tasks", json={"tasks": ends})
    assert response.status_code == 201, response.text
    for task_id, spec in zip(response.json()["ids"], ends, strict=True):
        stored = (await http.get(f"/tasks/{task_id}")).json()
        assert {k: stored[k] for k in spec} == spec
