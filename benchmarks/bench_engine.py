"""Issue 2 targets: emit throughput, fan-out, emit → sink latency, and POST /event."""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import uvloop

from knot import Event, RecordingSink, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import Config, DeliverySettings

from .common import Result, ServerProcess, percentile
from .loadgen import LoadResult, load

PRODUCERS = 100


def _sink(name: str, events: str = "*") -> RecordingSink:
    spec = SinkSpec(name, "recording", parse_patterns(events), origin=SinkOrigin.BUILTIN)
    return RecordingSink(spec)


async def _pipeline(project: Path, events: int, sinks: int) -> float:
    """Events/s from the first emit until every sink has received every event."""
    config = Config(delivery=DeliverySettings(queue_size=1000))
    async with Runtime(project, config=config) as rt:
        receivers = [_sink(f"s{i}") for i in range(sinks)]
        for sink in receivers:
            await rt.add_sink(sink)
        per_producer = events // PRODUCERS

        async def producer() -> None:
            for i in range(per_producer):
                await rt.emit("bench.tick", {"i": i})

        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
        await rt.wait_idle(timeout=300)
        elapsed = time.perf_counter() - started
        total = per_producer * PRODUCERS
        assert all(s.received == total for s in receivers), "a sink missed events"
        assert all(st.dropped == 0 for st in rt.sinks())
        return total / elapsed


async def _bare(events: int) -> float:
    """The same hops with nothing behind them.

    Emitters queue an event and wait on a future; once per loop iteration the batch is handed
    to a writer thread, which hands it straight back (no SQLite); the loop then resolves the
    futures, routes each event into a sink's deque and a worker task awaits `deliver`.
    """
    loop = asyncio.get_running_loop()
    outbox: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
    handoff: list[list[tuple[dict[str, Any], asyncio.Future[bool]]]] = []
    cond = threading.Condition()
    queue: deque[dict[str, Any]] = deque()
    wake: list[asyncio.Future[None]] = []
    received = 0
    total = (events // PRODUCERS) * PRODUCERS
    scheduled = False
    stop = False

    async def deliver(event: dict[str, Any]) -> None:
        nonlocal received
        received += 1

    def committed(batch: list[tuple[dict[str, Any], asyncio.Future[bool]]]) -> None:
        for event, future in batch:
            queue.append(event)
            future.set_result(True)
        if wake and not wake[0].done():
            wake.pop().set_result(None)

    def writer() -> None:
        while True:
            with cond:
                while not handoff and not stop:
                    cond.wait()
                if stop:
                    return
                batches = handoff[:]
                handoff.clear()
            for batch in batches:
                loop.call_soon_threadsafe(committed, batch)

    def hand_over() -> None:
        nonlocal scheduled
        scheduled = False
        batch = outbox[:]
        outbox.clear()
        with cond:
            handoff.append(batch)
            cond.notify()

    async def emit(i: int) -> str:
        nonlocal scheduled
        future: asyncio.Future[bool] = loop.create_future()
        outbox.append(({"type": "custom.bench.tick", "data": {"i": i}}, future))
        if not scheduled:
            scheduled = True
            loop.call_soon(hand_over)
        await future
        return "id"

    async def worker() -> None:
        while True:
            while queue:
                await deliver(queue.popleft())
            if received >= total:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            wake.append(waiter)
            await waiter

    async def producer() -> None:
        for i in range(events // PRODUCERS):
            await emit(i)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    task = asyncio.create_task(worker())
    started = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    await task
    elapsed = time.perf_counter() - started
    with cond:
        stop = True
        cond.notify()
    thread.join()
    return total / elapsed


async def _latency(project: Path, rate: int, seconds: float) -> list[float]:
    """Emit at a steady `rate`; return emit-call → sink-start delays in ms."""
    starts: dict[str, float] = {}
    delays: list[float] = []

    class Timing(RecordingSink):
        async def deliver(self, event: Event) -> None:
            delays.append((time.perf_counter() - starts[event.data["k"]]) * 1000)

    async with Runtime(project) as rt:
        spec = SinkSpec("timing", "recording", parse_patterns("*"), origin=SinkOrigin.BUILTIN)
        await rt.add_sink(Timing(spec))
        interval = 1 / rate
        count = int(rate * seconds)
        t0 = time.perf_counter()
        for i in range(count):
            target = t0 + i * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = str(i)
            starts[key] = time.perf_counter()
            await rt.emit("bench.latency", {"k": key})
        await rt.wait_idle()
    return delays


def _http(quick: bool) -> list[Result]:
    """Our server and a bare app, each pinned to core 0, loaded alternately from core 1.

    Rounds alternate (ours, bare, ours, bare, ...) and the median of each side is compared, so
    drift in the machine's speed during the run hits both sides alike.
    """
    rounds = 3 if quick else 5
    seconds = 1.5 if quick else 3.0
    body = json.dumps({"type": "bench.http", "payload": {"n": 1, "s": "hello"}}).encode()
    ours: list[LoadResult] = []
    bare: list[LoadResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "knot.toml").write_text(
            '[[sinks]]\nname = "rec"\ntype = "recording"\nevents = "*"\nlimit = 100\n'
        )
        knot_cmd = [sys.executable, "-m", "knot.cli", "serve", "--project", tmp, "--port", "0"]
        servers = {
            "ours": ServerProcess([*knot_cmd, "--quiet"]),
            "bare": ServerProcess([sys.executable, "-m", "benchmarks.bare_app"]),
        }
        try:
            for server in servers.values():
                load(server.url, body=body, seconds=0.5)  # warm up
            for _ in range(rounds):
                ours.append(load(servers["ours"].url, body=body, seconds=seconds))
                bare.append(load(servers["bare"].url, body=body, seconds=seconds))
        finally:
            for server in servers.values():
                server.stop()
    assert all(r.errors == 0 for r in ours), "some requests to knot serve failed"
    mid = sorted(ours, key=lambda r: r.rps)[len(ours) // 2]
    base = statistics.median(r.rps for r in bare)
    return [
        Result(
            "POST /event req/s (server on 1 core)",
            mid.rps,
            "req/s",
            ">= 0.7x",
            base,
            "bare starlette",
            f"p50 {mid.p50_ms:.2f} ms, p99 {mid.p99_ms:.2f} ms; bare {base:,.0f} req/s "
            f"(median of {rounds} alternating rounds)",
        )
    ]


def run(quick: bool = False) -> list[Result]:
    events = 20_000 if quick else 100_000
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        # Best of five, alternating: the least disturbed run of each side is compared.
        ours: list[float] = []
        bares: list[float] = []
        for i in range(5):
            ours.append(uvloop.run(_pipeline(Path(tmp) / f"p{i}", events, 1)))
            bares.append(uvloop.run(_bare(events)))
        one, bare = max(ours), max(bares)
        results.append(
            Result(
                "emit → 1 recording sink, journaled",
                one,
                "events/s",
                ">= 25000",
                bare,
                "bare asyncio hops",
            )
        )
        results.append(
            Result(
                "  slowdown against the bare hops (bare / ours)",
                bare / one,
                "x",
                "<= 8",
                note=f"bare {bare:,.0f} events/s; best of 5 each",
            )
        )
        ten = uvloop.run(_pipeline(Path(tmp) / "ten", events // 2, 10))
        results.append(Result("emit → 10 sinks matched per event", ten, "events/s", ">= 5000"))
        delays = uvloop.run(_latency(Path(tmp) / "lat", 1000, 2.0 if quick else 5.0))
        results.append(
            Result(
                "emit → sink start at 1,000 events/s, p99",
                percentile(delays, 99),
                "ms",
                "<= 2.0",
                note=f"p50 {percentile(delays, 50):.3f} ms, max {max(delays):.2f} ms",
            )
        )
    results.extend(_http(quick))
    return results
