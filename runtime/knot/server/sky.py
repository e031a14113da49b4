"""Sky routes: `/sky/event/...` raises an event on a channel and answers with the directives
its sinks produced; `/sky/cloud/<eci>/<script>/<function>` (the Sky Cloud API) calls a method
of a method script and answers its result.

Parsing and cleaning live in `_sky.py`, channels in `_channels.py`; this module only reads the
request, applies the caller's rights and the channel's policy, raises the event and answers.
Every answer (errors included) carries `Access-Control-Allow-Origin: *`, and OPTIONS answers a
CORS preflight, so browser-based event generators can call it.
"""

from __future__ import annotations

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .._audit import AuditEntry, AuditKind
from .._exceptions import InvalidInput, KnotError, MethodFailed, NotFound, PermissionDenied
from .._json import JSONObject, compact
from .._jsonrpc import INVALID_PARAMS
from .._runtime import Runtime
from ..sky.channels import Channel
from ..sky.esl import (
    BodyKind,
    body_kind,
    parse_esl_path,
    parse_sky_request,
    read_attributes,
    sky_answer,
)
from .auth import Caller, caller_of
from .common import (
    error_response,
    header,
    json_error,
    receive_body,
    send_json,
    traceparent_of,
)

__all__ = ["SKY_EVENTS", "SkyEvents", "may_raise_on", "routes", "sky_cloud"]

PREFIX = "/sky/event/"
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization"
_CORS_RAW = (b"access-control-allow-origin", b"*")
_USAGE = "use /sky/event/<eci>/<eid>/<domain>/<type> or /sky/event/<eci>/<eid>?_domain=D&_type=T"


def may_raise_on(who: Caller, channel: Channel, *, verb: str = "raise events on") -> str | None:
    """Why `who` may not raise events on (or `verb`) `channel`, or None when it may.

    A channel's events belong to its owner, so only that user may raise them, or a caller who
    manages global sinks (which includes the local user of a runtime without users).
    """
    if who.manage_global_sinks or (who.owner and who.owner == channel.owner):
        return None
    whose = f"user {channel.owner}" if channel.owner else "nobody (a global channel)"
    return (
        f"User {who.actor.username or who.owner or '?'} may not {verb} channel "
        f"{channel.eci}, which belongs to {whose}; it takes the channel's owner or the "
        "Manage Global Event Sinks permission."
    )


class SkyEvents:
    """The Sky Event API: `/sky/event/<eci>/<eid>/<domain>/<type>`, or `/sky/event/<eci>/<eid>`
    with `_domain` and `_type`, GET or POST, raises `custom.<domain>.<type>` on the channel
    `eci` and answers `{"eid", "id", "directives"}` from its sinks (see [the Sky Event
    API](../sky.md)); OPTIONS answers a CORS preflight.

    It is the hot ingress path, so it answers with two `send` calls of its own rather than
    through starlette's per-request wrappers (Request, endpoint adapter, exception-handler
    scope, Response object); `KnotApp` (front.py) calls it straight after the same checks as
    the middleware. Errors still go through the shared `error_response` mapping.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.answer(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer the request; return the status sent."""
        method = scope["method"]
        if method == "OPTIONS":
            response: Response = _preflight(header(scope, b"access-control-request-headers"))
        elif method == "HEAD":  # starlette adds HEAD to GET routes; an event is no HEAD
            response = json_error(405, "Raise Sky events with GET or POST.")
            response.headers["Allow"] = ALLOW_METHODS
            response.headers["Access-Control-Allow-Origin"] = "*"
        else:
            try:
                status, content = await _raise_event(scope, receive)
            except KnotError as exc:
                response = error_response(exc)
                response.headers["Access-Control-Allow-Origin"] = "*"
            else:
                body = compact(content).encode()
                await send_json(send, status, body, _CORS_RAW)
                return status
        await response(scope, receive, send)
        return response.status_code


def _preflight(requested: str | None) -> Response:
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


def _rest_of_path(scope: Scope) -> str:
    """The path after /sky/event/, still percent-encoded when the server gives us raw_path."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(PREFIX.encode()):
        return raw[len(PREFIX) :].split(b"?", 1)[0].decode("latin-1")
    path: str = scope["path"]
    return path[len(PREFIX) :] if path.startswith(PREFIX) else ""


async def _raise_event(scope: Scope, receive: Receive) -> tuple[int, JSONObject]:
    runtime: Runtime = scope["app"].state.runtime
    path = parse_esl_path(_rest_of_path(scope))
    if path is None or not path.eci:
        raise NotFound(f"{URL(scope=scope).path} is not a Sky event URL: {_USAGE}.")
    channel, who, attrs = await _channel_input(
        runtime,
        scope,
        receive,
        path.eci,
        verb="raise events on",
        send="send the attributes as application/json (or any application/*+json) or as "
        "application/x-www-form-urlencoded",
    )
    sky = parse_sky_request(path, attrs)
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
        trace=traceparent_of(scope),
    )
    eid = sky.eid or event.id
    # A `_rids` name no sink answers to (a typo, a sink that does not take this type) would
    # otherwise be a silent empty answer: say which, and why.
    registry = runtime.registry
    unmatched = [
        {"rid": rid, "reason": why}
        for rid in sky.rids or ()
        if (why := registry.why_not(rid, event)) is not None
    ]
    if sky.is_async:
        await runtime.submit(event)
        answer: JSONObject = {"eid": eid, "id": event.id}
    else:
        bound = runtime.config.delivery.sync_timeout
        timeout = min(sky.timeout, bound) if sky.timeout is not None else bound
        answer = sky_answer(await runtime.submit_and_wait(event, timeout=timeout), eid)
    if unmatched:
        answer["unmatched"] = unmatched
    return (202 if sky.is_async else 200), answer


async def _channel_input(
    runtime: Runtime, scope: Scope, receive: Receive, eci: str, *, verb: str, send: str
) -> tuple[Channel, Caller, JSONObject]:
    """The channel `eci`, the caller (refused, 403 and audited, unless they may `verb` it) and
    the attributes from the query string and the body (a body of another type: 400)."""
    channel = runtime.channels.find(eci)
    who = caller_of(scope)
    refusal = may_raise_on(who, channel, verb=verb)
    if refusal is not None:
        _refuse(runtime, refusal)
    body = await receive_body(receive, scope["app"].state.max_body_bytes)
    content_type = header(scope, b"content-type")
    kind = body_kind(content_type, body)
    if kind is BodyKind.UNSUPPORTED:  # a bad body: 400, as DESIGN.md's Sky section says
        raise InvalidInput(f"The request body is {content_type}; {send}.")
    query = scope.get("query_string", b"").decode("latin-1")
    return channel, who, read_attributes(query, body, kind)


def _refuse(runtime: Runtime, message: str) -> None:
    runtime.record_audit(AuditEntry.new(AuditKind.SECURITY, message))
    raise PermissionDenied(message, status=403)


async def sky_cloud(request: Request) -> Response:
    """The Sky Cloud API: call the method `function` of the method script `script` for the
    channel `eci`, with the query string and a JSON or form body as arguments, and answer its
    result as JSON (see [the Sky Event API](../sky.md)).

    Reserved `_` keys are not arguments. The channel decides whose call it is (its owner, as
    for events) and who may make it (the same rule as raising events on it). The answer is the
    method's result as JSON; a failing method answers 400 (invalid params) or 502 (it raised,
    timed out or its worker died) with the JSON-RPC error code in `code`.
    """
    if request.method == "OPTIONS":
        return _preflight(request.headers.get("access-control-request-headers"))
    try:
        response: Response = await _cloud_call(request)
    except KnotError as exc:
        response = error_response(exc)
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


async def _cloud_call(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    channel, who, attrs = await _channel_input(
        runtime,
        request.scope,
        request.receive,
        request.path_params["eci"],
        verb="query",
        send="send Sky Cloud arguments in the query string or as an application/json (or any "
        "application/*+json) or application/x-www-form-urlencoded body",
    )
    args = {k: v for k, v in attrs.items() if not k.startswith("_")}
    script, function = request.path_params["script"], request.path_params["function"]
    try:
        info = runtime.methods.find(f"{script}.{function}")
    except NotFound:
        raise NotFound(
            f"There is no function {function!r} in method script {script!r} "
            "(scripts/methods/<script>.py)."
        ) from None
    try:
        result = await runtime.methods.invoke(info, args, owner=channel.owner, actor=who.actor)
    except MethodFailed as exc:
        status = 400 if exc.code == INVALID_PARAMS else 502
        return json_error(status, exc.message, code=exc.code, data=exc.data)
    return JSONResponse(result.result)


_METHODS = ["GET", "POST", "OPTIONS"]
SKY_EVENTS = SkyEvents()
routes = [
    Route("/sky/event", SKY_EVENTS, methods=_METHODS),
    Route("/sky/event/{rest:path}", SKY_EVENTS, methods=_METHODS),
    Route("/sky/cloud/{eci}/{script}/{function}", sky_cloud, methods=_METHODS),
]
