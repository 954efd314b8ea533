"""Wire formats: what crosses a socket, decoded and validated in one msgspec pass.

Payloads (`data`, `result`) stay `msgspec.Raw`: the hub relays them byte for byte.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

import msgspec

from .._errors import InvalidInput
from .._model import JSON_NULL, Subscription, Task
from ._limits import MAX_BATCH

__all__ = [
    "Answer",
    "Declaration",
    "TaskFrame",
    "TaskSpec",
    "decode_answers",
    "decode_declarations",
    "encode",
    "error_text",
]

encode = msgspec.json.Encoder().encode


def error_text(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    """msgspec's message, which names the offending field as `$.tasks[3].name`."""
    return str(exc)


# --- producers -------------------------------------------------------------------


class TaskSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One task as a producer submits it."""

    name: str
    attrs: dict[str, str] = {}
    data: msgspec.Raw = JSON_NULL
    priority: int = 0
    timeout: float = 60.0
    retries: int = 3
    schedule_timeout: float | None = None
    key: str | None = None

    def validate(self, where: str) -> None:
        if not self.name or len(self.name) > 200:
            raise InvalidInput(f"{where}.name must be 1 to 200 characters")
        if not self.timeout > 0:
            raise InvalidInput(f"{where}.timeout must be greater than 0")
        if self.retries < 0:
            raise InvalidInput(f"{where}.retries must be 0 or more")
        if self.schedule_timeout is not None and not self.schedule_timeout > 0:
            raise InvalidInput(f"{where}.schedule_timeout must be greater than 0")
        if self.key is not None and not self.key:
            raise InvalidInput(f"{where}.key must not be empty")

    def to_task(self, now: float) -> Task:
        return Task(
            id=uuid.uuid4().hex,
            name=self.name,
            attrs=self.attrs,
            data=self.data,
            priority=self.priority,
            timeout=self.timeout,
            retries=self.retries,
            schedule_timeout=self.schedule_timeout,
            key=self.key,
            created=now,
        )


_envelope = msgspec.json.Decoder(dict[str, msgspec.Raw])
_one = msgspec.json.Decoder(TaskSpec)
_many = msgspec.json.Decoder(list[TaskSpec])


def decode_submission(body: bytes) -> tuple[list[TaskSpec], bool]:
    """Parse POST /tasks: returns (specs, was_batch). Raises ValueError naming the field."""
    try:
        envelope = _envelope.decode(body)
        if "tasks" not in envelope:
            parsed = _one.decode(body)
            parsed.validate("$")
            return [parsed], False
        if len(envelope) != 1:
            raise InvalidInput("a batch is {\"tasks\": [...]} with no other fields")
        try:
            specs = _many.decode(envelope["tasks"])
        except msgspec.ValidationError as exc:  # `tasks` itself is wrong: msgspec names no path
            if " - at `$" in str(exc):
                raise
            raise msgspec.ValidationError(f"{exc} - at `$.tasks`") from None
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(error_text(exc).replace("`$[", "`$.tasks[")) from None
    if not specs:
        raise InvalidInput("`tasks` must hold at least one task")
    if len(specs) > MAX_BATCH:
        raise InvalidInput(f"`tasks` holds {len(specs)} tasks; at most {MAX_BATCH}")
    for i, spec in enumerate(specs):
        spec.validate(f"$.tasks[{i}]")
    return specs, True


# --- workers -----------------------------------------------------------------------


class TaskFrame(msgspec.Struct):
    """Hub → worker: one task (seed 000, plus `timeout`)."""

    task_id: str
    task_name: str
    attrs: dict[str, str]
    data: msgspec.Raw
    timeout: float

    @classmethod
    def of(cls, task: Task) -> TaskFrame:
        return cls(task.id, task.name, task.attrs, task.data, task.timeout)


class Answer(msgspec.Struct):
    """Worker → hub: `{"task_id", "result": "done", "data"}` or `{..., "result": "error", "error"}`."""

    task_id: str
    result: Literal["done", "error"]
    data: msgspec.Raw = JSON_NULL
    error: str | None = None


_answers = msgspec.json.Decoder(Answer | list[Answer])  # type: ignore[arg-type]


def decode_answers(frame: str | bytes) -> list[Answer]:
    """One answer, or (a workyard extension) a JSON array of answers."""
    try:
        parsed = _answers.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(error_text(exc)) from None
    return parsed if isinstance(parsed, list) else [parsed]


class Declaration(msgspec.Struct):
    """First-message form: `{"name", "filter", ...}`; other fields are accepted and ignored."""

    name: str
    filter: dict[str, list[str] | str] = {}


class Authorization(msgspec.Struct, tag_field="kind", tag="authorization"):
    jwt: str | None = None
    token: str | None = None

    @property
    def bearer(self) -> str:
        value = self.jwt or self.token or ""
        return value.removeprefix("Bearer ").strip()


_first = msgspec.json.Decoder(list[Declaration] | Authorization)  # type: ignore[arg-type]


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


RESERVED_PARAMS = frozenset({"worker_id", "capacity", "max", "wait", "token", "access_token"})


def error_frame(message: str) -> str:
    return encode({"error": message}).decode()
