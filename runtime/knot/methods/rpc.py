"""The JSON-RPC 2.0 dispatcher: decode a request (single or batch), call handlers, answer.

Transport-free: `POST /json-rpc` hands it the body and sends back whatever it returns (None:
nothing to answer); `Methods.rpc()` gives it the lookup that finds method scripts' methods.
It passes every example exchange of section 7 of the specification, including batches with
invalid members and all-notification batches, which the libraries we measured get wrong.

It lives apart from the framing (`_jsonrpc.py`) because it decodes with the runtime's ingress
rules (`_jsontext.loads_json`: no NaN, a depth limit, valid Unicode), and the framing must stay
importable by sandbox workers, which may import nothing of the runtime.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

from .._json import JSONObject
from .._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SERVER_ERROR,
    VERSION,
    RpcError,
    encode,
    error_response,
    response,
)
from .._jsontext import loads_json

__all__ = ["Handler", "Lookup", "dispatch", "handle"]

Handler = Callable[[list[Any] | dict[str, Any] | None], Awaitable[Any]]
"""Called with the request's params (a list, an object, or None when absent)."""
Lookup = Callable[[str], Handler | None]


async def dispatch(body: bytes | str, lookup: Lookup) -> Any:
    """Answer a raw JSON-RPC body: a response object, a list of them, or None (nothing)."""
    try:
        decoded = loads_json(body)
    except (ValueError, UnicodeDecodeError):  # not JSON, or NaN / Infinity in it
        return error_response(None, PARSE_ERROR)
    return await handle(decoded, lookup)


async def handle(decoded: Any, lookup: Lookup) -> Any:
    """Answer an already decoded request or batch."""
    if isinstance(decoded, list):
        if not decoded:
            return error_response(None, INVALID_REQUEST)
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


async def _one(request: Any, lookup: Lookup) -> JSONObject | None:
    if not isinstance(request, dict):
        return error_response(None, INVALID_REQUEST)
    has_id = "id" in request
    request_id = request.get("id")
    if has_id and not _valid_id(request_id):
        return error_response(None, INVALID_REQUEST)
    method = request.get("method")
    params = request.get("params")
    if (
        request.get("jsonrpc") != VERSION
        or not isinstance(method, str)
        or ("params" in request and not isinstance(params, list | dict))
    ):
        return error_response(request_id if has_id else None, INVALID_REQUEST)
    handler = None if method.startswith("rpc.") else lookup(method)
    try:
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, data={"method": method})
        result = await handler(params)
    except RpcError as exc:
        return error_response(request_id, exc.code, exc.message, exc.data) if has_id else None
    except Exception as exc:
        if not has_id:
            return None
        data = {"type": type(exc).__name__, "message": str(exc)}
        return error_response(request_id, SERVER_ERROR, data=data)
    if not has_id:
        return None
    try:
        encode(result)
    except (TypeError, ValueError) as exc:  # a result that cannot be sent is our failure
        data = {"message": f"The result cannot be sent: {exc}."}
        return error_response(request_id, INTERNAL_ERROR, data=data)
    return response(request_id, result)
