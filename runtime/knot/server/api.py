"""Read routes under /api: events, audit, and the live event stream (sinks: sinks.py).

A caller with Manage Global Event Sinks (the local user of a runtime without users has it)
reads everything; any other user reads their own events (the only ones their sinks get) and
the audit entries of their own sinks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._events import Event
from .._exceptions import NotFound
from .._patterns import Pattern
from .._runtime import Runtime
from .auth import caller
from .common import query_int

__all__ = ["EventStreams", "routes"]

STREAM_BUFFER = 1000
HEARTBEAT_SECONDS = 15.0


class EventStreams:
    """The open `/api/events/stream` answers, so a server that is shutting down can end them.

    A stream never ends by itself; left open, uvicorn waits out its graceful-shutdown timeout
    and then cancels it mid-wait, which logs "Exception in ASGI application" with a traceback.
    """

    def __init__(self) -> None:
        self._stops: set[Callable[[], None]] = set()
        self.closed = False

    def add(self, stop: Callable[[], None]) -> None:
        self._stops.add(stop)
        if self.closed:  # opened while the server was already shutting down
            stop()

    def discard(self, stop: Callable[[], None]) -> None:
        self._stops.discard(stop)

    def close(self) -> None:
        """End every open stream (each finishes its answer cleanly) and any opened later."""
        self.closed = True
        for stop in list(self._stops):
            stop()


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _readable_owner(request: Request) -> str | None:
    """Whose events this caller may read: everyone's (None) with Manage Global Event Sinks
    (the local user of a runtime without users has it), else only the caller's own, as only
    their own events reach their sinks."""
    who = caller(request)
    return None if who.manage_global_sinks else who.owner


async def list_events(request: Request) -> Response:
    """`?pattern=P&n=N`: the newest N events (oldest first), optionally filtered by one
    pattern; `&after=SEQ`: the first N after that seq instead (how a follower catches up). A
    user without Manage Global Event Sinks reads only their own events (here, in
    `/api/events/{id}` and in the stream)."""
    runtime = _runtime(request)
    pattern = request.query_params.get("pattern") or None
    if pattern:
        Pattern.parse(pattern)  # a bad pattern is a 400 with its name
    limit = query_int(request, "n", 50)
    after = query_int(request, "after", 0, lo=0, hi=2**62)  # after this seq: a follower catching up
    owner = _readable_owner(request)
    events = await runtime.events(pattern, limit=limit, owner=owner, after=after)
    return JSONResponse({"events": [e.to_dict() for e in events]})


async def get_event(request: Request) -> Response:
    """One event, by its id."""
    event_id = request.path_params["event_id"]
    event = await _runtime(request).get_event(event_id)
    owner = _readable_owner(request)
    if event is None or (owner is not None and event.owner != owner):
        raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)
    return JSONResponse(event.to_dict())


async def list_audit(request: Request) -> Response:
    """`?n=N&sink=S`: the audit log; a caller without Manage Global Event Sinks sees their own
    sinks' entries."""
    runtime = _runtime(request)
    limit = query_int(request, "n", 50)
    sink = request.query_params.get("sink") or None
    owner = _readable_owner(request)
    own = None
    if owner is not None:
        own = [s.name for s in runtime.sinks() if owner and s.spec.owner == owner]
    entries = await runtime.audit_entries(limit=limit, sink=sink, sinks=own)
    return JSONResponse({"audit": [e.to_dict() for e in entries]})


async def stream_events(request: Request) -> Response:
    """`?pattern=P`: server-sent events, one `event` message per routed event matching the
    pattern, with the sinks it went to, until the client leaves or the server shuts down (then
    the answer simply ends)."""
    runtime = _runtime(request)
    raw = request.query_params.get("pattern") or "*"
    pattern = Pattern.parse(raw)
    owner = _readable_owner(request)
    streams: EventStreams = request.app.state.streams
    # None is the server's "stop" (it wakes the wait); `stopped` holds even when the queue is full.
    queue: asyncio.Queue[tuple[Event, tuple[str, ...]] | None] = asyncio.Queue(STREAM_BUFFER)
    stopped = False

    def listener(event: Event, sinks: tuple[str, ...]) -> None:
        if pattern.matches(event.type) and (owner is None or event.owner == owner):
            with contextlib.suppress(asyncio.QueueFull):  # a slow client misses events
                queue.put_nowait((event, sinks))

    def stop() -> None:
        nonlocal stopped
        stopped = True
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(None)

    async def body() -> AsyncIterator[str]:
        unsubscribe = runtime.on_event(listener)
        streams.add(stop)
        try:
            yield ": connected\n\n"
            while not stopped:
                try:
                    item = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
                if item is None or stopped:
                    break
                event, sinks = item
                payload = json.dumps({**event.to_dict(), "sinks": list(sinks)})
                yield f"id: {event.seq}\nevent: event\ndata: {payload}\n\n"
        finally:
            streams.discard(stop)
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
