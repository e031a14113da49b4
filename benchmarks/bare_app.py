"""The baseline for the HTTP benchmarks: a bare starlette + uvicorn app started like `knot serve`.

`POST /event` parses the same JSON body and answers the same 202 `{"id": ...}`, but journals and
routes nothing; `POST /json-rpc` echoes a single request's params as its result, calling no
method anywhere. The ratio against it is the cost of everything knot does per request.
"""

from __future__ import annotations

import json
import sys

import uuid_utils
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .common import serve_asgi


async def post_event(request: Request) -> Response:
    body = json.loads(await request.body())
    if not isinstance(body, dict) or "type" not in body:
        return JSONResponse({"error": "bad"}, status_code=400)
    return JSONResponse({"id": str(uuid_utils.uuid7())}, status_code=202)


async def post_jsonrpc(request: Request) -> Response:
    body = json.loads(await request.body())
    if not isinstance(body, dict):
        return JSONResponse({"jsonrpc": "2.0", "error": {"code": -32600}, "id": None})
    return JSONResponse({"jsonrpc": "2.0", "result": body.get("params"), "id": body.get("id")})


async def main() -> None:
    routes = [
        Route("/event", post_event, methods=["POST"]),
        Route("/json-rpc", post_jsonrpc, methods=["POST"]),
    ]
    await serve_asgi(Starlette(routes=routes))


if __name__ == "__main__":
    uvloop.run(main())
    sys.exit(0)
