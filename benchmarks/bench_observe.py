"""Issue 16 targets: what seeing inside costs the journaled pipeline.

Four configurations of the same runtime, measured alternately in one run (so drift in the
machine's speed hits them alike), each best of ROUNDS:

- baseline: no listener on the hooks and no tracer (what a runtime without `/metrics` pays:
  attempts are recorded either way);
- metrics on: `knot.observe.metrics.Metrics` attached, as `knot serve` has it;
- tracing on, every event sampled: OpenTelemetry's SDK with ALWAYS_ON and a batch processor
  whose exporter drops the spans (the cost of making them, not of shipping them);
- tracing off: the OTEL_* environment asks for nothing, so `enable_from_env` leaves the tracer
  slot empty (the same path as the baseline: its difference is the noise of the measurement).

Throughput is events/s from the first emit until the sinks have everything (100 concurrent
emitters, one recording sink and ten); the ratios are each configuration over the baseline.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import uvloop
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased

from knot import RecordingSink, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import Config, DeliverySettings
from knot.observe.metrics import Metrics
from knot.observe.tracing import enable_from_env, enable_tracing

from .common import Result

PRODUCERS = 100
ROUNDS = 5


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _metrics(rt: Runtime) -> Callable[[], None]:
    metrics = Metrics(rt.hooks, delivery=lambda: rt.delivery).attach()
    return metrics.detach


def _tracing(rt: Runtime) -> Callable[[], None]:
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=100_000))
    enable_tracing(rt, provider)
    return provider.shutdown


def _sampled(rt: Runtime) -> Callable[[], None]:
    """One event in a hundred traced (OTEL_TRACES_SAMPLER=parentbased_traceidratio, 0.01)."""
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.01)))
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=100_000))
    enable_tracing(rt, provider)
    return provider.shutdown


def _tracing_off(rt: Runtime) -> Callable[[], None]:
    assert enable_from_env(rt) is None, "unset the OTEL_* variables to measure tracing off"
    return lambda: None


SETUPS: dict[str, Callable[[Runtime], Callable[[], None]] | None] = {
    "baseline": None,
    "metrics on": _metrics,
    "tracing on (all sampled)": _tracing,
    "tracing on (1% sampled)": _sampled,
    "tracing off": _tracing_off,
}


async def _pipeline(
    project: Path, events: int, sinks: int, setup: Callable[[Runtime], Callable[[], None]] | None
) -> tuple[float, float]:
    """Events/s, wall clock and per CPU second (both threads: the loop and the writer)."""
    config = Config(delivery=DeliverySettings(queue_size=1000))
    async with Runtime(project, config=config) as rt:
        finish = setup(rt) if setup is not None else (lambda: None)
        for i in range(sinks):
            spec = SinkSpec(f"s{i}", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
            await rt.add_sink(RecordingSink(spec))
        per_producer = events // PRODUCERS

        async def producer() -> None:
            for i in range(per_producer):
                await rt.emit("bench.tick", {"i": i})

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await rt.wait_idle(timeout=300)
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        finish()
        total = per_producer * PRODUCERS
        assert all(s.delivered == total for s in rt.sinks()), "a sink missed events"
    return total / elapsed, total / used


def run(quick: bool = False) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for sinks, events in ((1, 20_000 if quick else 50_000), (10, 5_000 if quick else 20_000)):
            best: dict[str, tuple[float, float]] = dict.fromkeys(SETUPS, (0.0, 0.0))
            for round_ in range(2 if quick else ROUNDS):
                for name, setup in SETUPS.items():
                    project = Path(tmp) / f"{sinks}-{round_}-{len(name)}"
                    wall, cpu = uvloop.run(_pipeline(project, events, sinks, setup))
                    best[name] = (max(best[name][0], wall), max(best[name][1], cpu))
            base_wall, base_cpu = best["baseline"]
            results.append(
                Result(
                    f"journaled → {sinks} recording sink{'s' if sinks > 1 else ''}, baseline",
                    base_wall,
                    "events/s",
                    note=f"{base_cpu:,.0f} events per CPU second",
                )
            )
            targets = {
                "metrics on": ">= 0.95x",
                "tracing on (all sampled)": ">= 0.75x",
                "tracing on (1% sampled)": "",
                "tracing off": ">= 0.98x",
            }
            for name, target in targets.items():
                wall, cpu = best[name]
                results.append(
                    Result(
                        f"  {name}",
                        wall,
                        "events/s",
                        target,
                        baseline=base_wall,
                        baseline_name="baseline",
                        note=f"per CPU second {cpu / base_cpu:.3f}x the baseline's",
                    )
                )
    return results
