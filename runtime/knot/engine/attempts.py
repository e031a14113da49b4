"""Delivery attempts: one record per try of a sink on an event, kept beside the journal.

Every attempt (time, duration, outcome, HTTP status, error, output lines) is recorded by the
delivery engine and committed with the journal's group commits. Records are value types here;
how a backend keeps them is its own business, but the SQLite store packs them (`pack`): one
row per sink per commit holding that commit's attempts of the sink, so a burst of deliveries
costs a few rows, not a row per delivery (the journal stays one row per event), and the common
attempt (a first try that succeeded at once) is one position appended to a run
(`AttemptBatch`).

What one record keeps is bounded, so the history stays small whatever sinks print: at most
OUTPUT_LINES lines of output of at most LINE_CHARS characters each, and ERROR_CHARS of error.

For `knot replay`, a script or method sink's attempt also says what ran and what it did besides
printing: `version` (the script's content hash, `script_version`), its directives (name and
options) and a method's result, each cut to VALUE_CHARS of canonical JSON, at most EFFECTS_KEPT
directives. A replay cuts what it sees by the same bounds (`said`), so the two compare fairly.
A run of quick silent successes carries its version once (`AttemptBatch.version`); a sink
without a script (a webhook) records "". The events an attempt emitted are not recorded here:
the journal has them already, under ids derived from (event, sink, index) (`child_event_id`),
and a replay reads them back from there; recording them again would cost every emitting
delivery a record of its own.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .._json import JSONObject, canonical

__all__ = [
    "DELIVERED",
    "EFFECTS_KEPT",
    "ERROR_CHARS",
    "FAILED",
    "LINE_CHARS",
    "OUTPUT_LINES",
    "SPAN",
    "VALUE_CHARS",
    "Attempt",
    "AttemptBatch",
    "Effect",
    "cut_output",
    "pack",
    "said",
    "script_version",
    "unpack",
]

DELIVERED = "delivered"
FAILED = "failed"
OUTPUT_LINES = 20  # as many as a sink's status keeps
LINE_CHARS = 500
ERROR_CHARS = 2000
SPAN = 1024  # a packed row covers at most this many journal positions (lookups scan one span)
EFFECTS_KEPT = 20  # directives a record keeps (and emitted events a replay shows)
VALUE_CHARS = 2000  # of a payload's, an option's or a result's canonical JSON

Effect = tuple[str, str]
"""A directive `(name, options)` or an emitted event `(type, payload)`, the JSON as `said`."""


def script_version(source: str) -> str:
    """The version of a script: a hash of its text (what a record and a replay name)."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def said(value: object) -> str:
    """`value` as a record keeps it: canonical JSON (sorted keys), cut to VALUE_CHARS."""
    try:
        text = canonical(value)
    except (TypeError, ValueError):  # not JSON (a sink's own object): its text
        text = repr(value)
    return _cut(text, VALUE_CHARS)


def cut_output(output: tuple[str, ...]) -> tuple[str, ...]:
    """Output lines as a record keeps them: the last OUTPUT_LINES, each cut to LINE_CHARS."""
    if len(output) > OUTPUT_LINES or any(len(line) > LINE_CHARS for line in output):
        return tuple(_cut(line, LINE_CHARS) for line in output[-OUTPUT_LINES:])
    return output


class Attempt(NamedTuple):
    """One try of one sink on one journaled event.

    `started` is the wall-clock time (seconds since the epoch) the try began, `duration` how
    long it took in seconds, `outcome` DELIVERED or FAILED, `status` the receiver's HTTP status
    for webhooks (0 otherwise or without an answer), `error` why it failed ("" when it did not).
    """

    seq: int
    attempt: int
    started: float
    duration: float
    outcome: str
    status: int
    error: str
    output: tuple[str, ...]
    sink: str
    version: str = ""  # the script that ran (script_version); "" for no script, or unrecorded
    directives: tuple[Effect, ...] = ()
    result: str = ""  # a method's result, `said` ("" when it returned None or failed)

    @classmethod
    def new(
        cls,
        sink: str,
        seq: int,
        attempt: int,
        started: float,
        duration: float,
        *,
        error: str = "",
        status: int = 0,
        output: tuple[str, ...] = (),
        version: str = "",
        directives: tuple[Effect, ...] = (),
        result: str = "",
    ) -> Attempt:
        """A record with its text cut to the bounds above (effects already `said`)."""
        if output:  # most attempts print nothing: no call for them
            output = cut_output(output)
        if error:
            return cls(
                seq,
                attempt,
                started,
                duration,
                FAILED,
                status,
                _cut(error, ERROR_CHARS),
                output,
                sink,
                version,
            )
        if directives:
            directives = directives[:EFFECTS_KEPT]
        return cls(
            seq,
            attempt,
            started,
            duration,
            DELIVERED,
            status,
            "",
            output,
            sink,
            version,
            directives,
            result,
        )

    def to_dict(self) -> JSONObject:
        """The attempt as the HTTP API shows it (`GET /api/events/{id}/deliveries`)."""
        return {
            "sink": self.sink,
            "attempt": self.attempt,
            "ts": rfc3339(self.started),
            "duration_ms": round(self.duration * 1000, 3),
            "outcome": self.outcome,
            "status": self.status or None,
            "error": self.error,
            "output": list(self.output),
        } | ({"version": self.version, **self.effects()} if self.version else {})

    def effects(self) -> JSONObject:
        """What the attempt did besides printing, as JSON (options are JSON text, `said`)."""
        return {
            "directives": [{"name": n, "options": o} for n, o in self.directives],
            "result": self.result,
        }


def rfc3339(epoch: float) -> str:
    """`epoch` seconds as RFC 3339 UTC with microseconds, as event timestamps are written."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AttemptBatch(NamedTuple):
    """Attempts of one sink recorded together, as the store keeps them and hooks see them.

    Either a run (`seqs`): first attempts that succeeded back to back, printing nothing, timed
    together from `started` to `ended` (each gets the run's average, which is what an
    in-process sink's microseconds-long deliveries are worth: timing each one would cost more
    than the delivery), or `records` kept whole (anything else: failures, retries, output, HTTP
    statuses), each timed on its own.
    """

    sink: str
    started: float  # the run's first attempt began
    ended: float  # its last one ended
    busy: float  # seconds its attempts took together (the time between, idle, is not counted)
    seqs: array[int]
    records: tuple[Attempt, ...] = ()
    version: str = ""  # the script version the run's attempts ran (records carry their own)

    def __len__(self) -> int:
        return len(self.seqs) + len(self.records)

    @property
    def bounds(self) -> tuple[int, int]:
        """The lowest and highest journal position in the batch."""
        seqs = self.seqs
        ends = [seqs[0], seqs[-1]] if seqs else []  # a run is in journal order
        ends += [r.seq for r in self.records]
        return min(ends), max(ends)

    def spread(self) -> tuple[float, float]:
        """(step, each): the run's attempt i started at `started + step * i` and took `each`
        seconds (the run's time spread evenly, its busy time shared evenly)."""
        count = len(self.seqs)
        if not count:
            return 0.0, 0.0
        return (self.ended - self.started) / count, self.busy / count

    def attempts(self) -> list[Attempt]:
        """Every attempt of the batch as a record: a run's spread over its time, each with
        the run's average duration."""
        step, each = self.spread()
        sink, version = self.sink, self.version
        run = [
            Attempt(seq, 1, self.started + step * i, each, DELIVERED, 0, "", (), sink, version)
            for i, seq in enumerate(self.seqs)
        ]
        return [*run, *self.records]


Row = tuple[str, int, int, float, float, float, bytes, str, str]
CONSECUTIVE = b"+"  # a run's positions stored as (first, count); plain ones are 8 bytes each


def pack(batches: Iterable[AttemptBatch]) -> Iterator[Row]:
    """Rows `(sink, lo, hi, started, ended, busy, seqs, records, version)` for the store, one per
    batch, or more when its positions spread wider than SPAN (a sink that takes one event in
    ten covers ten times its run's length): a run is cut into spans, each with its share of
    the run's time, and records wider than a span get a row each."""
    for batch in batches:
        if not batch:
            continue
        lo, hi = batch.bounds
        if hi - lo < SPAN:
            yield _row(batch, lo, hi)
            continue
        seqs, count = batch.seqs, len(batch.seqs)
        step = (batch.ended - batch.started) / count if count else 0.0
        each = batch.busy / count if count else 0.0
        start = 0
        while start < count:  # the run is in journal order: cut it where a span ends
            end = bisect_right(seqs, seqs[start] + SPAN - 1, start)
            part = AttemptBatch(
                batch.sink,
                batch.started + step * start,
                batch.started + step * end,
                each * (end - start),
                seqs[start:end],
                version=batch.version,
            )
            yield _row(part, seqs[start], seqs[end - 1])
            start = end
        for record in batch.records:
            single = AttemptBatch(batch.sink, 0.0, 0.0, 0.0, array("q"), (record,))
            yield _row(single, record.seq, record.seq)


def _row(batch: AttemptBatch, lo: int, hi: int) -> Row:
    records = (
        json.dumps([_fields(r) for r in batch.records], separators=(",", ":"), ensure_ascii=False)
        if batch.records
        else ""
    )
    seqs = batch.seqs
    if len(seqs) > 1 and seqs[-1] - seqs[0] == len(seqs) - 1:
        # Every position in between, as a sink that takes every event has: two numbers.
        run = CONSECUTIVE + array("q", (seqs[0], len(seqs))).tobytes()
    else:
        run = seqs.tobytes()
    return (batch.sink, lo, hi, batch.started, batch.ended, batch.busy, run, records, batch.version)


def _fields(record: Attempt) -> tuple[Any, ...]:
    """What a stored record holds: all but the sink (the row's), and no empty tail (an attempt
    of a sink without a script stays as short as before versions were recorded; a script's
    that directed and returned nothing has its version only)."""
    if not record.version:
        return record[:8]
    if not record.directives and not record.result:
        return (*record[:8], record.version)
    return (*record[:8], *record[9:])


def unpack(row: Row, wanted: Collection[int]) -> list[Attempt]:
    """The attempts of one stored row at the positions `wanted`."""
    sink, _lo, _hi, started, ended, busy, seqs, records, version = row
    run: array[int] = array("q")
    if seqs.startswith(CONSECUTIVE):
        first, count = array("q", seqs[len(CONSECUTIVE) :])
        run.extend(range(first, first + count))
    else:
        run.frombytes(seqs)
    kept = tuple(_record(sink, raw) for raw in json.loads(records)) if records else ()
    batch = AttemptBatch(sink, started, ended, busy, run, kept, version)
    return [a for a in batch.attempts() if a.seq in wanted]


def _record(sink: str, raw: list[Any]) -> Attempt:
    seq, attempt, started, duration, outcome, status, error, output = raw[:8]
    extra = raw[8:]  # none (no version), the version only, or version, directives, result
    version = extra[0] if extra else ""
    directives = extra[1] if len(extra) > 1 else ()
    result = extra[2] if len(extra) > 2 else ""
    return Attempt(
        seq,
        attempt,
        started,
        duration,
        outcome,
        status,
        error,
        tuple(output),
        sink,
        version,
        tuple((str(a), str(b)) for a, b in directives),
        result,
    )
