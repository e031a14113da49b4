"""OpenTelemetry tracing of the event path (the optional extra `knot-runtime[otel]`).

A span per ingest (an event raised, until its journal commit), per delivery attempt (a retry
links to the first attempt) and per method call. Context travels as W3C `traceparent`: an
ingress request's header is the ingest span's parent; the event carries its ingest span's
context (`Event.trace`, journaled), so its deliveries are children of it; an attempt's context
is what a webhook sends and what the events it raises continue.

No span is made on the event path. An SDK span costs more CPU than a whole journaled event, so
the runtime only gives each event its context (ids drawn in bulk), derives an attempt's context
where it is handed on (`attempt_key`: the event's ingest span id XOR a hash of sink and
number), and sends what it records anyway (each commit's events, each sink's batch of attempts
with their times, each method call) as records, one per commit or batch. Spans are built from
those records (`spans.SpanBuilder`), with their real times, in the exporter process that `knot
serve` starts (`exporter.py`), which drops rather than ever slowing delivery, or in-process for
a TracerProvider handed to `enable_tracing` (tests, embedding).

Sampling is decided here, from the configured sampler, when the context is made: parent-based
(the default) follows the sampled flag of the context an event continues; a trace's root is
decided by its trace id (ratio sampling as the specification defines it). An event sampled
out carries its context with flags 00, and nothing is recorded for it.

`knot serve` turns tracing on from the standard environment (`enable_from_env`): when
OTEL_TRACES_EXPORTER or an OTLP endpoint variable is set and OTEL_SDK_DISABLED is not true.
Off, the runtime's tracer slot is None and the event path pays one truth test per hook point.
"""

from __future__ import annotations

import logging
import marshal
import operator
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._env import otel_exporters_from_env
from .._events import Event
from .._exceptions import KnotError
from .._tracecontext import attempt_key, attempt_span_id, is_sampled, with_span
from ..engine.attempts import AttemptBatch
from ..engine.hooks import Hooks
from .exporter import ExporterProcess, SpanOut

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["OtelTracer", "disable_tracing", "enable_from_env", "enable_tracing"]

log = logging.getLogger("knot.tracing")
POOL = 512  # contexts drawn at once (one urandom call, formatted in one comprehension)
PARENTS_MAX = 100_000  # ingest parents waiting for their commit (a store failing)
# A commit's row of an event: (seq, id, trace, depth, ts, type), picked in C.
_ROW = operator.itemgetter(
    *(Event._fields.index(f) for f in ("seq", "id", "trace", "depth", "ts", "type"))
)


class _HasHooks(Protocol):
    @property
    def hooks(self) -> Hooks: ...


class Sampling:
    """A sampler's decisions, taken from the trace id as the specification defines them for
    the SDK's samplers (so a context is decided before anything is made)."""

    def __init__(self, sampler: Any) -> None:
        self.sampler = sampler
        self.parent_based = type(sampler).__name__ == "ParentBased" or hasattr(sampler, "_root")
        self.root = getattr(sampler, "_root", sampler) if self.parent_based else sampler
        decision = getattr(self.root, "_decision", None)  # a StaticSampler's
        self.always: bool | None = decision.is_sampled() if decision is not None else None
        bound = getattr(self.root, "bound", None)
        self.bound: int | None = bound if isinstance(bound, int) else None
        # Every root sampled: a commit's rows need no filtering here.
        self.every = self.always is True

    def decide(self, trace_id: str) -> bool:
        """Whether a trace (32 hex digits) without a sampled parent is sampled."""
        if self.bound is not None:  # TraceIdRatioBased: the low 64 bits under the bound
            return int(trace_id[16:], 16) < self.bound
        if self.always is not None:
            return self.always
        result = self.sampler.should_sample(None, int(trace_id, 16), "knot ingest")
        return bool(result.decision.is_sampled())


class OtelTracer:
    """The runtime's Tracer (engine/hooks.py): contexts now, records to `out` for spans later."""

    def __init__(self, sampler: Any, out: SpanOut, salt: str) -> None:
        self.sampling = Sampling(sampler)
        self.out = out
        self.salt = salt
        self._pool: list[str] = []  # fresh root contexts, decided
        self._parents: list[tuple[str, str]] = []  # (ingest span id, context it continues)
        self._unsubscribe: list[Callable[[], None]] = []
        self._keys: dict[tuple[str, int], int] = {}  # (sink, attempt) → its attempt_key

    def attach(self, hooks: Hooks) -> OtelTracer:
        self._unsubscribe = [hooks.on_journaled(self._journaled), hooks.on_attempt(self._attempts)]
        hooks.tracer = self
        return self

    def detach(self, hooks: Hooks) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if hooks.tracer is self:
            hooks.tracer = None

    async def close(self) -> dict[str, int]:
        """Stop sending; with an exporter process, wait for it to export what it has. The
        counts: records sent and dropped, spans built, attempts without their event."""
        return await self.out.close()

    # -- the Tracer protocol (on the event loop) -----------------------------------------------

    def ingest(self, trace: str) -> str:
        if not trace:
            pool = self._pool
            return pool.pop() if pool else self._draw()
        if self.sampling.parent_based:
            if not is_sampled(trace):
                return trace  # the caller's context goes on; no span
        elif not self.sampling.decide(trace[3:35]):
            return trace
        span = self._span_id()
        self._parents.append((span, trace))
        if len(self._parents) > PARENTS_MAX:
            del self._parents[: PARENTS_MAX // 2]
        return with_span(trace, span, "01")

    def delivery(self, event: Event, sink: str, attempt: int) -> str:
        trace = event.trace
        if not is_sampled(trace):
            return trace
        key = self._keys.get((sink, attempt))
        if key is None:
            if len(self._keys) > 4096:
                self._keys.clear()
            key = self._keys[sink, attempt] = attempt_key(self.salt, sink, attempt)
        span = attempt_span_id(int(trace[36:52], 16), key)
        return with_span(trace, f"{span:016x}")

    def child(self, parent: str) -> str:
        if not parent:
            pool = self._pool
            return pool.pop() if pool else self._draw()
        if not is_sampled(parent):
            return parent
        return with_span(parent, self._span_id())

    def resumed(self, events: list[Event]) -> None:
        rows = [row for row in map(_ROW, events) if is_sampled(row[2])]
        if rows:
            self.out.send(marshal.dumps(("K", rows)))

    def called(
        self, method: str, span: str, parent: str, started: float, ended: float, error: str
    ) -> None:
        if is_sampled(span):
            self.out.send(marshal.dumps(("C", method, span, parent, started, ended, error)))

    # -- listeners (once per commit, once per batch of attempts) ------------------------------

    def _journaled(self, events: list[Event]) -> None:
        rows = list(map(_ROW, events))
        if not self.sampling.every:
            rows = [row for row in rows if is_sampled(row[2])]
        parents, self._parents = self._parents, []
        if rows or parents:
            self.out.send(marshal.dumps(("J", time.time(), rows, parents)))

    def _attempts(self, batch: AttemptBatch) -> None:
        records = [record[:8] for record in batch.records]
        seqs = batch.seqs.tobytes()
        self.out.send(
            marshal.dumps(("A", batch.sink, batch.started, batch.ended, batch.busy, seqs, records))
        )

    # -- ids ------------------------------------------------------------------------------------

    def _draw(self) -> str:
        """POOL new root contexts at once (ids from one urandom call), decided; one of them."""
        digits = os.urandom(24 * POOL).hex()
        spans = range(0, len(digits), 48)
        if self.sampling.every:
            pool = [f"00-{digits[i : i + 32]}-{digits[i + 32 : i + 48]}-01" for i in spans]
        else:
            decide = self.sampling.decide
            pool = [
                f"00-{digits[i : i + 32]}-{digits[i + 32 : i + 48]}-"
                f"{'01' if decide(digits[i : i + 32]) else '00'}"
                for i in spans
            ]
        self._pool = pool
        return pool.pop()

    def _span_id(self) -> str:
        pool = self._pool
        return (pool.pop() if pool else self._draw())[36:52]


class _InProcess(SpanOut):
    """Records built into spans at once, in this process (a provider handed to us)."""

    def __init__(self, provider: TracerProvider, salt: str) -> None:
        from .spans import SpanBuilder, processor_of

        self.builder = SpanBuilder(processor_of(provider), provider.resource, salt)

    def send(self, payload: bytes) -> None:
        self.builder.feed(payload)

    async def close(self) -> dict[str, int]:
        return {"built": self.builder.built, "unknown": self.builder.unknown}


def _salt() -> str:
    return os.urandom(8).hex()


def enable_tracing(runtime: _HasHooks, provider: TracerProvider | None = None) -> OtelTracer:
    """Trace `runtime` into `provider`, an SDK TracerProvider (default: OpenTelemetry's global
    one): its sampler decides, its span processors get the spans, built in this process."""
    try:
        from opentelemetry import trace
    except ImportError:
        raise KnotError("Tracing needs OpenTelemetry: pip install 'knot-runtime[otel]'.") from None
    chosen: Any = provider or trace.get_tracer_provider()
    if not hasattr(chosen, "_active_span_processor") or not hasattr(chosen, "sampler"):
        raise KnotError(
            f"Tracing needs an OpenTelemetry SDK TracerProvider, not {type(chosen).__name__}: "
            "pass one to enable_tracing, or set the OTEL_* variables for knot serve."
        )
    salt = _salt()
    return OtelTracer(chosen.sampler, _InProcess(chosen, salt), salt).attach(runtime.hooks)


def disable_tracing(runtime: _HasHooks) -> None:
    tracer = runtime.hooks.tracer
    if isinstance(tracer, OtelTracer):
        tracer.detach(runtime.hooks)
    runtime.hooks.tracer = None


def enable_from_env(runtime: _HasHooks) -> OtelTracer | None:
    """Tracing as the OTEL_* environment asks (None: it does not), its spans built and
    exported by an exporter process (see exporter.py); `await tracer.close()` at the end
    exports the rest."""
    exporters = otel_exporters_from_env()
    if exporters is None:
        return None
    try:
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    except ImportError:
        log.warning(
            "OTEL_* variables ask for tracing, but OpenTelemetry is not installed: "
            "pip install 'knot-runtime[otel]'; tracing stays off"
        )
        return None
    sampler = SdkProvider(shutdown_on_exit=False).sampler  # as OTEL_TRACES_SAMPLER(_ARG) say
    salt = _salt()
    out = ExporterProcess(salt)
    log.info("tracing with OpenTelemetry (exporters: %s)", ", ".join(exporters))
    return OtelTracer(sampler, out, salt).attach(runtime.hooks)
