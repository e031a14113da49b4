"""Issue 6 target: the synchronous Sky path answers at least half as many requests per second
as a bare starlette app returning the same JSON (3x and more over pico-engine's 1,000-1,350).

Both servers run in subprocesses pinned to core 0 (`benchmarks.sky_apps`), loaded from core 1
by the same keep-alive generator, in alternating rounds; the medians are compared, so drift in
the machine's speed hits both sides alike. Each request is a POST of a small JSON body to
`/sky/event/<eci>/none/bench/hello` that a sink answers with one directive: a sink written in
Python (the target), and for comparison the same directive from a sandboxed script sink.

Requests per second are only comparable on a quiet machine: when other processes share core 0,
the scheduler gives our server (event loop + journal thread) more of it than the one-thread
bare app, which flatters us. So the CPU time each server spends per request (from
/proc/PID/stat, all threads) is reported too: its inverse is the capacity of one core, whatever
else runs.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from .common import Result, ServerProcess
from .loadgen import LoadResult, load
from .sky_apps import PATH

PICO_ENGINE_RPS = 1_350  # the top of pico-engine 1.4.0's measured range (FACTS.md)


@dataclass(frozen=True, slots=True)
class Round:
    load: LoadResult
    cpu_us: float  # server CPU time (user + system, all threads) per answered request


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(server: ServerProcess, body: bytes, seconds: float) -> Round:
    before = _cpu_seconds(server.proc.pid)
    result = load(server.url, path=PATH, body=body, seconds=seconds)
    spent = _cpu_seconds(server.proc.pid) - before
    return Round(result, spent / max(result.requests, 1) * 1e6)


def _check(url: str, body: bytes) -> None:
    """One request first: the answer must really carry the sink's directive."""
    r = httpx.post(url + PATH, content=body, headers={"Content-Type": "application/json"})
    r.raise_for_status()
    directives = r.json()["directives"]
    assert [d["options"]["text"] for d in directives] == ["hello bench"], r.text


def _median(rounds: list[Round], key: str) -> Round:
    if key == "rps":
        return sorted(rounds, key=lambda r: r.load.rps)[len(rounds) // 2]
    return sorted(rounds, key=lambda r: r.cpu_us)[len(rounds) // 2]


def run(quick: bool = False) -> list[Result]:
    rounds = 3 if quick else 5
    seconds = 1.5 if quick else 3.0
    body = json.dumps({"name": "bench", "n": 1}).encode()
    ours: list[Round] = []
    script: list[Round] = []
    bare: list[Round] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = [sys.executable, "-m", "benchmarks.sky_apps"]
        servers = {
            "ours": ServerProcess([*app, "ours", f"{tmp}/python"]),
            "script": ServerProcess([*app, "script", f"{tmp}/script"]),
            "bare": ServerProcess([*app, "bare"]),
        }
        try:
            for server in servers.values():
                _check(server.url, body)
                load(server.url, path=PATH, body=body, seconds=0.5)  # warm up
            for _ in range(rounds):
                ours.append(_round(servers["ours"], body, seconds))
                script.append(_round(servers["script"], body, seconds))
                bare.append(_round(servers["bare"], body, seconds))
        finally:
            for server in servers.values():
                server.stop()
    assert all(r.load.errors == 0 for r in ours + script), "some Sky requests failed"
    mid, base = _median(ours, "rps").load, _median(bare, "rps").load
    scripted = _median(script, "rps").load
    cpu, cpu_base = _median(ours, "cpu").cpu_us, _median(bare, "cpu").cpu_us
    return [
        Result(
            "Sky event answered with a directive (server on 1 core)",
            mid.rps,
            "req/s",
            ">= 0.5x",
            base.rps,
            "bare starlette",
            f"p50 {mid.p50_ms:.2f} ms, p99 {mid.p99_ms:.2f} ms; bare {base.rps:,.0f} req/s, "
            f"p50 {base.p50_ms:.2f} ms, p99 {base.p99_ms:.2f} ms (median of {rounds} rounds)",
        ),
        Result(
            "  the same from CPU time per request (1 core's capacity)",
            1e6 / cpu,
            "req/s",
            ">= 0.5x",
            1e6 / cpu_base,
            "bare starlette",
            f"{cpu:.0f} µs per Sky request, bare {cpu_base:.0f} µs",
        ),
        Result(
            "  against pico-engine 1.4.0 (1,000-1,350 req/s, FACTS.md)",
            mid.rps / PICO_ENGINE_RPS,
            "x",
            ">= 3",
        ),
        Result(
            "  the directive from a sandboxed script sink instead",
            scripted.rps,
            "req/s",
            baseline=base.rps,
            baseline_name="bare starlette",
            note=f"p50 {scripted.p50_ms:.2f} ms, p99 {scripted.p99_ms:.2f} ms; "
            f"{scripted.rps / PICO_ENGINE_RPS:.1f}x pico-engine; worker processes on the same "
            "core, their CPU not in the server's",
        ),
    ]


def main() -> int:
    for result in run(quick="--quick" in sys.argv):
        print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
