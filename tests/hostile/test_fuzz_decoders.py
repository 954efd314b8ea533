"""Property-based fuzzing of every decoder of client input (issue 15, "make the class
impossible"): whatever the bytes, each gives a valid value or its clear error — an
InvalidInput (a 400 / close 1008), or msgspec's DecodeError / ValidationError where the
route turns those into one — and never lets another exception escape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workyard import InvalidInput
from workyard._model import Subscription
from workyard.compat._katar import _decode_reports, _poll_body
from workyard.compat._presque import _registration
from workyard.protocol import (
    MAX_DEPTH,
    MAX_NAME,
    MAX_PRIORITY,
    MAX_RETRIES,
    MAX_SECONDS,
    MIN_PRIORITY,
    Decoder,
    check_declaration,
    check_depth,
    check_worker_id,
    decode_answers,
    decode_declarations,
    decode_hub_frame,
    decode_submission,
)
from workyard.transports import Problem

FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
CLEAR = (InvalidInput, msgspec.DecodeError, msgspec.ValidationError)

# --- inputs --------------------------------------------------------------------------

#: numbers at and beyond every documented bound, and the ones JSON makes awkward
BOUNDARY_NUMBERS = st.sampled_from([
    0, -1, 1, MIN_PRIORITY, MIN_PRIORITY - 1, MAX_PRIORITY, MAX_PRIORITY + 1, 2**64, 10**30,
    MAX_RETRIES, MAX_RETRIES + 1, MAX_SECONDS, MAX_SECONDS + 1, 1e-300, 0.001, 1e308])
TEXT = st.one_of(st.text(max_size=30), st.sampled_from(
    ["", "a" * (MAX_NAME + 1), "anonymous-poll-1", "\n", "\x00", "\ud800", "é", "Bearer é"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), BOUNDARY_NUMBERS,
                    st.floats(allow_nan=False), TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=20)
FIELDS = ["name", "attrs", "data", "priority", "timeout", "retries", "schedule_timeout", "key",
          "tasks", "task_id", "result", "error", "filter", "kind", "jwt", "token", "_id",
          "status", "worker_id", "max", "wait"]
#: objects with the protocol's field names and any values: near misses, mostly
NEAR = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)
DOCUMENTS = st.one_of(NEAR, st.lists(NEAR, max_size=3), st.fixed_dictionaries(
    {"tasks": st.lists(NEAR, max_size=3)}), JSON)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _nest(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


#: bytes: JSON documents, mangled documents, deep ones, and anything at all
BODIES = st.one_of(
    DOCUMENTS.map(_dumps),
    st.tuples(DOCUMENTS.map(_dumps), st.integers(0, 40), st.binary(max_size=3)).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:]),
    st.integers(MAX_DEPTH - 2, MAX_DEPTH + 1000).map(_nest),
    st.binary(max_size=60),
)

# --- the properties -------------------------------------------------------------------


def _clear_or_value(decode: Callable[[Any], Any], data: Any) -> Any:
    try:
        return decode(data)
    except CLEAR as exc:
        assert str(exc), "an error must say what is wrong"
        return None


DECODERS: dict[str, Callable[[Any], Any]] = {
    "submission": decode_submission,
    "answers": decode_answers,
    "declarations": decode_declarations,
    "hub frame": decode_hub_frame,
    "poll body": _poll_body.decode,
    "registration": _registration.decode,
    "configuration": Decoder(dict[str, Any]).decode,
}


@FUZZ
@given(body=BODIES)
def test_every_decoder_gives_a_value_or_a_clear_error_for_any_bytes(body: bytes) -> None:
    for decode in DECODERS.values():
        _clear_or_value(decode, body)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return  # wsproto closes a text frame that is not UTF-8 with 1007 itself
    for decode in (decode_answers, decode_declarations):  # text frames arrive as str
        assert (_clear_or_value(decode, text) is None) == (_clear_or_value(decode, body) is None)


@FUZZ
@given(body=BODIES)
def test_submitted_tasks_are_within_every_documented_range(body: bytes) -> None:
    decoded = _clear_or_value(decode_submission, body)
    for spec in decoded[0] if decoded else []:
        assert MIN_PRIORITY <= spec.priority <= MAX_PRIORITY
        assert 0 <= spec.retries <= MAX_RETRIES
        assert 0 < spec.timeout <= MAX_SECONDS
        assert 1 <= len(spec.name) <= MAX_NAME
        spec.to_task(0.0)


@FUZZ
@given(entries=st.lists(BODIES, max_size=4))
def test_each_polling_report_is_a_report_or_a_problem_naming_it(entries: list[bytes]) -> None:
    decoded = _decode_reports([msgspec.Raw(e) for e in entries])
    assert len(decoded) == len(entries)
    for entry in decoded:
        assert not isinstance(entry, Problem) or entry.error.message


@FUZZ
@given(value=JSON)
def test_the_depth_bound_agrees_with_the_documents_real_depth(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max(map(depth, v), default=0)
        if isinstance(v, dict):
            return 1 + max(map(depth, v.values()), default=0)
        return 0

    for levels in (0, MAX_DEPTH - 2, MAX_DEPTH):
        wrapped: Any = value
        for _ in range(levels):
            wrapped = [wrapped]
        body = _dumps(wrapped)
        try:
            check_depth(body)
            within = True
        except msgspec.DecodeError:
            within = False
        assert within == (depth(wrapped) <= MAX_DEPTH)


@FUZZ
@given(name=TEXT, filter=st.dictionaries(TEXT, st.one_of(TEXT, st.lists(TEXT, max_size=5)),
                                         max_size=4), worker_id=TEXT)
def test_declarations_and_worker_ids_are_checked_or_refused_clearly(
    name: str, filter: dict[str, Any], worker_id: str
) -> None:
    try:
        check_declaration([Subscription.of(name, filter)])
    except ValueError as exc:  # Subscription.of's own checks; InvalidInput is one too
        assert str(exc)
    try:
        assert check_worker_id(worker_id) == worker_id
        assert worker_id.isprintable() and 0 < len(worker_id) <= MAX_NAME
    except InvalidInput as exc:
        assert exc.status == 400
