"""The errors workyard reports, each knowing how it is told to an HTTP client and to a
WebSocket peer, so that mapping lives here and nowhere else.

    WorkyardError               500  1011 internal error
    ├── InvalidInput            400  1008 policy violation  (also a ValueError)
    │   └── InvalidSetting              a server setting (flag or WORKYARD_* variable)
    ├── Unauthorized            401  1008 policy violation
    ├── NotFound                404  1008 policy violation
    ├── Conflict                409  1008 policy violation
    ├── TooLarge                413  1009 message too big
    └── Unavailable             503  1013 try again later

Raise one with the message the client should read; the HTTP layer answers
`{"error": message, **extra}` with the class's status, and a WebSocket closes with
the class's close code and the message as its reason.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "INTERNAL_ERROR",
    "MESSAGE_TOO_BIG",
    "POLICY_VIOLATION",
    "TRY_AGAIN_LATER",
    "Conflict",
    "InvalidInput",
    "InvalidSetting",
    "NotFound",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "WorkyardError",
]

#: WebSocket close codes (RFC 6455 §7.4.1 and the IANA registry)
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013

#: the longest close reason a control frame carries (125 bytes less the 2-byte code)
_MAX_REASON = 120


class WorkyardError(Exception):
    """Something a client is told about: `message` is the text it reads."""

    status: ClassVar[int] = 500
    close_code: ClassVar[int] = INTERNAL_ERROR

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        #: more fields for the JSON error body (e.g. the task a conflict is about)
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON error body: `{"error": message}` plus any extra fields."""
        return {"error": self.message, **self.extra}

    @property
    def reason(self) -> str:
        """The message cut to fit a WebSocket close frame."""
        return self.message[:_MAX_REASON]


class InvalidInput(WorkyardError, ValueError):
    """A malformed or out-of-range request, frame or field (a ValueError too, so code
    that validates with ValueError keeps working)."""

    status = 400
    close_code = POLICY_VIOLATION


class InvalidSetting(InvalidInput):
    """A server setting that cannot be used; the message names its flag or variable."""


class Unauthorized(WorkyardError):
    status = 401
    close_code = POLICY_VIOLATION


class NotFound(WorkyardError):
    status = 404
    close_code = POLICY_VIOLATION


class Conflict(WorkyardError):
    """The request is well formed but clashes with the current state (an id in use, a
    task already final)."""

    status = 409
    close_code = POLICY_VIOLATION


class TooLarge(WorkyardError):
    status = 413
    close_code = MESSAGE_TOO_BIG


class Unavailable(WorkyardError):
    """The hub cannot do it right now (the store failed, it is shutting down): retry."""

    status = 503
    close_code = TRY_AGAIN_LATER
