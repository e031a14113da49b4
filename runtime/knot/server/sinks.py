"""Sinks over HTTP: `/api/event-sinks` (create, list, get, update, delete, test, secret).

`/api/sinks` stays as an alias of the listing. Only sinks created at run time can be changed
here: a sink defined in knot.toml or a script is changed where it is defined (409 says where).
Each caller sees global sinks and their own, and changes only what their permissions allow.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._events import Event, check_type, new_event_id, now_rfc3339
from .._exceptions import Conflict, DeliveryFailed, EventError, InvalidInput, NotFound
from .._runtime import Runtime
from .._sinkspec import SinkOrigin, SinkSpec
from ..engine.registry import SinkStatus
from ..sinks import WebhookSink
from .auth import Caller, caller
from .common import read_json

__all__ = ["create", "remove", "routes", "send_test", "status_of", "update"]

TEST_EVENT_TYPE = "custom.knot.test"
_WHERE = {
    SinkOrigin.SCRIPT: "by a script in scripts/sinks/; change that file",
    SinkOrigin.CONFIG: "in knot.toml ([[sinks]]); change it there",
    SinkOrigin.BUILTIN: "in-process by the program that runs the runtime",
    SinkOrigin.METHOD: "by a method script in scripts/methods/; change that file",
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _visible(request: Request, who: Caller) -> list[SinkStatus]:
    return [s for s in _runtime(request).sinks() if who.may_see_sink(s.spec.owner)]


def _check_owner(runtime: Runtime, owner: object) -> None:
    """Once users exist, a sink's owner must be one of them (or "" for global)."""
    if isinstance(owner, str) and owner and runtime.users and runtime.users.get(owner) is None:
        raise InvalidInput(f"There is no user named {owner!r} to own the sink.")


def _changeable(spec: SinkSpec, doing: str) -> None:
    if spec.origin is not SinkOrigin.API:
        raise Conflict(
            f"Cannot {doing} the sink {spec.name!r}: it is defined {_WHERE[spec.origin]}.",
            what=spec.name,
        )


async def _body(request: Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object describing the sink.")
    return body


async def list_sinks(request: Request) -> Response:
    """The sinks the caller may see, with pending / delivered / failed / dropped counts,
    `last_error` and `problem`."""
    return JSONResponse({"sinks": [s.to_dict() for s in _visible(request, caller(request))]})


async def get_sink(request: Request) -> Response:
    """One sink, as in the listing."""
    name = request.path_params["name"]
    for status in _visible(request, caller(request)):
        if status.name == name:
            return JSONResponse(status.to_dict())
    raise NotFound(f"There is no sink named {name!r}.", what=name)


# The actions themselves, for the API's routes and the dashboard's buttons alike: the same
# permission checks whichever way a person comes.


def _find(runtime: Runtime, who: Caller, name: str) -> SinkSpec:
    """The sink `name` as this caller may see it (404 for other users' sinks too)."""
    spec = runtime.registry.spec(name)
    if not who.may_see_sink(spec.owner):
        raise NotFound(f"There is no sink named {name!r}.", what=name)
    return spec


def status_of(runtime: Runtime, name: str) -> dict[str, Any]:
    for status in runtime.sinks():
        if status.name == name:
            return status.to_dict()
    raise NotFound(f"There is no sink named {name!r}.", what=name)


async def create(runtime: Runtime, who: Caller, body: dict[str, Any]) -> dict[str, Any]:
    """Create a sink from its definition; its status (and a webhook's secret, shown once)."""
    name = body.get("name")
    if isinstance(name, str) and name in runtime.registry:
        existing = runtime.registry.spec(name)
        where = _WHERE.get(existing.origin, "through the API")
        raise Conflict(f"A sink named {name!r} already exists (defined {where}).", what=name)
    body.setdefault("owner", who.owner)  # a user's sinks are their own unless they say ""
    owner = body["owner"] if isinstance(body["owner"], str) else ""
    who.require_sink(owner, f"create the sink {name!r}")
    _check_owner(runtime, body["owner"])
    spec = await runtime.add_sink(body)
    answer = status_of(runtime, spec.name)
    if spec.type == WebhookSink.type:  # shown once, so the receiver can verify signatures
        answer["secret"] = await _secret(runtime, spec)
    return answer


async def _secret(runtime: Runtime, spec: SinkSpec) -> str:
    """A webhook sink's signing secret, also when another node of a cluster serves it."""
    given = spec.options.get("secret")
    if isinstance(given, str) and given:
        return given
    try:
        sink = runtime.sink(spec.name)
    except NotFound:  # parked here, or starting: the secret every node reads
        return await runtime.sink_secret(spec.name)
    return sink.secret if isinstance(sink, WebhookSink) else ""


async def update(
    runtime: Runtime, who: Caller, name: str, body: dict[str, Any], *, whole: bool = False
) -> dict[str, Any]:
    """Change fields of a sink (`whole`: `body` is its whole new definition)."""
    spec = _find(runtime, who, name)
    who.require_sink(spec.owner, f"change the sink {name!r}")
    _changeable(spec, "change")
    if body.get("name", name) != name:
        raise InvalidInput("A sink cannot be renamed; create a new one and remove this one.")
    if "owner" in body:
        owner = body["owner"] if isinstance(body["owner"], str) else ""
        who.require_sink(owner, f"give the sink {name!r} to {owner or 'everyone (global)'}")
        _check_owner(runtime, owner)
    if whole:
        await runtime.add_sink({"owner": spec.owner, **body, "name": name})
    else:
        await runtime.update_sink(name, body)
    return status_of(runtime, name)


async def remove(runtime: Runtime, who: Caller, name: str) -> SinkSpec:
    spec = _find(runtime, who, name)
    who.require_sink(spec.owner, f"remove the sink {name!r}")
    _changeable(spec, "remove")
    return await runtime.remove_sink(name, reason=f"removed through the API by {who.name}")


async def send_test(
    runtime: Runtime, who: Caller, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Deliver one test event straight to the sink (one attempt) and report what happened."""
    spec = _find(runtime, who, name)
    who.require_sink(spec.owner, f"test the sink {name!r}")
    event_type = body.get("type") or TEST_EVENT_TYPE
    if (problem := check_type(event_type)) is not None:
        raise EventError(problem, event_type=str(event_type))
    payload = body.get("payload", {"test": True, "sink": name})
    if not isinstance(payload, dict):
        raise EventError("The test payload must be a JSON object.")
    event = Event(
        id=new_event_id(),
        type=event_type,
        data=payload,
        ts=now_rfc3339(),
        zone=runtime.config.zone,
        owner=spec.owner,
        actor=who.actor,
    )
    gate = runtime.registry.gate
    if gate is not None and name in runtime.registry.parked():
        where = gate.holder(spec) or "no node yet"
        raise NotFound(
            f"The sink {name!r} is served by another node of the cluster ({where}); test it "
            "through that node's API.",
            what=name,
        )
    sink = runtime.sink(name)
    answer: dict[str, Any] = {"sink": name, "event": event.to_dict()}
    try:
        async with asyncio.timeout(runtime.config.delivery.sync_timeout):
            result = await sink.deliver(event)
    except DeliveryFailed as exc:
        return {**answer, "delivered": False, "error": exc.reason}
    except TimeoutError:
        error = f"The sink {name} did not finish within {runtime.config.delivery.sync_timeout:g} s."
        return {**answer, "delivered": False, "error": error}
    detail = result.detail if result is not None else ""
    output = list(result.output) if result is not None else []
    return {**answer, "delivered": True, "detail": detail, "output": output}


async def create_sink(request: Request) -> Response:
    """Add a sink: a definition (keys as in `knot.toml`) → 201 with the sink, and its `secret`
    for a webhook; 400 listing every problem; 409 if the name is taken."""
    answer = await create(_runtime(request), caller(request), await _body(request))
    return JSONResponse(answer, status_code=201)


async def update_sink(request: Request) -> Response:
    """Change some fields (PATCH) or replace the definition (PUT); its queue and generated
    secret are kept. A sink from `knot.toml` or `scripts/` answers 409 saying where to change
    it."""
    name = request.path_params["name"]
    runtime, who = _runtime(request), caller(request)
    spec = _find(runtime, who, name)  # 404, 403 and 409 before reading the body
    who.require_sink(spec.owner, f"change the sink {name!r}")
    _changeable(spec, "change")
    body = await _body(request)
    answer = await update(runtime, who, name, body, whole=request.method == "PUT")
    return JSONResponse(answer)


async def delete_sink(request: Request) -> Response:
    """Remove a sink (an attempt in flight may finish first, up to `delivery.stop_grace`;
    events still queued for it are given up, audited)."""
    removed = await remove(_runtime(request), caller(request), request.path_params["name"])
    return JSONResponse({"removed": removed.to_dict()})


async def test_sink(request: Request) -> Response:
    """`{"type"?, "payload"?}` → `{"delivered", "detail" or "error", "event"}`: one test event
    straight to the sink (one attempt, nothing journaled), and what happened."""
    runtime, who = _runtime(request), caller(request)
    name = request.path_params["name"]
    spec = _find(runtime, who, name)
    who.require_sink(spec.owner, f"test the sink {name!r}")  # before reading the body
    sent = request.headers.get("content-length") not in (None, "0")
    body = await _body(request) if sent or "transfer-encoding" in request.headers else {}
    return JSONResponse(await send_test(runtime, who, name, body))


async def get_secret(request: Request) -> Response:
    """`{"secret"}`: the signing secret of a webhook sink, for those who may manage it."""
    runtime, who = _runtime(request), caller(request)
    name = request.path_params["name"]
    spec = _find(runtime, who, name)
    who.require_sink(spec.owner, f"read the secret of the sink {name!r}")
    if spec.type != WebhookSink.type:
        raise NotFound(f"The sink {name!r} is not a webhook sink and has no secret.", what=name)
    return JSONResponse({"sink": name, "secret": await _secret(runtime, spec)})


routes = [
    Route("/api/sinks", list_sinks, methods=["GET"]),
    Route("/api/sinks/{name}", get_sink, methods=["GET"]),
    Route("/api/event-sinks", list_sinks, methods=["GET"]),
    Route("/api/event-sinks", create_sink, methods=["POST"]),
    Route("/api/event-sinks/{name}", get_sink, methods=["GET"]),
    Route("/api/event-sinks/{name}", update_sink, methods=["PATCH", "PUT"]),
    Route("/api/event-sinks/{name}", delete_sink, methods=["DELETE"]),
    Route("/api/event-sinks/{name}/test", test_sink, methods=["POST"]),
    Route("/api/event-sinks/{name}/secret", get_secret, methods=["GET"]),
]
