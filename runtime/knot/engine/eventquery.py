"""Finding journaled events by what a person filters on (the dashboard's events page).

`EventQuery` is the filter, a value; `search` runs it on a SQLite connection (the store calls
it under its read lock). Pages go newest first by journal position (`before`: the keyset of
the next page), so events journaled meanwhile never shift a page a reader is on.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from .._events import Event
from .._patterns import Pattern, PatternKind

__all__ = ["OUTCOMES", "EventQuery", "matches", "search"]

OUTCOMES = ("failed", "dropped")  # what the skips table knows per (sink, event)
_COLUMNS = "seq, id, type, ts, zone, owner, depth, data, meta"


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Which events: all of these that are set (times are RFC 3339 UTC, as events carry them).

    `sink_patterns`/`sink_owner` select the events a sink takes (its patterns and, for a
    user's sink, that user's events); `outcome` those a sink (`sink`, or any) gave up on
    ("failed") or dropped ("dropped"); `text` is searched in the payload's JSON, any case;
    `owner` limits to one user's events (who may read only their own).
    """

    pattern: Pattern | None = None
    sink: str = ""
    sink_patterns: tuple[Pattern, ...] | None = None
    sink_owner: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""
    text: str = ""
    owner: str | None = None
    before: int = 0  # only events journaled before this position (0: from the newest)
    limit: int = 50


def _pattern_sql(pattern: Pattern, params: list[Any]) -> str:
    if pattern.kind is PatternKind.ALL:
        return "1"
    if pattern.kind is PatternKind.EXACT:
        params.append(pattern.value)
        return "type = ?"
    params += [len(pattern.value), pattern.value]
    return "substr(type, 1, ?) = ?"


def _contains(data: str, folded: str) -> bool:
    return folded in data.casefold()


def search(conn: sqlite3.Connection, query: EventQuery) -> list[Event]:
    """The newest `query.limit` matching events, newest first."""
    where: list[str] = []
    params: list[Any] = []
    if query.before:
        where.append("seq < ?")
        params.append(query.before)
    if query.pattern is not None:
        where.append(_pattern_sql(query.pattern, params))
    if query.sink_patterns is not None:
        if not query.sink_patterns:
            return []
        where.append("(" + " OR ".join(_pattern_sql(p, params) for p in query.sink_patterns) + ")")
        if query.sink_owner:
            where.append("owner = ?")
            params.append(query.sink_owner)
    if query.outcome:
        if query.sink:
            where.append("seq IN (SELECT seq FROM skips WHERE reason = ? AND sink = ?)")
            params += [query.outcome, query.sink]
        else:
            where.append("seq IN (SELECT seq FROM skips WHERE reason = ?)")
            params.append(query.outcome)
    if query.owner is not None:
        where.append("owner = ?")
        params.append(query.owner)
    if query.since:
        where.append("ts >= ?")
        params.append(query.since)
    if query.until:
        where.append("ts < ?")
        params.append(query.until)
    if query.text and query.text.isascii():  # SQLite's LIKE folds ASCII letters only
        escaped = query.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("data LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    elif query.text:  # (`Ü` must find `ü`: Python folds every letter, at a Python call a row)
        conn.create_function("knot_contains", 2, _contains, deterministic=True)
        where.append("knot_contains(data, ?)")
        params.append(query.text.casefold())
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {_COLUMNS} FROM events {clause} ORDER BY seq DESC LIMIT ?"
    rows = conn.execute(sql, [*params, query.limit]).fetchall()
    return [Event.from_row(*row) for row in rows]


def matches(event: Event, query: EventQuery) -> bool:
    """Whether `event` passes every filter of `query` but `outcome` and `before` (a backend
    without SQL filters as it reads: the NATS store)."""
    if query.pattern is not None and not query.pattern.matches(event.type):
        return False
    if query.sink_patterns is not None:
        if not any(p.matches(event.type) for p in query.sink_patterns):
            return False
        if query.sink_owner and event.owner != query.sink_owner:
            return False
    if query.owner is not None and event.owner != query.owner:
        return False
    if query.since and event.ts < query.since:
        return False
    if query.until and event.ts >= query.until:
        return False
    if query.text:
        data = event.data_json or json.dumps(event.data, ensure_ascii=False)
        return _contains(data, query.text.casefold())
    return True
