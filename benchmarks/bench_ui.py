"""Issue 15 targets: the dashboard's events page and what an open live tail costs the engine.

- The events page with 100,000 journaled events and 200 sinks answers in <= 100 ms of server
  time: the app is called in-process (its own time, no network, no client), median and worst
  of REQUESTS calls per view: the first page, a type filter, a sink filter, a sink's failures,
  the second page, and a payload search that matches nothing (the whole journal is read).
- A live tail open during a flood costs the engine <= 10% of its throughput: the journaled
  pipeline (100 concurrent emitters, one recording sink) with and without a tail open on the
  same runtime, served by uvicorn on loopback, read by a client in another process (as a
  browser would: its reading costs the runtime nothing). Alternating, best of ROUNDS. The tail
  samples (at most FRAMES_PER_SECOND frames of ROWS_PER_FRAME rows a second) and says so.
"""

from __future__ import annotations

import asyncio
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn
import uvloop

from knot import RecordingSink, Runtime, SinkOrigin, SinkSpec, parse_patterns
from knot._config import Config, DeliverySettings
from knot.server.app import bind_socket, create_app

from .common import Result, percentile

EVENTS = 100_000
SINKS = 200
REQUESTS = 20
PRODUCERS = 100
ROUNDS = 5
TAIL_CLIENT = """
import sys, httpx
url = sys.argv[1]
got = 0
with httpx.stream("GET", url, timeout=None) as r:
    print("open", flush=True)
    for chunk in r.iter_raw():
        got += len(chunk)
"""


def _sink(name: str, events: str, **options: object) -> RecordingSink:
    spec = SinkSpec(
        name, "recording", parse_patterns(events), options=options, origin=SinkOrigin.BUILTIN
    )
    return RecordingSink(spec)


async def _fill(rt: Runtime, events: int) -> None:
    """`events` events over SINKS event types, one sink each (a few of them failing)."""
    for i in range(SINKS):
        await rt.add_sink(_sink(f"s{i}", f"custom.app{i}.*", limit=10, fail_attempts=9 * (i < 2)))
    per = events // PRODUCERS

    async def producer(p: int) -> None:
        for i in range(per):
            n = p * per + i
            await rt.emit(f"app{n % SINKS}.tick", {"n": n, "who": f"user{n % 37}"})

    await asyncio.gather(*(producer(p) for p in range(PRODUCERS)))
    await rt.wait_idle(timeout=600)


async def _page_times(project: Path, events: int, requests: int) -> dict[str, list[float]]:
    config = Config(delivery=DeliverySettings(queue_size=2000, attempts=1, backoff=(0.0,)))
    async with Runtime(project, config=config) as rt:
        await _fill(rt, events)
        app = create_app(rt)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            first = await http.get("/ui/events")
            found = re.search(r'href="/ui/events\?before=(\d+)"', first.text)
            assert found is not None, "the first page has no next page"
            views = {
                "first page": "/ui/events",
                "type filter": "/ui/events?type=app7.*",
                "sink filter": "/ui/events?sink=s9",
                "a sink's failures": "/ui/events?sink=s1&outcome=failed",
                "second page": f"/ui/events?before={found.group(1)}",
                "payload search, no match": "/ui/events?q=nothing-like-this",
                "non-ASCII search, no match": "/ui/events?q=ñothing-like-this",
            }
            times: dict[str, list[float]] = {name: [] for name in views}
            for _ in range(requests):
                for name, path in views.items():
                    started = time.perf_counter()
                    answer = await http.get(path)
                    times[name].append(time.perf_counter() - started)
                    assert answer.status_code == 200, (path, answer.text[:300])
                    assert 'role="alert"' not in answer.text, (path, answer.text[:2000])
    return times


async def _pipeline(project: Path, events: int, tail: bool) -> tuple[float, float]:
    """Events/s (wall, and per CPU second of this process) with or without a tail open."""
    config = Config(delivery=DeliverySettings(queue_size=1000))
    async with Runtime(project, config=config) as rt:
        await rt.add_sink(_sink("rec", "*", limit=10))
        app = create_app(rt)
        sock = bind_socket("127.0.0.1", 0)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        client = None
        try:
            if tail:
                url = f"http://127.0.0.1:{sock.getsockname()[1]}/ui/events/stream"
                client = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", TAIL_CLIENT, url, stdout=asyncio.subprocess.PIPE
                )
                assert client.stdout is not None
                await client.stdout.readline()
                while not rt.hooks.event_listeners:  # the stream's listener is in place
                    await asyncio.sleep(0.01)
            per = events // PRODUCERS

            async def producer() -> None:
                for i in range(per):
                    await rt.emit("bench.tick", {"i": i})

            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
            await rt.wait_idle(timeout=300)
            elapsed, used = time.perf_counter() - started, time.process_time() - cpu
            total = per * PRODUCERS
            assert rt.sinks()[0].delivered == total, "the sink missed events"
        finally:
            if client is not None:
                client.terminate()
                await client.wait()
            app.state.streams.close()
            server.should_exit = True
            await serving
    return total / elapsed, total / used


def run(quick: bool = False) -> list[Result]:
    # The failing sinks' warnings (one a failed delivery) would bury the figures.
    logging.getLogger("knot").setLevel(logging.ERROR)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        events = 10_000 if quick else EVENTS
        times = uvloop.run(_page_times(Path(tmp) / "pages", events, 3 if quick else REQUESTS))
        for name, samples in times.items():
            ms = [s * 1000 for s in samples]
            results.append(
                Result(
                    f"events page: {name}",
                    percentile(ms, 50),
                    "ms",
                    "<= 100",
                    note=f"worst {max(ms):.1f} ms of {len(ms)}; {events:,} events, {SINKS} sinks",
                )
            )
        flood = 20_000 if quick else 100_000
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for round_ in range(1 if quick else ROUNDS):
            for tail in (False, True) if round_ % 2 == 0 else (True, False):
                project = Path(tmp) / f"tail-{round_}-{tail}"
                runs[tail].append(uvloop.run(_pipeline(project, flood, tail)))
        # Each round's two runs back to back, the order alternating: the median of the
        # rounds' ratios (the machine's speed drifts between rounds, much less within one).
        walls = [t[0] / b[0] for t, b in zip(runs[True], runs[False], strict=True)]
        cpus = [t[1] / b[1] for t, b in zip(runs[True], runs[False], strict=True)]
        base_wall = statistics.median(b[0] for b in runs[False])
        base_cpu = statistics.median(b[1] for b in runs[False])
        results.append(
            Result(
                "journaled → 1 sink, no tail open",
                base_wall,
                "events/s",
                note=f"{base_cpu:,.0f} events per CPU second (medians)",
            )
        )
        results.append(
            Result(
                "  with a live tail open (sampled): throughput",
                statistics.median(walls) * 100,
                "% of no tail",
                ">= 90",
                note=f"per round {', '.join(f'{r:.2f}' for r in walls)}; per CPU second "
                f"{statistics.median(cpus):.3f}x ({', '.join(f'{r:.2f}' for r in cpus)})",
            )
        )
    return results
