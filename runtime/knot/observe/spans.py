"""OpenTelemetry spans built after the fact from what the runtime recorded (see tracing.py).

The runtime does not make spans on its event path: it sends records, and this builder (in the
exporter process, or in-process for a TracerProvider handed to `enable_tracing`) turns them
into finished SDK spans with their real start and end times and hands them to the provider's
span processors, which export them as configured.

Records are `marshal`led tuples, one per send (a journal commit, a sink's batch of attempts,
a method call), so the runtime's share is one C call over values it already has:

    ("J", commit, rows, parents)   a commit: rows (seq, id, trace, depth, ts, type) of its
                                   events; parents (ingest span id, traceparent) of events
                                   ingested since the last commit that continued a context
    ("A", sink, started, ended, busy, seqs, records)
                                   an `AttemptBatch`: its run (the journal positions as
                                   int64 bytes) and its other attempts (Attempt fields)
    ("C", method, span, parent, started, ended, error)
                                   a method call, its context and its parent's
    ("K", rows)                    events a sink resumed from the journal at start-up
                                   (committed by an earlier run: no ingest span here)

An event's ingest span runs from its `ts` to its commit; an attempt's span id is derived
(`attempt_key`), its parent is the event's ingest span, a retry links to the first
attempt. Attempts are matched to their event by journal position: the builder remembers the
last KEEP events it saw committed or resumed; an attempt on an older one (a sink far behind)
has no span, and is counted.
"""

from __future__ import annotations

import marshal
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from .._tracecontext import attempt_key, attempt_span_id, is_sampled
from ..engine.attempts import FAILED, AttemptBatch

__all__ = ["INSTRUMENTATION", "KEEP", "SpanBuilder", "processor_of"]

INSTRUMENTATION = "knot-runtime"
KEEP = 100_000  # committed events remembered for their attempts (about 25 MB)
PARENTS_KEPT = 10_000  # parents of ingests whose commit has not come (refused events)
_NS = 1_000_000_000
_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def processor_of(provider: TracerProvider) -> SpanProcessor:
    """Where a provider's finished spans go: the processors added to it.

    The SDK exposes no getter; its provider hands every ended span to this one object."""
    processor: SpanProcessor = provider._active_span_processor
    return processor


class _Known(NamedTuple):
    """A committed event, as its attempts' spans need it."""

    id: str
    type: str
    ingest: SpanContext  # its ingest span's context: the parent of its attempts
    committed: int  # ns since the epoch


class SpanBuilder:
    """Finished spans from records, handed to `processor` (see the module's docstring)."""

    def __init__(self, processor: SpanProcessor, resource: Resource, salt: str) -> None:
        self.processor = processor
        self.resource = resource
        self.salt = salt
        self.scope = InstrumentationScope(INSTRUMENTATION)
        self.events: dict[int, _Known] = {}  # journal position → the event
        self.parents: dict[str, str] = {}  # ingest span id → the traceparent it continued
        self.built = 0
        self.unknown = 0  # attempts on events not remembered (no span)
        self._keys: dict[tuple[str, int], int] = {}  # (sink, attempt) → its attempt_key
        self._seconds: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" → epoch seconds

    def feed(self, payload: bytes) -> None:
        record = marshal.loads(payload)
        kind = record[0]
        if kind == "J":
            self._committed(*record[1:])
        elif kind == "A":
            self._attempted(*record[1:])
        elif kind == "C":
            self._called(*record[1:])
        elif kind == "K":
            self._resumed(*record[1:])

    # -- the three records --------------------------------------------------------------------

    def _committed(self, commit: float, rows: Sequence[Any], parents: Sequence[Any]) -> None:
        known = self.parents
        known.update(parents)
        while len(known) > PARENTS_KEPT:
            del known[next(iter(known))]
        end = int(commit * _NS)
        events = self.events
        for seq, event_id, trace, depth, ts, event_type in rows:
            if not is_sampled(trace):
                continue
            context = SpanContext(int(trace[3:35], 16), int(trace[36:52], 16), False, _SAMPLED)
            events[seq] = _Known(event_id, event_type, context, end)
            parent = known.pop(trace[36:52], "")
            start = self._epoch_ns(ts)
            if not end - 3600 * _NS <= start <= end:  # a caller's own `ts`: not when it came
                start = end
            self._end(
                "knot ingest",
                context,
                _context(context.trace_id, parent[36:52]) if parent else None,
                start,
                end,
                SpanKind.PRODUCER,
                {
                    "knot.event.id": event_id,
                    "knot.event.type": event_type,
                    "knot.event.depth": depth,
                    "knot.event.seq": seq,
                },
            )
        while len(events) > KEEP:
            del events[next(iter(events))]

    def _resumed(self, rows: Sequence[Any]) -> None:
        """Events committed before (their ingest spans are a previous run's): known, no span."""
        for seq, event_id, trace, _depth, _ts, event_type in rows:
            if is_sampled(trace):
                context = SpanContext(int(trace[3:35], 16), int(trace[36:52], 16), False, _SAMPLED)
                self.events[seq] = _Known(event_id, event_type, context, 0)

    def _attempted(
        self,
        sink: str,
        started: float,
        ended: float,
        busy: float,
        seqs: bytes,
        records: Sequence[Any],
    ) -> None:
        run: array[int] = array("q")
        run.frombytes(seqs)
        step, each = AttemptBatch(sink, started, ended, busy, run).spread()
        events = self.events
        key = self._key(sink, 1)
        for i, seq in enumerate(run):
            found = events.get(seq)
            if found is None:
                self.unknown += 1
            else:
                self._attempt(found, sink, 1, key, started + step * i, each, 0, None)
        for seq, number, began, duration, outcome, status, error, _output in records:
            found = events.get(seq)
            if found is None:
                self.unknown += 1
                continue
            failed = error or "failed" if outcome == FAILED else None
            key = self._key(sink, number)
            self._attempt(found, sink, number, key, began, duration, status, failed)

    def _attempt(
        self,
        event: _Known,
        sink: str,
        number: int,
        key: int,
        started: float,
        duration: float,
        status: int,
        error: str | None,
    ) -> None:
        ingest = event.ingest
        start = max(int(started * _NS), event.committed)  # a run's share of its time
        links: Sequence[Link] = ()
        if number > 1:
            first = attempt_span_id(ingest.span_id, self._key(sink, 1))
            links = (Link(_context(ingest.trace_id, first)),)
        attributes: dict[str, Any] = {
            "knot.sink": sink,
            "knot.event.id": event.id,
            "knot.event.type": event.type,
            "knot.attempt": number,
        }
        if status:
            attributes["http.response.status_code"] = status
        self._end(
            "knot deliver",
            _context(ingest.trace_id, attempt_span_id(ingest.span_id, key)),
            ingest,
            start,
            start + int(duration * _NS),
            SpanKind.CONSUMER,
            attributes,
            links,
            error,
        )

    def _called(
        self, method: str, span: str, parent: str, started: float, ended: float, error: str
    ) -> None:
        if not is_sampled(span):
            return
        trace_id = int(span[3:35], 16)
        self._end(
            "knot call",
            _context(trace_id, span[36:52]),
            _context(trace_id, parent[36:52]) if parent and parent[3:35] == span[3:35] else None,
            int(started * _NS),
            int(ended * _NS),
            SpanKind.SERVER,
            {"knot.method": method},
            error=error or None,
        )

    # -- making one span ----------------------------------------------------------------------

    def _end(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        start: int,
        end: int,
        kind: SpanKind,
        attributes: dict[str, Any],
        links: Sequence[Link] = (),
        error: str | None = None,
    ) -> None:
        status = _UNSET if error is None else Status(StatusCode.ERROR, error[:500])
        span = ReadableSpan(
            name,
            context,
            parent,
            self.resource,
            attributes,
            (),
            links,
            kind,
            None,
            status,
            start,
            end,
            self.scope,
        )
        self.processor.on_end(span)
        self.built += 1

    def _key(self, sink: str, attempt: int) -> int:
        key = self._keys.get((sink, attempt))
        if key is None:
            if len(self._keys) > 4096:
                self._keys.clear()
            key = self._keys[sink, attempt] = attempt_key(self.salt, sink, attempt)
        return key

    def _epoch_ns(self, ts: str) -> int:
        """An event's RFC 3339 `ts` in ns since the epoch (0 if it does not parse); the
        whole seconds are parsed once per second seen."""
        head = ts[:19]
        seconds = self._seconds.get(head)
        try:
            if seconds is None:
                seconds = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp())
                if len(self._seconds) > 4096:
                    self._seconds.clear()
                self._seconds[head] = seconds
            fraction = ts[20:-1] if ts[19:20] == "." and ts.endswith("Z") else ""
            return seconds * _NS + int((fraction + "000000000")[:9] or 0)
        except ValueError:
            return 0


def _context(trace_id: int, span_id: str | int) -> SpanContext:
    span = span_id if isinstance(span_id, int) else int(span_id, 16)
    return SpanContext(trace_id, span, False, _SAMPLED)
