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
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, NamedTuple

from .._json import JSONObject

__all__ = [
    "DELIVERED",
    "ERROR_CHARS",
    "FAILED",
    "LINE_CHARS",
    "OUTPUT_LINES",
    "SPAN",
    "Attempt",
    "AttemptBatch",
    "pack",
    "unpack",
]

DELIVERED = "delivered"
FAILED = "failed"
OUTPUT_LINES = 20  # as many as a sink's status keeps
LINE_CHARS = 500
ERROR_CHARS = 2000
SPAN = 1024  # a packed row covers at most this many journal positions (lookups scan one span)


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
    ) -> Attempt:
        """A record with its text cut to the bounds above."""
        if len(output) > OUTPUT_LINES or any(len(line) > LINE_CHARS for line in output):
            output = tuple(_cut(line, LINE_CHARS) for line in output[-OUTPUT_LINES:])
        outcome = FAILED if error else DELIVERED
        error = _cut(error, ERROR_CHARS)
        return cls(seq, attempt, started, duration, outcome, status, error, output, sink)

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
        run = [
            Attempt(seq, 1, self.started + step * i, each, DELIVERED, 0, "", (), self.sink)
            for i, seq in enumerate(self.seqs)
        ]
        return [*run, *self.records]


Row = tuple[str, int, int, float, float, float, bytes, str]
CONSECUTIVE = b"+"  # a run's positions stored as (first, count); plain ones are 8 bytes each


def pack(batches: Iterable[AttemptBatch]) -> Iterator[Row]:
    """Rows `(sink, lo, hi, started, ended, busy, seqs, records)` for the store, one per
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
            )
            yield _row(part, seqs[start], seqs[end - 1])
            start = end
        for record in batch.records:
            single = AttemptBatch(batch.sink, 0.0, 0.0, 0.0, array("q"), (record,))
            yield _row(single, record.seq, record.seq)


def _row(batch: AttemptBatch, lo: int, hi: int) -> Row:
    records = (
        json.dumps([r[:8] for r in batch.records], separators=(",", ":"), ensure_ascii=False)
        if batch.records
        else ""
    )
    seqs = batch.seqs
    if len(seqs) > 1 and seqs[-1] - seqs[0] == len(seqs) - 1:
        # Every position in between, as a sink that takes every event has: two numbers.
        run = CONSECUTIVE + array("q", (seqs[0], len(seqs))).tobytes()
    else:
        run = seqs.tobytes()
    return (batch.sink, lo, hi, batch.started, batch.ended, batch.busy, run, records)


def unpack(row: Row, wanted: Collection[int]) -> list[Attempt]:
    """The attempts of one stored row at the positions `wanted`."""
    sink, _lo, _hi, started, ended, busy, seqs, records = row
    run: array[int] = array("q")
    if seqs.startswith(CONSECUTIVE):
        first, count = array("q", seqs[len(CONSECUTIVE) :])
        run.extend(range(first, first + count))
    else:
        run.frombytes(seqs)
    kept = tuple(_record(sink, raw) for raw in json.loads(records)) if records else ()
    batch = AttemptBatch(sink, started, ended, busy, run, kept)
    return [a for a in batch.attempts() if a.seq in wanted]


def _record(sink: str, raw: list[Any]) -> Attempt:
    seq, attempt, started, duration, outcome, status, error, output = raw
    return Attempt(seq, attempt, started, duration, outcome, status, error, tuple(output), sink)
