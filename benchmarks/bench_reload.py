"""Issue 3 target: save a script → the next event runs the new code, against `uvicorn --reload`.

Ours: a runtime (default parts: the reloader and the sandbox pool) with one script sink; each
round saves a new version of the script and raises events back to back until one is handled by
the new code. Baseline, in the same run: a one-handler starlette app under `uvicorn --reload`
(its defaults: watchfiles, 0.25 s reload delay, a fresh worker process per change); each round
saves a new version of the handler file and requests it back to back until a response shows
the new code. Both sides save the same way (write the file in place) and start the clock
before the write.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

from knot import DeliveryStatus, Runtime

from .common import Result, ServerProcess, percentile

__all__ = ["main", "ours", "run", "uvicorn_reload"]

PAUSE = 0.1  # between saves, so each save is its own change for both watchers

SCRIPT = """\
# events: custom.bench.reload
import knot.event
print("version {version}")
"""

APP = """\
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def handler(request):
    return JSONResponse({{"version": {version}}})


app = Starlette(routes=[Route("/", handler)])
"""


async def ours(project: Path, saves: int) -> list[float]:
    """Seconds from each save to the first event the new version handled."""
    path = project / "scripts" / "sinks" / "probe.py"
    path.parent.mkdir(parents=True)
    path.write_text(SCRIPT.format(version=0), encoding="utf-8")
    samples: list[float] = []
    async with Runtime(project) as rt:
        await _until(rt, "version 0")
        for version in range(1, saves + 1):
            await asyncio.sleep(PAUSE)
            started = time.perf_counter()
            path.write_text(SCRIPT.format(version=version), encoding="utf-8")
            await _until(rt, f"version {version}")
            samples.append(time.perf_counter() - started)
    return samples


async def _until(rt: Runtime, line: str, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            report = await rt.emit_and_wait("bench.reload", {})
            outcome = report.outcomes["probe"]
            assert outcome.status is DeliveryStatus.DELIVERED, outcome.error
            if outcome.result is not None and outcome.result.output == (line,):
                return


def uvicorn_reload(folder: Path, saves: int) -> list[float]:
    """Seconds from each save of the handler file to the first response showing the new code."""
    folder.mkdir(parents=True)
    path = folder / "app.py"
    path.write_text(APP.format(version=0), encoding="utf-8")
    args = [sys.executable, "-m", "uvicorn", "app:app", "--reload", "--port", "0"]
    args += ["--reload-dir", str(folder), "--log-level", "info"]
    server = ServerProcess(args, cwd=folder, core=None)
    samples: list[float] = []
    try:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            _poll(http, 0)
            # The reloader starts its server process before it starts watching: let it settle.
            time.sleep(1.0)
            for version in range(1, saves + 1):
                time.sleep(PAUSE)
                started = time.perf_counter()
                path.write_text(APP.format(version=version), encoding="utf-8")
                _poll(http, version)
                samples.append(time.perf_counter() - started)
    finally:
        server.stop()
    return samples


def _poll(http: httpx.Client, version: int, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            if http.get("/").json().get("version") == version:
                return
        except (httpx.TransportError, ValueError):
            pass  # restarting: refused, reset, or a half-written answer
        time.sleep(0.001)
    raise TimeoutError(f"uvicorn --reload never served version {version}")


def run(quick: bool = False) -> list[Result]:
    saves = 5 if quick else 30
    with tempfile.TemporaryDirectory() as tmp:
        knot_ms = [s * 1000 for s in uvloop.run(ours(Path(tmp) / "knot", saves))]
        uvicorn_ms = [s * 1000 for s in uvicorn_reload(Path(tmp) / "uvicorn", saves)]
    p95, base95 = percentile(knot_ms, 95), percentile(uvicorn_ms, 95)
    return [
        Result(
            "save → next event runs the new code, p95",
            p95,
            "ms",
            "<= 50",
            note=f"p50 {percentile(knot_ms, 50):.1f} ms, max {max(knot_ms):.1f} ms, {saves} saves",
        ),
        Result(
            "  uvicorn --reload: save → first new response, p95",
            base95,
            "ms",
            note=f"p50 {percentile(uvicorn_ms, 50):.1f} ms, max {max(uvicorn_ms):.1f} ms",
        ),
        Result("  speed-up over uvicorn --reload (p95 / p95)", base95 / p95, "x", ">= 20"),
    ]


def main() -> int:
    for result in run(quick="--quick" in sys.argv):
        print(result.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
