"""knot-runtime: a local runtime for Knot-style events.

async with knot.Runtime("my-project") as runtime:
    await runtime.emit("myapp.deployed", {"version": "1.2.3"})
"""

from __future__ import annotations

# Not `typing.TYPE_CHECKING`: importing typing (and re with it) costs milliseconds in which a
# Ctrl-C would still print a traceback (mypy treats any TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from IPython.core.interactiveshell import InteractiveShell

    from ._audit import AuditEntry, AuditKind
    from ._client import Client
    from ._config import Config, ConfigResult, load_config, parse_config
    from ._events import Actor, ActorKind, Event, Space
    from ._exceptions import (
        ConfigError,
        Conflict,
        DeliveryFailed,
        EventError,
        InvalidInput,
        KnotError,
        MethodFailed,
        NotFound,
        PatternError,
        PermissionDenied,
        RuntimeClosed,
        RuntimeUnavailable,
        ScriptFailed,
        SinkError,
        SpaceError,
        StoreError,
        StoreLocked,
        TemplateError,
    )
    from ._patterns import Pattern, parse_patterns
    from ._replay import ReplayedEvent, ReplayReport, ReplayStatus
    from ._runtime import Runtime
    from ._sinkspec import SinkOrigin, SinkSpec
    from ._sync import SyncRuntime
    from .engine.outcomes import DeliveryStatus, EmitReport, Outcome
    from .engine.registry import SinkStatus
    from .methods.calls import CallResult
    from .methods.service import MethodInfo, Methods
    from .sinks import (
        DeliveryResult,
        Directive,
        JsonRpcSink,
        MethodSink,
        RecordingSink,
        ScriptSink,
        Sink,
        WebhookSink,
    )
    from .sky.channels import Channel, ChannelPolicy, Channels
    from .spaces.health import HealthState
    from .spaces.service import Spaces
    from .spaces.spec import OnRestart, SpaceInfo, SpaceState
    from .templates.syntax import Template

__all__ = [
    "Actor",
    "ActorKind",
    "AuditEntry",
    "AuditKind",
    "CallResult",
    "Channel",
    "ChannelPolicy",
    "Channels",
    "Client",
    "Config",
    "ConfigError",
    "ConfigResult",
    "Conflict",
    "DeliveryFailed",
    "DeliveryResult",
    "DeliveryStatus",
    "Directive",
    "EmitReport",
    "Event",
    "EventError",
    "HealthState",
    "InvalidInput",
    "JsonRpcSink",
    "KnotError",
    "MethodFailed",
    "MethodInfo",
    "MethodSink",
    "Methods",
    "NotFound",
    "OnRestart",
    "Outcome",
    "Pattern",
    "PatternError",
    "PermissionDenied",
    "RecordingSink",
    "ReplayReport",
    "ReplayStatus",
    "ReplayedEvent",
    "Runtime",
    "RuntimeClosed",
    "RuntimeUnavailable",
    "ScriptFailed",
    "ScriptSink",
    "Sink",
    "SinkError",
    "SinkOrigin",
    "SinkSpec",
    "SinkStatus",
    "Space",
    "SpaceError",
    "SpaceInfo",
    "SpaceState",
    "Spaces",
    "StoreError",
    "StoreLocked",
    "SyncRuntime",
    "Template",
    "TemplateError",
    "WebhookSink",
    "load_config",
    "load_ipython_extension",
    "parse_config",
    "parse_patterns",
    "unload_ipython_extension",
]
__version__ = "0.1.0"


# The public names, imported on first use (PEP 562): `import knot` stays cheap, so the `knot`
# command can catch a Ctrl-C while the runtime is still being imported (and a client command
# does not import the whole runtime to send one request).
_EXPORTS: dict[str, str] = {
    "Actor": "._events",
    "ActorKind": "._events",
    "AuditEntry": "._audit",
    "AuditKind": "._audit",
    "CallResult": ".methods.calls",
    "Channel": ".sky.channels",
    "ChannelPolicy": ".sky.channels",
    "Channels": ".sky.channels",
    "Client": "._client",
    "Config": "._config",
    "ConfigError": "._exceptions",
    "ConfigResult": "._config",
    "Conflict": "._exceptions",
    "DeliveryFailed": "._exceptions",
    "DeliveryResult": ".sinks",
    "DeliveryStatus": ".engine.outcomes",
    "Directive": ".sinks",
    "EmitReport": ".engine.outcomes",
    "Event": "._events",
    "EventError": "._exceptions",
    "HealthState": ".spaces.health",
    "InvalidInput": "._exceptions",
    "JsonRpcSink": ".sinks",
    "KnotError": "._exceptions",
    "MethodFailed": "._exceptions",
    "MethodInfo": ".methods.service",
    "MethodSink": ".sinks",
    "Methods": ".methods.service",
    "NotFound": "._exceptions",
    "OnRestart": ".spaces.spec",
    "Outcome": ".engine.outcomes",
    "Pattern": "._patterns",
    "PatternError": "._exceptions",
    "PermissionDenied": "._exceptions",
    "RecordingSink": ".sinks",
    "ReplayReport": "._replay",
    "ReplayStatus": "._replay",
    "ReplayedEvent": "._replay",
    "Runtime": "._runtime",
    "RuntimeClosed": "._exceptions",
    "RuntimeUnavailable": "._exceptions",
    "ScriptFailed": "._exceptions",
    "ScriptSink": ".sinks",
    "Sink": ".sinks",
    "SinkError": "._exceptions",
    "SinkOrigin": "._sinkspec",
    "SinkSpec": "._sinkspec",
    "SinkStatus": ".engine.registry",
    "Space": "._events",
    "SpaceError": "._exceptions",
    "SpaceInfo": ".spaces.spec",
    "SpaceState": ".spaces.spec",
    "Spaces": ".spaces.service",
    "StoreError": "._exceptions",
    "StoreLocked": "._exceptions",
    "SyncRuntime": "._sync",
    "Template": ".templates.syntax",
    "TemplateError": "._exceptions",
    "WebhookSink": ".sinks",
    "load_config": "._config",
    "parse_config": "._config",
    "parse_patterns": "._patterns",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'knot' has no attribute {name!r}")
    # The builtin import (level 1: relative to this package), not importlib's: that one
    # alone costs milliseconds more at every start.
    value = getattr(__import__(module[1:], globals(), None, [name], 1), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


def load_ipython_extension(ip: InteractiveShell) -> None:
    """`%load_ext knot` (IPython looks for this hook on the package); see knot.ipython."""
    from .ipython import load_ipython_extension

    load_ipython_extension(ip)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    from .ipython import unload_ipython_extension

    unload_ipython_extension(ip)
