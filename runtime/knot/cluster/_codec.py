"""Names and encodings of the NATS store: streams, subjects, keys, events and audit entries.

A journaled event is one message on `<root>.ev.<id>.<type>` (the type's dots become subject
tokens), so the server filters by type pattern (`<root>.ev.*.custom.myapp.>`) and finds an id
with one lookup (the last message on `<root>.ev.<id>.>`). The body is three lines: the small
fields as a JSON array, the meta JSON, the data JSON exactly as journaled.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .._audit import AuditEntry, AuditKind
from .._events import Event
from .._exceptions import StoreError
from .._patterns import Pattern, PatternKind

__all__ = [
    "Names",
    "decode_audit",
    "decode_event",
    "decode_key",
    "encode_audit",
    "encode_event",
    "encode_key",
]

_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass(frozen=True)
class Names:
    """Every stream, bucket and subject of one zone under one prefix."""

    prefix: str
    zone: str

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.zone):
            raise StoreError(
                f"The zone {self.zone[:80]!r} cannot name NATS streams; with a nats:// store "
                "a zone is 1-64 letters, digits, _ or -."
            )

    @property
    def root(self) -> str:
        return f"{self.prefix.lower()}.{self.zone}"

    def stream(self, part: str) -> str:
        return f"{self.prefix}_{self.zone}_{part}"

    @property
    def events(self) -> str:
        return self.stream("EVENTS")

    @property
    def audit(self) -> str:
        return self.stream("AUDIT")

    @property
    def skips(self) -> str:
        return self.stream("SKIPS")

    @property
    def chains(self) -> str:
        return self.stream("CHAINS")

    @property
    def attempts(self) -> str:
        return self.stream("ATTEMPTS")

    @property
    def cursors(self) -> str:  # a KV bucket
        return self.stream("CURSORS")

    @property
    def records(self) -> str:  # a KV bucket
        return self.stream("RECORDS")

    @property
    def nodes(self) -> str:  # a KV bucket
        return self.stream("NODES")

    @property
    def claims(self) -> str:  # a KV bucket
        return self.stream("CLAIMS")

    def event_subject(self, event: Event) -> str:
        return f"{self.root}.ev.{event.id}.{event.type}"

    def id_subject(self, event_id: str) -> str | None:
        """The subjects an event id can be on; None for a text that is no id."""
        return f"{self.root}.ev.{event_id}.>" if _TOKEN.fullmatch(event_id) else None

    def pattern_subject(self, pattern: Pattern | None) -> str:
        if pattern is None or pattern.kind is PatternKind.ALL:
            return f"{self.root}.ev.>"
        if pattern.kind is PatternKind.PREFIX:
            return f"{self.root}.ev.*.{pattern.value}>"
        return f"{self.root}.ev.*.{pattern.value}"

    def audit_subject(self, sink: str) -> str:
        return f"{self.root}.audit.{encode_key(sink)}"

    def skip_subject(self, sink: str) -> str:
        return f"{self.root}.skip.{encode_key(sink)}"

    def chain_subject(self, root_id: str) -> str | None:
        """Where the events caused under the event `root_id` are listed (None: not an id)."""
        return f"{self.root}.chain.{root_id}" if _TOKEN.fullmatch(root_id) else None

    def attempts_subject(self, window: int) -> str:
        """Attempt rows whose lowest journal position is in `window` (positions // SPAN)."""
        return f"{self.root}.att.{window}"

    @property
    def subject_id_at(self) -> int:
        """Index of the id among an event subject's tokens."""
        return self.root.count(".") + 2

    def method_subject(self, script: str) -> str:
        return f"{self.root}.call.{encode_key(script)}"


def encode_key(text: str) -> str:
    """`text` as a NATS key or subject token: [A-Za-z0-9_-] kept, every other byte `=XX`."""
    if not text:
        return "="
    if all(c in _KEEP for c in text):
        return text
    return "".join(c if c in _KEEP else "".join(f"={b:02X}" for b in c.encode()) for c in text)


def decode_key(token: str) -> str:
    if token == "=":
        return ""
    if "=" not in token:
        return token
    out = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            out.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            out += token[i].encode()
            i += 1
    return out.decode()


def encode_event(event: Event) -> bytes:
    data = event.data_json or json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    head = json.dumps([event.ts, event.zone, event.owner, event.depth], ensure_ascii=False)
    return f"{head}\n{event.meta_json()}\n{data}".encode()


def decode_event(subject: str, body: bytes, seq: int, id_at: int) -> Event:
    tokens = subject.split(".", id_at + 1)
    event_id, event_type = tokens[id_at], tokens[id_at + 1]
    head, meta, data = body.decode().split("\n", 2)
    ts, zone, owner, depth = json.loads(head)
    return Event.from_row(seq, event_id, event_type, ts, zone, owner, depth, data, meta)


def encode_audit(entry: AuditEntry) -> bytes:
    row = [entry.ts, entry.kind.name, entry.message, entry.sink, entry.event_id]
    return json.dumps(row, ensure_ascii=False).encode()


def decode_audit(body: bytes, seq: int) -> AuditEntry:
    ts, kind, message, sink, event_id = json.loads(body)
    return AuditEntry(AuditKind[kind], message, sink, event_id, ts, seq)
