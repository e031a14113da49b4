"""Audit entries: the durable record of everything the runtime did not do as asked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from ._events import now_rfc3339
from ._json import JSONObject

__all__ = ["AuditEntry", "AuditKind"]


class AuditKind(Enum):
    """Each kind's value is its title: Knot's own wording where Knot has one."""

    DROPPED = "Event Sink Dropped"
    DELIVERY_FAILED = "Event Sink Delivery Failed"
    SCRIPT_FAILED = "Event Sink Script Failed"
    DEPTH_EXCEEDED = "Event Chain Too Deep"
    SCRIPT_REJECTED = "Event Sink Script Rejected"
    SINK_REMOVED = "Event Sink Removed"
    CONFIG_REJECTED = "Configuration Rejected"
    WORKER_RESTARTED = "Method Worker Restarted"
    METHOD_FAILED = "Event Sink Method Failed"
    METHOD_REJECTED = "Method Script Rejected"
    SECURITY = "Access Denied"
    REQUEST_DENIED = "Script Request Denied"  # a script's HTTP request outside http_allow
    SCRIPT_REPLACED = "Script Replaced By A Newer Save"  # two nodes held different files
    REDELIVERED = "Event Redelivered"  # queued for a sink again by hand (Runtime.redeliver)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    kind: AuditKind
    message: str
    sink: str = ""
    event_id: str = ""
    ts: str = ""
    id: int = 0

    @classmethod
    def new(
        cls, kind: AuditKind, message: str, *, sink: str = "", event_id: str = ""
    ) -> AuditEntry:
        return cls(kind, message, sink, event_id, now_rfc3339())

    def to_dict(self) -> JSONObject:
        return {
            "id": self.id,
            "ts": self.ts,
            "kind": self.kind.name.lower(),
            "title": self.kind.value,
            "message": self.message,
            "sink": self.sink,
            "event_id": self.event_id,
        }
