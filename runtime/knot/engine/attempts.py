"""Delivery attempts: one record per try of a sink on an event, kept beside the journal.

Every attempt (time, duration, outcome, HTTP status, error, output lines) is recorded by the
delivery engine and committed with the journal's group commits. Records are value types here;
how a backend keeps them is its own business, but the SQLite store packs them (`pack`): one
row per sink per commit holding that commit's attempts of the sink, so a burst of deliveries
costs a row per sink, not a row per delivery (the journal stays one row per event).

What one record keeps is bounded, so the history stays small whatever sinks print: at most
OUTPUT_LINES lines of output of at most LINE_CHARS characters each, and ERROR_CHARS of error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
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


def pack(attempts: Iterable[Attempt]) -> Iterator[tuple[str, int, int, str]]:
    """Rows `(sink, lo, hi, json)`: each sink's attempts, in order, in runs whose journal
    positions lie within SPAN of each other (so a lookup by position reads one span)."""
    by_sink: dict[str, list[Attempt]] = {}
    for record in attempts:
        group = by_sink.get(record.sink)
        if group is None:
            by_sink[record.sink] = [record]
        else:
            group.append(record)
    for sink, group in by_sink.items():
        start = 0
        lo = hi = group[0].seq
        for index, record in enumerate(group):
            seq = record.seq
            if seq < lo:
                if hi - seq >= SPAN:  # past the span: the rest goes in a row of its own
                    yield sink, lo, hi, _dumps(group[start:index])
                    start, hi = index, seq
                lo = seq
            elif seq > hi:
                if seq - lo >= SPAN:
                    yield sink, lo, hi, _dumps(group[start:index])
                    start, lo = index, seq
                hi = seq
        yield sink, lo, hi, _dumps(group[start:])


def _dumps(records: list[Attempt]) -> str:
    # The first eight fields: the sink is the row's own column.
    return json.dumps([r[:8] for r in records], separators=(",", ":"), ensure_ascii=False)


def unpack(sink: str, text: str, seqs: Iterable[int] | None = None) -> list[Attempt]:
    """The records of one packed row (only those at positions in `seqs`, when given)."""
    wanted = set(seqs) if seqs is not None else None
    return [_record(sink, raw) for raw in json.loads(text) if wanted is None or raw[0] in wanted]


def _record(sink: str, raw: list[Any]) -> Attempt:
    seq, attempt, started, duration, outcome, status, error, output = raw
    return Attempt(seq, attempt, started, duration, outcome, status, error, tuple(output), sink)
