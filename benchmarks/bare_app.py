"""The baseline for the HTTP benchmarks: a bare starlette + uvicorn app started like `knot serve`.

`POST /event` parses the same JSON body and answers the same 202 `{"id": ...}`, but journals and
routes nothing; `POST /json-rpc` echoes a single request's params as its result, calling no
method anywhere. The ratio against it is the cost of everything knot does per request.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uuid_utils
import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from knot.server.app import bind_socket


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
    app = Starlette(
        routes=[
            Route("/event", post_event, methods=["POST"]),
            Route("/json-rpc", post_jsonrpc, methods=["POST"]),
        ]
    )
    sock = bind_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    print(f"ready on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    await task


if __name__ == "__main__":
    uvloop.run(main())
    sys.exit(0)
