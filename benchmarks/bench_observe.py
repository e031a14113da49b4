"""Issue 16 targets: what seeing inside costs the journaled pipeline.

Five configurations of the same runtime, measured alternately in one run (so drift in the
machine's speed hits them alike), ROUNDS rounds; each figure is the median, and each ratio the
median of the rounds' ratios to that round's baseline:

- baseline: no listener on the hooks and no tracer (what a runtime without `/metrics` pays:
  attempts are recorded either way);
- metrics on: `knot.observe.metrics.Metrics` attached, as `knot serve` has it;
- tracing on, every event sampled: what `knot serve` does with OTEL_TRACES_EXPORTER=none and
  OTEL_TRACES_SAMPLER=always_on: contexts in the runtime, records piped to the exporter
  process, which builds every span and hands it to no exporter (the cost of making spans,
  not of shipping them). The note says how many of the spans due it built, what it dropped,
  and the exporter process's own CPU per event;
- tracing on, 1% sampled (parentbased_traceidratio 0.01);
- tracing off: the OTEL_* environment asks for nothing, so `enable_from_env` leaves the tracer
  slot empty (the same path as the baseline: its difference is the noise of the measurement).

Throughput is events/s from the first emit until the sinks have everything (100 concurrent
emitters, one recording sink and ten), CPU the runtime process's (both its threads).
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from knot import RecordingSink, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import Config, DeliverySettings
from knot.observe.exporter import ExporterProcess
from knot.observe.metrics import Metrics
from knot.observe.tracing import OtelTracer, enable_from_env

from .common import Result, environ

PRODUCERS = 100
ROUNDS = 5
Finish = Callable[[], Awaitable[dict[str, int]]]


async def _nothing() -> dict[str, int]:
    return {}


def _metrics(rt: Runtime) -> Finish:
    metrics = Metrics(rt.hooks, delivery=lambda: rt.delivery).attach()

    async def finish() -> dict[str, int]:
        metrics.detach()
        return {}

    return finish


def _traced(sampler: str, arg: str = "") -> Callable[[Runtime], Finish]:
    def setup(rt: Runtime) -> Finish:
        variables = {"OTEL_TRACES_EXPORTER": "none", "OTEL_TRACES_SAMPLER": sampler}
        with environ(variables | ({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {})):
            tracer = enable_from_env(rt)
        assert tracer is not None
        return tracer.close

    return setup


def _tracing_off(rt: Runtime) -> Finish:
    assert enable_from_env(rt) is None, "unset the OTEL_* variables to measure tracing off"
    return _nothing


SETUPS: dict[str, Callable[[Runtime], Finish] | None] = {
    "baseline": None,
    "metrics on": _metrics,
    "tracing on (all sampled)": _traced("always_on"),
    "tracing on (1% sampled)": _traced("parentbased_traceidratio", "0.01"),
    "tracing off": _tracing_off,
}
TARGETS = {
    "metrics on": ">= 0.95x",
    "tracing on (all sampled)": ">= 0.75x",
    "tracing on (1% sampled)": "",
    "tracing off": ">= 0.98x",
}


def _cpu_of(pid: int) -> float:
    """CPU seconds a running process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def _pipeline(
    project: Path, events: int, sinks: int, setup: Callable[[Runtime], Finish] | None
) -> tuple[float, float, dict[str, float]]:
    """Events/s, wall clock and per CPU second of the runtime process (the loop and the
    writer), and what tracing counted (spans due and built, records dropped, exporter CPU)."""
    config = Config(delivery=DeliverySettings(queue_size=1000))
    children = _children_cpu()
    async with Runtime(project, config=config) as rt:
        finish = setup(rt) if setup is not None else _nothing
        for i in range(sinks):
            spec = SinkSpec(f"s{i}", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
            await rt.add_sink(RecordingSink(spec))
        tracer = rt.hooks.tracer
        if isinstance(tracer, OtelTracer) and isinstance(tracer.out, ExporterProcess):
            assert await tracer.out.ready()  # its start-up (importing the SDK) is paid once
            children += _cpu_of(tracer.out.process.pid)
        per_producer = events // PRODUCERS

        async def producer() -> None:
            for i in range(per_producer):
                await rt.emit("bench.tick", {"i": i})

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await rt.wait_idle(timeout=300)
        elapsed, used = time.perf_counter() - started, time.process_time() - cpu
        total = per_producer * PRODUCERS
        assert all(s.delivered == total for s in rt.sinks()), "a sink missed events"
    counts: dict[str, float] = dict(await finish())  # after the last attempts were recorded
    counts["due"] = total * (1 + sinks)
    counts["exporter_cpu"] = _children_cpu() - children
    return total / elapsed, total / used, counts


def _note(cpu_ratio: float, counts: list[dict[str, float]], events: int) -> str:
    note = f"per CPU second {cpu_ratio:.3f}x the baseline's"
    if counts and "built" in counts[0]:
        built = statistics.median(c["built"] / c["due"] for c in counts)
        dropped = statistics.median(c["dropped"] / max(1, c["sent"] + c["dropped"]) for c in counts)
        exporter = statistics.median(c["exporter_cpu"] for c in counts) / events * 1e6
        note += (
            f"; exporter built {built:.1%} of the spans due, {dropped:.1%} of records dropped, "
            f"its CPU {exporter:.1f} µs/event"
        )
    return note


def run(quick: bool = False) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for sinks, events in ((1, 20_000 if quick else 50_000), (10, 5_000 if quick else 20_000)):
            runs: dict[str, list[tuple[float, float, dict[str, float]]]] = {n: [] for n in SETUPS}
            load = os.getloadavg()[0]
            for round_ in range(2 if quick else ROUNDS):
                for name, setup in SETUPS.items():
                    project = Path(tmp) / f"{sinks}-{round_}-{len(name)}"
                    runs[name].append(uvloop.run(_pipeline(project, events, sinks, setup)))
            load = max(load, os.getloadavg()[0])
            base = runs["baseline"]
            results.append(
                Result(
                    f"journaled → {sinks} recording sink{'s' if sinks > 1 else ''}, baseline",
                    statistics.median(r[0] for r in base),
                    "events/s",
                    note=f"{statistics.median(r[1] for r in base):,.0f} events per CPU second"
                    f" (median of {len(base)}; load average up to {load:.1f})",
                )
            )
            for name, target in TARGETS.items():
                pairs = list(zip(runs[name], base, strict=True))
                ratio = statistics.median(r[0] / b[0] for r, b in pairs)
                cpu = statistics.median(r[1] / b[1] for r, b in pairs)
                wall = statistics.median(r[0] for r in runs[name])
                results.append(
                    Result(
                        f"  {name}",
                        wall,
                        "events/s",
                        target,
                        # The median ratio of the rounds, shown against the median baseline.
                        baseline=wall / ratio,
                        baseline_name="baseline",
                        note=_note(cpu, [r[2] for r in runs[name]], events),
                    )
                )
    return results
