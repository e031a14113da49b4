"""Seeing inside over HTTP: `GET /metrics`, an event's deliveries and its trace.

`/metrics` is the Prometheus text of `knot.observe.metrics` (404 when `[metrics] enabled =
false`); once users exist it takes a user's token or the scrape token (`[metrics] token`).
`GET /api/events/{id}/deliveries` and `/trace` answer what `runtime.deliveries()` and
`runtime.trace()` do, to whoever may read the event (as `GET /api/events/{id}`);
`POST /api/events/{id}/redeliver` with `{"sink": NAME}` hands it to that sink again
(`runtime.redeliver()`), for whoever may read the event and see the sink (their own or a
global one), and answers with the outcome once it is delivered or given up.
`RequestMetrics` counts every answer by route template and status for the metrics.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._exceptions import InvalidInput, NotFound
from .._runtime import Runtime
from ..engine.hooks import Hooks
from ..observe.metrics import CONTENT_TYPE, Metrics
from .auth import Caller, caller
from .common import read_json

__all__ = ["RequestMetrics", "check_redeliver", "readable", "routes"]


async def metrics(request: Request) -> Response:
    """Prometheus text (see [Observability](../observability.md)); 404 with `[metrics] enabled
    = false`. Once users exist it takes a user's token or the `[metrics]` scrape token."""
    found: Metrics | None = request.app.state.metrics
    if found is None:
        raise NotFound("Metrics are off in this runtime ([metrics] enabled = false in knot.toml).")
    return Response(found.render(), media_type=CONTENT_TYPE)


async def readable(runtime: Runtime, who: Caller, event_id: str) -> None:
    """NotFound unless `who` may read the event `event_id` (their own, or they see all)."""
    if not who.manage_global_sinks:
        event = await runtime.get_event(event_id)
        if event is None or event.owner != who.owner:
            raise NotFound(f"There is no event with id {event_id!r}.", what=event_id)


async def check_redeliver(runtime: Runtime, who: Caller, event_id: str, sink: object) -> str:
    """The sink name, once `who` may hand the event to it again: they may read the event
    and see the sink (their own or a global one); else InvalidInput or NotFound."""
    if not isinstance(sink, str) or not sink:
        raise InvalidInput('The request body must be {"sink": NAME}: the sink to deliver to.')
    await readable(runtime, who, event_id)
    registry = runtime.registry
    known = sink in registry
    if (known and not who.may_see_sink(registry.spec(sink).owner)) or (
        not known and not who.manage_global_sinks  # (a broken sink's owner is not known)
    ):
        raise NotFound(f"There is no sink named {sink!r}.", what=sink)
    return sink  # (one that does not exist or run: runtime.redeliver says so)


async def _readable(request: Request) -> str:
    """The event id of the path, once the caller may read that event (else 404)."""
    runtime: Runtime = request.app.state.runtime
    event_id = str(request.path_params["event_id"])
    await readable(runtime, caller(request), event_id)
    return event_id


async def deliveries(request: Request) -> Response:
    """`{"event", "deliveries": [{"sink", "status", "attempts": [{"attempt", "ts",
    "duration_ms", "outcome", "status", "error", "output"}]}]}`: every recorded attempt per
    sink; `status` is `delivered`, `failed` (given up), `dropped`, `retrying` or `pending`."""
    runtime: Runtime = request.app.state.runtime
    found = await runtime.deliveries(await _readable(request))
    return JSONResponse(found.to_dict())


async def trace(request: Request) -> Response:
    """`{"event", "root", "events", "truncated", "tree": [...]}`: the event's chain from its
    root, each event with `deliveries` and `children` (see
    [Observability](../observability.md))."""
    runtime: Runtime = request.app.state.runtime
    found = await runtime.trace(await _readable(request))
    return JSONResponse(found.to_dict())


async def redeliver(request: Request) -> Response:
    """`{"sink"}` → the outcome: queue a journaled event for a sink again (after what it has
    queued, with the usual attempts); answers once it was delivered or given up."""
    runtime: Runtime = request.app.state.runtime
    who = caller(request)
    event_id = await _readable(request)
    body = await read_json(request)
    sink = await check_redeliver(
        runtime, who, event_id, body.get("sink") if isinstance(body, dict) else None
    )
    outcome = await runtime.redeliver(event_id, sink, by=who.name or "the local user")
    return JSONResponse(outcome.to_dict())


class RequestMetrics:
    """Reports every HTTP answer to the hooks: its route template (never the raw path, whose
    ids would make unbounded label values), status and duration (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, *, hooks: Hooks) -> None:
        self.app = app
        self.hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.hooks.request_listeners:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when nothing was sent (uvicorn answers 500)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(no route)"
            self.hooks.answered(template, status, time.perf_counter() - started)


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/api/events/{event_id}/deliveries", deliveries, methods=["GET"]),
    Route("/api/events/{event_id}/trace", trace, methods=["GET"]),
    Route("/api/events/{event_id}/redeliver", redeliver, methods=["POST"]),
]
