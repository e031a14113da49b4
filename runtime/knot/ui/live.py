"""The events page's live tail: new events as table rows over server-sent events (sse-starlette),
which htmx's SSE extension puts on top of the table.

The engine must not pay for a page being open: the listener on the event path only checks the
filters and appends to a small ring; a sender wakes at most FRAMES_PER_SECOND times a second
and renders at most ROWS_PER_FRAME of the newest events. Under heavier traffic the tail is a
sample, and it says so (how many events it left out).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from .._events import Event
from .filters import parse_filters
from .web import Ctx, page

__all__ = ["FRAMES_PER_SECOND", "ROWS_PER_FRAME", "events_stream"]

FRAMES_PER_SECOND = 5
ROWS_PER_FRAME = 10
PING_SECONDS = 15


@page
async def events_stream(ctx: Ctx) -> Response:
    """Dashboard: the events page's live tail, as server-sent events of rendered rows."""
    runtime = ctx.runtime
    found = parse_filters(ctx.request.query_params, ctx.caller, runtime.registry)
    streams = ctx.ui.streams
    ring: deque[Event] = deque(maxlen=ROWS_PER_FRAME)
    seen = 0  # events that passed the filters since the last frame
    wake = asyncio.Event()
    stopped = False

    admits = None if found.admits_all else found.admits
    keep = ring.append

    # On the event path, once per routed event: as little as can be.
    def listener(event: Event, sinks: tuple[str, ...]) -> None:
        nonlocal seen
        if admits is None or admits(event):
            keep(event)
            seen += 1
            wake.set()

    def stop() -> None:
        nonlocal stopped
        stopped = True
        wake.set()

    async def frames() -> AsyncIterator[ServerSentEvent]:
        nonlocal seen
        unsubscribe = runtime.on_event(listener)
        streams.add(stop)
        try:
            while not stopped:
                await wake.wait()
                wake.clear()
                if stopped:
                    break
                events, count = list(ring), seen
                ring.clear()
                seen = 0
                events.reverse()  # newest on top, as the table is
                rows = ctx.ui.templates.get_template("_event_rows.html").render(
                    ctx=ctx, events=events, marks={}, live_row=True
                )
                yield ServerSentEvent(data=rows, event="rows")
                left_out = count - len(events)
                note = f"sampled: {left_out} of {count} new events not shown" if left_out else ""
                yield ServerSentEvent(data=note or "&nbsp;", event="sampled")
                await asyncio.sleep(1 / FRAMES_PER_SECOND)
        finally:
            streams.discard(stop)
            unsubscribe()

    if found.problems:  # nothing would match what cannot be parsed: say so, once
        return Response(status_code=204)
    return EventSourceResponse(frames(), ping=PING_SECONDS, send_timeout=10)
