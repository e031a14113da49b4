"""The agent API: `POST /event` raises a custom event, answered 202 once it is journaled."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._exceptions import EventError
from .._runtime import Runtime
from .auth import caller
from .common import read_json, traceparent

__all__ = ["routes"]


async def post_event(request: Request) -> Response:
    """Raise a custom event: `{"type", "payload", "id"?}` → 202 `{"id"}` once it is journaled
    (`"duplicate": true` when an event with that `id` exists already); bad JSON, type or
    payload → 400 `{"error"}`; a body over `server.max_body_bytes` → 413. A W3C `traceparent`
    header becomes the parent of its trace."""
    runtime: Runtime = request.app.state.runtime
    body = await read_json(request)
    if not isinstance(body, dict):
        raise EventError("The request body must be a JSON object with 'type' and 'payload'.")
    unknown = set(body) - {"type", "payload", "id"}
    if unknown:
        raise EventError(
            f"Unknown field{'s' if len(unknown) > 1 else ''} in the request: "
            f"{', '.join(sorted(unknown))}; send 'type', 'payload' and optionally 'id'."
        )
    if "type" not in body:
        raise EventError("The request has no 'type'.")
    who = caller(request)
    event = runtime.make_event(
        body["type"],
        body.get("payload"),
        owner=who.owner,
        actor=who.actor,
        id=body.get("id"),
        trace=traceparent(request),
    )
    inserted = await runtime.submit(event, check_duplicate="id" in body)
    answer: dict[str, object] = {"id": event.id}
    if not inserted:
        answer["duplicate"] = True
    return JSONResponse(answer, status_code=202)


routes = [Route("/event", post_event, methods=["POST"])]
