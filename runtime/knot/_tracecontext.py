"""W3C Trace Context: reading a `traceparent` header, and the one the current work continues.

Events carry the `traceparent` they were raised under (`Event.trace`), so a webhook sends it on
and an event a sink raises continues the same trace even with tracing off in this runtime (a
proxy that only passes the header along). CURRENT_TRACE holds the context of the work running
in this task that is not a delivery (a method call from `POST /json-rpc`).

With tracing on (`knot.observe.tracing`), a delivery attempt's span id is derived from what
identifies it (`attempt_key`), so its context can be handed on (a webhook's header, a child
event) without making a span, and the span is built later, elsewhere, from the same inputs.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from hashlib import blake2b

__all__ = [
    "CURRENT_TRACE",
    "attempt_key",
    "attempt_span_id",
    "clean_traceparent",
    "is_sampled",
    "traceparent_of",
    "with_span",
]

CURRENT_TRACE: ContextVar[str] = ContextVar("knot_traceparent", default="")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def clean_traceparent(value: str | None) -> str:
    """A valid `traceparent` header value, lower-cased, or "" for anything else.

    As the specification says: version ff, an all-zero trace or parent id, and a version-00
    value with anything after the flags are invalid and ignored (tracing starts afresh), never
    an error answered to the caller."""
    if not value:
        return ""
    text = value.strip().lower()
    match = _TRACEPARENT.match(text)
    if match is None:
        return ""
    version, trace_id, span_id, _flags = match.groups()
    if version == "ff" or trace_id == "0" * 32 or span_id == "0" * 16:
        return ""
    if version == "00" and len(text) != 55:
        return ""
    return text[:55]


def traceparent_of(headers: object) -> str:
    """The valid `traceparent` of a request's headers (anything with `.get`), or ""."""
    get = getattr(headers, "get", None)
    return clean_traceparent(get("traceparent") if get is not None else None)


def attempt_key(salt: str, sink: str, attempt: int) -> int:
    """What turns an event's ingest span id into `sink`'s attempt number `attempt` on it.

    An attempt's span id is its event's ingest span id (random, carried in the event's
    context) XOR this key, so it is derived, not drawn: the runtime computes it where the
    context is handed on, the span builder where the span is made, and a retry's link to the
    first attempt needs no memory. `salt` is the tracing runtime's own (a delivery re-run after
    a restart is a new span). One hash per sink and attempt number, then one XOR per span."""
    digest = blake2b(f"{salt}\x00{sink}\x00{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest)


def attempt_span_id(ingest_span: int, key: int) -> int:
    """The span id of an attempt (see `attempt_key`); never the invalid 0."""
    return ingest_span ^ key or 1


def with_span(traceparent: str, span_id: str, flags: str = "") -> str:
    """A child's context: `traceparent`'s trace with `span_id` (16 hex digits) and `flags`
    (the parent's when ""), written as version 00 whatever version the parent came in (the
    only one this runtime speaks)."""
    return f"00-{traceparent[3:35]}-{span_id}-{flags or traceparent[53:55]}"


def is_sampled(traceparent: str) -> bool:
    """Whether a (valid) `traceparent` has its sampled flag set."""
    return bool(traceparent) and traceparent[-1] in "13579bdf"
