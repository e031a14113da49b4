"""OpenTelemetry tracing of the event path (the optional extra `knot-runtime[otel]`).

A span per ingest (an event raised, until its journal commit), per delivery attempt (a retry
links to the first attempt) and per method call. Context travels as W3C `traceparent`: an
ingress request's header is the ingest span's parent; the event carries its ingest span's
context (`Event.trace`, journaled), so its deliveries are children of it; a delivery attempt's
span is current while the sink runs, so a webhook sends it and an event the sink raises
continues it.

`knot serve` turns tracing on from the standard environment (`enable_from_env`): tracing is on
when OTEL_TRACES_EXPORTER or an OTLP endpoint variable is set and OTEL_SDK_DISABLED is not
true; the SDK itself reads the rest (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_*).
In Python, `enable_tracing(runtime, provider)` takes any TracerProvider (tests hand it one with
the SDK's in-memory exporter). Off, the runtime's tracer slot is None and the event path pays
one truth test per hook point.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from .._env import otel_exporters_from_env
from .._events import Event
from .._exceptions import KnotError
from .._tracecontext import CURRENT_TRACE
from ..engine.hooks import Hooks

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, TracerProvider

__all__ = ["OtelTracer", "disable_tracing", "enable_from_env", "enable_tracing"]

log = logging.getLogger("knot.tracing")
INSTRUMENTATION = "knot-runtime"
MAX_OPEN = 100_000  # open ingest spans and first-attempt contexts kept (oldest go first)


class _HasHooks(Protocol):
    @property
    def hooks(self) -> Hooks: ...


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class OtelTracer:
    """The runtime's Tracer (engine/hooks.py) over an OpenTelemetry TracerProvider."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._trace = trace
        self._tracer = provider.get_tracer(INSTRUMENTATION)
        self._propagator = TraceContextTextMapPropagator()
        self._ingests: OrderedDict[str, Span] = OrderedDict()  # event id → open ingest span
        self._firsts: OrderedDict[tuple[str, str], SpanContext] = OrderedDict()
        self._current: dict[str, str] = {}  # event id → its attempt span in flight

    def _parent(self, traceparent: str) -> Any:
        return self._propagator.extract({"traceparent": traceparent}) if traceparent else None

    def ingest(self, event: Event) -> Event:
        span = self._tracer.start_span(
            "knot ingest",
            context=self._parent(event.trace),
            kind=self._trace.SpanKind.PRODUCER,
            attributes={
                "knot.event.id": event.id,
                "knot.event.type": event.type,
                "knot.event.depth": event.depth,
            },
        )
        self._ingests[event.id] = span
        if len(self._ingests) > MAX_OPEN:  # commits that never came (a store failing)
            self._ingests.popitem(last=False)[1].end()
        return event._replace(trace=_traceparent(span.get_span_context()))

    def journaled(self, events: list[Event]) -> None:
        ingests = self._ingests
        if not ingests:
            return
        for event in events:
            span = ingests.pop(event.id, None)
            if span is not None:
                span.set_attribute("knot.event.seq", event.seq)
                span.end()

    @contextmanager
    def attempt(self, sink: str, event: Event, attempt: int) -> Iterator[None]:
        key = (sink, event.id)
        first = self._firsts.get(key) if attempt > 1 else None
        links = [self._trace.Link(first)] if first is not None else None
        span = self._tracer.start_span(
            "knot deliver",
            context=self._parent(event.trace),
            kind=self._trace.SpanKind.CONSUMER,
            links=links,
            attributes={
                "knot.sink": sink,
                "knot.event.id": event.id,
                "knot.event.type": event.type,
                "knot.attempt": attempt,
            },
        )
        context = span.get_span_context()
        if attempt == 1:
            self._firsts[key] = context
            if len(self._firsts) > MAX_OPEN:
                self._firsts.popitem(last=False)
        traceparent = _traceparent(context)
        token = CURRENT_TRACE.set(traceparent)
        self._current[event.id] = traceparent
        try:
            yield
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)[:500]))
            raise
        else:
            self._firsts.pop(key, None)  # delivered: no retry will link to it
        finally:
            if self._current.get(event.id) == traceparent:
                del self._current[event.id]
            CURRENT_TRACE.reset(token)
            span.end()

    @contextmanager
    def call(self, method: str) -> Iterator[None]:
        span = self._tracer.start_span(
            "knot call",
            context=self._parent(CURRENT_TRACE.get()),
            kind=self._trace.SpanKind.SERVER,
            attributes={"knot.method": method},
        )
        token = CURRENT_TRACE.set(_traceparent(span.get_span_context()))
        try:
            yield
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, str(exc)[:500]))
            raise
        finally:
            CURRENT_TRACE.reset(token)
            span.end()

    def child_trace(self, parent: Event) -> str:
        return self._current.get(parent.id) or parent.trace


def enable_tracing(runtime: _HasHooks, provider: TracerProvider | None = None) -> OtelTracer:
    """Trace `runtime` through `provider` (default: OpenTelemetry's global provider)."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise KnotError("Tracing needs OpenTelemetry: pip install 'knot-runtime[otel]'.") from None
    tracer = OtelTracer(provider or trace.get_tracer_provider())
    runtime.hooks.tracer = tracer
    return tracer


def disable_tracing(runtime: _HasHooks) -> None:
    runtime.hooks.tracer = None


def enable_from_env(runtime: _HasHooks) -> OtelTracer | None:
    """Tracing as the OTEL_* environment asks (None: it does not). Spans are exported by a
    batch processor per exporter named in OTEL_TRACES_EXPORTER (`otlp`, the default when only
    an endpoint is set; `console`; `none`); shut the provider down to flush them."""
    exporters = otel_exporters_from_env()
    if exporters is None:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning(
            "OTEL_* variables ask for tracing, but OpenTelemetry is not installed: "
            "pip install 'knot-runtime[otel]'; tracing stays off"
        )
        return None
    provider = SdkProvider(resource=Resource.create({"service.name": "knot"}))
    for name in exporters:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name != "none":
            log.warning("OTEL_TRACES_EXPORTER names %r, which knot does not know; ignored", name)
    log.info("tracing with OpenTelemetry (exporters: %s)", ", ".join(exporters))
    return enable_tracing(runtime, provider)
