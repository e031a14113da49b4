"""The agent API: `POST /event` raises a custom event, answered 202 once it is journaled.

The hot ingress path, so it is a plain ASGI app answering with two `send` calls of its own:
`KnotApp` (front.py) calls it straight after the same checks as the middleware, skipping
starlette's per-request objects; behind the starlette routes it answers the same way.
"""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._exceptions import EventError, KnotError
from .._runtime import Runtime
from .auth import caller_of
from .common import error_response, parse_json_body, receive_body, send_json, traceparent_of

__all__ = ["EVENTS", "EventIngress", "routes"]

_FIELDS = frozenset({"type", "payload", "id"})


class EventIngress:
    """Raise a custom event: `{"type", "payload", "id"?}` → 202 `{"id"}` once it is journaled
    (`"duplicate": true` when an event with that `id` exists already); bad JSON, type or
    payload → 400 `{"error"}`; a body over `server.max_body_bytes` → 413. A W3C `traceparent`
    header becomes the parent of its trace.

    (The ASGI app behind `POST /event`, also answered up front by `front.py`.)"""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer the request; return the status sent."""
        state = scope["app"].state
        try:
            body = parse_json_body(await receive_body(receive, state.max_body_bytes))
            event_id, inserted = await _raise_event(state.runtime, body, scope)
        except KnotError as exc:
            response = error_response(exc)
            await response(scope, receive, send)
            return response.status_code
        # Event ids are UUID strings (made here, or checked by check_event_id): nothing in
        # them needs escaping.
        answer = (
            b'{"id":"%s"}' % event_id.encode()
            if inserted
            else (b'{"id":"%s","duplicate":true}' % event_id.encode())
        )
        await send_json(send, 202, answer)
        return 202


async def _raise_event(runtime: Runtime, body: object, scope: Scope) -> tuple[str, bool]:
    """Journal the event the body describes; its id, and whether it was new."""
    if not isinstance(body, dict):
        raise EventError("The request body must be a JSON object with 'type' and 'payload'.")
    if not _FIELDS.issuperset(body):
        unknown = set(body) - _FIELDS
        raise EventError(
            f"Unknown field{'s' if len(unknown) > 1 else ''} in the request: "
            f"{', '.join(sorted(unknown))}; send 'type', 'payload' and optionally 'id'."
        )
    if "type" not in body:
        raise EventError("The request has no 'type'.")
    who = caller_of(scope)
    event = runtime.make_event(
        body["type"],
        body.get("payload"),
        owner=who.owner,
        actor=who.actor,
        id=body.get("id"),
        trace=traceparent_of(scope),
    )
    inserted = await runtime.submit(event, check_duplicate="id" in body)
    return event.id, inserted


EVENTS = EventIngress()
routes = [Route("/event", EVENTS, methods=["POST"])]
