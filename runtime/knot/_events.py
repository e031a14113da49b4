"""Events: ids, the type grammar, payload validation and the `custom.` prefix."""

from __future__ import annotations

import hashlib
import json
import json.encoder
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple, TypedDict

import uuid_utils

from ._exceptions import EventError
from ._json import MAX_JSON_DEPTH, JSONObject
from ._jsontext import is_text, json_kind, nests_too_deeply

__all__ = [
    "CUSTOM_PREFIX",
    "MAX_PAYLOAD_BYTES",
    "SYSTEM_EVENT_TYPES",
    "Actor",
    "ActorKind",
    "Event",
    "EventOptions",
    "Space",
    "as_custom_type",
    "build_event",
    "check_type",
    "child_event_id",
    "encode_payload",
    "new_event_id",
    "now_rfc3339",
]

CUSTOM_PREFIX = "custom."
MAX_TYPE_LENGTH = 255
MAX_PAYLOAD_BYTES = 1024 * 1024
SYSTEM_EVENT_TYPES = frozenset(
    {
        "space.created",
        "space.started",
        "space.stopped",
        "space.deleted",
        "space.healthy",
        "space.unhealthy",
    }
)
_TYPE_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


class ActorKind(StrEnum):
    USER = "User"
    SYSTEM = "System"
    MCP = "MCP"


@dataclass(frozen=True, slots=True)
class Actor:
    id: str
    username: str
    kind: ActorKind = ActorKind.USER

    def to_dict(self) -> JSONObject:
        return {"id": self.id, "username": self.username, "kind": self.kind.value}

    @classmethod
    def from_dict(cls, raw: JSONObject) -> Actor:
        return cls(str(raw.get("id", "")), str(raw.get("username", "")), ActorKind(raw["kind"]))


LOCAL_ACTOR = Actor("local", "local", ActorKind.USER)
SYSTEM_ACTOR = Actor("system", "system", ActorKind.SYSTEM)


@dataclass(frozen=True, slots=True)
class Space:
    id: str
    name: str
    urls: tuple[str, ...] = ()

    def to_dict(self) -> JSONObject:
        return {"id": self.id, "name": self.name, "urls": list(self.urls)}

    @classmethod
    def from_dict(cls, raw: JSONObject) -> Space:
        return cls(str(raw.get("id", "")), str(raw.get("name", "")), tuple(raw.get("urls", ())))


class Event(NamedTuple):
    """One journaled event: an immutable snapshot.

    `seq` is the position in this runtime's journal, `depth` the number of sink hops that led
    to it (emit chains deeper than `delivery.max_depth` are dropped), `rids` limits delivery to
    the named sinks (Sky's `_rids`), `eid` is a Sky caller's own id. Causation is set by the
    runtime only: `parent` is the event whose sink raised this one ("" for none) and `root` the
    first event of its chain ("" means this event is its own root, see `root_id`). `trace` is
    the W3C `traceparent` the event continues ("" when it carries none). A NamedTuple rather than
    a frozen dataclass: events are built on the hot path, and it is three times cheaper to make.
    """

    id: str
    type: str
    data: JSONObject
    ts: str
    zone: str = "local"
    owner: str = ""
    actor: Actor = LOCAL_ACTOR
    space: Space | None = None
    depth: int = 0
    seq: int = 0
    eid: str = ""
    rids: tuple[str, ...] | None = None
    parent: str = ""
    data_json: str = ""  # `data` as journaled JSON, kept to encode it only once
    root: str = ""
    trace: str = ""

    @property
    def is_system(self) -> bool:
        return self.type in SYSTEM_EVENT_TYPES

    @property
    def root_id(self) -> str:
        """The first event of this event's chain: its own id when no sink raised it."""
        return self.root or self.id

    def to_dict(self) -> JSONObject:
        """The event as the API, the stream and the notebook show it."""
        out: JSONObject = {
            "id": self.id,
            "seq": self.seq,
            "type": self.type,
            "ts": self.ts,
            "zone": self.zone,
            "owner": self.owner,
            "actor": self.actor.to_dict(),
            "space": self.space.to_dict() if self.space else {},
            "data": self.data,
            "depth": self.depth,
            "parent": self.parent or None,
            "root": self.root or self.id,
        }
        if self.eid:
            out["eid"] = self.eid
        if self.rids is not None:
            out["rids"] = list(self.rids)
        return out

    def meta_json(self) -> str:
        """Everything but the indexed columns, as the journal stores it."""
        if self.space is None and not self.eid and self.rids is None and not self.parent:
            cached = _ACTOR_META.get(self.actor)
            if cached is None:
                cached = json.dumps({"actor": self.actor.to_dict()}, separators=(",", ":"))
                if len(_ACTOR_META) < 1024:
                    _ACTOR_META[self.actor] = cached
            if self.trace:  # validated hex and dashes: nothing to escape
                return f'{cached[:-1]},"trace":"{self.trace}"}}'
            return cached
        meta: JSONObject = {"actor": self.actor.to_dict()}
        if self.space:
            meta["space"] = self.space.to_dict()
        if self.eid:
            meta["eid"] = self.eid
        if self.rids is not None:
            meta["rids"] = list(self.rids)
        if self.parent:
            meta["parent"] = self.parent
            meta["root"] = self.root or self.parent
        if self.trace:
            meta["trace"] = self.trace
        return json.dumps(meta, separators=(",", ":"))

    @classmethod
    def from_row(
        cls,
        seq: int,
        id: str,
        type: str,
        ts: str,
        zone: str,
        owner: str,
        depth: int,
        data_json: str,
        meta_json: str,
    ) -> Event:
        """An event from a journal row: the indexed columns, the data and the rest (meta)."""
        meta = json.loads(meta_json)
        space = meta.get("space")
        rids = meta.get("rids")
        return cls(
            id=id,
            type=type,
            data=json.loads(data_json),
            ts=ts,
            zone=zone,
            owner=owner,
            actor=Actor.from_dict(meta["actor"]),
            space=Space.from_dict(space) if space else None,
            depth=depth,
            seq=seq,
            eid=meta.get("eid", ""),
            rids=tuple(rids) if rids is not None else None,
            parent=meta.get("parent", ""),
            data_json=data_json,
            # Rows journaled before events had a root name the parent as the best guess at it
            # (those stores only ever knew the parent).
            root=meta.get("root", "") or meta.get("parent", ""),
            trace=meta.get("trace", ""),
        )


_ACTOR_META: dict[Actor, str] = {}
# json.dumps builds a C encoder on every call; events are encoded on the hot path, so build
# it once (the same object json.JSONEncoder.iterencode makes, with our settings).
_make = getattr(json.encoder, "c_make_encoder", None)  # None without the C accelerator
_c_encoder = _make and _make(
    None,
    json.encoder.JSONEncoder().default,
    json.encoder.encode_basestring,
    None,
    ":",
    ",",
    False,
    False,
    False,
)


def _encode(value: object) -> str:
    return "".join(_c_encoder(value, 0)) if _c_encoder is not None else _slow_encode(value)


_slow_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


_valid_types: dict[str, None] = {}
_second: list[Any] = [0, ""]  # the current whole second and its formatted prefix


def new_event_id() -> str:
    """A UUIDv7: time-ordered, so the journal's id index grows at its right edge."""
    return str(uuid_utils.uuid7())


def child_event_id(parent: Event, sink: str, index: int) -> str:
    """The id of the `index`-th event (0-based) that `sink` raises while handling `parent`.

    Delivery is at-least-once: after a crash a sink may handle `parent` again, and its emits
    then get the same ids, which the journal's duplicate check drops, instead of raising every
    child a second time. The id keeps the UUIDv7 layout: the parent's millisecond (so children
    still sort by time) and 74 bits of SHA-256 over (parent id, sink, index) where v7 puts
    random bits.
    """
    digest = hashlib.sha256(f"{parent.id}\x00{sink}\x00{index}".encode()).digest()
    value = (_id_millis(parent) & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76 | (int.from_bytes(digest[:2]) & 0xFFF) << 64  # version 7, rand_a
    value |= 0b10 << 62 | int.from_bytes(digest[2:10]) & 0x3FFF_FFFF_FFFF_FFFF  # variant, rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _id_millis(event: Event) -> int:
    """The Unix millisecond of an event: from its id when that is a UUIDv7, else its `ts`."""
    if len(event.id) == 36 and event.id[14] == "7":
        return int(event.id[:8] + event.id[9:13], 16)
    try:
        return int(datetime.fromisoformat(event.ts).timestamp() * 1000)
    except ValueError:
        return 0


def now_rfc3339() -> str:
    """The current UTC time as RFC 3339 with microseconds (`2026-11-25T13:34:03.123456Z`)."""
    now = time.time()
    whole = int(now)
    if whole != _second[0]:
        _second[0] = whole
        _second[1] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


def check_type(event_type: object) -> str | None:
    """Return why `event_type` breaks the grammar, or None when it is valid."""
    if isinstance(event_type, str) and event_type in _valid_types:
        return None
    if not isinstance(event_type, str):
        return f"The event type must be a string, not {type(event_type).__name__}."
    if not event_type:
        return "The event type is empty."
    if len(event_type) > MAX_TYPE_LENGTH:
        return (
            f"The event type is {len(event_type)} characters long; "
            f"at most {MAX_TYPE_LENGTH} are allowed."
        )
    if not _TYPE_RE.fullmatch(event_type):
        return (
            f"The event type {event_type!r} is not valid: use dot-separated segments "
            "of letters, digits, '_' and '-'."
        )
    if len(_valid_types) < 4096:
        _valid_types[event_type] = None
    return None


def as_custom_type(event_type: object) -> str:
    """Validate an externally raised type and give it the `custom.` prefix.

    Clients can never raise a system event: `space.created` from outside is
    `custom.space.created`.
    """
    problem = check_type(event_type)
    if problem is not None:
        raise EventError(problem, event_type=event_type if isinstance(event_type, str) else None)
    assert isinstance(event_type, str)
    full = event_type if event_type.startswith(CUSTOM_PREFIX) else CUSTOM_PREFIX + event_type
    if len(full) > MAX_TYPE_LENGTH:
        raise EventError(
            f"The event type {full[:40]!r}... is longer than {MAX_TYPE_LENGTH} characters "
            "once prefixed with 'custom.'.",
            event_type=event_type,
        )
    return full


def encode_payload(
    payload: object, *, max_bytes: int = MAX_PAYLOAD_BYTES, event_type: str | None = None
) -> tuple[JSONObject, str]:
    """Check that `payload` is a JSON object within the size limit; return it and its JSON."""
    if payload is None:
        return {}, "{}"
    if not isinstance(payload, dict):
        raise EventError(
            f"The payload must be a JSON object, not {json_kind(payload)}.",
            event_type=event_type,
        )
    try:
        encoded = _encode(payload)
    except RecursionError:
        encoded = ""  # deeper than the encoder goes: far past the limit below
    except (TypeError, ValueError) as exc:
        raise EventError(
            f"The payload cannot be encoded as JSON: {exc}.", event_type=event_type
        ) from None
    if not encoded or nests_too_deeply(payload, encoded):
        raise EventError(
            f"The payload nests deeper than {MAX_JSON_DEPTH} levels of objects and arrays, "
            "the limit for JSON in knot.",
            event_type=event_type,
        )
    if not encoded.isascii() and not is_text(encoded):
        raise EventError(
            "The payload holds a lone surrogate (a \\ud800-\\udfff escape without its pair), "
            "which is not text.",
            event_type=event_type,
        )
    size = len(encoded.encode()) if len(encoded) * 4 > max_bytes else len(encoded)
    if size > max_bytes:
        raise EventError(
            f"The payload is {size} bytes of JSON; the limit is {max_bytes} bytes.",
            event_type=event_type,
        )
    return payload, encoded


class EventOptions(TypedDict, total=False):
    """What a caller may say about an event it raises, besides its type and payload."""

    owner: str
    actor: Actor | None
    space: Space | None
    id: str | None
    eid: str
    rids: Iterable[str] | None
    ts: str | None
    depth: int
    parent: str
    system: bool


def build_event(
    event_type: str,
    payload: object,
    *,
    zone: str,
    next_seq: Callable[[], int],
    max_payload_bytes: int = MAX_PAYLOAD_BYTES,
    owner: str = "",
    actor: Actor | None = None,
    space: Space | None = None,
    id: str | None = None,
    eid: str = "",
    rids: Iterable[str] | None = None,
    ts: str | None = None,
    depth: int = 0,
    parent: str = "",
    system: bool = False,
    root: str = "",
    trace: str = "",
) -> Event:
    """Validate and build an event (not journaled). External events get `custom.`.

    `next_seq` is called last, once everything is valid: a refused event takes no place in
    the journal's sequence. `root` and `trace` are the runtime's, never a caller's."""
    if system:
        problem = check_type(event_type)
        if problem is not None:
            raise EventError(problem, event_type=event_type)
        full_type = event_type
    else:
        full_type = as_custom_type(event_type)
    data, data_json = encode_payload(payload, max_bytes=max_payload_bytes, event_type=full_type)
    return Event(  # positional: the cheapest way to build a NamedTuple on the hot path
        check_event_id(id) if id is not None else new_event_id(),
        full_type,
        data,
        ts or now_rfc3339(),
        zone,
        owner,
        actor or (SYSTEM_ACTOR if system else LOCAL_ACTOR),
        space,
        depth,
        next_seq(),
        eid,
        tuple(rids) if rids is not None else None,
        parent,
        data_json,
        root,
        trace,
    )


def check_event_id(value: object) -> str:
    """A client-supplied event id (for idempotent ingress) must be a UUID string."""
    if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
        raise EventError(f"The event id {value!r} is not a UUID string.")
    return value.lower()
