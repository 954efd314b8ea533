"""Request parameters the polling and registry routes share: names, ids, bounded numbers."""

from __future__ import annotations

import math
from typing import Any

from quart import request

from .._errors import InvalidInput
from ..protocol import check_name, check_worker_id

__all__ = ["WORKER_HEADER", "bounded", "name", "worker_id"]

WORKER_HEADER = "X-Worker-Id"


def name(value: str, what: str) -> str:
    return check_name(value, what)


def worker_id(body_value: str | None, *headers: str, req: Any = None) -> str | None:
    """The worker's id from the body, else the first of `headers`, else `?worker_id=`;
    `req`: a lane request, else quart's current one."""
    req = request if req is None else req
    candidates = [body_value, *(req.headers.get(h) for h in headers),
                  req.args.get("worker_id")]
    value = next((c for c in candidates if c is not None), None)
    if value is None:
        return None
    return check_worker_id(value)  # the WebSocket transport's check too


def bounded(body_value: float | None, param: str, default: float, high: float,
            req: Any = None) -> float:
    """A number from the body, else the query, within 0 … `high`."""
    args = (request if req is None else req).args
    raw: Any = body_value if body_value is not None else args.get(param)
    if raw is None:
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"`{param}` must be a number, not {raw!r}") from None
    if math.isnan(value) or not 0 <= value <= high:
        raise InvalidInput(f"`{param}` must be between 0 and {high:g}")
    return value
