"""Several hub URLs for one client (`WORKYARD_URL=http://a:8470,http://b:8470`): the
hubs on one database, any of which serves producers and relays workers to the leader.
A client uses one at a time and moves on to the next when it cannot reach it or it
answers that it cannot serve right now."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

__all__ = ["RETRY_STATUSES", "HubURLs", "may_retry", "moved"]

#: answers meaning "not here, not now": the next hub may serve it (a 503 stored nothing)
RETRY_STATUSES = frozenset({502, 503, 504})


class HubURLs:
    """The hub URLs a client was given (comma-separated, or a list), in order, and the
    one it uses now."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        given = urls.split(",") if isinstance(urls, str) else list(urls)
        self.all = [u.strip().rstrip("/") for u in given if u.strip()]
        if not self.all:
            raise ValueError(f"no hub URL in {urls!r}")
        self._at = 0

    @property
    def current(self) -> str:
        return self.all[self._at]

    def __len__(self) -> int:
        return len(self.all)

    def advance(self) -> str:
        """Move on to the next URL (round robin); returns it."""
        self._at = (self._at + 1) % len(self.all)
        return self.current


def moved(request: httpx.Request, base: str) -> httpx.Request:
    """`request` (fully read) sent to the hub at `base` instead."""
    target = httpx.URL(base)
    url = request.url.copy_with(scheme=target.scheme, host=target.host, port=target.port)
    headers = httpx.Headers(request.headers)
    headers.pop("host", None)
    return httpx.Request(request.method, url, headers=headers, content=request.content,
                         extensions=request.extensions)


def may_retry(request: httpx.Request, exc: httpx.TransportError) -> bool:
    """Whether another hub may be asked after `exc`: always if the request never left
    (no connection), else only if repeating it changes nothing (GET, DELETE)."""
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)) or \
        request.method in ("GET", "HEAD", "DELETE")
