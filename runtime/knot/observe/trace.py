"""Deliveries and traces: what happened to an event at its sinks, and what it caused.

`deliveries_of` answers `GET /api/events/{id}/deliveries`: per sink, every recorded attempt
and where the event stands there now. `trace_of` answers `knot trace ID`: from the root of the
event's chain, the tree of events its sinks raised, each with its deliveries. Both read only
the store (through the Storage Protocol) plus a snapshot of what is still queued, and both
are plain JSON, so the CLI, the notebook and the dashboard render the same data; `render_text`
is the tree as the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from .._events import Event
from .._exceptions import NotFound
from .._json import JSONObject
from .._logtext import loggable
from ..engine.attempts import DELIVERED, Attempt
from ..engine.storage import Storage

__all__ = ["MAX_TRACE_EVENTS", "Deliveries", "Trace", "deliveries_of", "render_text", "trace_of"]

MAX_TRACE_EVENTS = 1000  # a trace shows at most this many events of a chain

Pending = Mapping[str, Collection[int]]  # sink → journal positions queued or in flight


@dataclass(frozen=True, slots=True)
class Deliveries:
    """An event and, per sink that tried or skipped it, its status and attempts."""

    event: Event
    sinks: tuple[JSONObject, ...]

    def to_dict(self) -> JSONObject:
        return {"event": self.event.to_dict(), "deliveries": list(self.sinks)}


@dataclass(frozen=True, slots=True)
class Trace:
    """The tree of a chain: `tree` holds the top events (the root, or the oldest still kept
    when retention pruned it), each with `deliveries` and `children`."""

    event_id: str
    root: str
    tree: tuple[JSONObject, ...]
    events: int
    truncated: bool

    def to_dict(self) -> JSONObject:
        return {
            "event": self.event_id,
            "root": self.root,
            "events": self.events,
            "truncated": self.truncated,
            "tree": list(self.tree),
        }


def _sinks(
    seq: int, attempts: list[Attempt], skips: list[tuple[str, int, str]], pending: Pending
) -> tuple[JSONObject, ...]:
    """Per sink: status (`delivered`, `failed`, `dropped`, `retrying`, `pending`) and attempts."""
    tried: dict[str, list[Attempt]] = {}
    for record in attempts:
        if record.seq == seq:
            tried.setdefault(record.sink, []).append(record)
    skipped = {sink: reason for sink, s, reason in skips if s == seq}
    waiting = {sink for sink, seqs in pending.items() if seq in seqs}
    out: list[JSONObject] = []
    for sink in sorted({*tried, *skipped, *waiting}):
        records = tried.get(sink, [])
        if sink in waiting:  # (a given-up or dropped event re-delivered by hand too)
            status = "retrying" if records and records[-1].outcome != DELIVERED else "pending"
        elif sink in skipped and not (records and records[-1].outcome == DELIVERED):
            status = skipped[sink]  # "dropped" (queue full) or "failed" (given up)
        elif records:
            status = records[-1].outcome
        else:
            status = "pending"
        out.append(
            {
                "sink": sink,
                "status": status,
                "attempts": [
                    {k: v for k, v in r.to_dict().items() if k != "sink"} for r in records
                ],
            }
        )
    return tuple(out)


def deliveries_of(store: Storage, event_id: str, pending: Pending) -> Deliveries:
    event = store.get_event(event_id)
    if event is None:
        raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)
    seqs = (event.seq,)
    return Deliveries(event, _sinks(event.seq, store.attempts(seqs), store.skips(seqs), pending))


def trace_of(store: Storage, event_id: str, pending: Pending) -> Trace:
    """The chain `event_id` belongs to, from its root, at most MAX_TRACE_EVENTS events."""
    event = store.get_event(event_id)
    if event is None:
        raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)
    root_id = event.root_id
    root = event if root_id == event.id else store.get_event(root_id)
    chain = store.chain(root_id, limit=MAX_TRACE_EVENTS + 1)
    truncated = len(chain) > MAX_TRACE_EVENTS - (root is not None)
    events = ([root] if root is not None else []) + chain
    events = events[:MAX_TRACE_EVENTS]
    if event.id not in {e.id for e in events}:
        events.append(event)  # past the cut: the event asked about is always there
    seqs = [e.seq for e in events]
    attempts, skips = store.attempts(seqs), store.skips(seqs)
    nodes: dict[str, JSONObject] = {}
    tops: list[JSONObject] = []
    for e in sorted(events, key=lambda e: e.seq):
        node: JSONObject = {
            **e.to_dict(),
            "deliveries": list(_sinks(e.seq, attempts, skips, pending)),
            "children": [],
        }
        nodes[e.id] = node
        parent = nodes.get(e.parent) if e.parent else None
        (parent["children"] if parent is not None else tops).append(node)
    return Trace(event_id, root_id, tuple(tops), len(events), truncated)


# -- the tree as text (the CLI, and the notebook outside Jupyter) --------------------------------


def render_text(trace: Mapping[str, Any]) -> str:
    """The JSON of a Trace as an indented tree: each event, then its sinks' deliveries (with
    each attempt that did not simply succeed), then the events it caused."""
    lines: list[str] = []
    marked = str(trace.get("event", ""))
    tops = list(trace.get("tree") or [])
    if tops and tops[0].get("id") != trace.get("root"):
        lines.append(f"(the root {trace.get('root')} is no longer in the journal)")
    for index, node in enumerate(tops):
        _node(lines, node, "", index == len(tops) - 1, marked, top=True)
    if trace.get("truncated"):
        lines.append(f"(only the first {trace.get('events')} events of the chain are shown)")
    # Outputs and errors are what scripts and receivers said: nothing in them may act on a
    # terminal (escapes, bidi overrides) or start a line of its own.
    return "\n".join(map(loggable, lines))


def _node(
    lines: list[str], node: Mapping[str, Any], prefix: str, last: bool, marked: str, *, top: bool
) -> None:
    branch, more = ("", "") if top else (("└─ ", "   ") if last else ("├─ ", "│  "))
    mark = "  ◀" if node.get("id") == marked else ""
    lines.append(
        f"{prefix}{branch}{node.get('type')} {node.get('id')} "
        f"(seq {node.get('seq')}, {node.get('ts')}){mark}"
    )
    inner = prefix + more
    items: list[tuple[str, Mapping[str, Any]]] = [
        *(("sink", d) for d in node.get("deliveries") or ()),
        *(("event", c) for c in node.get("children") or ()),
    ]
    if not items:
        lines.append(f"{inner}   (no sink took it)")
    for index, (kind, item) in enumerate(items):
        is_last = index == len(items) - 1
        if kind == "event":
            _node(lines, item, inner, is_last, marked, top=False)
        else:
            _delivery(lines, item, inner, is_last)


def _delivery(lines: list[str], item: Mapping[str, Any], prefix: str, last: bool) -> None:
    attempts = list(item.get("attempts") or ())
    count = f"{len(attempts)} attempt{'s' if len(attempts) != 1 else ''}"
    took = f", {attempts[-1].get('duration_ms')} ms" if attempts else ""
    lines.append(
        f"{prefix}{'└─ ' if last else '├─ '}→ {item.get('sink')}: {item.get('status')} "
        f"({count}{took})"
    )
    inner = prefix + ("   " if last else "│  ")
    for attempt in attempts:
        if attempt.get("outcome") != DELIVERED or len(attempts) > 1:
            status = f" HTTP {attempt['status']}" if attempt.get("status") else ""
            error = f": {attempt.get('error')}" if attempt.get("error") else ""
            lines.append(
                f"{inner}  #{attempt.get('attempt')} {attempt.get('ts')} "
                f"{attempt.get('duration_ms')} ms {attempt.get('outcome')}{status}{error}"
            )
        lines.extend(f"{inner}  | {line}" for line in attempt.get("output") or ())
