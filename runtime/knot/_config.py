"""knot.toml: the settings model, loading and validation.

Loading never raises for a bad file: it returns a ConfigResult with the problems (each naming
the line and key), so the watcher can keep the last good settings and say what is wrong.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ._allowlist import AllowList, ScriptAccess, check_hosts, script_tables
from ._env import api_port_from_env
from ._exceptions import ConfigError, SinkError
from ._secrets import SecretSettings, parse_secrets
from ._settings import (
    MEANING,
    RESTART_SETTINGS,
    DeliverySettings,
    MethodSettings,
    MetricsSettings,
    ScriptSettings,
    ServerSettings,
    SpaceSettings,
    StoreSettings,
    setting,
)
from ._sinkspec import SinkOrigin, SinkSpec
from ._users import User, parse_config_users

__all__ = [
    "RESTART_SETTINGS",
    "Config",
    "ConfigResult",
    "DeliverySettings",
    "MethodSettings",
    "MetricsSettings",
    "ScriptAccess",
    "ScriptSettings",
    "ServerSettings",
    "SpaceSettings",
    "StoreSettings",
    "changed_settings",
    "load_config",
    "parse_config",
    "rule_of",
]

CONFIG_FILE = "knot.toml"


@dataclass(frozen=True)
class Config:
    zone: str = setting(
        "local", "The zone this runtime serves; events are zone-local (`event.zone`)."
    )
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    scripts: ScriptSettings = field(default_factory=ScriptSettings)
    spaces: SpaceSettings = field(default_factory=SpaceSettings)
    methods: MethodSettings = field(default_factory=MethodSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    sinks: tuple[SinkSpec, ...] = setting(
        (), "`[[sinks]]`: webhook, json-rpc and recording sinks, one table each."
    )
    users: tuple[User, ...] = setting(
        (), "`[users.NAME]`: users and their permissions (more can be added at run time)."
    )
    secrets: SecretSettings = field(
        default_factory=SecretSettings,
        metadata={
            MEANING: '`[secrets]`: `NAME = "value"` or `NAME = { file = "PATH" }` (read when '
            "the settings load, relative to the project), for `knot.secrets.get(NAME)` in "
            "scripts; `KNOT_SECRET_<NAME>` in the environment wins."
        },
    )
    extra: Mapping[str, Any] = field(default_factory=dict)  # tables later issues own
    # Where each [[sinks]] table is (`knot.toml:9`), for a sink that fails to start; not a
    # setting (moving a table changes nothing).
    sink_lines: Mapping[str, str] = field(default_factory=dict, compare=False)

    def with_store_url(self, url: str) -> Config:
        """These settings on the store at `url` (`knot serve --store`); "" changes nothing."""
        return replace(self, store=replace(self.store, url=url)) if url else self

    def with_env(self) -> Config:
        """Apply environment overrides (KNOT_API_PORT)."""
        port = api_port_from_env()
        if port is None:
            return self
        return replace(self, server=replace(self.server, port=port))


@dataclass(frozen=True)
class ConfigResult:
    config: Config | None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    path: str = ""

    @property
    def ok(self) -> bool:
        return self.config is not None

    def raise_for_errors(self) -> Config:
        if self.config is None:
            where = self.path or CONFIG_FILE
            # Each error already starts with `path:line:`; saying "is not valid: path:2: ..."
            # before it would name the file twice.
            named = all(e.startswith(where) for e in self.errors)
            raise ConfigError(
                " ".join(self.errors)
                if named
                else f"{where} is not valid: " + " ".join(self.errors),
                path=self.path,
                problems=self.errors,
            )
        return self.config


def changed_settings(old: Config, new: Config) -> list[str]:
    """Dotted names of the settings that differ: `delivery.attempts`, `zone`, `sinks`, `users`.

    Sections are compared key by key; `sinks` and the tables later parts own as a whole.
    """
    changed: list[str] = []
    for f in fields(Config):
        if not f.compare:
            continue
        before, after = getattr(old, f.name), getattr(new, f.name)
        if f.name == "extra":
            changed.extend(k for k in sorted({*before, *after}) if before.get(k) != after.get(k))
        elif f.name in _SECTIONS:
            changed.extend(
                f"{f.name}.{g.name}"
                for g in fields(before)
                if getattr(before, g.name) != getattr(after, g.name)
            )
        elif before != after:
            changed.append(f.name)
    return changed


def rule_of(section: str, key: str) -> str:
    """What the value of `[section] key` must be, as its validation says it ("an integer
    >= 1"); "" for a key validated elsewhere."""
    checker = _SECTIONS[section][1].get(key) if section in _SECTIONS else None
    if checker is None:
        return ""
    problem = checker(object()) or ""  # nothing passes for a bare object: the rule is said
    return problem.removeprefix("must be ")


def load_config(project: str | Path) -> ConfigResult:
    """Read `<project>/knot.toml`; a missing file gives the defaults."""
    path = Path(project) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigResult(Config(), path=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        return ConfigResult(None, (f"{path}: cannot be read: {exc}.",), path=str(path))
    return parse_config(text, path=str(path))


_Checker = Callable[[Any], str | None]


def _int(minimum: int) -> _Checker:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            return f"must be an integer >= {minimum}"
        return None

    return check


def _port(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 65535:
        return "must be a port number from 0 to 65535 (0: any free port)"
    return None


def _number(minimum: float) -> _Checker:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float) or v < minimum:
            return f"must be a number >= {minimum}"
        return None

    return check


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) and v else "must be a non-empty string"


def _backoff(v: Any) -> str | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
        return None
    if isinstance(v, list) and v and all(_number(0)(x) is None for x in v):
        return None
    return "must be a number of seconds or a non-empty list of them"


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _scrape_token(v: Any) -> str | None:
    if isinstance(v, str) and len(v) >= 16:
        return None
    return "must be a string of at least 16 characters (a scrape token is a password)"


def _sha256(v: Any) -> str | None:
    if isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v.lower()):
        return None
    return "must be the 64 hex digits of a SHA-256"


def _nats_url(v: Any) -> str | None:
    if isinstance(v, str) and (
        v == "" or all(u.strip().startswith("nats://") for u in v.split(","))
    ):
        return None
    return 'must be "nats://host:port" (several comma-separated), or "" for SQLite'


def _name_token(v: Any) -> str | None:
    if isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,32}", v):
        return None
    return "must be 1-32 letters, digits, _ or -"


def _sync_mode(v: Any) -> str | None:
    return None if v in ("normal", "full") else 'must be "normal" or "full"'


_RUN_LIMIT_CHECKS: dict[str, _Checker] = {
    "max_emits": _int(0),
    "max_emit_bytes": _int(0),
    "max_directives": _int(0),
    "max_directive_bytes": _int(0),
    "max_output_bytes": _int(256),
    "http_max_requests": _int(0),
}
_SECTIONS: dict[str, tuple[type[Any], dict[str, _Checker]]] = {
    "server": (
        ServerSettings,
        {"host": _string, "port": _port, "max_body_bytes": _int(1024)},
    ),
    "store": (
        StoreSettings,
        {
            "path": _string,
            "retention_events": _int(100),
            "retention_audit": _int(100),
            "synchronous": _sync_mode,
            "url": _nats_url,
            "replicas": _int(1),
            "ack_wait": _number(0.5),
            "stream_prefix": _name_token,
            "dedup_window": _number(1),
        },
    ),
    "delivery": (
        DeliverySettings,
        {
            "queue_size": _int(1),
            "attempts": _int(1),
            "backoff": _backoff,
            "max_depth": _int(0),
            "max_payload_bytes": _int(64),
            "sync_timeout": _number(0.001),
            "stop_grace": _number(0),
        },
    ),
    "scripts": (
        ScriptSettings,
        {
            "dir": _string,
            "timeout": _number(0.001),
            "memory_mb": _int(16),
            "workers": _int(0),
            **_RUN_LIMIT_CHECKS,
            "http_allow": check_hosts,
            "http_max_bytes": _int(1024),
            "kv_max_keys": _int(0),
            "kv_max_value_bytes": _int(16),
        },
    ),
    "spaces": (SpaceSettings, {"stop_grace": _number(0)}),
    "methods": (
        MethodSettings,
        {
            "timeout": _number(0.001),
            "memory_mb": _int(16),
            "threads": _int(1),
            **_RUN_LIMIT_CHECKS,
            "restart_backoff": _backoff,
        },
    ),
    "metrics": (
        MetricsSettings,
        {"enabled": _bool, "token": _scrape_token, "token_sha256": _sha256},
    ),
}
_TOP_LEVEL = {"zone", "sinks", "users", "secrets", *_SECTIONS}
_PER_SCRIPT = {"scripts": ("sinks", "methods")}  # [scripts.sinks.NAME], [scripts.methods.NAME]
_EXTRA_TABLES = {"sky"}  # owned by later parts; passed through


def parse_config(text: str, *, path: str = CONFIG_FILE) -> ConfigResult:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return ConfigResult(None, (f"{path}: {exc}.",), path=path)
    errors: list[str] = []
    warnings: list[str] = []

    def where(section: str | None, key: str, index: int = 0) -> str:
        line = _line_of(text, section, key, index)
        at = f"{path}:{line}" if line else path
        dotted = f"{section}.{key}" if section else key
        return f"{at}: {dotted}"

    kwargs: dict[str, Any] = {}
    zone = raw.get("zone", "local")
    if _string(zone) is not None:
        errors.append(f"{where(None, 'zone')} must be a non-empty string.")
    else:
        kwargs["zone"] = zone
    warnings.extend(
        f"{where(None, key)} is not a known setting and is ignored."
        for key in raw
        if key not in _TOP_LEVEL and key not in _EXTRA_TABLES
    )
    for section, (model, checkers) in _SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            errors.append(f"{where(None, section)} must be a table.")
            continue
        values: dict[str, Any] = {}
        for key, value in table.items():
            if key in _PER_SCRIPT.get(section, ()):
                values[key] = script_tables(f"{section}.{key}", value, where, errors, warnings)
                continue
            checker = checkers.get(key)
            if checker is None:
                warnings.append(f"{where(section, key)} is not a known setting and is ignored.")
                continue
            problem = checker(value)
            if problem is not None:
                errors.append(f"{where(section, key)} {problem}, not {value!r}.")
                continue
            values[key] = _converted(key, value)
        kwargs[section] = model(**values)
    sinks: list[SinkSpec] = []
    sink_lines: dict[str, str] = {}
    raw_sinks = raw.get("sinks", [])
    if not isinstance(raw_sinks, list):
        errors.append(f"{where(None, 'sinks')} must be an array of tables ([[sinks]]).")
        raw_sinks = []
    for i, table in enumerate(raw_sinks):
        line = _line_of_array_table(text, "sinks", i)
        at = f"{path}:{line}" if line else path
        if not isinstance(table, dict):
            errors.append(f"{at}: sinks[{i}] must be a table.")
            continue
        try:
            spec = SinkSpec.from_dict(table, origin=SinkOrigin.CONFIG)
        except SinkError as exc:
            errors.append(f"{at}: {exc.message}")
            continue
        if any(s.name == spec.name for s in sinks):
            errors.append(f"{at}: the sink name {spec.name!r} is defined twice.")
            continue
        sinks.append(spec)
        sink_lines[spec.name] = at
    kwargs["sinks"] = tuple(sinks)
    kwargs["sink_lines"] = sink_lines
    users, user_problems = parse_config_users(raw.get("users", {}))
    for name, problem in user_problems:
        line = _line_of_header(text, f"users.{name}") if name else 0
        at = f"{path}:{line}" if line else path
        errors.append(f"{at}: users.{name} {problem}." if name else f"{at}: users {problem}.")
    kwargs["users"] = users
    secrets, secret_problems = parse_secrets(raw.get("secrets", {}))
    errors.extend(
        f"{where('secrets', key) if key else where(None, 'secrets')} {problem}."
        for key, problem in secret_problems
    )
    kwargs["secrets"] = secrets
    kwargs["extra"] = {k: raw[k] for k in _EXTRA_TABLES if k in raw}
    if errors:
        return ConfigResult(None, tuple(errors), tuple(warnings), path=path)
    return ConfigResult(Config(**kwargs), (), tuple(warnings), path=path)


def _converted(key: str, value: Any) -> Any:
    """A checked value as the settings hold it."""
    if key in ("backoff", "restart_backoff"):
        return tuple(float(x) for x in value) if isinstance(value, list) else (value,)
    if key == "http_allow":
        return AllowList.parse(value)
    return value


def _line_of(text: str, section: str | None, key: str, index: int = 0) -> int:
    """Best-effort line number of `key` in `[section]` (tomllib keeps no positions)."""
    current: str | None = None
    key_re = re.compile(rf"\s*(?:\"{re.escape(key)}\"|{re.escape(key)})\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            current = stripped.strip("[]").strip()
            continue
        if current == section and key_re.match(line):
            return number
    if section is not None:
        # Also look for dotted keys such as `delivery.attempts = 3` at top level.
        dotted = re.compile(rf"\s*{re.escape(section)}\s*\.\s*{re.escape(key)}\s*=")
        for number, line in enumerate(text.splitlines(), start=1):
            if dotted.match(line):
                return number
    return 0


def _line_of_header(text: str, header: str) -> int:
    """The line of a `[header]` table (or of `key = {...}` inside its parent table)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().replace(" ", "") == f"[{header}]":
            return number
    parent, _, key = header.rpartition(".")
    return _line_of(text, parent, key) if parent else 0


def _line_of_array_table(text: str, name: str, index: int) -> int:
    seen = -1
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip().replace(" ", "") == f"[[{name}]]":
            seen += 1
            if seen == index:
                return number
    return 0
