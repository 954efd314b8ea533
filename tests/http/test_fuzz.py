"""Fuzzing from the OpenAPI document: schemathesis generates requests for every
documented operation against a served hub, and every answer must be documented,
conform to its schema and never be a 5xx; the hub is healthy afterwards.

Bounded: `EXAMPLES` per operation and generation mode, long polls clamped to 0.1 s,
the whole run under `BUDGET` seconds. The requests go from a thread (schemathesis
is synchronous) while the hub runs in the test's trio loop.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import schemathesis
import trio
from conftest import StartServer, echo_worker
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: generated requests per operation and mode (positive: valid by the schema; negative: not)
EXAMPLES = 15
#: seconds the whole fuzz run may take
BUDGET = 90.0
#: not fuzzed: an endless stream
SKIP = {("GET", "/ui/events"), ("GET", "/events")}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _clamp_waits(case: Any) -> None:
    """A valid `wait` may be 300 s: keep long polls short so the run stays bounded."""
    if case.query and "wait" in case.query:
        case.query["wait"] = 0.1
    if isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = 0


def _fuzz_one(operation: Any, mode: GenerationMode, url: str, sent: Counter[str],
              deadline: float) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        assert time.monotonic() < deadline, "the fuzz run is over its time budget"
        _clamp_waits(case)
        response = case.call(base_url=url, timeout=10)
        sent[mode.value] += 1
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:  # nothing about it can be invalid (no parameters, no body)
        assert mode is GenerationMode.NEGATIVE, operation.label


def fuzz(url: str, document: dict[str, Any]) -> Counter[str]:
    """Run every operation's examples; returns how many requests each mode sent."""
    schema = schemathesis.openapi.from_dict(document)
    sent: Counter[str] = Counter()
    deadline = time.monotonic() + BUDGET
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz_one(operation, mode, url, sent, deadline)
    return sent


async def test_generated_requests_get_documented_answers_and_never_a_5xx(
        start_server: StartServer) -> None:
    served = await start_server()
    async with httpx.AsyncClient(base_url=served.url) as http:
        document = (await http.get("/openapi.json")).json()
        sent = await trio.to_thread.run_sync(fuzz, served.url, document)
        print(f"fuzz: {sum(sent.values())} requests ({dict(sent)})")
        assert sent["positive"] >= 150 and sent["negative"] >= 80, sent

        health = await http.get("/health")
        assert health.status_code == 200 and health.json()["ok"] is True
        async with trio.open_nursery() as nursery:
            await nursery.start(echo_worker, served.ws("/work/queue?task=after-fuzz"))
            submitted = await http.post("/tasks", json={"name": "after-fuzz", "data": 7})
            task = (await http.get(f"/tasks/{submitted.json()['id']}?wait=10")).json()
            nursery.cancel_scope.cancel()
        assert (task["state"], task["result"]) == ("done", 7)
