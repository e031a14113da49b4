"""Read routes under /api: events, audit, and the live event stream (sinks: sinks.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._events import Event
from .._exceptions import NotFound
from .._patterns import Pattern
from .._runtime import Runtime
from .common import query_int

__all__ = ["routes"]

STREAM_BUFFER = 1000
HEARTBEAT_SECONDS = 15.0


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def list_events(request: Request) -> Response:
    runtime = _runtime(request)
    pattern = request.query_params.get("pattern") or None
    if pattern:
        Pattern.parse(pattern)  # a bad pattern is a 400 with its name
    limit = query_int(request, "n", 50)
    events = await runtime.events(pattern, limit=limit)
    return JSONResponse({"events": [e.to_dict() for e in events]})


async def get_event(request: Request) -> Response:
    event_id = request.path_params["event_id"]
    event = await _runtime(request).get_event(event_id)
    if event is None:
        raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)
    return JSONResponse(event.to_dict())


async def list_audit(request: Request) -> Response:
    limit = query_int(request, "n", 50)
    sink = request.query_params.get("sink") or None
    entries = await _runtime(request).audit_entries(limit=limit, sink=sink)
    return JSONResponse({"audit": [e.to_dict() for e in entries]})


async def stream_events(request: Request) -> Response:
    """Server-sent events: one `event` message per routed event matching `pattern`."""
    runtime = _runtime(request)
    raw = request.query_params.get("pattern") or "*"
    pattern = Pattern.parse(raw)
    queue: asyncio.Queue[tuple[Event, tuple[str, ...]]] = asyncio.Queue(STREAM_BUFFER)

    def listener(event: Event, sinks: tuple[str, ...]) -> None:
        if pattern.matches(event.type):
            with contextlib.suppress(asyncio.QueueFull):  # a slow client misses events
                queue.put_nowait((event, sinks))

    async def body() -> AsyncIterator[str]:
        unsubscribe = runtime.on_event(listener)
        try:
            yield ": connected\n\n"
            while True:
                try:
                    event, sinks = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                payload = json.dumps({**event.to_dict(), "sinks": list(sinks)})
                yield f"id: {event.seq}\nevent: event\ndata: {payload}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


routes = [
    Route("/api/events", list_events, methods=["GET"]),
    Route("/api/events/stream", stream_events, methods=["GET"]),
    Route("/api/events/{event_id}", get_event, methods=["GET"]),
    Route("/api/audit", list_audit, methods=["GET"]),
]
