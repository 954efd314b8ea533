"""Bearer tokens per role. With no token configured at all, everything is open
(and the server only binds to loopback)."""

from __future__ import annotations

import enum
import hmac
from collections.abc import Mapping

from werkzeug.datastructures import Headers

from ._config import Settings

__all__ = ["Auth", "Role", "bearer"]


class Role(enum.StrEnum):
    WORKER = "worker"
    PRODUCER = "producer"
    ADMIN = "admin"
    #: any configured role may read fleet views
    ANY = "any"


def bearer(headers: Headers, args: Mapping[str, str] | None = None) -> str | None:
    """The token from `Authorization: Bearer …` (or an `access_token` query parameter)."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if args is not None and args.get("access_token"):
        return args["access_token"]
    return None


class Auth:
    def __init__(self, settings: Settings) -> None:
        self._tokens = {
            Role.WORKER: settings.worker_tokens,
            Role.PRODUCER: settings.producer_tokens,
            Role.ADMIN: settings.admin_tokens,
        }
        self.enabled = settings.auth_enabled

    def allows(self, token: str | None, role: Role) -> bool:
        if not self.enabled:
            return True
        if not token:
            return False
        roles = list(self._tokens) if role is Role.ANY else [role, Role.ADMIN]
        # as bytes: compare_digest refuses non-ASCII text, and a client's token may be
        # anything (a header's latin-1, a query's UTF-8, a lone surrogate)
        offered = _as_bytes(token)
        return any(
            hmac.compare_digest(offered, _as_bytes(known))
            for r in roles for known in self._tokens[r]
        )


def _as_bytes(token: str) -> bytes:
    return token.encode("utf-8", "surrogatepass")
