"""Sky Event API routes: `/sky/event/...` raises an event on a channel and answers with the
directives its sinks produced.

Parsing and cleaning live in `_sky.py`, channels in `_channels.py`; this module only reads the
request, applies the caller's rights and the channel's policy, raises the event and answers.
Every answer (errors included) carries `Access-Control-Allow-Origin: *`, and OPTIONS answers a
CORS preflight, so browser-based event generators can call it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._audit import AuditEntry, AuditKind
from .._channels import Channel
from .._exceptions import KnotError, NotFound, PermissionDenied
from .._runtime import Runtime
from .._sky import (
    BodyKind,
    body_kind,
    parse_esl_path,
    parse_sky_request,
    read_attributes,
    sky_answer,
)
from .auth import Caller, caller
from .common import UnsupportedMediaType, error_response, json_error, read_body

__all__ = ["may_raise_on", "routes"]

PREFIX = "/sky/event/"
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization"
_CORS = {"Access-Control-Allow-Origin": "*"}
_USAGE = "use /sky/event/<eci>/<eid>/<domain>/<type> or /sky/event/<eci>/<eid>?_domain=D&_type=T"


def may_raise_on(who: Caller, channel: Channel) -> str | None:
    """Why `who` may not raise events on `channel`, or None when it may.

    A channel's events belong to its owner, so only that user may raise them, or a caller who
    manages global sinks (which includes the local user of a runtime without users).
    """
    if who.manage_global_sinks or (who.owner and who.owner == channel.owner):
        return None
    whose = f"user {channel.owner}" if channel.owner else "nobody (a global channel)"
    return (
        f"User {who.actor.username or who.owner or '?'} may not raise events on channel "
        f"{channel.eci}, which belongs to {whose}; it takes the channel's owner or the "
        "Manage Global Event Sinks permission."
    )


async def sky_event(request: Request) -> Response:
    if request.method == "OPTIONS":
        return _preflight(request)
    if request.method == "HEAD":  # starlette adds HEAD to GET routes; an event is no HEAD
        response: Response = json_error(405, "Raise Sky events with GET or POST.")
        response.headers["Allow"] = ALLOW_METHODS
    else:
        try:
            return await _raise_event(request)  # answers carry the CORS header already
        except KnotError as exc:
            response = error_response(exc)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _preflight(request: Request) -> Response:
    requested = request.headers.get("access-control-request-headers")
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Allow-Headers": requested or ALLOW_HEADERS,
            "Access-Control-Max-Age": "86400",
            "Allow": ALLOW_METHODS,
        },
    )


def _rest_of_path(request: Request) -> str:
    """The path after /sky/event/, still percent-encoded when the server gives us raw_path."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(PREFIX.encode()):
        return raw[len(PREFIX) :].split(b"?", 1)[0].decode("latin-1")
    return str(request.path_params.get("rest", ""))


async def _raise_event(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    path = parse_esl_path(_rest_of_path(request))
    if path is None or not path.eci:
        raise NotFound(f"{request.url.path} is not a Sky event URL: {_USAGE}.")
    channel = runtime.channels.find(path.eci)
    who = caller(request)
    refusal = may_raise_on(who, channel)
    if refusal is not None:
        _refuse(runtime, refusal)
    body = await read_body(request)
    kind = body_kind(request.headers.get("content-type"), body)
    if kind is BodyKind.UNSUPPORTED:
        raise UnsupportedMediaType(
            f"The request body is {request.headers.get('content-type')}; send the attributes "
            "as application/json (or any application/*+json) or as "
            "application/x-www-form-urlencoded."
        )
    query = request.scope.get("query_string", b"").decode("latin-1")
    sky = parse_sky_request(path, read_attributes(query, body, kind))
    refusal = channel.policy.refusal(sky.event_type)
    if refusal is not None:
        _refuse(runtime, f"Channel {channel.eci} does not take {sky.event_type}: {refusal}.")
    event = runtime.make_event(
        sky.event_type,
        sky.attrs,
        owner=channel.owner,
        actor=who.actor,
        eid=sky.eid,
        rids=sky.rids,
        ts=sky.ts,
    )
    eid = sky.eid or event.id
    if sky.is_async:
        await runtime.submit(event)
        return JSONResponse({"eid": eid, "id": event.id}, status_code=202, headers=_CORS)
    bound = runtime.config.delivery.sync_timeout
    timeout = min(sky.timeout, bound) if sky.timeout is not None else bound
    report = await runtime.submit_and_wait(event, timeout=timeout)
    return JSONResponse(sky_answer(report, eid), headers=_CORS)


def _refuse(runtime: Runtime, message: str) -> None:
    runtime.audit(AuditEntry.new(AuditKind.SECURITY, message))
    raise PermissionDenied(message, status=403)


_METHODS = ["GET", "POST", "OPTIONS"]
routes = [
    Route("/sky/event", sky_event, methods=_METHODS),
    Route("/sky/event/{rest:path}", sky_event, methods=_METHODS),
]
