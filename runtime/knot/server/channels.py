"""`/api/channels`: create, list, show and delete Sky channels.

A caller sees and manages its own channels; one with the Manage Global Event Sinks permission
(the local user of a runtime without users has it) manages every channel, including global
ones and those of other users. A channel the caller may not see is answered 404, so ecis do not
leak.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._exceptions import InvalidInput, NotFound, PermissionDenied
from .._runtime import Runtime
from ..sky.channels import Channel
from .auth import Caller, caller
from .common import read_json

__all__ = ["routes"]

_FIELDS = {"owner", "name", "allow", "deny", "eci"}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _visible(who: Caller, channel: Channel) -> bool:
    return who.manage_global_sinks or (bool(who.owner) and who.owner == channel.owner)


async def list_channels(request: Request) -> Response:
    """The Sky channels the caller may see (their own; all of them with Manage Global Event
    Sinks)."""
    who = caller(request)
    channels = _runtime(request).channels.list()
    return JSONResponse({"channels": [c.to_dict() for c in channels if _visible(who, c)]})


async def create_channel(request: Request) -> Response:
    """Make a Sky channel: `{"owner", "name", "allow", "deny", "eci"}`, all optional → 201, the
    channel. Making one for someone else, or a global one, takes Manage Global Event Sinks."""
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object (every field is optional).")
    unknown = set(body) - _FIELDS
    if unknown:
        raise InvalidInput(
            f"Unknown field{'s' if len(unknown) > 1 else ''} in the request: "
            f"{', '.join(sorted(unknown))}; send {', '.join(sorted(_FIELDS))}."
        )
    who = caller(request)
    owner = body.get("owner", who.owner)
    if owner is None:
        owner = ""
    if not isinstance(owner, str):
        raise InvalidInput("The channel owner must be a user id string ('' for global).")
    if owner != who.owner and not who.manage_global_sinks:
        raise PermissionDenied(
            "Making a channel for another user (or a global one) takes the Manage Global "
            "Event Sinks permission.",
            status=403,
        )
    for key in ("allow", "deny"):
        value = body.get(key)
        if value is not None and not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise InvalidInput(f"The channel's {key} must be a list of event patterns.")
    name = body.get("name", "")
    if not isinstance(name, str):
        raise InvalidInput("The channel name must be a string.")
    eci = body.get("eci")
    if eci is not None and not isinstance(eci, str):
        raise InvalidInput("The eci must be a string.")
    channel = await _runtime(request).channels.create(
        owner=owner,
        name=name,
        allow=body.get("allow"),
        deny=body.get("deny"),
        eci=eci,
    )
    return JSONResponse(channel.to_dict(), status_code=201)


def _find(request: Request) -> Channel:
    eci = request.path_params["eci"]
    channel = _runtime(request).channels.get(eci)
    if channel is None or not _visible(caller(request), channel):
        raise NotFound(f"There is no channel with eci {eci!r}.", what=eci)
    return channel


async def get_channel(request: Request) -> Response:
    """One channel; 404 for one the caller may not see."""
    return JSONResponse(_find(request).to_dict())


async def delete_channel(request: Request) -> Response:
    """Delete a channel; raising events on it stops at once."""
    channel = _find(request)
    await _runtime(request).channels.delete(channel.eci)
    return JSONResponse({"deleted": channel.to_dict()})


routes = [
    Route("/api/channels", list_channels, methods=["GET"]),
    Route("/api/channels", create_channel, methods=["POST"]),
    Route("/api/channels/{eci}", get_channel, methods=["GET"]),
    Route("/api/channels/{eci}", delete_channel, methods=["DELETE"]),
]
