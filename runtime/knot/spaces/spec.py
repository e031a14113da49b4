"""The space model: what a user declares (SpaceSpec), what the runtime keeps (SpaceRecord) and
what it shows (SpaceInfo, a snapshot).

A spec is checked once, where it enters (API, CLI, notebook, store), and comes back as data:
`check_space(raw)` returns the spec or every problem found, each a full sentence.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from .._exceptions import SpaceError
from .._json import JSONObject

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_TIMEOUT",
    "HealthCheck",
    "HealthKind",
    "OnRestart",
    "SpaceCheck",
    "SpaceInfo",
    "SpaceRecord",
    "SpaceSpec",
    "SpaceState",
    "check_space",
    "check_space_name",
]

DEFAULT_INTERVAL = 10.0
DEFAULT_TIMEOUT = 5.0
_NAME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9_-]{0,63}")
_NAME_RULE = "must start with a letter and have 1 to 64 letters, digits, '-' or '_'"
_ID_MAX = 255
_FIELDS = {
    "name",
    "cmd",
    "urls",
    "health",
    "interval",
    "timeout",
    "threshold",
    "template_id",
    "startup_script_id",
    "on_restart",
    "owner",
}


class SpaceState(StrEnum):
    STOPPED = "stopped"
    RUNNING = "running"


class OnRestart(StrEnum):
    """What becomes of a space that was running when the runtime stopped (or crashed)."""

    START = "start"  # start its cmd again
    STOP = "stop"  # leave it stopped


class HealthKind(StrEnum):
    HTTP = "http"  # GET a loopback URL; 2xx and 3xx are healthy
    COMMAND = "command"  # run a shell command; exit code 0 is healthy


@dataclass(frozen=True, slots=True)
class HealthCheck:
    target: str
    kind: HealthKind
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    threshold: int = 1  # consecutive failures before the space counts as unhealthy

    def to_dict(self) -> JSONObject:
        return {
            "check": self.target,
            "kind": self.kind.value,
            "interval": self.interval,
            "timeout": self.timeout,
            "threshold": self.threshold,
        }


@dataclass(frozen=True, slots=True)
class SpaceSpec:
    """What the user declared; changes only by deleting and creating the space again."""

    name: str
    owner: str = ""  # the user id the space (and its events) belong to; "" = the local user
    cmd: str = ""  # a shell command run as the space's process; "" = a record only
    urls: tuple[str, ...] = ()
    template_id: str = ""
    startup_script_id: str = ""
    health: HealthCheck | None = None
    on_restart: OnRestart = OnRestart.START

    def to_dict(self) -> JSONObject:
        return {
            "name": self.name,
            "owner": self.owner,
            "cmd": self.cmd,
            "urls": list(self.urls),
            "template_id": self.template_id,
            "startup_script_id": self.startup_script_id,
            "health": self.health.to_dict() if self.health else None,
            "on_restart": self.on_restart.value,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SpaceSpec:
        """A spec from flat API/CLI fields; raises SpaceError listing every problem."""
        result = check_space(raw)
        if result.spec is None:
            name = raw.get("name")
            label = name if isinstance(name, str) else "?"
            bad_name = check_space_name(name)
            if bad_name is not None and len(result.errors) == 1:  # it says so itself, once
                message = bad_name
            else:
                own = f"Its name {_NAME_RULE}."
                errors = [own if e == bad_name else e for e in result.errors]
                message = f"The space {label!r} is not valid: " + " ".join(errors)
            raise SpaceError(message, space=name if isinstance(name, str) else None)
        return result.spec


@dataclass(frozen=True, slots=True)
class SpaceInfo:
    """A snapshot of one space for listings, the API and the notebook."""

    id: str
    spec: SpaceSpec
    state: SpaceState
    created_at: str
    started_at: str
    stopped_at: str
    pid: int
    exit_code: int | None
    health: JSONObject | None  # the check's settings and, while running, its current state
    log: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def owner(self) -> str:
        return self.spec.owner

    def to_dict(self) -> JSONObject:
        return {
            "id": self.id,
            **self.spec.to_dict(),
            "health": self.health,
            "state": self.state.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "pid": self.pid,
            "exit_code": self.exit_code,
            "log": self.log,
        }


@dataclass(frozen=True, slots=True)
class SpaceCheck:
    spec: SpaceSpec | None
    errors: tuple[str, ...] = ()


@dataclass
class SpaceRecord:
    """A space as the runtime keeps it: the spec plus its lifecycle state (persisted)."""

    spec: SpaceSpec
    id: str
    created_at: str
    state: SpaceState = SpaceState.STOPPED
    started_at: str = ""
    stopped_at: str = ""
    pid: int = 0  # the process (and process group) of a running cmd
    pid_created: float = 0.0  # its start time, so a reused pid is never taken for ours
    exit_code: int | None = None
    resume: bool = False  # it was running when the runtime stopped

    @property
    def name(self) -> str:
        return self.spec.name

    def to_store(self) -> JSONObject:
        return {
            **self.spec.to_dict(),
            "id": self.id,
            "created_at": self.created_at,
            "state": self.state.value,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "pid": self.pid,
            "pid_created": self.pid_created,
            "exit_code": self.exit_code,
            "resume": self.resume,
        }

    @classmethod
    def from_store(cls, raw: Mapping[str, Any]) -> SpaceRecord:
        health = raw.get("health")
        flat = {k: v for k, v in raw.items() if k in _FIELDS and k != "health"}
        if isinstance(health, Mapping):
            flat |= {
                "health": health.get("check"),
                "interval": health.get("interval", DEFAULT_INTERVAL),
                "timeout": health.get("timeout", DEFAULT_TIMEOUT),
                "threshold": health.get("threshold", 1),
            }
        spec = SpaceSpec.from_dict(flat)
        exit_code = raw.get("exit_code")
        return cls(
            spec=spec,
            id=str(raw["id"]),
            created_at=str(raw.get("created_at", "")),
            state=SpaceState(raw.get("state", SpaceState.STOPPED.value)),
            started_at=str(raw.get("started_at", "")),
            stopped_at=str(raw.get("stopped_at", "")),
            pid=int(raw.get("pid", 0)),
            pid_created=float(raw.get("pid_created", 0.0)),
            exit_code=int(exit_code) if exit_code is not None else None,
            resume=bool(raw.get("resume", False)),
        )


def check_space_name(name: object) -> str | None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        return f"The space name {name!r} is not valid: it {_NAME_RULE}."
    return None


def check_space(raw: Mapping[str, Any]) -> SpaceCheck:
    """Check flat space fields (as the API and the CLI send them); return the spec or problems."""
    errors: list[str] = []
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        errors.append(
            f"Unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}; "
            f"known fields: {', '.join(sorted(_FIELDS))}."
        )
    name = raw.get("name")
    if (problem := check_space_name(name)) is not None:
        errors.append(problem)
    texts: dict[str, str] = {}
    for key in ("owner", "cmd", "template_id", "startup_script_id"):
        value = raw.get(key) or ""
        if not isinstance(value, str):
            errors.append(f"The space's {key} must be a string.")
        elif key != "cmd" and len(value) > _ID_MAX:
            errors.append(f"The space's {key} is longer than {_ID_MAX} characters.")
        else:
            texts[key] = value.strip() if key == "cmd" else value
    urls = _check_urls(raw.get("urls") or (), errors)
    health = _check_health(raw, errors)
    on_restart = raw.get("on_restart") or OnRestart.START.value
    if not isinstance(on_restart, str) or on_restart not in {p.value for p in OnRestart}:
        errors.append(f"The space's on_restart must be 'start' or 'stop', not {on_restart!r}.")
    if errors:
        return SpaceCheck(None, tuple(errors))
    assert isinstance(name, str)
    spec = SpaceSpec(
        name=name,
        owner=texts["owner"],
        cmd=texts["cmd"],
        urls=urls,
        template_id=texts["template_id"],
        startup_script_id=texts["startup_script_id"],
        health=health,
        on_restart=OnRestart(on_restart),
    )
    return SpaceCheck(spec)


def _check_urls(value: object, errors: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(u, str) for u in value):
        errors.append("The space's urls must be a list of URL strings.")
        return ()
    for url in value:
        try:
            parts = urlsplit(url)
        except ValueError:  # "http://[" and friends
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(f"The space URL {url!r} is not an http:// or https:// URL.")
    return tuple(value)


def _check_health(raw: Mapping[str, Any], errors: list[str]) -> HealthCheck | None:
    target = raw.get("health") or ""
    if not isinstance(target, str):
        errors.append("The space's health check must be a URL or a command string.")
        return None
    target = target.strip()
    interval = _positive(raw, "interval", DEFAULT_INTERVAL, errors)
    timeout = _positive(raw, "timeout", DEFAULT_TIMEOUT, errors)
    threshold = raw.get("threshold", 1)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        errors.append(f"The health check threshold must be an integer >= 1, not {threshold!r}.")
        threshold = 1
    if not target:
        return None
    kind = HealthKind.COMMAND
    if target.startswith(("http://", "https://")):
        kind = HealthKind.HTTP
        problem = _check_loopback(target)
        if problem is not None:
            errors.append(problem)
    return HealthCheck(target, kind, interval, timeout, threshold)


def _positive(raw: Mapping[str, Any], key: str, default: float, errors: list[str]) -> float:
    value = raw.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        errors.append(f"The health check {key} must be a number of seconds > 0, not {value!r}.")
        return default
    return float(value)


def _check_loopback(url: str) -> str | None:
    """Health URLs must point at this machine: a space is local, and the runtime must not be
    a way to probe other hosts on behalf of whoever may create spaces."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:  # "http://[" and friends
        return f"The health URL {url!r} is not a valid URL."
    if host == "localhost":
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return (
        f"The health URL {url!r} must point at this machine (127.0.0.1, ::1 or localhost): "
        "spaces are local workloads and their health is checked on loopback only."
    )
