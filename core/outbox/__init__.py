"""Events leave the hub through the outbox: every pool change and worker event is
committed with the change it reports (`store.AppendEvents`), then

* `Feed` fans each committed event out to the embedded stream's live subscribers
  and wakes the relay;
* `Relay` delivers the outbox in order, at least once, to RabbitMQ when configured
  (`AmqpSink`), batches pipelined, moving its cursor past a batch only once the
  broker confirmed it;
* `add_stream_routes` serves the stream (SSE on the main port): bindings by exchange
  and topic pattern, resumable from a seq by replaying the outbox.

`_exchanges.py` holds the exchange names, routing keys and bodies (Taskcluster's
worker-manager, and workyard's own for hub events).
"""

from ._exchanges import (
    HUB_EXCHANGE_PREFIX,
    POOL_REMOVED,
    WORKER_MANAGER_EXCHANGES,
    WORKER_MANAGER_PREFIX,
    Binding,
    hub_event_message,
    matches,
    pool_event,
    routing_key,
    worker_event,
)
from ._feed import Feed
from ._relay import Relay, Sink

__all__ = [
    "HUB_EXCHANGE_PREFIX",
    "POOL_REMOVED",
    "WORKER_MANAGER_EXCHANGES",
    "WORKER_MANAGER_PREFIX",
    "Binding",
    "Feed",
    "Relay",
    "Sink",
    "hub_event_message",
    "matches",
    "pool_event",
    "routing_key",
    "worker_event",
]
