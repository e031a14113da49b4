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
import random
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
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


class _PinnedIds:
    """The SDK tracer's id generator, handing out one trace id drawn (and sampled) before."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.pinned = 0

    def __getattr__(self, name: str) -> Any:  # what else the SDK asks (is_trace_id_random)
        return getattr(self.inner, name)

    def generate_span_id(self) -> int:
        return int(self.inner.generate_span_id())

    def generate_trace_id(self) -> int:
        if self.pinned:
            value, self.pinned = self.pinned, 0
            return value
        return int(self.inner.generate_trace_id())


class _HasHooks(Protocol):
    @property
    def hooks(self) -> Hooks: ...


def _traceparent(context: SpanContext) -> str:
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


class OtelTracer:
    """The runtime's Tracer (engine/hooks.py) over an OpenTelemetry TracerProvider."""

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace

        self.provider = provider
        self._trace = trace
        self._tracer = provider.get_tracer(INSTRUMENTATION)
        self._ingests: OrderedDict[str, Span] = OrderedDict()  # event id → open ingest span
        self._firsts: OrderedDict[tuple[str, str], SpanContext] = OrderedDict()
        self._current: dict[str, str] = {}  # event id → its attempt span in flight
        self._contexts: OrderedDict[str, Any] = OrderedDict()  # traceparent → its Context
        self._sampler = getattr(self._tracer, "sampler", None)  # the SDK's; None otherwise
        self._parent_based = type(self._sampler).__name__ == "ParentBased"
        self._root_sampler = getattr(self._sampler, "_root", None) if self._parent_based else None
        decision = getattr(self._root_sampler, "_decision", None)  # a StaticSampler's
        self._always: bool | None = decision.is_sampled() if decision is not None else None
        self._ids: _PinnedIds | None = None
        if self._sampler is not None and hasattr(self._tracer, "id_generator"):
            # This tracer object is ours alone (get_tracer makes a new one): a root's trace id
            # is drawn here, so the sampler can be asked before any span is made.
            self._ids = _PinnedIds(self._tracer.id_generator)
            self._tracer.id_generator = self._ids

    def _parent(self, traceparent: str) -> Any:
        """The OpenTelemetry context of a (valid) traceparent; built once per value (an
        event's deliveries to ten sinks share one), without the propagator's parsing."""
        if not traceparent:
            return None
        found = self._contexts.get(traceparent)
        if found is None:
            trace = self._trace
            context = trace.SpanContext(
                int(traceparent[3:35], 16),
                int(traceparent[36:52], 16),
                True,
                trace.TraceFlags(int(traceparent[53:55], 16)),
            )
            found = trace.set_span_in_context(trace.NonRecordingSpan(context))
            self._contexts[traceparent] = found
            if len(self._contexts) > 4096:
                self._contexts.popitem(last=False)
        return found

    def _sampled_out(self, traceparent: str) -> bool:
        """With a parent-based sampler (the default), a parent sampled out decides for its
        children: no span is made for them (an SDK span costs about 10 µs of CPU, more than
        a whole event here), and its context goes on as it is."""
        return self._parent_based and bool(traceparent) and not int(traceparent[-1], 16) & 1

    def _root_sampled_out(self) -> str:
        """For an event without a parent: a trace of its own, sampled out ("": sampled in,
        and its trace id is pinned for the span about to be made)."""
        if self._sampler is None or self._ids is None:
            return ""
        trace_id = random.getrandbits(128) or 1
        if self._root_decides(trace_id):
            self._ids.pinned = trace_id
            return ""
        return f"00-{trace_id:032x}-{random.getrandbits(64) or 1:016x}-00"

    def _root_decides(self, trace_id: int) -> bool:
        """Whether a trace without a parent is sampled. The SDK's samplers for a root are
        asked through their context machinery (about 3 µs an event): the two the
        specification defines by the trace id alone are answered here the same way."""
        root = self._root_sampler
        bound = getattr(root, "bound", None)
        if isinstance(bound, int):  # TraceIdRatioBased: the low 64 bits under the bound
            return trace_id & 0xFFFFFFFFFFFFFFFF < bound
        if self._always is not None:  # ALWAYS_ON, ALWAYS_OFF
            return self._always
        assert self._sampler is not None
        return bool(
            self._sampler.should_sample(None, trace_id, "knot ingest").decision.is_sampled()
        )

    def ingest(self, event: Event) -> Event:
        if event.trace:
            if self._sampled_out(event.trace):
                return event
        else:
            unsampled = self._root_sampled_out()
            if unsampled:
                return event.caused(event.root, unsampled)
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
        return event.caused(event.root, _traceparent(span.get_span_context()))

    def journaled(self, events: list[Event]) -> None:
        ingests = self._ingests
        if not ingests:
            return
        for event in events:
            span = ingests.pop(event.id, None)
            if span is not None:
                span.set_attribute("knot.event.seq", event.seq)
                span.end()

    def attempt(self, sink: str, event: Event, attempt: int) -> AbstractContextManager[None] | None:
        if self._sampled_out(event.trace):
            return None  # webhooks send, and children continue, the event's own context
        return self._attempt(sink, event, attempt)

    @contextmanager
    def _attempt(self, sink: str, event: Event, attempt: int) -> Iterator[None]:
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

    def call(self, method: str) -> AbstractContextManager[None] | None:
        if self._sampled_out(CURRENT_TRACE.get()):
            return None
        return self._call(method)

    @contextmanager
    def _call(self, method: str) -> Iterator[None]:
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
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "knot"}))  # unless named there
    provider = SdkProvider(resource=resource)
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
