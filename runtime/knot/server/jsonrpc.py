"""`POST /json-rpc`: call method scripts' methods, JSON-RPC 2.0 over HTTP; `GET /api/methods`.

The body is one request or a batch, answered by the runtime's one dispatcher (`methods/rpc.py`):
200 with the response (or the array of them), or 204 with no body when nothing is to be
returned (a notification, or a batch of only notifications). Protocol errors are JSON-RPC
errors in a 200, as the specification has them; only a body over `server.max_body_bytes`
(413), a missing token (401) or a call cut short by the server stopping (503, with a JSON-RPC
error) are HTTP errors. Methods run as the caller: events they emit
belong to the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._jsonrpc import PARSE_ERROR, SERVER_ERROR, error_response
from .._runtime import Runtime
from .._tracecontext import CURRENT_TRACE
from ..methods.rpc import dispatch
from .auth import caller
from .common import read_body, traceparent

__all__ = ["routes"]


async def post_jsonrpc(request: Request) -> Response:
    """Call method scripts' methods, JSON-RPC 2.0: one request or a batch → 200 with the
    response(s), 204 when nothing is to be returned, 503 (with a JSON-RPC error) for a call cut
    short by the server stopping. See [Method scripts and JSON-RPC](../methods.md)."""
    runtime: Runtime = request.app.state.runtime
    body = await read_body(request)
    who = caller(request)
    try:
        text = body.decode("utf-8")  # JSON on the wire is UTF-8; no guessing from a BOM
    except UnicodeDecodeError:
        return JSONResponse(error_response(None, PARSE_ERROR))
    # The call's task copies this context: a `traceparent` sent is what its calls continue.
    CURRENT_TRACE.set(traceparent(request))
    call = asyncio.ensure_future(
        dispatch(text, runtime.methods.rpc(owner=who.owner, actor=who.actor))
    )
    calls: set[asyncio.Future[Any]] = request.app.state.calls
    calls.add(call)
    call.add_done_callback(calls.discard)
    try:
        answer = await call
    except asyncio.CancelledError:
        if not call.cancelled() or not request.app.state.stopping.is_set():
            raise  # this request itself was cancelled
        # The server is shutting down and cancelled the call: answer now, rather than be
        # cancelled mid-answer when uvicorn's graceful timeout runs out.
        message = "The runtime is stopping; the call was cancelled before it finished."
        return JSONResponse(error_response(None, SERVER_ERROR, message), status_code=503)
    if answer is None:
        return Response(status_code=204)
    return JSONResponse(answer)


async def list_methods(request: Request) -> Response:
    """`{"methods": [...], "scripts": [...]}`: every method (name, mode, events, params, where)
    and every method script (state, worker pid, calls, restarts, problem)."""
    runtime: Runtime = request.app.state.runtime
    methods = [m.to_dict() for m in runtime.methods.all()]
    return JSONResponse({"methods": methods, "scripts": runtime.methods.statuses()})


routes = [
    Route("/json-rpc", post_jsonrpc, methods=["POST"]),
    Route("/api/methods", list_methods, methods=["GET"]),
]
