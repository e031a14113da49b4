"""Request and response helpers shared by every route: bounded JSON bodies and JSON errors."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .._exceptions import (
    Conflict,
    InvalidInput,
    KnotError,
    NotFound,
    PermissionDenied,
    RuntimeClosed,
    StoreError,
)
from .._jsontext import decode_json
from .._tracecontext import clean_traceparent

__all__ = [
    "SKY_PREFIX",
    "BodyLimit",
    "BodyTooLarge",
    "declared_too_large",
    "error_response",
    "header",
    "internal_error",
    "json_error",
    "parse_json_body",
    "query_int",
    "read_body",
    "read_json",
    "receive_body",
    "send_json",
    "traceparent",
    "traceparent_of",
]

SKY_PREFIX = "/sky/"  # the browser routes: CORS *, an open preflight, cross-site allowed


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


def declared_too_large(scope: Scope, limit: int) -> JSONResponse | None:
    """The 413 answer to a request that declares a body over `limit`, or None."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                message = (
                    f"The request body is {int(value)} bytes; the limit is {limit} bytes "
                    "(server.max_body_bytes)."
                )
                response = json_error(413, message)
                if scope["path"].startswith(SKY_PREFIX):
                    response.headers["Access-Control-Allow-Origin"] = "*"
                return response
            break
    return None


class BodyLimit:
    """Refuse (413) any request that declares a body over the limit, whatever its route.

    Routes that read a body also count what arrives (`read_body`), which catches chunked
    bodies; this catches the declared size before routing, so a route that ignores its body
    (`POST /api/spaces/x/start`) answers a huge one the same way as the others.
    """

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = declared_too_large(scope, self.limit)
            if response is not None:
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def read_body(request: Request) -> bytes:
    return await receive_body(request.receive, request.app.state.max_body_bytes)


async def receive_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, at most `limit` bytes (BodyTooLarge past that)."""
    # A declared Content-Length over the limit was already answered 413 by BodyLimit, before
    # routing; here only what actually arrives is counted (chunked bodies, lying headers).
    # Straight from `receive` rather than through request.stream(): a small body is one
    # message, and this is on every ingress request's path.
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is over the limit of {limit} bytes.")
        if not message.get("more_body", False):
            return b"".join(chunks) + chunk if chunks else chunk
        chunks.append(chunk)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower case), from the raw headers (cheaper than
    starlette's Headers on a hot path)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_json(request: Request) -> Any:
    """The request body decoded as JSON, or InvalidInput saying why it is not."""
    return parse_json_body(await read_body(request))


def parse_json_body(body: bytes) -> Any:
    """A request body decoded as JSON, or InvalidInput saying why it is not."""
    if not body.strip():
        raise InvalidInput("The request body is empty; send a JSON object.")
    return decode_json(body)


_JSON_HEADER = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    """Answer with `body` (JSON already) in two messages, without a Response object (the hot
    paths' way; what starlette's JSONResponse sends, minus its per-request objects)."""
    raw = [_JSON_HEADER, (b"content-length", b"%d" % len(body)), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def internal_error(exc: BaseException) -> JSONResponse:
    """The 500 answer to an error nobody expected (the traceback goes to the log)."""
    return JSONResponse(
        {"error": f"The runtime hit an internal error ({type(exc).__name__}); see its log."},
        status_code=500,
    )


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


def traceparent(request: Request) -> str:
    """The request's valid W3C `traceparent` header, or "" (an invalid one is ignored)."""
    return traceparent_of(request.scope)


def traceparent_of(scope: Scope) -> str:
    """`traceparent`, from the ASGI scope."""
    # From the raw headers: this is on every ingress request's path, and building starlette's
    # Headers object costs more than the scan.
    value = header(scope, b"traceparent")
    return clean_traceparent(value) if value is not None else ""
