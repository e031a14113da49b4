"""Method sinks: a subscribed method (one declared with `events=[...]`) as a sink of the engine.

Each method with `events` in `scripts/methods/<script>.py` is served as a sink named
`<script>.<method>` (with a dot, which no user-defined sink name can contain), so its events
are ordered, bounded, retried and audited like any other sink's. Delivering an event is one
JSON-RPC call whose params are the event rendered by the first matching json-rpc sink named in
the method's `event_sinks`, else by the default template. The method scripts' runtime part
(`knot._methods`) creates these sinks; they cannot be defined in knot.toml or the API, so the
type is not in SINK_TYPES.
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar, Protocol

from .._audit import AuditKind
from .._events import Event
from .._sinkspec import SinkSpec
from ..types import JSONObject
from .base import DeliveryResult, Sink
from .jsonrpc import JsonRpcSink, default_params
from .script import OUTPUT_KEPT

__all__ = ["MethodHost", "MethodSink"]


class MethodHost(Protocol):
    """What a method sink needs from the method scripts' part."""

    def formatter(self, name: str) -> JsonRpcSink | None:
        """The json-rpc sink called `name`, if there is one."""
        ...

    async def deliver(self, sink: MethodSink, event: Event, params: str) -> DeliveryResult:
        """Call the sink's method with `params` (JSON text) for `event`; DeliveryFailed if not."""
        ...


class MethodSink(Sink):
    type: ClassVar[str] = "method"
    failure_kind: ClassVar[AuditKind] = AuditKind.METHOD_FAILED

    def __init__(self, spec: SinkSpec, *, methods: MethodHost) -> None:
        super().__init__(spec)
        self.methods = methods
        self.script = str(spec.options["script"])
        self.method = str(spec.options["method"])
        self.event_sinks = tuple(str(n) for n in spec.options.get("event_sinks") or ())
        self.recent: deque[str] = deque(maxlen=OUTPUT_KEPT)

    def params(self, event: Event) -> str:
        for name in self.event_sinks:
            formatter = self.methods.formatter(name)
            if formatter is not None and formatter.accepts(event):
                return formatter.params(event)
        return default_params(event)

    async def deliver(self, event: Event) -> DeliveryResult | None:
        result = await self.methods.deliver(self, event, self.params(event))
        self.recent.extend(result.output)
        return result

    def status(self) -> JSONObject:
        return {"output": list(self.recent)}
