"""What crosses a socket, defined once for the hub and its clients (`workyard.client`):

* `_tasks`    producer submissions (POST /tasks), every field with its range
* `_workers`  seed 000 frames between a WebSocket worker and the hub
* `_polling`  seed 002/004 bodies of polling workers
* `_limits`   every limit of the protocol
* `_codec`    the JSON encoder and how validation errors read
"""

from ._checks import check_declaration, check_name, check_worker_id
from ._codec import Decoder, check_depth, encode, error_text
from ._limits import (
    BODY_TIMEOUT,
    FIRST_MESSAGE_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    MAX_BATCH,
    MAX_BODY,
    MAX_COMBINATIONS,
    MAX_DEPTH,
    MAX_FILTER_KEYS,
    MAX_FILTER_VALUES,
    MAX_FRAME,
    MAX_LIST,
    MAX_NAME,
    MAX_POLL_TASKS,
    MAX_POLL_WAIT,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MAX_SUBSCRIPTIONS,
    MAX_TASK_WAIT,
    MIN_PRIORITY,
    RESERVED_WORKER_PREFIX,
)
from ._polling import PollBody, PolledBatch, PolledTask, Registration, Report
from ._tasks import TaskSpec, WaitQuery, decode_submission, decode_wait
from ._workers import (
    RESERVED_PARAMS,
    Answer,
    Authorization,
    Declaration,
    ErrorFrame,
    TaskFrame,
    declared_pool,
    decode_answers,
    decode_declarations,
    decode_hub_frame,
    error_frame,
    filters_from_query,
    subscriptions_from_query,
)

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
    "RESERVED_PARAMS",
    "RESERVED_WORKER_PREFIX",
    "Answer",
    "Authorization",
    "Declaration",
    "Decoder",
    "ErrorFrame",
    "PollBody",
    "PolledBatch",
    "PolledTask",
    "Registration",
    "Report",
    "TaskFrame",
    "TaskSpec",
    "WaitQuery",
    "check_declaration",
    "check_depth",
    "check_name",
    "check_worker_id",
    "declared_pool",
    "decode_answers",
    "decode_declarations",
    "decode_hub_frame",
    "decode_submission",
    "decode_wait",
    "encode",
    "error_frame",
    "error_text",
    "filters_from_query",
    "subscriptions_from_query",
]
