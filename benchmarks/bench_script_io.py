"""Scripts that do real work (issue 21): a POST per event from a script sink, and knot.kv calls.

1. Events/s of a script sink that makes one allowed `requests.post` per event to a loopback
   receiver (on the other core, checking each path's order), against a webhook sink POSTing
   the same events to the same receiver: the ratio and the cost per event are what a script's
   request adds (the worker's round trip to the runtime, httpx over httpcore, the allow-list
   and address checks). One sink each, then ten of each side by side.
2. knot.kv from a script: the time per `set`, `get` and `incr` measured inside the script
   (each a round trip over the worker's pipe to the runtime, which runs it on the store's
   writer thread), against the same operation run on the writer thread directly.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from knot import Runtime
from knot._allowlist import AllowList
from knot._config import Config, DeliverySettings, ScriptSettings
from knot.engine.storage import ExpiringKv
from knot.scripts import load_script

from .bench_webhooks import _check, _stats
from .common import Result, ServerProcess

POSTER = """# events: *
import knot.event, requests
requests.post(URL, json={"data": {"i": knot.event.get_int("i")}})
"""

KV_LOOP = """# events: *
import knot.kv, knot.event, time
n = knot.event.get_int("n")
timings = {}
for op in ["set", "get", "incr", "exists"]:
    started = time.perf_counter()
    for i in range(n):
        key = "k" + str(i % 100)
        if op == "set":
            knot.kv.set(key, {"i": i, "note": "a small value"})
        elif op == "get":
            knot.kv.get(key)
        elif op == "incr":
            knot.kv.incr("counter" + str(i % 100))
        else:
            knot.kv.exists(key)
    timings[op] = (time.perf_counter() - started) / n * 1e6
print("timings", timings)
"""


def _config(url: str, events: int) -> Config:
    netloc = url.removeprefix("http://")
    return Config(
        delivery=DeliverySettings(queue_size=events, backoff=(0.1,)),
        scripts=ScriptSettings(http_allow=AllowList.parse([netloc]), timeout=30.0),
    )


async def _deliveries(project: Path, url: str, events: int, sinks: int, *, script: bool) -> float:
    """Events/s (per sink) from the first emit until every sink has every event."""
    async with Runtime(project, config=_config(url, events), parts=[_Quiet()]) as rt:
        folder = project / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(sinks):
            if script:
                path = folder / f"poster{k}.py"
                path.write_text(POSTER.replace("URL", repr(f"{url}/s{k}")))
                spec = load_script(path).spec
                assert spec is not None
                await rt.add_sink(spec)
            else:
                await rt.add_sink(
                    {"name": f"hook{k}", "type": "webhook", "events": "*", "url": f"{url}/s{k}"}
                )
        await rt.emit_and_wait("bench.warm", {"i": 0}, timeout=60)  # workers started
        _stats(url, reset=True)  # the warm-up's POSTs are not counted
        started = time.perf_counter()
        for i in range(events):
            await rt.emit("bench.post", {"i": i})
        await rt.wait_idle(timeout=600)
        elapsed = time.perf_counter() - started
        assert all(s.failed == 0 and s.dropped == 0 for s in rt.sinks())
    return events / elapsed


async def _kv(project: Path, calls: int) -> tuple[dict[str, float], dict[str, float]]:
    """µs per knot.kv call inside a script, and per operation on the writer thread itself."""
    async with Runtime(project, config=Config(), parts=[_Quiet()]) as rt:
        path = project / "kv.py"
        path.write_text(KV_LOOP)
        spec = load_script(path).spec
        assert spec is not None
        await rt.add_sink(spec)
        report = await rt.emit_and_wait("bench.kv", {"n": calls}, timeout=120)
        result = report.outcomes["kv"].result
        assert result is not None, report.outcomes["kv"].error
        found = re.search(r"timings (\{.*\})", result.output[0])
        assert found is not None
        inside: dict[str, float] = ast.literal_eval(found.group(1))
        direct = {op: await _direct(rt, op, calls) for op in ("set", "get", "incr")}
    return inside, direct


async def _direct(rt: Runtime, op: str, calls: int) -> float:
    """µs per store operation run on the writer thread, as the runtime runs a script's."""
    scope = "script:sinks/direct"

    def one(store: ExpiringKv, i: int) -> object:
        key = f"k{i % 100}"
        if op == "set":
            store.kv_set(scope, key, {"i": i}, expires=None, now=time.time(), max_keys=10_000)
            return None
        if op == "get":
            return store.kv_get(scope, key, now=time.time())
        return store.kv_incr(scope, key + "n", 1, now=time.time(), max_keys=10_000)

    started = time.perf_counter()
    for i in range(calls):
        await rt.journal.call(functools.partial(one, i=i))
    return (time.perf_counter() - started) / calls * 1e6


class _Quiet:
    """No script folder watcher or spaces: the sinks are added by the benchmark."""

    async def start(self, host: object) -> None:
        return None

    async def stop(self) -> None:
        return None


def run(quick: bool = False) -> list[Result]:
    events = 300 if quick else 2_000
    calls = 300 if quick else 3_000
    receiver = ServerProcess([sys.executable, "-m", "benchmarks.webhook_receiver"], core=1)
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1
    cores = os.sched_getaffinity(0) if pinned else set()
    if pinned:  # the runtime (and its workers) on one core, the receiver on the other
        os.sched_setaffinity(0, {0})
    results: list[Result] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for sinks in (1, 10):
                scripts: list[float] = []
                hooks: list[float] = []
                for round_ in range(3):  # alternating rounds; the best of each side is compared
                    for script, runs in ((True, scripts), (False, hooks)):
                        _stats(receiver.url, reset=True)
                        project = Path(tmp) / f"{sinks}-{round_}-{script}"
                        runs.append(
                            uvloop.run(
                                _deliveries(project, receiver.url, events, sinks, script=script)
                            )
                        )
                        _check_paths(receiver.url, events, sinks)
                best, hook = max(scripts), max(hooks)
                cost = (1 / best - 1 / hook) * 1e6 * sinks if sinks == 1 else None
                results.append(
                    Result(
                        f"script sink, 1 allowed POST per event, {sinks} sink(s)",
                        best * sinks,
                        "POSTs/s",
                        baseline=hook * sinks,
                        baseline_name="webhook sinks, same POSTs",
                        note=(
                            f"{events:,} events; best of 3"
                            + (f"; {cost:,.0f} us more per event" if cost is not None else "")
                        ),
                    )
                )
            inside, direct = uvloop.run(_kv(Path(tmp) / "kv", calls))
    finally:
        if pinned:
            os.sched_setaffinity(0, cores)
        receiver.stop()
    for op in ("set", "get", "incr", "exists"):
        base = direct.get(op if op != "exists" else "get")
        results.append(
            Result(
                f"knot.kv.{op}() from a script",
                inside[op],
                "us/call",
                baseline=base,
                baseline_name="the store op on its writer thread",
                note=f"{calls:,} calls",
            )
        )
    return results


def _check_paths(url: str, events: int, sinks: int) -> None:
    if sinks == 10:
        _check(url, events)
        return
    stats = _stats(url)
    assert stats["disorder"] == 0, stats
    counts = stats["counts"]
    assert isinstance(counts, dict)
    assert sorted(counts.values()) == [events] * sinks, counts
