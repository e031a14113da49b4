"""What every benchmark shares: results with targets and baselines, timing, and subprocesses."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Result",
    "ServerProcess",
    "environ",
    "machine",
    "percentile",
    "serve_asgi",
]


@dataclass(frozen=True, slots=True)
class Result:
    """One measured figure, with its target and (when there is one) its same-run baseline."""

    name: str
    value: float
    unit: str
    target: str = ""  # e.g. ">= 25000" or "<= 2.0"
    baseline: float | None = None
    baseline_name: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        match = re.fullmatch(r"\s*(>=|<=)\s*([\d.]+)\s*(x?)\s*", self.target)
        if not match:
            return None
        op, number, times = match.groups()
        value = self.ratio if times else self.value
        if value is None:
            return None
        bound = float(number)
        return value >= bound if op == ">=" else value <= bound

    def line(self) -> str:
        ratio = f"{self.ratio:.2f}x {self.baseline_name}" if self.ratio is not None else ""
        met = {True: "met", False: "NOT met", None: ""}[self.met]
        target = f"target {self.target} {met}".strip() if self.target else ""
        value = f"{self.value:,.1f} {self.unit}"
        return f"{self.name:<52} {value:>20}  {ratio:<28} {target} {self.note}".rstrip()


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """These environment variables set for a while (each restored after, or removed)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


class ServerProcess:
    """A server subprocess pinned to one core that prints `ready on http://HOST:PORT`."""

    def __init__(self, args: list[str], *, cwd: Path | None = None, core: int | None = 0) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if core is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(self.proc.pid, {core})
        self.url = ""
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                found = re.search(r"http://(127\.0\.0\.1):(\d+)", line)
                if found and not self.url:
                    self.url = found.group(0)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30) or not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.lines))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def serve_asgi(app: Any) -> None:
    """Serve a baseline app the way `knot serve` serves ours: uvicorn on a socket bound first,
    same settings, then `ready on http://127.0.0.1:PORT` for ServerProcess to read."""
    import asyncio

    import uvicorn

    from knot.server.app import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    print(f"ready on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await task


def python() -> str:
    return sys.executable


def now() -> float:
    return time.perf_counter()
