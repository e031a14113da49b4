"""A small HTTP/1.1 keep-alive load generator on raw asyncio sockets (loopback only).

Bounded in count and time. Runs on its own core (the server under test is pinned to another),
so the same generator measures our server and a bare baseline app side by side.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from .common import percentile

__all__ = ["LoadResult", "load"]


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


async def _connection(
    host: str, port: int, request: bytes, deadline: float, budget: list[int], lat: list[float]
) -> tuple[int, int]:
    reader, writer = await asyncio.open_connection(host, port)
    done = errors = 0
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            lat.append(time.perf_counter() - started)
            status = head[9:12]
            if status[:1] == b"2":
                done += 1
            else:
                errors += 1
    finally:
        writer.close()
    return done, errors


def load(
    url: str,
    *,
    method: str = "POST",
    path: str = "/event",
    body: bytes = b"",
    content_type: str = "application/json",
    connections: int = 64,
    seconds: float = 5.0,
    max_requests: int = 200_000,
    core: int | None = 1,
) -> LoadResult:
    """Send requests for `seconds` (or `max_requests`) over keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")
    if not host.startswith("127."):
        raise ValueError("the load generator only targets loopback addresses")
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    if core is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        previous = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {core})
    else:
        previous = None

    async def main() -> LoadResult:
        budget = [max_requests]
        latencies: list[float] = []
        started = time.perf_counter()
        deadline = started + seconds
        results = await asyncio.gather(
            *(
                _connection(host, int(port), request, deadline, budget, latencies)
                for _ in range(connections)
            )
        )
        elapsed = time.perf_counter() - started
        done = sum(r[0] for r in results)
        errors = sum(r[1] for r in results)
        return LoadResult(
            done,
            elapsed,
            errors,
            percentile(latencies, 50) * 1000,
            percentile(latencies, 99) * 1000,
        )

    try:
        try:
            import uvloop

            return uvloop.run(main())
        except ImportError:
            return asyncio.run(main())
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)
