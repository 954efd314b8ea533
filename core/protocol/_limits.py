"""Every limit of the wire protocol, in one place: the hub enforces them and the SDK
(`workyard.client`) stays within them."""

from __future__ import annotations

__all__ = [
    "BODY_TIMEOUT",
    "FIRST_MESSAGE_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "MAX_BATCH",
    "MAX_BODY",
    "MAX_COMBINATIONS",
    "MAX_DEPTH",
    "MAX_FILTER_KEYS",
    "MAX_FILTER_VALUES",
    "MAX_FRAME",
    "MAX_LIST",
    "MAX_NAME",
    "MAX_POLL_TASKS",
    "MAX_POLL_WAIT",
    "MAX_PRIORITY",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "MAX_SUBSCRIPTIONS",
    "MAX_TASK_WAIT",
    "MIN_PRIORITY",
    "RESERVED_WORKER_PREFIX",
]

#: tasks per POST /tasks batch, tasks per WebSocket frame (`max`), reports per poll
MAX_BATCH = 1000
#: tasks one poll may ask for (`max`)
MAX_POLL_TASKS = 100
#: seconds a long poll may wait (`wait`)
MAX_POLL_WAIT = 60.0
#: seconds GET /tasks/{id}?wait= may wait for a task to finish
MAX_TASK_WAIT = 300.0
#: tasks one GET /tasks listing returns (`limit`)
MAX_LIST = 1000
#: characters in a task name, a queue name, a worker id, a filter key or a filter value
MAX_NAME = 200
#: worker ids starting with this are the hub's own (anonymous pollers): no client may
#: choose one
RESERVED_WORKER_PREFIX = "anonymous-"
#: levels of JSON nesting in any body or frame (`data` included): deeper is a 400 / 1008
MAX_DEPTH = 64
#: bytes of one HTTP request body, by default (setting `max_body`)
MAX_BODY = 16 * 1024 * 1024
#: bytes of one WebSocket message, by default (setting `max_frame`)
MAX_FRAME = 16 * 1024 * 1024
#: seconds a WebSocket worker has to send its first message (declarations or authorization)
FIRST_MESSAGE_TIMEOUT = 30.0
#: seconds a client of the lean worker port has to complete its upgrade request, and any
#: client of a TLS port its handshake
HANDSHAKE_TIMEOUT = 10.0
#: seconds an HTTP request's body has to arrive once its handler reads it (beyond: 408,
#: and the connection is closed)
BODY_TIMEOUT = 60.0

# --- a submitted task's fields ---------------------------------------------------------

#: a task's `priority`: a signed 64-bit integer, what the store holds
MIN_PRIORITY = -(2**63)
MAX_PRIORITY = 2**63 - 1
#: a task's `retries`: every attempt is kept on the task, so not without bound
MAX_RETRIES = 1000
#: a task's `timeout` and `schedule_timeout`, in seconds: a year (which also keeps out inf)
MAX_SECONDS = 365 * 24 * 3600.0

# --- what one worker may declare ------------------------------------------------------
# Each declared value combination costs the hub an index entry, so a worker's whole
# declaration is bounded, on every transport: beyond it a WebSocket worker is closed with
# 1008 and a reason, a poller gets a 400.

#: subscriptions (task names, each with its filter) one worker holds at once
MAX_SUBSCRIPTIONS = 100
#: keys in one subscription's filter
MAX_FILTER_KEYS = 16
#: values one filter key lists
MAX_FILTER_VALUES = 256
#: value combinations (the product of each filter's value counts), summed over all of one
#: worker's subscriptions
MAX_COMBINATIONS = 4096
