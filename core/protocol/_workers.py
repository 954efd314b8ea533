"""Seed 000 worker frames (Resoto's worker queue): what a WebSocket worker and the hub
send each other, and the query form of a declaration.

Payloads (`data`) stay `msgspec.Raw`: the hub relays them byte for byte.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .._errors import InvalidInput
from .._model import JSON_NULL, Subscription, Task
from ._checks import check_subscription_count
from ._codec import Decoder, encode, error_text

__all__ = [
    "RESERVED_PARAMS",
    "Answer",
    "Authorization",
    "Declaration",
    "ErrorFrame",
    "TaskFrame",
    "declared_pool",
    "decode_answers",
    "decode_declarations",
    "decode_hub_frame",
    "error_frame",
    "filters_from_query",
    "subscriptions_from_query",
]


class TaskFrame(msgspec.Struct):
    """Hub → worker: one task (seed 000, plus `timeout`). The defaults only make
    clients lenient; the hub always sends every field."""

    task_id: str
    task_name: str
    attrs: dict[str, str] = {}
    data: msgspec.Raw = JSON_NULL
    timeout: float = 60.0

    @classmethod
    def of(cls, task: Task) -> TaskFrame:
        return cls(task.id, task.name, task.attrs, task.data, task.timeout)


class ErrorFrame(msgspec.Struct):
    """Hub → worker: `{"error": ...}`, about a frame the worker sent."""

    error: str


_hub_frame: Decoder[TaskFrame | list[TaskFrame]] = Decoder(TaskFrame | list[TaskFrame])
_error_frame: Decoder[ErrorFrame] = Decoder(ErrorFrame)


def decode_hub_frame(frame: str | bytes) -> list[TaskFrame] | ErrorFrame:
    """What a worker receives: one task, (with `max`) an array of tasks, or an error."""
    try:
        parsed = _hub_frame.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        try:
            return _error_frame.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError):
            raise InvalidInput(error_text(exc)) from None
    return parsed if isinstance(parsed, list) else [parsed]


class Answer(msgspec.Struct):
    """Worker → hub: `{"task_id", "result": "done", "data"}` or `{..., "result": "error", "error"}`."""

    task_id: str
    result: Literal["done", "error"]
    data: msgspec.Raw = JSON_NULL
    error: str | None = None


_answers: Decoder[Answer | list[Answer]] = Decoder(Answer | list[Answer])


def decode_answers(frame: str | bytes) -> list[Answer]:
    """One answer, or (a workyard extension) a JSON array of answers."""
    try:
        parsed = _answers.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(error_text(exc)) from None
    return parsed if isinstance(parsed, list) else [parsed]


class Declaration(msgspec.Struct):
    """First-message form: `{"name", "filter", ...}`; other fields are accepted and ignored,
    but `worker_pool`/`worker_group` (see `declared_pool`)."""

    name: str
    filter: dict[str, list[str] | str] = {}
    worker_pool: str | None = None
    worker_group: str | None = None


_pool_fields = msgspec.json.Decoder(list[Declaration])


def declared_pool(frame: str | bytes) -> tuple[str | None, str | None]:
    """The worker pool and group a declaration array names (every entry that names one
    must agree); (None, None) for none."""
    if (b"worker_pool" not in frame) if isinstance(frame, bytes) else ("worker_pool" not in frame):
        return None, None
    try:
        entries = _pool_fields.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None, None  # decode_declarations reports it
    named = {(d.worker_pool, d.worker_group) for d in entries if d.worker_pool is not None}
    if len(named) > 1:
        raise InvalidInput("the declarations name different worker pools or groups")
    return named.pop() if named else (None, None)


class Authorization(msgspec.Struct, tag_field="kind", tag="authorization"):
    jwt: str | None = None
    token: str | None = None

    @property
    def bearer(self) -> str:
        value = self.jwt or self.token or ""
        return value.removeprefix("Bearer ").strip()


_first: Decoder[list[Declaration] | Authorization] = Decoder(list[Declaration] | Authorization)


def decode_declarations(frame: str | bytes) -> list[Subscription] | Authorization:
    """Parse a first message: a declaration array or an authorization message."""
    try:
        parsed = _first.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"expected a JSON array of task declarations: {error_text(exc)}") from None
    if isinstance(parsed, Authorization):
        # msgspec accepts any object here (the `kind` tag is optional): without a token it
        # is a stray object such as one declaration outside its array, not an authorization.
        if not parsed.bearer:
            raise InvalidInput('expected a JSON array of task declarations or '
                             '{"kind": "authorization", "jwt": "Bearer <token>"}')
        return parsed
    if not parsed:
        raise InvalidInput("no tasks declared: the array is empty")
    # the count before building any; the other limits are the hub's (`check_declaration`)
    check_subscription_count(len(parsed))
    return [Subscription.of(d.name, d.filter) for d in parsed]


def subscriptions_from_query(args: Any) -> list[Subscription]:
    """Query form: `task` (repeated or comma-separated); every other parameter is a filter.

    `args` is a multi-dict; reserved parameters (`worker_id`, `capacity`, …) are skipped.
    """
    names = [n.strip() for raw in args.getlist("task") for n in raw.split(",") if n.strip()]
    filters = filters_from_query(args)
    return [Subscription.of(name, filters) for name in dict.fromkeys(names)]


def filters_from_query(args: Any) -> dict[str, str]:
    """Every parameter but `task` and the reserved ones is a filter: `{key: "v1,v2"}`.

    Polling workers name their task in the path and use this alone.
    """
    return {key: ",".join(args.getlist(key)) for key in args
            if key != "task" and key not in RESERVED_PARAMS}


RESERVED_PARAMS = frozenset({"worker_id", "capacity", "max", "wait", "token", "access_token",
                             "worker_pool", "worker_group"})


def error_frame(message: str) -> str:
    return encode(ErrorFrame(message)).decode()
