"""What the one-core benchmark (`bench_onecore`) needs besides the load generator: the CPU a
server and its children spent, a check that all of it ran on the core it was pinned to, a
sink's progress read over HTTP, and a tiny webhook receiver that notes when each body came.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

__all__ = ["Arrivals", "sink_progress", "tree_cores", "tree_cpu_seconds"]


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # it ended meanwhile
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its living children (the sandbox workers), all threads."""
    total = _cpu_seconds(pid)
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return total
    return total + sum(_cpu_seconds(child.pid) for child in children)


def tree_cores(pid: int) -> set[int]:
    """Every core any thread of `pid` or of its children may run on."""
    cores: set[int] = set()
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return cores
    for process in processes:
        try:
            for thread in process.threads():
                cores |= os.sched_getaffinity(thread.id)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    return cores


def sink_progress(url: str, name: str) -> tuple[int, int, int]:
    """(delivered, dropped, pending) of the sink `name` of the runtime at `url`."""
    answer = httpx.get(f"{url}/api/sinks", timeout=10).json()
    sinks = answer["sinks"] if isinstance(answer, dict) else answer
    for sink in sinks:
        if sink["name"] == name:
            return int(sink["delivered"]), int(sink["dropped"]), int(sink["pending"] or 0)
    raise LookupError(f"the runtime at {url} has no sink {name!r}: {answer}")


@dataclass
class Arrivals:
    """A webhook receiver on loopback (asyncio, HTTP/1.1 keep-alive, answers 200 to every
    POST) that notes the perf_counter() time each body's `data` arrived."""

    seen: list[tuple[float, dict[str, object]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    def first(self, key: str, value: object) -> float | None:
        """When the first body whose data has `key` = `value` arrived (None: not yet)."""
        return next((at for at, data in self.seen if data.get(key) == value), None)

    async def wait_for(self, key: str, value: object, *, timeout: float) -> bool:
        """Wait (up to `timeout`) until a body whose data has `key` = `value` has arrived."""
        try:
            async with asyncio.timeout(timeout):
                while self.first(key, value) is None:
                    self.changed.clear()
                    await self.changed.wait()
        except TimeoutError:
            return False
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = await reader.readexactly(length)
                arrived = time.perf_counter()
                data = json.loads(body).get("data")
                self.seen.append((arrived, data if isinstance(data, dict) else {}))
                self.changed.set()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
