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
    """The token from `Authorization: Bearer …`, else an `access_token` (or `token`)
    query parameter."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if args is not None:
        return args.get("access_token") or args.get("token") or None
    return None


class Auth:
    def __init__(self, settings: Settings) -> None:
        self._tokens = {
            Role.WORKER: settings.worker_tokens,
            Role.PRODUCER: settings.producer_tokens,
            Role.ADMIN: settings.admin_tokens,
        }
        self.enabled = settings.auth_enabled

    def describe(self) -> str:
        """Who can do what, in one line for the start-up log."""
        if not self.enabled:
            return "auth off: no tokens configured, anyone on loopback can do anything"
        admins = len(self._tokens[Role.ADMIN])

        def way_in(role: Role) -> str:
            own = len(self._tokens[role])
            if not own and not admins:
                return f"no {role.value} can get in"
            return f"{role.value}s with one of {own} {role.value} or {admins} admin tokens"

        queues = ("admins configure queues" if admins else
                  "nobody can configure queues (no admin token)")
        return (f"auth on: {way_in(Role.WORKER)}; {way_in(Role.PRODUCER)}; {queues}; "
                "any token reads /workers and /queues; /health is open")

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
