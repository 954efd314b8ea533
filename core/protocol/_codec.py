"""How the protocol's JSON is written, and how its validation errors read."""

from __future__ import annotations

import msgspec

__all__ = ["encode", "error_text"]

encode = msgspec.json.Encoder().encode


def error_text(exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    """msgspec's message, which names the offending field as `$.tasks[3].name`."""
    return str(exc)
