"""Producer submissions: POST /tasks takes one task or `{"tasks": [...]}`; and POST
/tasks/wait, a producer waiting for many results at once.

Every field of a task has its range in its annotation, so a value the scheduler or
the store could not hold (a priority beyond 64 bits, an infinite timeout) is refused
at the edge with a 400 naming the field, in one msgspec pass.
"""

from __future__ import annotations

import os
from time import time_ns
from typing import Annotated

import msgspec
from msgspec import Meta

from .._errors import InvalidInput
from .._model import JSON_NULL, Task
from ._codec import NO_NUL, PRINTABLE, Decoder, error_text
from ._limits import (
    MAX_BATCH,
    MAX_NAME,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MAX_TASK_WAIT,
    MIN_PRIORITY,
)

__all__ = ["Name", "TaskSpec", "WaitQuery", "decode_submission", "decode_wait", "new_task_id"]


def new_task_id() -> str:
    """A fresh task id: 32 hex digits laid out as a UUID version 7 (RFC 9562), the Unix
    time in milliseconds first, then 74 random bits.

    Ids that grow with time keep the store's index on them appending at its end: a
    transaction's new rows, and the starts and finishes of the tasks just dispatched,
    touch a few pages at its edge instead of one random page each. With random (version
    4) ids, a SQLite commit of 40 tasks' inserts, starts and finishes wrote 58-69 WAL
    pages instead of 23-24, and cost about twice the CPU."""
    value = (time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76 | 0x3 << 62) | 0x7 << 76 | 0x2 << 62  # version, variant
    return f"{value:032x}"

# Text the stores keep holds no NUL: PostgreSQL's text cannot, and a submission the
# store refuses would be a 503, which clients retry for ever.
Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME, pattern=PRINTABLE,
                           description="the task name workers declare: 1 to 200 printable "
                                       "characters")]
AttrText = Annotated[str, Meta(pattern=NO_NUL, description="any text but NUL")]
Priority = Annotated[int, Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY,
                               description="higher runs first; a signed 64-bit integer")]
Seconds = Annotated[float, Meta(gt=0, le=MAX_SECONDS,
                                description="seconds, above 0 and at most a year")]
Retries = Annotated[int, Meta(ge=0, le=MAX_RETRIES,
                              description="attempts after the first one; each is kept")]
Key = Annotated[str, Meta(min_length=1, pattern=NO_NUL,
                          description="idempotency key: any text but NUL")]


class TaskSpec(msgspec.Struct, forbid_unknown_fields=True):
    """One task as a producer submits it."""

    name: Name
    attrs: dict[AttrText, AttrText] = {}
    data: msgspec.Raw = JSON_NULL
    priority: Priority = 0
    #: seconds one attempt may take
    timeout: Seconds = 60.0
    retries: Retries = 3
    #: seconds the task may wait for a worker before it fails
    schedule_timeout: Seconds | None = None
    key: Key | None = None

    def to_task(self, now: float) -> Task:
        return Task(
            id=new_task_id(),
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


_envelope: Decoder[dict[str, msgspec.Raw]] = Decoder(dict[str, msgspec.Raw])
# the body again, or a part of it, once the envelope has bounded its depth
_one: Decoder[TaskSpec] = Decoder(TaskSpec, bound_depth=False)
_many: Decoder[list[TaskSpec]] = Decoder(list[TaskSpec], bound_depth=False)


def decode_submission(body: bytes) -> tuple[list[TaskSpec], bool]:
    """Parse POST /tasks: returns (specs, was_batch). Raises InvalidInput naming the field."""
    try:
        envelope = _envelope.decode(body)
        if "tasks" not in envelope:
            return [_one.decode(body)], False
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
    return specs, True


class WaitQuery(msgspec.Struct, forbid_unknown_fields=True):
    """POST /tasks/wait: `{"ids": [...], "wait": s, "min": n}`."""

    ids: list[Annotated[str, Meta(min_length=1)]]
    #: seconds to wait at most (0: answer at once)
    wait: Annotated[float, Meta(ge=0, le=MAX_TASK_WAIT)] = 0.0
    #: answer once this many of them are final (None: all of them)
    at_least: Annotated[int, Meta(ge=1)] | None = msgspec.field(default=None, name="min")


_wait: Decoder[WaitQuery] = Decoder(WaitQuery)


def decode_wait(body: bytes) -> tuple[list[str], float, int]:
    """Parse POST /tasks/wait: (its ids made distinct, in their order; `wait`; `min`,
    all of them if not given). Raises InvalidInput naming the field."""
    try:
        query = _wait.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(error_text(exc)) from None
    if not query.ids:
        raise InvalidInput("`ids` must name at least one task")
    if len(query.ids) > MAX_BATCH:
        raise InvalidInput(f"`ids` holds {len(query.ids)} ids; at most {MAX_BATCH} per request")
    ids = list(dict.fromkeys(query.ids))
    if query.at_least is not None and query.at_least > len(ids):
        raise InvalidInput(f"`min` is {query.at_least}, more than the {len(ids)} "
                           "distinct tasks `ids` names")
    return ids, query.wait, len(ids) if query.at_least is None else query.at_least
