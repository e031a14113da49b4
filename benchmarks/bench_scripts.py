"""Issue 3 targets: a trivial script sink in the journaled pipeline, and the sandbox's cost.

- pipeline: events/s from the first emit until a script sink (sandboxed, in a worker process)
  has run on every event; the same-run baseline is the same pipeline with the same function as
  an in-process Python sink, unsandboxed. The difference per event is the sandbox's overhead.
- where the overhead goes: the script run by RestrictedPython in-process (guards only) and the
  same function called plainly, per event, outside the pipeline.
- worker start: a fresh sandbox worker, from spawn to ready.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import uvloop

from knot import Event, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import Config, DeliverySettings, ScriptSettings
from knot.sandbox.process import WorkerProcess
from knot.sandbox.worker.runner import ScriptRunner
from knot.scripts import load_script
from knot.sinks import DeliveryResult, Sink

from .common import Result

PRODUCERS = 100
SCRIPT = (
    "# events: bench.*, custom.bench.*\n"
    "import knot.event\n"
    "n = knot.event.get_int('i')\n"
    "if n < 0:\n"
    "    print('negative', n)\n"
)


def trivial(data: dict[str, object]) -> None:
    """The script's body as a plain function: read a field, compare it."""
    n = data.get("i", 0)
    if isinstance(n, int) and n < 0:
        print("negative", n)


class PlainSink(Sink):
    """The same work, unsandboxed, in the runtime's own process."""

    type = "plain"

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.received = 0

    async def deliver(self, event: Event) -> DeliveryResult | None:
        trivial(event.data)
        self.received += 1
        return None


def _config() -> Config:
    return Config(
        delivery=DeliverySettings(queue_size=100_000),  # the sink is slower than emit: no drops
        scripts=ScriptSettings(timeout=5.0, memory_mb=256),
    )


def _prepare(project: Path) -> Path:
    """A project folder holding the trivial script."""
    project.mkdir(parents=True, exist_ok=True)
    path = project / "trivial.py"
    path.write_text(SCRIPT)
    return path


async def _pipeline(project: Path, events: int, *, sandboxed: bool) -> float:
    """Events/s through emit → journal → route → sink, until the sink has run on all."""
    script = await asyncio.to_thread(_prepare, project)
    async with Runtime(project, config=_config()) as rt:
        if sandboxed:
            spec = load_script(script).spec
            assert spec is not None
            await rt.add_sink(spec)
            # Let the pool's warm spare come up, as it would long before the first event.
            await rt.emit_and_wait("bench.warm", {"i": 1})
        else:
            spec = SinkSpec("plain", "plain", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
            await rt.add_sink(PlainSink(spec))
        name = spec.name
        per_producer = events // PRODUCERS

        async def producer() -> None:
            for i in range(per_producer):
                await rt.emit("bench.tick", {"i": i})

        before = next(s.delivered for s in rt.sinks() if s.name == name)
        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await rt.wait_idle(timeout=600)
        elapsed = time.perf_counter() - started
        status = next(s for s in rt.sinks() if s.name == name)
        total = per_producer * PRODUCERS
        assert status.delivered - before == total, f"the sink missed events: {status}"
        assert status.failed == 0
        assert status.dropped == 0
        return total / elapsed


def _per_call(events: int) -> tuple[float, float]:
    """Seconds per event: the script under RestrictedPython in-process, and the plain function."""
    runner = ScriptRunner()
    assert runner.load("trivial", "h", SCRIPT, "trivial.py") == ()
    event = {"id": "x", "type": "custom.bench.tick", "data": {"i": 5}}

    def emit(event_type: str, payload: str) -> str:
        return ""

    started = time.perf_counter()
    for _ in range(events):
        runner.run_one("trivial", event, emit, timeout=5.0)
    sandboxed = (time.perf_counter() - started) / events
    data: dict[str, object] = {"i": 5}
    started = time.perf_counter()
    for _ in range(events):
        trivial(data)
    plain = (time.perf_counter() - started) / events
    return sandboxed, plain


async def _worker_start(rounds: int) -> float:
    """Milliseconds from spawning a sandbox worker to its `ready` (median)."""
    samples: list[float] = []
    for _ in range(rounds):
        started = time.perf_counter()
        worker = await WorkerProcess.spawn(memory_mb=256)
        samples.append((time.perf_counter() - started) * 1000)
        await worker.close()
    samples.sort()
    return samples[len(samples) // 2]


def run(quick: bool) -> list[Result]:
    events = 4_000 if quick else 40_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain = uvloop.run(_pipeline(root / "plain", events, sandboxed=False))
        script = uvloop.run(_pipeline(root / "script", events, sandboxed=True))
    overhead_us = (1 / script - 1 / plain) * 1e6
    sandboxed_call, plain_call = _per_call(2_000 if quick else 20_000)
    start_ms = uvloop.run(_worker_start(3 if quick else 10))
    return [
        Result(
            "script sink, journaled pipeline",
            script,
            "events/s",
            ">= 20000",
            baseline=plain,
            baseline_name="in-process sink",
        ),
        Result(
            "sandbox overhead per event in the pipeline",
            overhead_us,
            "us",
            note="(1/script - 1/in-process)",
        ),
        Result(
            "RestrictedPython run per event, in-process",
            sandboxed_call * 1e6,
            "us",
            baseline=plain_call * 1e6,
            baseline_name="plain call",
        ),
        Result("sandbox worker start (spawn to ready)", start_ms, "ms", note="median"),
    ]
