"""Sink types. Each is one class behind the interface in `base.py`."""

from __future__ import annotations

from .._exceptions import SinkError
from .._sinkspec import SinkSpec
from .base import BatchResult, DeliveryResult, Directive, ResultCallback, Sink, SinkHost
from .jsonrpc import JsonRpcSink
from .method import MethodSink
from .recording import RecordingSink
from .script import ScriptSink
from .webhook import WebhookSink

__all__ = [
    "SINK_TYPES",
    "BatchResult",
    "DeliveryResult",
    "Directive",
    "JsonRpcSink",
    "MethodSink",
    "RecordingSink",
    "ResultCallback",
    "ScriptSink",
    "Sink",
    "SinkHost",
    "WebhookSink",
    "build_sink",
]

# Method sinks are made by the method scripts' part, never from a definition: not listed here.
SINK_TYPES: dict[str, type[Sink]] = {
    JsonRpcSink.type: JsonRpcSink,
    RecordingSink.type: RecordingSink,
    ScriptSink.type: ScriptSink,
    WebhookSink.type: WebhookSink,
}


def build_sink(spec: SinkSpec) -> Sink:
    """Make the sink a spec describes; raise SinkError listing every problem."""
    cls = SINK_TYPES.get(spec.type)
    if cls is None:
        known = ", ".join(sorted(SINK_TYPES))
        raise SinkError(
            f"The sink {spec.name!r} has the unknown type {spec.type!r}; known types: {known}.",
            sink=spec.name,
        )
    problems = cls.validate(spec)
    if problems:
        raise SinkError(
            f"The sink {spec.name!r} is not valid: " + " ".join(problems), sink=spec.name
        )
    return cls(spec)
