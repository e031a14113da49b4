"""The events page's filters, from its query string (so every filter is a deep link).

`parse_filters` turns the query parameters into an EventQuery and the list of what was wrong
with them (shown beside the form; a wrong filter is left out, never guessed). The live tail
applies the same filters to each new event with `EventFilter.admits`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from .._events import Event
from .._exceptions import KnotError, NotFound
from .._patterns import Pattern, reading_pattern
from ..engine.eventquery import OUTCOMES, EventQuery
from ..engine.registry import SinkRegistry
from ..server.auth import Caller

__all__ = ["FILTER_NAMES", "PAGE_SIZE", "EventFilter", "parse_filters", "parse_time"]

PAGE_SIZE = 50
FILTER_NAMES = ("type", "since", "until", "sink", "outcome", "q")
MAX_TEXT = 200


@dataclass(frozen=True)
class EventFilter:
    query: EventQuery
    problems: list[str] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # as typed, for the form

    @property
    def admits_all(self) -> bool:
        """Whether every new event passes (no filter a live tail applies is set)."""
        q = self.query
        return q.owner is None and q.pattern is None and q.sink_patterns is None and not q.text

    def admits(self, event: Event) -> bool:
        """Whether a new event passes the filters a live tail can apply (not the outcome: a
        new event has none yet; not `until`: the tail is about now)."""
        q = self.query
        if q.owner is not None and event.owner != q.owner:
            return False
        if q.pattern is not None and not q.pattern.matches(event.type):
            return False
        if q.sink_patterns is not None:
            if not any(p.matches(event.type) for p in q.sink_patterns):
                return False
            if q.sink_owner and event.owner != q.sink_owner:
                return False
        if q.text:
            return q.text.casefold() in (event.data_json or _json(event)).casefold()
        return True


def _json(event: Event) -> str:
    return json.dumps(event.data, ensure_ascii=False, separators=(",", ":"))


def parse_time(text: str) -> str | None:
    """A time typed in the form (`2026-12-02T08:29`, `2026-12-02 08:29:23`, with or without a
    zone; no zone means UTC) as the journal writes times; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T").replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_filters(params: Mapping[str, str], caller: Caller, registry: SinkRegistry) -> EventFilter:
    problems: list[str] = []
    values = {name: params.get(name, "").strip() for name in FILTER_NAMES}
    query = EventQuery(owner=None if caller.manage_global_sinks else caller.owner, limit=PAGE_SIZE)
    if values["type"]:
        try:
            query = replace(query, pattern=reading_pattern(values["type"]))
        except KnotError as exc:
            problems.append(exc.message)
    for name in ("since", "until"):
        if values[name]:
            moment = parse_time(values[name])
            if moment is None:
                problems.append(
                    f"The {name} time {values[name]!r} is not a time; write it as "
                    "2026-12-02T08:30 (UTC) or with a zone."
                )
            elif name == "since":
                query = replace(query, since=moment)
            else:
                query = replace(query, until=moment)
    if values["sink"]:
        try:
            spec = registry.spec(values["sink"])
            if not caller.may_see_sink(spec.owner):
                raise NotFound(f"There is no sink named {values['sink']!r}.")
        except NotFound as exc:
            problems.append(exc.message)
        else:
            patterns: tuple[Pattern, ...] = spec.events
            query = replace(query, sink=spec.name, sink_patterns=patterns, sink_owner=spec.owner)
    if values["outcome"]:
        if values["outcome"] in OUTCOMES:
            query = replace(query, outcome=values["outcome"])
        else:
            problems.append(
                f"The outcome {values['outcome']!r} is not one the journal keeps per event: "
                f"use {' or '.join(OUTCOMES)}."
            )
    if values["q"]:
        if len(values["q"]) > MAX_TEXT:
            problems.append(f"The payload text is longer than {MAX_TEXT} characters.")
        else:
            query = replace(query, text=values["q"])
    before = params.get("before", "")
    if before:
        if before.isdigit() and 0 < int(before) < 2**62:
            query = replace(query, before=int(before))
        else:
            problems.append(f"The page position {before!r} is not a journal position.")
    return EventFilter(query, problems, values)
