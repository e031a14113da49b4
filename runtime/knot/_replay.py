"""What a replay found: per event, what the sink's script did then and does now, compared.

Value types only (no I/O), so the runtime, the HTTP client, the CLI and the notebook share
them: `ReplayReport.to_dict()` is the JSON of `POST /api/sinks/{name}/replay` and of
`knot replay --json`, and `ReplayReport.from_dict` reads it back.

Both sides are a `Transcript`: the output lines, the events emitted, the directives, a method's
result, or the error, cut to the bounds attempts are recorded with (engine/attempts.py), so a
run compares with its record on equal terms. What a run emitted then is read from the journal
(the events it raised); a failed run is compared by its output and error only. Each side
reads as lines; a changed event gets a unified diff of them (difflib).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ._json import JSONObject
from .engine.attempts import EFFECTS_KEPT, ERROR_CHARS, Attempt, Effect, cut_output, said

__all__ = ["MAX_SEQ", "ReplayReport", "ReplayStatus", "ReplayedEvent", "Transcript"]

MAX_SEQ = 2**62  # the highest journal position a replay takes (what SQLite, and any backend, holds)


class ReplayStatus(StrEnum):
    SAME = "same"
    CHANGED = "changed"
    NOW_FAILING = "now_failing"
    NOW_PASSING = "now_passing"
    NO_RECORD = "no_record"  # recorded before versions were, or its record was pruned

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True, slots=True)
class Transcript:
    """What one run of a script on one event did, as a record keeps it."""

    version: str = ""
    output: tuple[str, ...] = ()
    emitted: tuple[Effect, ...] = ()
    directives: tuple[Effect, ...] = ()
    result: str = ""
    error: str = ""

    @classmethod
    def of(
        cls,
        version: str,
        *,
        output: Iterable[str] = (),
        emitted: Iterable[Effect] = (),
        directives: Iterable[tuple[str, Any]] = (),
        result: str = "",
        error: str = "",
    ) -> Transcript:
        """A run's transcript cut as its attempt's record would be (a failure keeps only its
        output and error)."""
        effects = EFFECTS_KEPT
        if error:
            return cls(version, cut_output(tuple(output)), error=_cut(error))
        return cls(
            version,
            cut_output(tuple(output)),
            tuple(emitted)[:effects],
            tuple((str(n), said(o)) for n, o in directives)[:effects],
            result,
        )

    @classmethod
    def of_attempt(cls, attempt: Attempt, emitted: tuple[Effect, ...] = ()) -> Transcript:
        """An attempt's record, with the events it raised (from the journal)."""
        if attempt.error:
            return cls(attempt.version, attempt.output, error=attempt.error)
        return cls(
            attempt.version,
            attempt.output,
            emitted[:EFFECTS_KEPT],
            attempt.directives,
            attempt.result,
        )

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def lines(self) -> list[str]:
        """The transcript as the lines a diff compares."""
        lines = [f"print  {line}" for line in self.output]
        lines += [f"emit   {kind} {payload}" for kind, payload in self.emitted]
        lines += [f"direct {name} {options}" for name, options in self.directives]
        if self.result:
            lines.append(f"result {self.result}")
        if self.error:
            lines.append(f"error  {self.error}")
        return lines or ["(nothing: no output, no emits, no directives)"]

    def to_dict(self) -> JSONObject:
        return {
            "version": self.version,
            "output": list(self.output),
            "emitted": [{"type": t, "payload": p} for t, p in self.emitted],
            "directives": [{"name": n, "options": o} for n, o in self.directives],
            "result": self.result,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, raw: JSONObject) -> Transcript:
        return cls(
            str(raw.get("version") or ""),
            tuple(str(line) for line in raw.get("output") or ()),
            tuple((str(e["type"]), str(e["payload"])) for e in raw.get("emitted") or ()),
            tuple((str(d["name"]), str(d["options"])) for d in raw.get("directives") or ()),
            str(raw.get("result") or ""),
            str(raw.get("error") or ""),
        )


def _cut(text: str) -> str:
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class ReplayedEvent:
    """One journaled event run again: then (None: no record), now, and how they compare."""

    seq: int
    id: str
    type: str
    ts: str
    status: ReplayStatus
    now: Transcript
    then: Transcript | None = None
    diff: tuple[str, ...] = ()  # a unified diff, then → now, when they differ
    notes: tuple[str, ...] = ()  # what the replay could not do as the runtime did

    @classmethod
    def compare(
        cls,
        event: JSONObject,
        then: Transcript | None,
        now: Transcript,
        notes: tuple[str, ...] = (),
    ) -> ReplayedEvent:
        seq, event_id = int(event["seq"]), str(event["id"])
        kind, ts = str(event["type"]), str(event["ts"])
        if then is None:
            return cls(seq, event_id, kind, ts, ReplayStatus.NO_RECORD, now, None, (), notes)
        before, after = then.lines(), now.lines()
        if before == after:
            return cls(seq, event_id, kind, ts, ReplayStatus.SAME, now, then, (), notes)
        if then.failed != now.failed:
            status = ReplayStatus.NOW_FAILING if now.failed else ReplayStatus.NOW_PASSING
        else:
            status = ReplayStatus.CHANGED
        diff = difflib.unified_diff(
            before,
            after,
            f"then (version {then.version[:12]})",
            f"now (version {now.version[:12]})",
            lineterm="",
        )
        return cls(seq, event_id, kind, ts, status, now, then, tuple(diff), notes)

    def to_dict(self) -> JSONObject:
        return {
            "seq": self.seq,
            "id": self.id,
            "type": self.type,
            "ts": self.ts,
            "status": self.status.value,
            "then": self.then.to_dict() if self.then is not None else None,
            "now": self.now.to_dict(),
            "diff": list(self.diff),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, raw: JSONObject) -> ReplayedEvent:
        then = raw.get("then")
        return cls(
            int(raw["seq"]),
            str(raw["id"]),
            str(raw["type"]),
            str(raw["ts"]),
            ReplayStatus(raw["status"]),
            Transcript.from_dict(raw["now"]),
            Transcript.from_dict(then) if isinstance(then, dict) else None,
            tuple(str(line) for line in raw.get("diff") or ()),
            tuple(str(line) for line in raw.get("notes") or ()),
        )


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """A replay of one sink's script (its current `version`) on journaled events, oldest
    first. Nothing of it was delivered or journaled."""

    sink: str
    version: str
    events: tuple[ReplayedEvent, ...] = ()
    notes: tuple[str, ...] = ()

    def count(self, status: ReplayStatus) -> int:
        return sum(1 for e in self.events if e.status is status)

    @property
    def summary(self) -> dict[str, int]:
        """How many events came out each way: `{"same", "changed", "now_failing",
        "now_passing", "no_record"}`."""
        return {status.value: self.count(status) for status in ReplayStatus}

    @property
    def differs(self) -> bool:
        """Whether some event's run now differs from its record."""
        return any(e.status in _DIFFERENT for e in self.events)

    def to_dict(self) -> JSONObject:
        return {
            "sink": self.sink,
            "version": self.version,
            "summary": self.summary,
            "events": [e.to_dict() for e in self.events],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, raw: JSONObject) -> ReplayReport:
        return cls(
            str(raw["sink"]),
            str(raw["version"]),
            tuple(ReplayedEvent.from_dict(e) for e in raw.get("events") or ()),
            tuple(str(n) for n in raw.get("notes") or ()),
        )

    def summary_line(self) -> str:
        counts = self.summary
        parts = [f"{n} {ReplayStatus(k).label}" for k, n in counts.items() if n]
        noun = "event" if len(self.events) == 1 else "events"
        shown = ", ".join(parts) if parts else "nothing to compare"
        return (
            f"Replayed {len(self.events)} {noun} on {self.sink} (version "
            f"{self.version[:12]}): {shown}."
        )

    def render_text(self, *, all_events: bool = False) -> str:
        """The summary, then each event that differs with its diff (every event with
        `all_events`); what `knot replay` prints."""
        out = [self.summary_line(), *(f"note: {n}" for n in self.notes)]
        for event in self.events:
            if not all_events and event.status not in _DIFFERENT:
                continue
            out.append("")
            out.append(f"{event.status.label:<12} #{event.seq}  {event.type}  {event.id}")
            out += [f"  note: {n}" for n in event.notes]
            if event.diff:
                out += [f"  {line}" for line in event.diff]
            elif event.status is ReplayStatus.NO_RECORD or all_events:
                out += [f"  now: {line}" for line in event.now.lines()]
        return "\n".join(out)


_DIFFERENT = (ReplayStatus.CHANGED, ReplayStatus.NOW_FAILING, ReplayStatus.NOW_PASSING)
