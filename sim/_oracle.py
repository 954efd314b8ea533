"""An independent check of the most-specific rule.

It knows nothing of the scheduler's index: it keeps the subscriptions of the
attached workers and asks `Subscription.matches` which of them fit a task. A
task given to a worker whose matching filter is less specific than the most
specific one attached is a violation, whether that worker was busy or not.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

from workyard import Subscription

__all__ = ["SpecificityOracle", "specificity_for"]

_Key = tuple[str, tuple[tuple[str, str], ...]]


def specificity_for(subscriptions: Iterable[Subscription], name: str,
                    attrs: Mapping[str, str]) -> int:
    """The most specific of `subscriptions` matching the task, or -1 if none does."""
    return max((s.specificity for s in subscriptions if s.matches(name, attrs)), default=-1)


class SpecificityOracle:
    def __init__(self) -> None:
        #: task name -> subscription key -> (subscription, attached workers holding it)
        self._attached: dict[str, dict[object, list]] = {}
        #: (task name, attrs) -> most specific attached match; cleared when the set changes
        self._best: dict[_Key, int] = {}
        #: (worker kind, task name, attrs) -> verdict; cleared with `_best`
        self._verdicts: dict[tuple[Hashable, str, tuple[tuple[str, str], ...]], bool] = {}

    def attach(self, subscriptions: Iterable[Subscription]) -> None:
        for sub in subscriptions:
            by_key = self._attached.setdefault(sub.name, {})
            entry = by_key.get(sub.key)
            if entry is None:
                by_key[sub.key] = [sub, 1]
                self._forget()
            else:
                entry[1] += 1

    def detach(self, subscriptions: Iterable[Subscription]) -> None:
        for sub in subscriptions:
            by_key = self._attached[sub.name]
            entry = by_key[sub.key]
            entry[1] -= 1
            if entry[1] == 0:
                del by_key[sub.key]
                self._forget()

    def most_specific(self, name: str, attrs: Mapping[str, str]) -> int:
        """The specificity a worker must have to take this task now (-1: nobody matches)."""
        key = (name, tuple(attrs.items()))
        best = self._best.get(key)
        if best is None:
            subs = (entry[0] for entry in self._attached.get(name, {}).values())
            best = self._best[key] = specificity_for(subs, name, attrs)
        return best

    def allows(self, kind: Hashable, subscriptions: Iterable[Subscription], name: str,
               attrs: Mapping[str, str]) -> bool:
        """May a worker with `subscriptions` take this task, given who is attached?

        `kind` names the subscriptions (e.g. the fleet group) for caching: workers of
        the same kind must hold the same subscriptions.
        """
        key = (kind, name, tuple(attrs.items()))
        verdict = self._verdicts.get(key)
        if verdict is None:
            mine = specificity_for(subscriptions, name, attrs)
            verdict = self._verdicts[key] = mine >= 0 and mine >= self.most_specific(name, attrs)
        return verdict

    def _forget(self) -> None:
        self._best.clear()
        self._verdicts.clear()
