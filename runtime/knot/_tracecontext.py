"""W3C Trace Context: reading a `traceparent` header, and the one the current work continues.

Events carry the `traceparent` they were raised under (`Event.trace`), so a webhook sends it on
and an event a sink raises continues the same trace even with tracing off in this runtime (a
proxy that only passes the header along). With tracing on (`knot.observe.tracing`),
CURRENT_TRACE holds the span of the delivery attempt running in this task.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

__all__ = ["CURRENT_TRACE", "clean_traceparent", "traceparent_of"]

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
