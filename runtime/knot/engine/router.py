"""Which sinks an event goes to: patterns, ownership and Sky's `_rids`.

Global sinks (owner "") see every event; a user-owned sink sees only events whose owner is its
user. Each owner has its own pattern index, so routing costs the same whatever the number of
other users' sinks.
"""

from __future__ import annotations

from collections.abc import Iterable

from .._events import Event
from .._patterns import Pattern, PatternIndex

__all__ = ["Router"]


class Router:
    def __init__(self) -> None:
        self._global: PatternIndex[str] = PatternIndex()
        self._owned: dict[str, PatternIndex[str]] = {}
        self._owner_of: dict[str, str] = {}
        self._patterns: dict[str, tuple[Pattern, ...]] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._owner_of

    def set(self, name: str, patterns: Iterable[Pattern], *, owner: str = "") -> None:
        """Route `patterns` to sink `name` (replacing what it had)."""
        self.discard(name)
        index = self._global if not owner else self._owned.setdefault(owner, PatternIndex())
        pats = tuple(patterns)
        index.set(name, pats)
        self._owner_of[name] = owner
        self._patterns[name] = pats

    def discard(self, name: str) -> None:
        owner = self._owner_of.pop(name, None)
        if owner is None:
            return
        del self._patterns[name]
        if not owner:
            self._global.discard(name)
            return
        index = self._owned[owner]
        index.discard(name)
        if not len(index):
            del self._owned[owner]

    def route(self, event: Event) -> tuple[str, ...]:
        names = self._global.match(event.type)
        if event.owner:
            owned = self._owned.get(event.owner)
            if owned is not None:
                names += owned.match(event.type)
        if event.rids is not None:
            names = tuple(n for n in names if n in event.rids)
        return names

    def accepts(self, name: str, event: Event) -> bool:
        """Whether `route(event)` would include sink `name` (one sink, no index)."""
        owner = self._owner_of.get(name)
        if owner is None or (owner and owner != event.owner):
            return False
        if event.rids is not None and name not in event.rids:
            return False
        return any(p.matches(event.type) for p in self._patterns[name])
