"""The tables of knot.toml as frozen dataclasses, each key with its default and its meaning.

The meaning of a key is data (`setting(default, meaning)`, kept in the field's metadata), so
the reference page of knot.toml (docs/reference/config.md) is generated from this model and a
test fails when a key has none. Loading and validation are in _config.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, dataclass, field, fields, replace
from typing import Any, TypeVar

from ._allowlist import AllowList, ScriptAccess

__all__ = [
    "RESTART_SETTINGS",
    "RUN_LIMITS",
    "DeliverySettings",
    "MethodSettings",
    "MetricsSettings",
    "RunLimitSettings",
    "ScriptSettings",
    "ServerSettings",
    "SpaceSettings",
    "StoreSettings",
    "meaning",
    "setting",
]

T = TypeVar("T")

MEANING = "knot.meaning"  # the metadata key of a field's meaning


def setting(default: T, meaning: str) -> T:
    """A knot.toml key with its default and what it means (one or two sentences)."""
    return field(default=default, metadata={MEANING: meaning})


def meaning(model: type[Any], name: str) -> str:
    """The meaning a settings class gives its key `name` ("" when it gives none)."""
    found: dict[str, Field[Any]] = {f.name: f for f in fields(model)}
    return str(found[name].metadata.get(MEANING, "")) if name in found else ""


RESTART_SETTINGS = frozenset(
    {
        "zone",
        "server.host",
        "server.port",
        "server.max_body_bytes",
        "store.path",
        "store.synchronous",
        "store.url",
        "store.replicas",
        "store.ack_wait",
        "store.stream_prefix",
        "store.dedup_window",
        "scripts.dir",
        "metrics.enabled",
    }
)
"""Settings a running runtime cannot change (sockets, the open store, the watched folder)."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting(
        "127.0.0.1",
        "The address `knot serve` listens on. A non-loopback address needs users "
        "(`knot user add`): without them the runtime refuses to start.",
    )
    port: int = setting(12201, "The port of the HTTP API; `KNOT_API_PORT` overrides it.")
    max_body_bytes: int = setting(
        2 * 1024 * 1024, "The largest HTTP request body taken; a bigger one gets 413."
    )


@dataclass(frozen=True)
class StoreSettings:
    path: str = setting(".knot/knot.db", "The SQLite file of the store, relative to the project.")
    retention_events: int = setting(
        100_000,
        "Journal rows kept once every sink is past them (with their delivery attempts); "
        "older ones are pruned.",
    )
    retention_audit: int = setting(10_000, "Audit entries kept; older ones are pruned.")
    synchronous: str = setting(
        "normal",
        '"normal" survives any process crash; "full" also survives power loss, at the cost '
        "of an fsync per commit.",
    )
    url: str = setting(
        "",
        'A NATS JetStream store instead of the SQLite file (the cluster): "nats://host:4222", '
        'several comma-separated; "" keeps the embedded SQLite store.',
    )
    replicas: int = setting(
        1, "NATS: copies JetStream keeps of each stream (1, or up to the servers: 3)."
    )
    ack_wait: float = setting(
        10.0, "NATS: seconds before a silent node's sinks move to another node."
    )
    stream_prefix: str = setting(
        "KNOT", "NATS: streams and buckets are named PREFIX_<zone>_EVENTS, ..."
    )
    dedup_window: float = setting(
        600.0, "NATS: seconds an event id is remembered (a repeated id is dropped)."
    )

    def keeping_open(self, running: StoreSettings) -> StoreSettings:
        """These settings with the running store's own kept (they apply at the next start)."""
        kept = {f.name: getattr(running, f.name) for f in fields(self)}
        return replace(self, **{k: v for k, v in kept.items() if f"store.{k}" in RESTART_SETTINGS})


@dataclass(frozen=True)
class DeliverySettings:
    queue_size: int = setting(
        100, "Events one sink may have queued; past it new events are dropped for that sink."
    )
    attempts: int = setting(3, "Attempts per event and sink before it is given up (audited).")
    backoff: tuple[float, ...] = setting(
        (5.0, 15.0),
        "Seconds between attempts: a list (the last repeats), or a single number.",
    )
    max_depth: int = setting(
        8, "How deep a chain of events raised by sinks may go; deeper events are dropped."
    )
    max_payload_bytes: int = setting(1024 * 1024, "The largest payload of an event, as JSON.")
    sync_timeout: float = setting(
        10.0, "Seconds a synchronous caller (a Sky event) waits for its sinks."
    )
    stop_grace: float = setting(
        5.0,
        "Seconds a stop, or a sink's removal, lets the attempt in flight finish before it is "
        "cancelled.",
    )


RUN_LIMITS = (
    "max_emits",
    "max_emit_bytes",
    "max_directives",
    "max_directive_bytes",
    "max_output_bytes",
    "http_max_requests",
)


@dataclass(frozen=True)
class RunLimitSettings:
    """What one run (a sink script handling one event, or one method call) may hand the
    runtime; the worker stops the run at the first limit it passes, and the runtime checks."""

    max_emits: int = setting(1000, "Events one run (or call) may emit; 0 forbids emits.")
    max_emit_bytes: int = setting(
        4 * 1024 * 1024, "JSON bytes of the payloads one run (or call) emits, together."
    )
    max_directives: int = setting(100, "Directives one run (or call) may add; 0 forbids them.")
    max_directive_bytes: int = setting(
        1024 * 1024, "JSON bytes of the directives one run (or call) adds, together."
    )
    max_output_bytes: int = setting(
        64 * 1024, "What `print()` may write in one run (or call); the rest is cut off."
    )
    http_max_requests: int = setting(
        100, "HTTP requests one run (or call) may make with `requests`."
    )

    def limit_members(self) -> str:
        """The limits as JSON object members (`,"max_emits":1000,...`) for a worker request."""
        return "".join(f',"{name}":{int(getattr(self, name))}' for name in RUN_LIMITS)


@dataclass(frozen=True)
class ScriptSettings(RunLimitSettings):
    dir: str = setting(
        "scripts",
        "The scripts folder: script sinks in `<dir>/sinks/`, method scripts in `<dir>/methods/`.",
    )
    timeout: float = setting(5.0, "Seconds (wall clock) one script run may take.")
    memory_mb: int = setting(256, "Memory a script may allocate, per sandbox worker.")
    workers: int = setting(
        0,
        "Live sandbox workers (one per script sink); 0 means twice the cores, at least 8. "
        "The pool grows to twice this while every worker is stuck in a script.",
    )
    http_allow: AllowList = field(
        default_factory=AllowList,
        metadata={
            MEANING: "Hosts every script's `requests` may reach "
            '("host", "host:port", "host:*", "*.domain", "*"); nothing else is reached.'
        },
    )
    http_max_bytes: int = setting(
        1024 * 1024, "A request's or a response's body, at most (after decoding)."
    )
    kv_max_keys: int = setting(10_000, "Live `knot.kv` keys one script may keep.")
    kv_max_value_bytes: int = setting(64 * 1024, "JSON bytes of one `knot.kv` value.")
    sinks: Mapping[str, ScriptAccess] = field(
        default_factory=dict,
        metadata={MEANING: "`[scripts.sinks.NAME]`: one sink script's own `http_allow`."},
    )
    methods: Mapping[str, ScriptAccess] = field(
        default_factory=dict,
        metadata={MEANING: "`[scripts.methods.NAME]`: one method script's own `http_allow`."},
    )

    def allow_list(self, kind: str, name: str) -> AllowList:
        """The hosts script `name` (of `kind` "sinks" or "methods") may reach, and the
        settings that list them (named when a request is refused)."""
        own = (self.sinks if kind == "sinks" else self.methods).get(name)
        if own is None or not own.http_allow:
            return self.http_allow
        named = f"scripts.http_allow or scripts.{kind}.{name}.http_allow"
        return AllowList(self.http_allow.entries + own.http_allow.entries, named)


@dataclass(frozen=True)
class MethodSettings(RunLimitSettings):
    timeout: float = setting(
        30.0, "Seconds one call may take (and a method script's top level while it loads)."
    )
    memory_mb: int = setting(256, "Memory per method-script worker, all its calls together.")
    threads: int = setting(8, "Calls one worker runs at once.")
    restart_backoff: tuple[float, ...] = setting(
        (0.1, 1.0, 5.0, 30.0), "Seconds before restarting a worker that died, while it keeps dying."
    )


@dataclass(frozen=True)
class SpaceSettings:
    stop_grace: float = setting(5.0, "Seconds between SIGTERM and SIGKILL when a space stops.")


@dataclass(frozen=True)
class MetricsSettings:
    """`GET /metrics`: on by default; once users exist it takes a user's token, or this
    scrape token (only for /metrics) when one is set."""

    enabled: bool = setting(True, "Serve `GET /metrics` (a restart applies a change).")
    token: str = setting(
        "", "A scrape token that opens `/metrics` and nothing else (at least 16 characters)."
    )
    token_sha256: str = setting(
        "", "The scrape token's SHA-256 in hex, so that knot.toml need not hold the token."
    )
