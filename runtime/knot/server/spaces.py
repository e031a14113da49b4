"""/api/spaces: create, list, get, start, stop and delete local spaces, and read their logs.

A space belongs to the user who creates it (`caller(request).owner`); a caller who is a
registered user sees and changes only their own spaces. A space that runs something on this
machine (a `cmd`, or a command as its health check) runs it as the runtime's own user, so only
callers with "Manage Global Event Sinks" may create one; anyone may create a record-only space
or one with an HTTP health check.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._exceptions import InvalidInput, PermissionDenied
from .._runtime import Runtime
from ..spaces.service import Spaces
from ..spaces.spec import HealthKind, SpaceSpec
from .auth import caller
from .common import query_int, read_json

__all__ = ["routes"]


def _spaces(request: Request) -> Spaces:
    runtime: Runtime = request.app.state.runtime
    return runtime.spaces


def _scope(request: Request) -> str | None:
    """Whose spaces this caller sees: a registered user only their own; the local user all."""
    return caller(request).owner or None


async def list_spaces(request: Request) -> Response:
    """The spaces (the caller's own, for a registered user) with state, pid and health."""
    spaces = _spaces(request).list(owner=_scope(request))
    return JSONResponse({"spaces": [s.to_dict() for s in spaces]})


async def create_space(request: Request) -> Response:
    """Make a space: `{"name", "cmd"?, "urls"?, "health"?, "interval"?, "timeout"?,
    "threshold"?, "template_id"?, "startup_script_id"?, "on_restart"?, "start"?}` → 201, the
    space (raising `space.created`). A `cmd` or a command health check needs Manage Global
    Event Sinks."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object describing the space.")
    start = body.pop("start", False)
    if not isinstance(start, bool):
        raise InvalidInput("The field 'start' must be true or false.")
    who = caller(request)
    owner = who.owner
    if owner:
        if body.get("owner", owner) != owner:
            raise PermissionDenied("You may only create spaces you own.")
        body["owner"] = owner
    spec = SpaceSpec.from_dict(body)  # SpaceError (400) listing every problem
    runs_commands = bool(spec.cmd) or (
        spec.health is not None and spec.health.kind is HealthKind.COMMAND
    )
    if runs_commands and not who.manage_global_sinks:
        raise PermissionDenied(
            "Creating a space that runs a command on this machine (cmd, or a command health "
            "check) needs the Manage Global Event Sinks permission."
        )
    info = await _spaces(request).create_from(body, start=start)
    return JSONResponse(info.to_dict(), status_code=201)


async def get_space(request: Request) -> Response:
    """One space."""
    info = _spaces(request).get(request.path_params["name"], owner=_scope(request))
    return JSONResponse(info.to_dict())


async def start_space(request: Request) -> Response:
    """Start a space (raising `space.started`) → the space."""
    info = await _spaces(request).start(request.path_params["name"], owner=_scope(request))
    return JSONResponse(info.to_dict())


async def stop_space(request: Request) -> Response:
    """Stop a space (SIGTERM to its process group, then SIGKILL; raising `space.stopped`) → the
    space."""
    info = await _spaces(request).stop(request.path_params["name"], owner=_scope(request))
    return JSONResponse(info.to_dict())


async def delete_space(request: Request) -> Response:
    """Stop a space and delete it (raising its events) → the space."""
    info = await _spaces(request).delete(request.path_params["name"], owner=_scope(request))
    return JSONResponse(info.to_dict())


async def space_log(request: Request) -> Response:
    """`?n=N`: the last N lines the space's process printed."""
    lines = query_int(request, "n", 100)
    name = request.path_params["name"]
    text = await _spaces(request).logs(name, lines=lines, owner=_scope(request))
    return JSONResponse({"name": name, "lines": text})


routes = [
    Route("/api/spaces", list_spaces, methods=["GET"]),
    Route("/api/spaces", create_space, methods=["POST"]),
    Route("/api/spaces/{name}", get_space, methods=["GET"]),
    Route("/api/spaces/{name}", delete_space, methods=["DELETE"]),
    Route("/api/spaces/{name}/start", start_space, methods=["POST"]),
    Route("/api/spaces/{name}/stop", stop_space, methods=["POST"]),
    Route("/api/spaces/{name}/log", space_log, methods=["GET"]),
]
