"""The sink model shared by knot.toml, the store, the API and the script loader."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from ._exceptions import SinkError
from ._json import JSONObject
from ._patterns import Pattern, validate_patterns

__all__ = [
    "SECRET_HEADER",
    "SECRET_OPTIONS",
    "SINK_KEYS",
    "SinkOrigin",
    "SinkSpec",
    "check_sink_name",
    "masked_url",
]

_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{1,63}")
_NAME_RULE = "must start with a letter and have 2 to 64 letters, digits or underscores"
SINK_KEYS: Mapping[str, str] = {
    "name": "The sink's name: a letter, then 1 to 63 letters, digits or underscores.",
    "type": "webhook, json-rpc, recording (script sinks come from scripts/sinks/).",
    "events": 'Comma-separated patterns: "*", "prefix.*" or an exact type.',
    "description": "Free text, shown in listings.",
    "owner": '"" (global: fires for every event) or a user id (fires for that user\'s events).',
    "active": "false keeps the sink defined but routes nothing to it; default true.",
}
"""The keys every sink definition takes (knot.toml, the API); the rest are its type's options."""
SECRET_OPTIONS = frozenset({"secret"})
"""Options never shown in logs or listings."""
SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|password|api[-_]?key", re.I)
"""Header values (of a sink's `headers` option, of a dry run's requests) masked, like secrets."""


class SinkOrigin(StrEnum):
    """Where a sink was defined; it decides who may change it and how it is reloaded."""

    SCRIPT = "script"  # scripts/sinks/<name>.py, owned by the reloader
    CONFIG = "config"  # [[sinks]] in knot.toml, owned by the config watcher
    API = "api"  # created at run time, persisted in the store
    BUILTIN = "builtin"  # created in-process (tests, notebooks)
    METHOD = "method"  # a method with `events` in scripts/methods/, named SCRIPT.METHOD


def masked_url(url: str) -> str:
    """`url` with the password of a `user:password@` part replaced by ********."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"{parts.username}:********@{host}").geturl()


def check_sink_name(name: object) -> str | None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        return f"The sink name {name!r} is not valid: it {_NAME_RULE}."
    return None


@dataclass(frozen=True)
class SinkSpec:
    name: str
    type: str
    events: tuple[Pattern, ...]
    description: str = ""
    owner: str = ""  # "" is global: fires for every owner's events
    active: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    origin: SinkOrigin = SinkOrigin.API

    @property
    def events_text(self) -> str:
        return ", ".join(p.text for p in self.events)

    def to_dict(self, *, redact: bool = True) -> JSONObject:
        options = {
            k: ("********" if redact and k in SECRET_OPTIONS and v else v)
            for k, v in self.options.items()
        }
        url = options.get("url")
        if redact and isinstance(url, str) and "@" in url:
            options["url"] = masked_url(url)
        headers = options.get("headers")
        if redact and isinstance(headers, Mapping):
            options["headers"] = {
                name: "********" if SECRET_HEADER.search(str(name)) else value
                for name, value in headers.items()
            }
        return {
            "name": self.name,
            "type": self.type,
            "events": self.events_text,
            "description": self.description,
            "owner": self.owner,
            "active": self.active,
            "origin": self.origin.value,
            **options,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, origin: SinkOrigin = SinkOrigin.API) -> SinkSpec:
        """Build a spec from a flat mapping (a knot.toml table, an API body, a store row).

        Keys other than the common ones become type-specific options, which the sink class
        validates. Raises SinkError listing every problem found.
        """
        problems: list[str] = []
        name = raw.get("name")
        bad_name = check_sink_name(name)
        if bad_name is not None:
            problems.append(f"Its name {_NAME_RULE}.")
        sink_type = raw.get("type")
        if not isinstance(sink_type, str) or not sink_type:
            problems.append("The sink type is missing; use webhook, script or json-rpc.")
        events_raw = raw.get("events", "")
        patterns: tuple[Pattern, ...] = ()
        if isinstance(events_raw, str | list | tuple):
            patterns, pattern_problems = validate_patterns(events_raw)
            problems.extend(pattern_problems)
        else:
            problems.append("The sink's events must be a comma-separated string of patterns.")
        description = raw.get("description", "")
        if not isinstance(description, str):
            problems.append("The sink's description must be a string.")
        owner = raw.get("owner", "")
        if owner is None:
            owner = ""
        if not isinstance(owner, str):
            problems.append("The sink's owner must be a user id string ('' for global).")
        active = raw.get("active", True)
        if not isinstance(active, bool):
            problems.append("The sink's active flag must be true or false.")
        if problems:
            # One sentence: a bad name alone says so itself ("The sink name 'x' is not valid:
            # it must..."), not "The sink 'x' is not valid: The sink name 'x' is not valid...".
            label = name if isinstance(name, str) else "?"
            message = f"The sink {label!r} is not valid: " + " ".join(problems)
            raise SinkError(
                bad_name if bad_name is not None and len(problems) == 1 else message,
                sink=name if isinstance(name, str) else None,
            )
        common = {*SINK_KEYS, "origin"}
        options = {k: v for k, v in raw.items() if k not in common}
        assert isinstance(name, str)
        assert isinstance(sink_type, str)
        return cls(
            name=name,
            type=sink_type,
            events=patterns,
            description=str(description),
            owner=str(owner),
            active=bool(active),
            options=options,
            origin=origin,
        )
