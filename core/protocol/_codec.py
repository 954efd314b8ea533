"""How the protocol's JSON is read and written, and how its validation errors read.

Every decoder of client input is a `Decoder`: msgspec's, behind a bound on nesting depth
(MAX_DEPTH) and a check that the whole document is UTF-8. msgspec recurses once per level and, past the interpreter's recursion limit,
raises RecursionError, which no caller expects; a `Decoder` refuses a deeper document
first with a DecodeError, which every caller already turns into a 400 or a close 1008.
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar

import msgspec

from ._limits import MAX_DEPTH

__all__ = ["NO_NUL", "PRINTABLE", "Decoder", "check_depth", "encode", "error_text"]

T = TypeVar("T")

encode = msgspec.json.Encoder().encode

#: every byte but quotes and brackets, dropped once escapes are gone
_NOISE = bytes(set(range(256)) - set(b'"[]{}'))


def check_depth(data: str | bytes | bytearray | memoryview, limit: int = MAX_DEPTH) -> None:
    """Raise msgspec.DecodeError if the JSON in `data` nests deeper than `limit` levels.

    Linear and in C for nearly every input: a document with at most `limit` brackets
    cannot be too deep; otherwise escapes, then everything but quotes and brackets, then
    strings are dropped, and innermost pairs peeled off level by level, `limit` times at
    most, stopping as soon as `limit` + 1 brackets open in a row. Malformed JSON is
    left to the decoder to refuse.
    """
    raw = _text(data)
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    # escapes pair up left to right, as JSON reads them: `\\` first, then `\"`
    raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOISE)
    # quotes now pair up, open and close by their parity, which dropping two adjacent
    # ones (a string holding no bracket) keeps; the rest go with what they hold
    raw = raw.replace(b'""', b"")
    if b'"' in raw:
        raw = b"".join(raw.split(b'"')[::2])
    brackets = raw.replace(b"{", b"[").replace(b"}", b"]")
    too_deep = b"[" * (limit + 1)
    for _ in range(limit + 1):
        if not brackets:
            return
        if too_deep in brackets:
            break
        peeled = brackets.replace(b"[]", b"")  # one level: pairs do not overlap
        if len(peeled) == len(brackets):  # unbalanced: malformed, and the decoder says so
            return
        brackets = peeled
    raise msgspec.DecodeError(f"JSON is nested more than {limit} levels deep")


class Decoder(Generic[T]):
    """msgspec.json.Decoder(type) that first refuses JSON nested beyond MAX_DEPTH."""

    __slots__ = ("_bound_depth", "_decoder")

    def __init__(self, type: Any = Any, *, bound_depth: bool = True) -> None:
        """`bound_depth=False` only for parts of a document whose depth was checked."""
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(type)
        self._bound_depth = bound_depth

    def decode(self, data: str | bytes | bytearray | memoryview) -> T:
        """The value, or a DecodeError / ValidationError (msgspec's own otherwise let a
        UnicodeError through for bytes that are not UTF-8)."""
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if self._bound_depth:
            check_depth(data)
        try:
            if isinstance(data, bytes) and not data.isascii():
                # msgspec checks only what it decodes to text: a raw `data` relayed to a
                # worker as a text frame must be UTF-8 as well
                bytes(data).decode("utf-8")
            return self._decoder.decode(data)
        except (UnicodeDecodeError, UnicodeEncodeError) as exc:  # bytes; str with surrogates
            raise msgspec.DecodeError(f"JSON is not valid UTF-8 ({exc.reason})") from None
        except msgspec.DecodeError as exc:
            if str(exc) == "Input data was truncated" and _SURROGATE.search(_text(data)):
                raise msgspec.DecodeError("JSON holds a lone UTF-16 surrogate (a \\uD800 to "
                                          "\\uDFFF escape without its pair)") from None
            raise


#: a \u escape of a UTF-16 surrogate, which msgspec reports as truncated input when alone
_SURROGATE = re.compile(rb"\\[uU][dD][89a-fA-F]")


def _text(data: str | bytes | bytearray | memoryview) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


#: patterns of the protocol's text types, and how an error says them
NO_NUL = r"^[^\x00]*$"
PRINTABLE = r"^[^\x00-\x1f\x7f]+$"
_SAID = {f"`str` matching regex {pattern!r}": words for pattern, words in (
    (NO_NUL, "text without NUL"), (PRINTABLE, "printable text"))}


def error_text(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    """msgspec's message, which names the offending field as `$.tasks[3].name`, with
    the protocol's patterns in words."""
    text = str(exc)
    for pattern, words in _SAID.items():
        text = text.replace(pattern, words)
    return text
