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
from collections.abc import Sequence
from typing import ClassVar, Protocol

from .._audit import AuditKind
from .._events import Event
from .._exceptions import DeliveryFailed
from .._json import JSONObject
from .._sinkspec import SinkSpec
from .base import BatchResult, DeliveryResult, ResultCallback, Sink
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

    async def deliver_batch(
        self, sink: MethodSink, events: Sequence[Event], params: Sequence[str]
    ) -> BatchResult:
        """The calls for several events in one round trip, in order, up to the first failure."""
        ...


class MethodSink(Sink):
    type: ClassVar[str] = "method"
    failure_kind: ClassVar[AuditKind] = AuditKind.METHOD_FAILED
    max_batch = 64  # queued events go to the worker in one round trip (retries go one by one)

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

    async def deliver_batch(
        self, events: Sequence[Event], on_result: ResultCallback | None = None
    ) -> BatchResult:
        # The calls' results come back together at the end of the batch, so there is no
        # progress to report before it: `on_result` is not called.
        params: list[str] = []
        unformatted = ""  # why the event after the formatted ones could not be formatted
        for event in events:
            try:
                params.append(self.params(event))
            except DeliveryFailed as exc:
                unformatted = exc.reason
                break
        if not params:
            return BatchResult([], 0, unformatted)
        outcome = await self.methods.deliver_batch(self, events[: len(params)], params)
        for result in outcome.results:
            if result is not None:
                self.recent.extend(result.output)
        if outcome.failed_at is None and unformatted:
            return BatchResult(outcome.results, len(params), unformatted)
        return outcome

    def status(self) -> JSONObject:
        return {"output": list(self.recent)}
