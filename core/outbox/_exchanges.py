"""Exchange names, routing keys and message bodies, exactly as Taskcluster's
worker-manager publishes them (seed 003), except that pool events carry their real
providerId/provisionerId/workerType so consumers can bind by provider.

Routing keys are `primary.<providerId>.<provisionerId>.<workerType>.<workerGroup>.
<workerId>.<launchConfigId>.<reserved>`: all seven words after `primary` are always
there, `_` for a missing one, so `primary.x.*.*.*.*.*.#` matches every event of
provider x.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..store import OutboxEvent

__all__ = [
    "HUB_EXCHANGE_PREFIX",
    "POOL_REMOVED",
    "WORKER_MANAGER_EXCHANGES",
    "WORKER_MANAGER_PREFIX",
    "Binding",
    "hub_event_message",
    "iso",
    "matches",
    "pool_event",
    "routing_key",
    "worker_event",
]

WORKER_MANAGER_PREFIX = "exchange/taskcluster-worker-manager/v1/"
#: workyard's own exchanges: hub task and worker events, and a pool's final removal
HUB_EXCHANGE_PREFIX = "exchange/workyard/v1/"

WORKER_MANAGER_EXCHANGES = tuple(WORKER_MANAGER_PREFIX + name for name in (
    "worker-pool-created", "worker-pool-updated", "worker-pool-error", "worker-requested",
    "worker-running", "worker-stopped", "worker-removed"))
#: Taskcluster removes a drained pool silently, by a daily cron; workyard says so at once
POOL_REMOVED = HUB_EXCHANGE_PREFIX + "worker-pool-removed"

_encode = msgspec.json.Encoder().encode


def _word(value: str | None) -> str:
    """One routing-key word: `_` when missing; dots (word separators) become `_`."""
    if not value:
        return "_"
    return value.replace(".", "_")[:38]


def routing_key(provider_id: str | None, worker_pool_id: str | None,
                worker_group: str | None = None, worker_id: str | None = None,
                launch_config_id: str | None = None) -> str:
    provisioner, _, worker_type = (worker_pool_id or "").partition("/")
    words = [provider_id, provisioner, worker_type, worker_group, worker_id, launch_config_id,
             None]
    return "primary." + ".".join(_word(w) for w in words)


def iso(seconds: float) -> str:
    """Taskcluster's timestamps: ISO 8601, UTC, milliseconds, `Z`."""
    whole = int(seconds)
    ms = round((seconds - whole) * 1000)
    if ms == 1000:
        whole, ms = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def pool_event(name: str, worker_pool_id: str, provider_id: str,
               previous_provider_id: str | None, at: float) -> OutboxEvent:
    """`worker-pool-created`/`-updated` (or workyard's removal): exactly `workerPoolId`,
    `providerId` and, on an update, `previousProviderId`."""
    body: dict[str, Any] = {"workerPoolId": worker_pool_id, "providerId": provider_id}
    if previous_provider_id is not None:
        body["previousProviderId"] = previous_provider_id
    exchange = name if name.startswith("exchange/") else WORKER_MANAGER_PREFIX + name
    return OutboxEvent(exchange, routing_key(provider_id, worker_pool_id), _encode(body), at)


def worker_event(name: str, *, worker_pool_id: str, provider_id: str, worker_group: str,
                 worker_id: str, capacity: int, at: float,
                 reason: str | None = None) -> OutboxEvent:
    """`worker-running`/`-stopped`/`-removed` (`reason` on removed)."""
    body: dict[str, Any] = {
        "workerPoolId": worker_pool_id, "providerId": provider_id, "workerId": worker_id,
        "workerGroup": worker_group, "capacity": capacity, "timestamp": iso(at)}
    if reason is not None:
        body["reason"] = reason
    return OutboxEvent(WORKER_MANAGER_PREFIX + name,
                       routing_key(provider_id, worker_pool_id, worker_group, worker_id),
                       _encode(body), at)


def hub_event_message(event: msgspec.Struct) -> tuple[str, str, bytes]:
    """A hub event (`task.*`, `worker.*`) as (exchange, routing key, body) on workyard's
    own exchanges: `task.dispatched` → `exchange/workyard/v1/task-dispatched`, keyed
    `primary.<task name or _>.<worker or _>`."""
    body = msgspec.json.encode(event)
    fields = msgspec.structs.asdict(event)
    kind = str(msgspec.inspect.type_info(type(event)).tag)  # type: ignore[attr-defined]
    key = "primary." + _word(fields.get("name")) + "." + _word(fields.get("worker"))
    return HUB_EXCHANGE_PREFIX + kind.replace(".", "-").replace("_", "-"), key, body


@dataclass(frozen=True, slots=True)
class Binding:
    """An exchange and a topic pattern over its routing keys."""

    exchange: str
    pattern: str = "#"

    def matches(self, exchange: str, key: str) -> bool:
        return exchange == self.exchange and matches(self.pattern, key)


def matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is exactly one word, `#` zero or more."""
    return _match(pattern.split("."), key.split("."))


def _match(pattern: Sequence[str], words: Sequence[str]) -> bool:
    # reachable[j]: the pattern so far matches the first j words (bounded: |p| x |w|)
    reachable = [True] + [False] * len(words)
    for part in pattern:
        if part == "#":
            for j in range(1, len(words) + 1):
                reachable[j] = reachable[j] or reachable[j - 1]
        else:
            for j in range(len(words), 0, -1):
                reachable[j] = reachable[j - 1] and (part == "*" or part == words[j - 1])
            reachable[0] = False
    return reachable[len(words)]
