"""knot-runtime: a local runtime for Knot-style events.

async with knot.Runtime("my-project") as runtime:
    await runtime.emit("myapp.deployed", {"version": "1.2.3"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
from ._runtime import Runtime
from ._sinkspec import SinkOrigin, SinkSpec
from ._sync import SyncRuntime
from .engine.outcomes import DeliveryStatus, EmitReport, Outcome
from .engine.registry import SinkStatus
from .methods.service import CallResult, MethodInfo, Methods
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

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

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


def load_ipython_extension(ip: InteractiveShell) -> None:
    """`%load_ext knot` (IPython looks for this hook on the package); see knot.ipython."""
    from .ipython import load_ipython_extension

    load_ipython_extension(ip)


def unload_ipython_extension(ip: InteractiveShell) -> None:
    from .ipython import unload_ipython_extension

    unload_ipython_extension(ip)
