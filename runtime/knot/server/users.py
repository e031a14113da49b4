"""Users over HTTP: `/api/users` (list, create, delete) and `/api/whoami`.

Managing users needs the permission "Manage Users" (the local user of a runtime without users
has it, which is how the very first user is created through a running runtime). A new user's
token is in the answer to its creation and nowhere else, ever.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._exceptions import InvalidInput
from .._runtime import Runtime
from .auth import caller
from .common import read_json

__all__ = ["routes"]

_FLAGS = ("manage_own_sinks", "manage_global_sinks", "manage_users")


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def whoami(request: Request) -> Response:
    """The caller: their name and permissions."""
    return JSONResponse(caller(request).to_dict())


async def list_users(request: Request) -> Response:
    """The users and their permissions, never tokens; needs Manage Users."""
    caller(request).require_users("list the users")
    return JSONResponse({"users": [u.to_dict() for u in _runtime(request).users.all()]})


async def create_user(request: Request) -> Response:
    """Add a user: `{"name", "manage_global_sinks"?, "manage_users"?}` → 201 with the new
    bearer token, shown once; needs Manage Users."""
    who = caller(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput('The request body must be a JSON object like {"name": "alice"}.')
    who.require_users(f"create the user {body.get('name')!r}")
    unknown = sorted(set(body) - {"name", *_FLAGS})
    if unknown:
        raise InvalidInput(f"Unknown fields in the request: {', '.join(unknown)}.")
    flags = {key: body.get(key, key == "manage_own_sinks") for key in _FLAGS}
    bad = [key for key, value in flags.items() if not isinstance(value, bool)]
    if bad:
        raise InvalidInput(f"{', '.join(bad)} must be true or false.")
    user, token = await _runtime(request).users.add(str(body.get("name", "")), **flags)
    return JSONResponse({"user": user.to_dict(), "token": token}, status_code=201)


async def delete_user(request: Request) -> Response:
    """Remove a user; their token stops working at once."""
    name = request.path_params["name"]
    caller(request).require_users(f"remove the user {name!r}")
    user = await _runtime(request).users.remove(name)
    return JSONResponse({"removed": user.to_dict()})


routes = [
    Route("/api/whoami", whoami, methods=["GET"]),
    Route("/api/users", list_users, methods=["GET"]),
    Route("/api/users", create_user, methods=["POST"]),
    Route("/api/users/{name}", delete_user, methods=["DELETE"]),
]
