"""Webhook deliveries/s to a loopback receiver, 10 sinks, order checked (issue 4: >= 3,000/s).

Each event goes to all ten webhook sinks (each POSTs to its own path of one receiver on the
other core, which checks that every path sees `data.i` in order). Baselines, same receiver:
ten bare loops POSTing ready-made bodies through the same client the sinks use (`httpx` over
the aiohttp transport), so the ratio is what the pipeline adds (journal, routing, templates,
two HMACs per request); and the same loops through httpx's own transport (httpcore), which is
what bounded the sinks before the aiohttp transport.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

from knot import Runtime
from knot._config import Config, DeliverySettings
from knot.sinks.webhook_http import WebhookClients

from .common import Result, ServerProcess

SINKS = 10


def _stats(url: str, *, reset: bool = False) -> dict[str, object]:
    with httpx.Client(base_url=url, timeout=30) as client:
        if reset:
            client.post("/reset")
            return {}
        answer: dict[str, object] = client.get("/stats").json()
        return answer


def _check(url: str, expected: int) -> None:
    stats = _stats(url)
    counts = stats["counts"]
    assert isinstance(counts, dict)
    assert stats["disorder"] == 0, f"deliveries out of order: {stats['disorder']}"
    assert sorted(counts.values()) == [expected] * SINKS, f"missing deliveries: {counts}"


async def _pipeline(project: Path, url: str, events: int) -> float:
    """Deliveries/s from the first emit until every sink's receiver path has every event."""
    config = Config(delivery=DeliverySettings(queue_size=events, backoff=(0.1,)))
    async with Runtime(project, config=config) as rt:
        for k in range(SINKS):
            await rt.add_sink(
                {"name": f"hook{k}", "type": "webhook", "events": "*", "url": f"{url}/s{k}"}
            )
        started = time.perf_counter()
        for i in range(events):
            await rt.emit("bench.hook", {"i": i, "note": "a small payload"})
        await rt.wait_idle(timeout=600)
        elapsed = time.perf_counter() - started
        assert all(s.failed == 0 and s.dropped == 0 for s in rt.sinks())
    return events * SINKS / elapsed


def _body(i: int) -> bytes:
    return json.dumps({"event_id": "x", "data": {"i": i, "note": "a small payload"}}).encode()


async def _bare(url: str, events: int, *, httpcore: bool = False) -> float:
    bodies = [_body(i) for i in range(events)]
    headers = {"Content-Type": "application/json"}
    clients = WebhookClients()
    http = httpx.AsyncClient(timeout=30) if httpcore else clients.client()

    async def send(target: str, body: bytes) -> int:
        return (await http.post(target, content=body, headers=headers)).status_code

    async def loop(k: int) -> None:
        for body in bodies:
            assert await send(f"{url}/s{k}", body) == 200

    started = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(SINKS)))
    elapsed = time.perf_counter() - started
    await http.aclose()
    return events * SINKS / elapsed


def run(quick: bool = False) -> list[Result]:
    events = 300 if quick else 2_000
    receiver = ServerProcess([sys.executable, "-m", "benchmarks.webhook_receiver"], core=1)
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    cores = os.sched_getaffinity(0) if pinned else set()
    if pinned:
        os.sched_setaffinity(0, {0})  # this process on one core, the receiver on the other
    try:
        ours, bares, plain = [], [], []
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(3):  # alternating rounds; the best of each side is compared
                _stats(receiver.url, reset=True)
                ours.append(uvloop.run(_pipeline(Path(tmp) / f"r{round_}", receiver.url, events)))
                _check(receiver.url, events)
                _stats(receiver.url, reset=True)
                bares.append(uvloop.run(_bare(receiver.url, events)))
                _check(receiver.url, events)
                _stats(receiver.url, reset=True)
                plain.append(uvloop.run(_bare(receiver.url, events, httpcore=True)))
                _check(receiver.url, events)
    finally:
        if pinned:
            os.sched_setaffinity(0, cores)
        receiver.stop()
    best, bare, httpcore = max(ours), max(bares), max(plain)
    return [
        Result(
            f"webhook deliveries, {SINKS} sinks, order checked",
            best,
            "deliveries/s",
            ">= 3000",
            baseline=bare,
            baseline_name="bare loops, same client",
            note=f"{events:,} events x {SINKS} sinks; best of 3 alternating rounds",
        ),
        Result(
            "  bare loops through httpx's own transport (httpcore)",
            httpcore,
            "requests/s",
            baseline=bare,
            baseline_name="over aiohttp",
        ),
    ]
