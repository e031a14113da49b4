"""JSON-RPC 2.0: decode requests (single or batch), call handlers, encode responses.

Transport-free: `POST /json-rpc`, the method-script workers' pipes and the notebook all hand it
bytes or decoded JSON and send back whatever it returns (None: nothing to answer). It passes
every example exchange of section 7 of the specification, including batches with invalid
members and all-notification batches, which the libraries we measured get wrong.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from ._events import loads_json

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "SERVER_ERROR",
    "Handler",
    "RpcError",
    "dispatch",
    "error_response",
    "handle",
]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SERVER_ERROR = -32000  # a handler raised

_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid Request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    SERVER_ERROR: "Server error",
}

Handler = Callable[[list[Any] | dict[str, Any] | None], Awaitable[Any]]
"""Called with the request's params (a list, an object, or None when absent)."""
Lookup = Callable[[str], Handler | None]


class RpcError(Exception):
    """Raise from a handler to answer with this error object."""

    def __init__(self, code: int, message: str | None = None, data: Any = None) -> None:
        super().__init__(message or _MESSAGES.get(code, "Server error"))
        self.code = code
        self.message = message or _MESSAGES.get(code, "Server error")
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def error_response(
    code: int, id: Any = None, *, message: str | None = None, data: Any = None
) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": RpcError(code, message, data).to_dict(), "id": id}


async def dispatch(body: bytes | str, lookup: Lookup) -> Any:
    """Answer a raw JSON-RPC body: a response object, a list of them, or None (nothing)."""
    try:
        decoded = loads_json(body)
    except (ValueError, UnicodeDecodeError):  # not JSON, or NaN / Infinity in it
        return error_response(PARSE_ERROR)
    return await handle(decoded, lookup)


async def handle(decoded: Any, lookup: Lookup) -> Any:
    """Answer an already decoded request or batch."""
    if isinstance(decoded, list):
        if not decoded:
            return error_response(INVALID_REQUEST)
        answers = await asyncio.gather(*(_one(item, lookup) for item in decoded))
        responses = [a for a in answers if a is not None]
        return responses or None
    return await _one(decoded, lookup)


def _valid_id(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and math.isfinite(value))
    )


async def _one(request: Any, lookup: Lookup) -> dict[str, Any] | None:
    if not isinstance(request, dict):
        return error_response(INVALID_REQUEST)
    has_id = "id" in request
    request_id = request.get("id")
    if has_id and not _valid_id(request_id):
        return error_response(INVALID_REQUEST)
    method = request.get("method")
    params = request.get("params")
    if (
        request.get("jsonrpc") != "2.0"
        or not isinstance(method, str)
        or ("params" in request and not isinstance(params, list | dict))
    ):
        return error_response(INVALID_REQUEST, request_id if has_id else None)
    handler = None if method.startswith("rpc.") else lookup(method)
    try:
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, data={"method": method})
        result = await handler(params)
    except RpcError as exc:
        return {"jsonrpc": "2.0", "error": exc.to_dict(), "id": request_id} if has_id else None
    except Exception as exc:
        if not has_id:
            return None
        return error_response(
            SERVER_ERROR, request_id, data={"type": type(exc).__name__, "message": str(exc)}
        )
    if not has_id:
        return None
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:  # a result that cannot be sent is our failure
        return error_response(
            INTERNAL_ERROR, request_id, data={"message": f"The result cannot be sent: {exc}."}
        )
    return {"jsonrpc": "2.0", "result": result, "id": request_id}
