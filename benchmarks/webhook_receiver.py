"""The receiver for the webhook benchmark: raw ASGI on uvicorn, checking each path's order.

Every POST body must carry `data.i`, increasing per path; `GET /stats` answers the counts and
how many arrived out of order, `POST /reset` starts over.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvloop

from .common import serve_asgi

counts: dict[str, int] = {}
last: dict[str, int] = {}
disorder = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global disorder
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    path = scope["path"]
    if path == "/stats":
        reply = json.dumps({"counts": counts, "disorder": disorder}).encode()
    elif path == "/reset":
        counts.clear()
        last.clear()
        disorder = 0
        reply = b"{}"
    else:
        i = json.loads(b"".join(chunks))["data"]["i"]
        if i <= last.get(path, -1):
            disorder += 1
        last[path] = i
        counts[path] = counts.get(path, 0) + 1
        reply = b'{"ok":true}'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(reply)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


async def main() -> None:
    await serve_asgi(app)


if __name__ == "__main__":
    uvloop.run(main())
    sys.exit(0)
