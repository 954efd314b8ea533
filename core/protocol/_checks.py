"""The checks every transport shares, so that a WebSocket worker and a poller are held to
the same rules: a worker's id, and what one worker may declare (`_limits`)."""

from __future__ import annotations

from collections.abc import Iterable

from .._errors import InvalidInput
from .._model import Subscription
from ._limits import (
    MAX_COMBINATIONS,
    MAX_FILTER_KEYS,
    MAX_FILTER_VALUES,
    MAX_NAME,
    MAX_SUBSCRIPTIONS,
    RESERVED_WORKER_PREFIX,
)

__all__ = ["check_declaration", "check_name", "check_subscription_count", "check_worker_id"]


def check_name(value: str, what: str) -> str:
    """`value` if it is 1 to MAX_NAME printable characters (no newline to forge a log
    line, no control character); else InvalidInput naming `what`."""
    if not value or len(value) > MAX_NAME or not value.isprintable():
        shown = repr(value) if len(value) <= MAX_NAME else f"{len(value)} characters"
        raise InvalidInput(f"{what} must be 1 to {MAX_NAME} printable characters, not {shown}")
    return value


def check_worker_id(value: str) -> str:
    """A worker id a client chose: a printable name outside the hub's reserved prefix."""
    check_name(value, "`worker_id`")
    if value.startswith(RESERVED_WORKER_PREFIX):
        raise InvalidInput(f"`worker_id` must not start with {RESERVED_WORKER_PREFIX!r} "
                           "(reserved for pollers without an identity)")
    return value


def check_subscription_count(count: int) -> None:
    """Refuse more than MAX_SUBSCRIPTIONS (a decoder calls it before building any)."""
    if count > MAX_SUBSCRIPTIONS:
        raise InvalidInput(f"{count} subscriptions declared; at most {MAX_SUBSCRIPTIONS} "
                           "per worker")


def check_declaration(subscriptions: Iterable[Subscription]) -> list[Subscription]:
    """All of one worker's subscriptions, within the declaration limits; else
    InvalidInput saying which limit, so the worker can be refused with its reason."""
    subs = list(subscriptions)
    check_subscription_count(len(subs))
    combinations = 0
    for sub in subs:
        check_name(sub.name, "a declared task name")
        if len(sub.filter) > MAX_FILTER_KEYS:
            raise InvalidInput(f"the filter for {sub.name!r} has {len(sub.filter)} keys; at "
                               f"most {MAX_FILTER_KEYS}")
        product = 1
        for key, values in sub.filter.items():
            check_name(key, "a filter key")
            if len(values) > MAX_FILTER_VALUES:
                raise InvalidInput(f"filter {key!r} for {sub.name!r} lists {len(values)} "
                                   f"values; at most {MAX_FILTER_VALUES}")
            for value in values:
                check_name(value, f"a value of filter {key!r}")
            product *= len(values)
        combinations += product
        if combinations > MAX_COMBINATIONS:
            raise InvalidInput(f"the declaration expands to more than {MAX_COMBINATIONS} "
                               "filter value combinations (the product of each filter's "
                               "value counts, summed over the worker's subscriptions)")
    return subs
