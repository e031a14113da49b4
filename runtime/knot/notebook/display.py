"""What the notebook magics return: tables and small results, as HTML in Jupyter, text elsewhere.

Every result is an immutable snapshot holding plain JSON rows (the shape the HTTP API answers
with), so the embedded runtime and a connected `knot serve` render the same. `LiveTail` is the
one living view: a background thread feeds it events and only ever calls `handle.update`.
"""

from __future__ import annotations

import html
import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from IPython.display import DisplayHandle

from .._exceptions import KnotError
from .._json import JSONObject
from ..observe.trace import render_text
from ..scripts.tools import kv_lines, request_lines

__all__ = [
    "EVENT_COLUMNS",
    "Column",
    "DryRunReport",
    "Feed",
    "Handle",
    "LiveTail",
    "Message",
    "Raised",
    "Table",
    "TextLines",
    "TraceView",
    "audit_table",
    "display_handle",
    "event_table",
    "sink_table",
    "space_table",
]

TEXT_CELL_WIDTH = 60  # longer cells are cut in the text form; HTML shows them whole


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    title: str


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return ", ".join(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CELL_WIDTH else text[: TEXT_CELL_WIDTH - 1] + "…"


class _Pretty(Protocol):
    def text(self, text: str) -> None: ...


@dataclass(frozen=True, slots=True, repr=False)
class Table:
    """Rows of JSON objects shown under a title; `rows` is there for code to use."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[JSONObject, ...]
    empty: str = "(none)"

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[JSONObject]:
        return iter(self.rows)

    def text(self) -> str:
        lines = [self.title]
        if not self.rows:
            return "\n".join([*lines, self.empty])
        cells = [[_cut(_cell(row.get(c.key))) for c in self.columns] for row in self.rows]
        widths = [
            max(len(column.title), *(len(line[i]) for line in cells))
            for i, column in enumerate(self.columns)
        ]
        lines.extend(
            "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip()
            for line in [[c.title for c in self.columns], *cells]
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c.title)}</th>" for c in self.columns)
        if self.rows:
            body = "".join(
                "<tr>"
                + "".join(f"<td>{html.escape(_cell(row.get(c.key)))}</td>" for c in self.columns)
                + "</tr>"
                for row in self.rows
            )
        else:
            body = f'<tr><td colspan="{len(self.columns)}">{html.escape(self.empty)}</td></tr>'
        return (
            f'<table class="knot-table"><caption style="text-align:left">'
            f"{html.escape(self.title)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )


def _columns(*pairs: tuple[str, str]) -> tuple[Column, ...]:
    return tuple(Column(key, title) for key, title in pairs)


EVENT_COLUMNS = _columns(("seq", "seq"), ("ts", "time"), ("type", "type"), ("id", "id"))
SINK_COLUMNS = _columns(
    ("name", "name"),
    ("type", "type"),
    ("events", "events"),
    ("origin", "origin"),
    ("pending", "pending"),
    ("delivered", "delivered"),
    ("failed", "failed"),
    ("dropped", "dropped"),
    ("last_error", "last error"),
    ("problem", "problem"),
    ("last_output", "last output"),
)
AUDIT_COLUMNS = _columns(
    ("ts", "time"), ("title", "what"), ("sink", "sink"), ("message", "message")
)


SPACE_COLUMNS = _columns(
    ("name", "name"),
    ("state", "state"),
    ("health_state", "health"),
    ("running_pid", "pid"),
    ("urls", "urls"),
    ("cmd", "cmd"),
    ("owner", "owner"),
    ("id", "id"),
)


def event_table(title: str, events: Iterable[JSONObject], *, sinks: bool = False) -> Table:
    extra = _columns(("sinks", "sinks")) if sinks else ()
    columns = (*EVENT_COLUMNS, *extra, Column("data", "data"))
    return Table(title, columns, tuple(events), empty="(no events)")


def sink_table(sinks: Iterable[JSONObject]) -> Table:
    # Script sinks keep their last printed lines in `output`; the newest says the most.
    rows = tuple({**s, "last_output": (s.get("output") or [""])[-1]} for s in sinks)
    return Table("sinks", SINK_COLUMNS, rows, empty="(no sinks)")


def space_table(title: str, spaces: Iterable[JSONObject]) -> Table:
    # The health check's settings and state travel as one object; the table shows its state.
    rows = tuple(
        {
            **s,
            "health_state": h.get("state") if isinstance(h := s.get("health"), dict) else None,
            "running_pid": s.get("pid") or None,
        }
        for s in spaces
    )
    return Table(title, SPACE_COLUMNS, rows, empty="(no spaces)")


def audit_table(entries: Iterable[JSONObject]) -> Table:
    return Table("audit log", AUDIT_COLUMNS, tuple(entries), empty="(the audit log is empty)")


@dataclass(frozen=True, slots=True, repr=False)
class Message:
    """One line of news (which runtime is in use, what was waited for)."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(self.text)


@dataclass(frozen=True, slots=True, repr=False)
class TextLines:
    """Lines a process printed (a space's log), under a title; shown as they are."""

    title: str
    lines: tuple[str, ...]
    empty: str = "(nothing yet)"

    def text(self) -> str:
        return "\n".join([self.title, *(self.lines or (self.empty,))])

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        body = "\n".join(self.lines) if self.lines else self.empty
        return f"<p><b>{html.escape(self.title)}</b></p><pre>{html.escape(body)}</pre>"


@dataclass(frozen=True, slots=True, repr=False)
class Raised:
    """The answer to `%knot event`: the id the runtime journaled the event under."""

    id: str
    type: str

    def __repr__(self) -> str:
        return f"raised {self.type} {self.id}"

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(repr(self))

    def _repr_html_(self) -> str:
        return f"raised <code>{html.escape(self.type)}</code> <code>{html.escape(self.id)}</code>"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclass(frozen=True, slots=True, repr=False)
class TraceView:
    """`%knot trace ID`: the tree of a chain (the JSON of `GET /api/events/{id}/trace`), as
    nested lists in Jupyter and as the CLI's tree elsewhere; `.data` holds the JSON."""

    data: JSONObject

    def text(self) -> str:
        return render_text(self.data)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        tops = "".join(self._node(node) for node in self.data.get("tree") or ())
        note = " (only the first events are shown)" if self.data.get("truncated") else ""
        return (
            f'<div class="knot-trace"><p><b>trace of {html.escape(str(self.data["event"]))}'
            f"</b>: {self.data['events']} events from root "
            f"<code>{html.escape(str(self.data['root']))}</code>{note}</p>"
            f"<ul>{tops}</ul></div>"
        )

    def _node(self, node: JSONObject) -> str:
        marked = node.get("id") == self.data.get("event")
        title = (
            f"<b>{html.escape(str(node.get('type')))}</b> <code>{html.escape(str(node.get('id')))}"
            f"</code> seq {node.get('seq')}, {html.escape(str(node.get('ts')))}"
        )
        if marked:
            title = f'<span style="background:#ffd">{title}</span>'
        items = [self._delivery(d) for d in node.get("deliveries") or ()]
        items += [self._node(child) for child in node.get("children") or ()]
        inner = f"<ul>{''.join(items)}</ul>" if items else " (no sink took it)"
        return f"<li>{title}{inner}</li>"

    @staticmethod
    def _delivery(item: JSONObject) -> str:
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(_cell(a.get(k)))}</td>"
                for k in ("attempt", "ts", "duration_ms", "outcome", "status", "error")
            )
            + f"<td>{html.escape(chr(10).join(a.get('output') or ()))}</td></tr>"
            for a in item.get("attempts") or ()
        )
        head = "".join(
            f"<th>{h}</th>" for h in ("#", "time", "ms", "outcome", "status", "error", "output")
        )
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
        return (
            f"<li>→ <b>{html.escape(str(item.get('sink')))}</b>: "
            f"{html.escape(str(item.get('status')))}{table if rows else ''}</li>"
        )


@dataclass(frozen=True, slots=True, repr=False)
class DryRunReport:
    """`%knot run`: what a sink script did with one event (the dict of sandbox's DryRun)."""

    result: JSONObject

    @property
    def ok(self) -> bool:
        return not self.result["error"] and not self.result["problems"]

    def _heading(self) -> str:
        return f"dry run of {self.result['path']} on {self.result['event']['type']}"

    def text(self) -> str:
        r = self.result
        lines = [self._heading()]
        if r["problems"]:
            return "\n".join([*lines, "refused by the sandbox:", *r["problems"]])
        lines += [f"note: {note}" for note in r["notes"]]
        lines.append(f"--- output ({_count(len(r['output']), 'line')})")
        lines += r["output"]
        lines.append(f"--- emitted ({_count(len(r['emitted']), 'event')}, not delivered)")
        lines += [f"{e['type']} {json.dumps(e['payload'])}" for e in r["emitted"]]
        lines.append(f"--- directives ({_count(len(r['directives']), 'directive')})")
        lines += [f"{d['name']} {json.dumps(d['options'])}" for d in r["directives"]]
        requests, kv = r.get("requests") or [], r.get("kv") or {}
        if requests:
            lines.append(f"--- HTTP requests ({_count(len(requests), 'request')})")
            lines += [line for request in requests for line in request_lines(request)]
        if kv:
            lines.append(f"--- knot.kv ({_count(len(kv), 'key')} changed, in a scratch copy)")
            lines += kv_lines(kv)
        if r["error"]:
            lines.append(f"error: {r['error']}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, p: _Pretty, cycle: bool) -> None:
        p.text(self.text())

    def _repr_html_(self) -> str:
        r = self.result
        parts = [f"<p><b>{html.escape(self._heading())}</b> (nothing was delivered)</p>"]
        if r["problems"]:
            items = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in r["problems"])
            return "".join([*parts, f"<p>refused by the sandbox:</p><ul>{items}</ul>"])
        parts += [f"<p>note: {html.escape(note)}</p>" for note in r["notes"]]
        output = "\n".join(r["output"])
        parts.append(
            f"<p>output ({_count(len(r['output']), 'line')})</p><pre>{html.escape(output)}</pre>"
        )
        emitted = [{"type": e["type"], "payload": e["payload"]} for e in r["emitted"]]
        parts.append(
            Table(
                "emitted",
                _columns(("type", "type"), ("payload", "payload")),
                tuple(emitted),
                "(none)",
            )._repr_html_()
        )
        parts.append(
            Table(
                "directives",
                _columns(("name", "name"), ("options", "options")),
                tuple(r["directives"]),
                "(none)",
            )._repr_html_()
        )
        requests, kv = r.get("requests") or [], r.get("kv") or {}
        if requests:
            shown = "\n".join(line for request in requests for line in request_lines(request))
            parts.append(
                f"<p>HTTP requests ({_count(len(requests), 'request')})</p>"
                f"<pre>{html.escape(shown)}</pre>"
            )
        if kv:
            parts.append(
                f"<p>knot.kv ({_count(len(kv), 'key')} changed, in a scratch copy)</p>"
                f"<pre>{html.escape(chr(10).join(kv_lines(kv)))}</pre>"
            )
        if r["error"]:
            parts.append(f"<p>error: {html.escape(r['error'])}</p>")
        return "".join(parts)


class Handle(Protocol):
    """IPython's DisplayHandle, typed: one display id, shown once or many times, updated."""

    display_id: str

    def display(self, obj: object) -> None: ...

    def update(self, obj: object) -> None: ...


def display_handle(display_id: str) -> Handle:
    handle: Handle = DisplayHandle(display_id)  # type: ignore[no-untyped-call]
    return handle


class Feed(Protocol):
    """Events as a runtime routes them, each with its `sinks`, until closed."""

    def __iter__(self) -> Iterator[JSONObject]: ...

    def wait_open(self, timeout: float) -> bool: ...

    def watch_status(self, listener: Callable[[str, bool], None]) -> None:
        """Have `listener(sentence, away)` hear when the runtime goes away and comes back."""
        ...

    def close(self) -> None: ...


class LiveTail:
    """`%knot tail`: the newest events matching a pattern, redrawn in place as they arrive.

    Every display of this object is one live view (same display id). The feed is read on a
    daemon thread that touches nothing but `handle.update`, so cells keep running meanwhile.
    """

    def __init__(self, pattern: str, feed: Feed, *, keep: int = 10) -> None:
        self.pattern = pattern
        self.handle = display_handle(f"knot-tail-{uuid.uuid4().hex}")
        self._feed = feed
        self._rows: deque[JSONObject] = deque(maxlen=keep)
        self._seen = 0
        self._shown = 0
        self._error = ""
        self._status = ""  # what the feed last said about its runtime (gone, back)
        self._away = False
        self._stopped = False
        self._changed = threading.Condition()
        feed.watch_status(self._status_changed)
        self._thread = threading.Thread(target=self._run, name=f"knot-tail {pattern}", daemon=True)

    def start(self, *, timeout: float = 10.0) -> LiveTail:
        self._thread.start()
        if not self._feed.wait_open(timeout):
            self.stop()
            raise KnotError(f"The event stream for {self.pattern} did not open in {timeout} s.")
        return self

    @property
    def events(self) -> list[JSONObject]:
        with self._changed:
            return list(self._rows)

    @property
    def seen(self) -> int:
        """How many events the view has shown since it started."""
        with self._changed:
            return self._shown

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def snapshot(self) -> Table:
        with self._changed:
            rows, seen, error, stopped = tuple(self._rows), self._seen, self._error, self._stopped
            status, away = self._status, self._away
        live = f"waiting: {status}" if away else f"live: {status}" if status else "live"
        state = f"stopped: {error}" if error else "stopped" if stopped else live
        noun = "event" if seen == 1 else "events"
        return event_table(f"tail {self.pattern}: {seen} {noun} ({state})", rows, sinks=True)

    def _run(self) -> None:
        try:
            for event in self._feed:
                with self._changed:
                    self._rows.append(event)
                    self._seen += 1
                self.handle.update(self.snapshot())
                with self._changed:
                    self._shown += 1
                    self._changed.notify_all()
        except KnotError as exc:
            with self._changed:
                self._error = str(exc)
        finally:
            with self._changed:
                self._stopped = True
            self.handle.update(self.snapshot())
            with self._changed:
                self._changed.notify_all()

    def _status_changed(self, sentence: str, away: bool) -> None:
        with self._changed:
            self._status, self._away = sentence, away
        self.handle.update(self.snapshot())

    def wait(self, count: int, *, timeout: float = 10.0) -> bool:
        """Wait until the view has shown `count` events (or has stopped); True if it has."""
        with self._changed:
            self._changed.wait_for(lambda: self._shown >= count or self._stopped, timeout)
            return self._shown >= count

    def stop(self, *, timeout: float = 5.0) -> None:
        self._feed.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _ipython_display_(self) -> None:
        self.handle.display(self.snapshot())

    def __repr__(self) -> str:
        return self.snapshot().text()
