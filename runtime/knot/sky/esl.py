"""The Sky Event API as data: an event signal URL (ESL) and its body, cleaned into one event.

Both encodings of the KRE docs reach the same function:

    /sky/event/<eci>/<eid>?_domain=D&_type=T        (`_name` is accepted for `_type`)
    /sky/event/<eci>/<eid>/<domain>/<type>          (the "alternate encoding" for webhooks)

Attributes come from the query string and from a JSON (`application/json`, any
`application/*+json`) or form body; the body wins over the query, and `_domain` / `_type` in
the attributes win over the path. Keys starting with `_` are reserved and never attributes.
The eid is cleaned as pico-engine cleans it: trimmed, and `""`, `none`, `null` mean "none
given". Nothing here knows about HTTP frameworks: the route reads the request and hands over
strings and bytes, so every rule can be tested without a server.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, unquote

from .._events import CUSTOM_PREFIX, MAX_TYPE_LENGTH, check_type
from .._exceptions import EventError
from .._json import JSONObject
from .._jsontext import decode_json, json_kind
from ..engine.outcomes import DeliveryStatus, EmitReport

__all__ = [
    "MAX_EID_LENGTH",
    "BodyKind",
    "EslPath",
    "SkyRequest",
    "body_kind",
    "clean_eid",
    "parse_esl_path",
    "parse_sky_request",
    "parse_timestamp",
    "read_attributes",
    "sky_answer",
]

MAX_EID_LENGTH = 255
RESERVED_PREFIX = "_"
_EMPTY_EIDS = frozenset({"", "none", "null"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)


class BodyKind(Enum):
    NONE = "none"  # no body (or only whitespace)
    JSON = "json"
    FORM = "form"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True, slots=True)
class EslPath:
    """The parts of an ESL path after `/sky/event/`; empty strings for parts not given."""

    eci: str
    eid: str = ""
    domain: str = ""
    type: str = ""


@dataclass(frozen=True, slots=True)
class SkyRequest:
    """One cleaned Sky event, ready to be raised."""

    eid: str  # the caller's eid; "" when none was given (the answer then uses the event id)
    domain: str
    type: str
    attrs: JSONObject
    is_async: bool = False
    rids: tuple[str, ...] | None = None
    ts: str | None = None
    timeout: float | None = None

    @property
    def event_type(self) -> str:
        return f"{CUSTOM_PREFIX}{self.domain}.{self.type}"


def parse_esl_path(rest: str) -> EslPath | None:
    """Split the raw (still percent-encoded) path after `/sky/event/`; None if it has too many
    parts. Splitting before decoding lets an eid or a domain carry an encoded `/`."""
    parts = rest.split("/")
    if len(parts) > 4:
        return None
    try:
        decoded = [unquote(p, errors="strict").strip() if "%" in p else p.strip() for p in parts]
    except UnicodeDecodeError:
        raise EventError("The URL has percent-escapes that are not UTF-8.") from None
    return EslPath(*decoded)


def clean_eid(raw: str) -> str:
    """pico-engine's eid rule: trimmed; `""`, `none`, `null` (any case) mean none given."""
    eid = raw.strip()
    if eid.casefold() in _EMPTY_EIDS:
        return ""
    if len(eid) > MAX_EID_LENGTH:
        raise EventError(
            f"The eid is {len(eid)} characters long; at most {MAX_EID_LENGTH} are allowed."
        )
    return eid


def body_kind(content_type: str | None, body: bytes) -> BodyKind:
    """How to read a body, from its Content-Type (a missing one is read as JSON)."""
    if not body.strip():
        return BodyKind.NONE
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in ("", "application/json") or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return BodyKind.JSON
    if media == "application/x-www-form-urlencoded":
        return BodyKind.FORM
    return BodyKind.UNSUPPORTED


def read_attributes(query_string: str, body: bytes, kind: BodyKind) -> dict[str, Any]:
    """The query's attributes overlaid with the body's (repeated keys: the last one wins)."""
    attrs: dict[str, Any] = dict(_pairs(query_string, "query string")) if query_string else {}
    if kind is BodyKind.JSON:
        value = decode_json(body)
        if not isinstance(value, dict):
            raise EventError(
                f"The event attributes must be a JSON object, not {json_kind(value)}; "
                'send {"name": value, ...}.'
            )
        attrs.update(value)
    elif kind is BodyKind.FORM:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise EventError("The form body is not UTF-8 text.") from None
        attrs.update(_pairs(text, "form body"))
    return attrs


def _pairs(text: str, where: str) -> list[tuple[str, str]]:
    """`parse_qsl(text, keep_blank_values=True)`, with a fast path for text with no escapes
    (most Sky query strings: `_domain=a&_type=b`), where it is several times slower."""
    if "%" not in text and "+" not in text:
        return [(k, v) for k, _, v in (p.partition("=") for p in text.split("&") if p)]
    try:
        return parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise EventError(f"The {where} has percent-escapes that are not UTF-8.") from None


def parse_sky_request(path: EslPath, attrs: dict[str, Any]) -> SkyRequest:
    """Clean an ESL's path and attributes into one event, or raise EventError saying why not."""
    reserved: dict[str, Any] = {}
    for key in attrs:
        if key[:1] == RESERVED_PREFIX:
            reserved[key] = attrs[key]
    if reserved:
        attrs = {k: v for k, v in attrs.items() if k not in reserved}
        domain = _text(reserved, "_domain") or path.domain
        event_type = _text(reserved, "_type") or _text(reserved, "_name") or path.type
    else:
        domain, event_type = path.domain, path.type
    if not domain:
        raise EventError(
            "The event has no domain: put it in the URL (/sky/event/<eci>/<eid>/<domain>/"
            "<type>) or send _domain."
        )
    if not event_type:
        raise EventError(
            "The event has no type: put it in the URL (/sky/event/<eci>/<eid>/<domain>/"
            "<type>) or send _type (or _name)."
        )
    for label, value in (("domain", domain), ("type", event_type)):
        if check_type(value) is not None:
            raise EventError(
                f"The event {label} {value[:80]!r} is not valid: use dot-separated segments "
                "of letters, digits, '_' and '-'."
            )
    full = f"{CUSTOM_PREFIX}{domain}.{event_type}"
    if len(full) > MAX_TYPE_LENGTH:
        raise EventError(
            f"The event type custom.<domain>.<type> is {len(full)} characters long; at most "
            f"{MAX_TYPE_LENGTH} are allowed."
        )
    eid = clean_eid(path.eid)
    if not reserved:
        return SkyRequest(eid, domain, event_type, attrs)
    raw_ts = reserved.get("_timestamp")
    return SkyRequest(
        eid=eid,
        domain=domain,
        type=event_type,
        attrs=attrs,
        is_async=_flag(reserved.get("_async"), "_async"),
        rids=_rids(reserved.get("_rids")),
        ts=parse_timestamp(raw_ts) if raw_ts not in (None, "") else None,
        timeout=_seconds(reserved.get("_timeout"), "_timeout"),
    )


def parse_timestamp(value: object) -> str:
    """An RFC 3339 date-time (with an offset), as the UTC `...Z` form events carry."""
    example = "like 2024-05-01T12:00:00Z or 2024-05-01T14:00:00.5+02:00"
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise EventError(f"_timestamp {value!r} is not an RFC 3339 date-time, {example}.")
    try:
        moment = datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise EventError(f"_timestamp {value!r} is not a valid date-time: {exc}.") from None
    utc = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return utc.replace("+00:00", "Z")


def _text(reserved: dict[str, Any], key: str) -> str:
    value = reserved.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise EventError(f"{key} must be a string, not {json_kind(value)}.")
    return value.strip()


def _flag(value: object, key: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise EventError(f"{key} must be 1 or 0 (true or false), not {value!r}.")


def _rids(value: object) -> tuple[str, ...] | None:
    """`a;b` (the KRE form) or a JSON list of names; empty means no limit."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split(";")]
    elif isinstance(value, list) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise EventError("_rids must be sink names separated by ';' (or a JSON list of names).")
    kept = tuple(dict.fromkeys(n for n in names if n))
    return kept or None


def _seconds(value: object, key: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        seconds = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds) or seconds <= 0:
        raise EventError(f"{key} must be a number of seconds above 0, not {value!r}.")
    return seconds


def sky_answer(report: EmitReport, eid: str) -> JSONObject:
    """The synchronous Sky answer: every directive of every sink that finished in time.

    Directives are grouped by sink (sinks in name order, each sink's in the order it made them);
    sinks still running when the wait ended are listed in `pending`, sinks that gave up or
    dropped the event in `failed`.
    """
    directives: list[JSONObject] = []
    failed: list[JSONObject] = []
    outcomes = report.outcomes
    for name in sorted(outcomes):
        outcome = outcomes[name]
        if outcome.status is DeliveryStatus.DELIVERED:
            result = outcome.result
            if result is not None:
                for directive in result.directives:
                    entry = directive.to_dict(eid)
                    entry["meta"]["rid"] = name
                    directives.append(entry)
        else:
            failed.append({"rid": name, "status": outcome.status.value, "error": outcome.error})
    answer: JSONObject = {"eid": eid, "id": report.event.id, "directives": directives}
    if report.pending:
        answer["pending"] = sorted(report.pending)
    if failed:
        answer["failed"] = failed
    return answer
