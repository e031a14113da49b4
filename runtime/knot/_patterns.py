"""Sink patterns: parse and validate them, and match event types without scanning every sink.

A pattern is `*` (every event), `prefix.*` (every type that starts with `prefix.`) or an exact
type. A wildcard anywhere else is refused, with the offending pattern named.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from ._events import CUSTOM_PREFIX, SYSTEM_EVENT_TYPES, check_type
from ._exceptions import PatternError

__all__ = [
    "Pattern",
    "PatternIndex",
    "PatternKind",
    "parse_patterns",
    "reading_pattern",
    "validate_patterns",
]

K = TypeVar("K", bound=Hashable)


class PatternKind(Enum):
    ALL = "all"
    PREFIX = "prefix"
    EXACT = "exact"


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    kind: PatternKind
    value: str  # the prefix including its final dot, the exact type, or "" for ALL

    def matches(self, event_type: str) -> bool:
        if self.kind is PatternKind.ALL:
            return True
        if self.kind is PatternKind.PREFIX:
            return event_type.startswith(self.value)
        return event_type == self.value

    @classmethod
    def parse(cls, text: str) -> Pattern:
        if text == "*":
            return cls(text, PatternKind.ALL, "")
        if text.endswith(".*") and len(text) > 2:
            body = text[:-2]
            if "*" not in body and check_type(body) is None:
                return cls(text, PatternKind.PREFIX, body + ".")
        elif "*" not in text and check_type(text) is None:
            return cls(text, PatternKind.EXACT, text)
        if "*" in text:
            raise PatternError(
                f"The pattern {text!r} is not supported: a wildcard may only stand alone ('*') "
                "or as a whole last segment ('prefix.*').",
                pattern=text,
            )
        raise PatternError(
            f"The pattern {text!r} is not a valid event type: use dot-separated segments "
            "of letters, digits, '_' and '-'.",
            pattern=text,
        )


def reading_pattern(text: str) -> Pattern:
    """A pattern someone typed to read events (`knot events`, `%knot tail`), with the rule a
    typed event type follows: it gets the `custom.` prefix unless it has it, or is `*`.

    Unlike a type, it keeps its text when it can match a system event (`space.*`,
    `space.started`): every event is either one of those or custom, so any other pattern
    without the prefix could never match anything (`zz.*` after `knot event zz.tick`).
    """
    pattern = Pattern.parse(text)
    if pattern.kind is PatternKind.ALL or text.startswith(CUSTOM_PREFIX):
        return pattern
    if any(pattern.matches(t) for t in SYSTEM_EVENT_TYPES):
        return pattern
    return Pattern.parse(CUSTOM_PREFIX + text)


def _entries(spec: str | Iterable[str]) -> list[str]:
    raw = spec.split(",") if isinstance(spec, str) else list(spec)
    return [entry.strip() for entry in raw if isinstance(entry, str) and entry.strip()]


def validate_patterns(spec: str | Iterable[str]) -> tuple[tuple[Pattern, ...], list[str]]:
    """Parse a comma-separated list (or a list) of patterns; return the good ones and problems."""
    patterns: list[Pattern] = []
    problems: list[str] = []
    if not isinstance(spec, str) and not all(isinstance(e, str) for e in spec):
        problems.append("Patterns must be strings.")
    for entry in _entries(spec):
        try:
            pattern = Pattern.parse(entry)
        except PatternError as exc:
            problems.append(exc.message)
            continue
        if pattern not in patterns:
            patterns.append(pattern)
    if not patterns and not problems:
        problems.append("No event patterns are given; use '*' to receive every event.")
    return tuple(patterns), problems


def parse_patterns(spec: str | Iterable[str]) -> tuple[Pattern, ...]:
    """Like validate_patterns, but raise PatternError naming the first bad pattern."""
    patterns, problems = validate_patterns(spec)
    if problems:
        bad = next((e for e in _entries(spec) if _is_bad(e)), "")
        raise PatternError(problems[0], pattern=bad)
    return patterns


def _is_bad(entry: str) -> bool:
    try:
        Pattern.parse(entry)
    except PatternError:
        return True
    return False


class PatternIndex(Generic[K]):
    """Which keys (sinks) have a pattern that matches an event type.

    A lookup costs one dict probe per dot in the type plus one for the exact type, whatever
    the number of keys; results are cached per type until the index changes.
    """

    def __init__(self) -> None:
        self._all: dict[K, None] = {}
        self._exact: dict[str, dict[K, None]] = {}
        self._prefix: dict[str, dict[K, None]] = {}
        self._patterns: dict[K, tuple[Pattern, ...]] = {}
        self._cache: dict[str, tuple[K, ...]] = {}

    def __len__(self) -> int:
        return len(self._patterns)

    def __contains__(self, key: object) -> bool:
        return key in self._patterns

    def set(self, key: K, patterns: Iterable[Pattern]) -> None:
        self.discard(key)
        pats = tuple(patterns)
        self._patterns[key] = pats
        for p in pats:
            if p.kind is PatternKind.ALL:
                self._all[key] = None
            elif p.kind is PatternKind.PREFIX:
                self._prefix.setdefault(p.value, {})[key] = None
            else:
                self._exact.setdefault(p.value, {})[key] = None
        self._cache.clear()

    def discard(self, key: K) -> None:
        pats = self._patterns.pop(key, None)
        if pats is None:
            return
        for p in pats:
            if p.kind is PatternKind.ALL:
                self._all.pop(key, None)
            else:
                table = self._prefix if p.kind is PatternKind.PREFIX else self._exact
                bucket = table.get(p.value)
                if bucket is not None:
                    bucket.pop(key, None)
                    if not bucket:
                        del table[p.value]
        self._cache.clear()

    def match(self, event_type: str) -> tuple[K, ...]:
        cached = self._cache.get(event_type)
        if cached is not None:
            return cached
        found: dict[K, None] = dict(self._all)
        exact = self._exact.get(event_type)
        if exact:
            found.update(exact)
        if self._prefix:
            start = 0
            while (dot := event_type.find(".", start)) != -1:
                bucket = self._prefix.get(event_type[: dot + 1])
                if bucket:
                    found.update(bucket)
                start = dot + 1
        result = tuple(found)
        if len(self._cache) > 4096:  # bound the cache against an unbounded variety of types
            self._cache.clear()
        self._cache[event_type] = result
        return result
