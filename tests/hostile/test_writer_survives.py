"""One bad write never stops the writer or the hub (issue 15, item 1): a task the edge
would refuse (a priority beyond 64 bits once killed the SQLite writer with an
OverflowError) fails alone when it reaches the store anyway, and the served hub keeps
storing everything else."""

from __future__ import annotations

import pytest
from conftest import Served, http_client

from workyard import WorkyardError
from workyard._model import Task


async def test_a_write_the_store_cannot_hold_fails_alone_and_the_hub_keeps_serving(
    server: Served,
) -> None:
    hub = server.hub
    poison = Task(id="poison", name="t", priority=2**64, created=hub.now())
    with pytest.raises(WorkyardError):  # bypassing the edge, as a bug might
        await hub.submit([poison])
    assert "poison" not in hub.scheduler.tasks  # never scheduled: nothing to lose later
    async with http_client(server.url) as http:
        for _ in range(3):
            response = await http.post("/tasks", json={"name": "t", "priority": 2**63 - 1})
            assert response.status_code == 201, response.text
            stored = await http.get(f"/tasks/{response.json()['id']}")
            assert stored.json()["priority"] == 2**63 - 1
        assert (await http.get("/tasks/poison")).status_code == 404
        assert (await http.get("/health")).json()["ok"] is True
