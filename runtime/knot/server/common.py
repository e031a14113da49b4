"""Request and response helpers shared by every route: bounded JSON bodies and JSON errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from .._exceptions import (
    Conflict,
    InvalidInput,
    KnotError,
    NotFound,
    PermissionDenied,
    RuntimeClosed,
    StoreError,
)

__all__ = ["BodyTooLarge", "error_response", "json_error", "query_int", "read_body", "read_json"]


class BodyTooLarge(InvalidInput):
    """The request body is over `server.max_body_bytes` (answered 413)."""


def json_error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def error_response(exc: KnotError) -> JSONResponse:
    """The one mapping from the error tree to HTTP statuses."""
    if isinstance(exc, BodyTooLarge):
        return json_error(413, exc.message)
    if isinstance(exc, InvalidInput):
        return json_error(400, exc.message)
    if isinstance(exc, NotFound):
        return json_error(404, exc.message)
    if isinstance(exc, PermissionDenied):
        headers = {"WWW-Authenticate": 'Bearer realm="knot"'} if exc.status == 401 else None
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)
    if isinstance(exc, Conflict):
        return json_error(409, exc.message)
    if isinstance(exc, RuntimeClosed | StoreError):
        return json_error(503, exc.message)
    return json_error(500, exc.message)


async def read_body(request: Request) -> bytes:
    limit: int = request.app.state.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The request body is {declared} bytes; the limit is {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is over the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """The request body decoded as JSON, or InvalidInput saying why it is not."""
    body = await read_body(request)
    if not body.strip():
        raise InvalidInput("The request body is empty; send a JSON object.")
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput("The request body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}."
        ) from None


def query_int(request: Request, name: str, default: int, *, lo: int = 1, hi: int = 10_000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"The query parameter {name} must be an integer, not {raw!r}.") from None
    if not lo <= value <= hi:
        raise InvalidInput(f"The query parameter {name} must be between {lo} and {hi}.")
    return value
