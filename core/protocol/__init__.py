"""What crosses a socket: wire structs and limits, shared by the hub and its clients."""

from ._wire import (
    MAX_BATCH,
    RESERVED_PARAMS,
    Answer,
    Authorization,
    Declaration,
    TaskFrame,
    TaskSpec,
    decode_answers,
    decode_declarations,
    decode_submission,
    encode,
    error_frame,
    error_text,
    filters_from_query,
    subscriptions_from_query,
)

__all__ = [
    "MAX_BATCH",
    "RESERVED_PARAMS",
    "Answer",
    "Authorization",
    "Declaration",
    "TaskFrame",
    "TaskSpec",
    "decode_answers",
    "decode_declarations",
    "decode_submission",
    "encode",
    "error_frame",
    "error_text",
    "filters_from_query",
    "subscriptions_from_query",
]
