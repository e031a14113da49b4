"""Issue 5 targets: calling a method script's method, and events delivered to a subscribed one.

- in-process call: `runtime.methods.call()` to a trivial method, one call at a time (p50, the
  target is <= 300 us); baseline: a bare round trip of one JSON line through the pipes of a
  trivial child process, on the same event loop.
- POST /json-rpc at one connection (p50) and at 16 (req/s), `knot serve` pinned to one core;
  baseline: a bare starlette app echoing the params (benchmarks/bare_app.py), the same way.
- subscribed method: events/s from the first emit until the method has been called for every
  event (in order; queued events go to the worker up to 64 per round trip); baseline: the same
  pipeline into an in-process sink.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from knot import Event, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import Config, DeliverySettings
from knot.sinks import DeliveryResult, Sink

from .common import Result, ServerProcess, percentile
from .loadgen import LoadResult, load

PRODUCERS = 100
SCRIPT = """\
import knot.methods

seen = {"n": 0}

@knot.methods.method
def echo(params):
    return params

@knot.methods.method(events=["custom.bench.*"])
def tick(params):
    seen["n"] = seen["n"] + 1

@knot.methods.method
def ticks(params):
    return seen["n"]
"""
CHILD = "import sys\nfor line in sys.stdin:\n    sys.stdout.write(line)\n    sys.stdout.flush()\n"


def _project(root: Path) -> Path:
    methods = root / "scripts" / "methods"
    methods.mkdir(parents=True, exist_ok=True)
    (methods / "bench.py").write_text(SCRIPT)
    return root


def _config() -> Config:
    return Config(delivery=DeliverySettings(queue_size=100_000))


async def _in_process(project: Path, calls: int) -> list[float]:
    """Seconds per `runtime.methods.call` to a trivial method, one at a time."""
    samples: list[float] = []
    async with Runtime(_project(project), config=_config()) as rt:
        for i in range(200):  # warm up
            await rt.methods.call("bench", "echo", {"i": i})
        for i in range(calls):
            started = time.perf_counter()
            result = await rt.methods.call("bench", "echo", {"i": i})
            samples.append(time.perf_counter() - started)
            assert result == {"i": i}
    return samples


async def _pipe(calls: int) -> list[float]:
    """Seconds per JSON line echoed by a trivial child process over its pipes."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    samples: list[float] = []
    try:
        for i in range(calls + 200):
            started = time.perf_counter()
            line = json.dumps({"jsonrpc": "2.0", "id": i, "method": "echo", "params": {"i": i}})
            proc.stdin.write(line.encode() + b"\n")
            answer = json.loads(await proc.stdout.readline())
            if i >= 200:
                samples.append(time.perf_counter() - started)
            assert answer["id"] == i
    finally:
        proc.stdin.close()
        await proc.wait()
    return samples


class PlainSink(Sink):
    type = "plain"

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        self.received = 0

    async def deliver(self, event: Event) -> DeliveryResult | None:
        self.received += 1
        return None


async def _subscribed(project: Path, events: int, *, method: bool) -> float:
    """Events/s until the subscriber (the method, or an in-process sink) has every event."""
    await asyncio.to_thread(project.mkdir, parents=True, exist_ok=True)
    async with Runtime(_project(project) if method else project, config=_config()) as rt:
        plain = None
        if not method:
            spec = SinkSpec("plain", "plain", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
            plain = PlainSink(spec)
            await rt.add_sink(plain)
        per_producer = events // PRODUCERS

        async def producer() -> None:
            for i in range(per_producer):
                await rt.emit("bench.tick", {"i": i})

        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await rt.wait_idle(timeout=600)
        elapsed = time.perf_counter() - started
        total = per_producer * PRODUCERS
        if method:
            assert await rt.methods.call("bench", "ticks") == total, "the method missed events"
        else:
            assert plain is not None
            assert plain.received == total
        assert all(s.dropped == 0 and s.failed == 0 for s in rt.sinks())
        return total / elapsed


def _http(quick: bool) -> list[Result]:
    """`knot serve` and the bare app, each pinned to core 0, loaded alternately from core 1."""
    rounds = 3 if quick else 5
    seconds = 1.0 if quick else 2.0
    body = json.dumps(
        {"jsonrpc": "2.0", "method": "bench.echo", "params": {"n": 1, "s": "hi"}, "id": 1}
    ).encode()
    ours: dict[int, list[LoadResult]] = {1: [], 16: []}
    bare: dict[int, list[LoadResult]] = {1: [], 16: []}
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp))
        knot_cmd = [sys.executable, "-m", "knot.cli", "serve", "--project", str(project)]
        servers = {
            "ours": ServerProcess([*knot_cmd, "--port", "0", "--quiet"]),
            "bare": ServerProcess([sys.executable, "-m", "benchmarks.bare_app"]),
        }
        try:
            for server in servers.values():
                load(server.url, path="/json-rpc", body=body, seconds=0.5)  # warm up
            for _ in range(rounds):
                for connections in (1, 16):
                    for name, results in (("ours", ours), ("bare", bare)):
                        results[connections].append(
                            load(
                                servers[name].url,
                                path="/json-rpc",
                                body=body,
                                connections=connections,
                                seconds=seconds,
                            )
                        )
        finally:
            for server in servers.values():
                server.stop()
    assert all(r.errors == 0 for r in ours[1] + ours[16]), "some calls to knot serve failed"
    one = sorted(ours[1], key=lambda r: r.p50_ms)[len(ours[1]) // 2]
    one_bare = statistics.median(r.p50_ms for r in bare[1])
    many = sorted(ours[16], key=lambda r: r.rps)[len(ours[16]) // 2]
    many_bare = statistics.median(r.rps for r in bare[16])
    return [
        Result(
            "POST /json-rpc round trip, 1 connection, p50",
            one.p50_ms * 1000,
            "us",
            baseline=one_bare * 1000,
            baseline_name="bare starlette echo",
            note=f"p99 {one.p99_ms * 1000:,.0f} us (median of {rounds} rounds)",
        ),
        Result(
            "POST /json-rpc calls/s, 16 connections",
            many.rps,
            "req/s",
            baseline=many_bare,
            baseline_name="bare starlette echo",
            note=f"p50 {many.p50_ms:.2f} ms, p99 {many.p99_ms:.2f} ms (server on 1 core)",
        ),
    ]


def run(quick: bool) -> list[Result]:
    calls = 2_000 if quick else 20_000
    events = 4_000 if quick else 40_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        in_process = uvloop.run(_in_process(root / "calls", calls))
        pipe = uvloop.run(_pipe(calls))
        subscribed = uvloop.run(_subscribed(root / "sub", events, method=True))
        plain = uvloop.run(_subscribed(root / "plain", events, method=False))
    p50 = percentile(in_process, 50) * 1e6
    results = [
        Result(
            "runtime.methods.call() round trip, p50",
            p50,
            "us",
            "<= 300",
            baseline=percentile(pipe, 50) * 1e6,
            baseline_name="bare pipe round trip",
            note=f"p99 {percentile(in_process, 99) * 1e6:,.0f} us",
        ),
        Result(
            "events delivered to a subscribed method",
            subscribed,
            "events/s",
            baseline=plain,
            baseline_name="in-process sink",
            note="in order, up to 64 calls per worker round trip",
        ),
    ]
    results.extend(_http(quick))
    return results
