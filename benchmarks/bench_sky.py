"""Issue 6 target: the synchronous Sky path answers at least half as many requests per second
as a bare starlette app returning the same JSON (3x and more over pico-engine's 1,000-1,350).

Both servers run in subprocesses pinned to core 0 (`benchmarks.sky_apps`), loaded from core 1
by the same keep-alive generator, in alternating rounds; the medians are compared, so drift in
the machine's speed hits both sides alike. Each request is a POST of a small JSON body to
`/sky/event/<eci>/none/bench/hello` that a sink answers with one directive.
"""

from __future__ import annotations

import json
import sys
import tempfile

import httpx

from .common import Result, ServerProcess
from .loadgen import LoadResult, load
from .sky_apps import PATH

PICO_ENGINE_RPS = 1_350  # the top of pico-engine 1.4.0's measured range (FACTS.md)


def _check(url: str, body: bytes) -> None:
    """One request first: the answer must really carry the sink's directive."""
    r = httpx.post(url + PATH, content=body, headers={"Content-Type": "application/json"})
    r.raise_for_status()
    directives = r.json()["directives"]
    assert [d["options"]["text"] for d in directives] == ["hello bench"], r.text


def run(quick: bool = False) -> list[Result]:
    rounds = 3 if quick else 5
    seconds = 1.5 if quick else 3.0
    body = json.dumps({"name": "bench", "n": 1}).encode()
    ours: list[LoadResult] = []
    bare: list[LoadResult] = []
    with tempfile.TemporaryDirectory() as tmp:
        app = [sys.executable, "-m", "benchmarks.sky_apps"]
        servers = {
            "ours": ServerProcess([*app, "ours", tmp]),
            "bare": ServerProcess([*app, "bare"]),
        }
        try:
            for server in servers.values():
                _check(server.url, body)
                load(server.url, path=PATH, body=body, seconds=0.5)  # warm up
            for _ in range(rounds):
                ours.append(load(servers["ours"].url, path=PATH, body=body, seconds=seconds))
                bare.append(load(servers["bare"].url, path=PATH, body=body, seconds=seconds))
        finally:
            for server in servers.values():
                server.stop()
    assert all(r.errors == 0 for r in ours), "some Sky requests failed"
    mid = sorted(ours, key=lambda r: r.rps)[len(ours) // 2]
    base = sorted(bare, key=lambda r: r.rps)[len(bare) // 2]
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
            "  against pico-engine 1.4.0 (1,000-1,350 req/s, FACTS.md)",
            mid.rps / PICO_ENGINE_RPS,
            "x",
            ">= 3",
        ),
    ]


def main() -> int:
    for result in run(quick="--quick" in sys.argv):
        print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
