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
seen: dict[str, set[int]] = {}
disorder = 0
repeats = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global disorder, repeats
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
        reply = json.dumps({"counts": counts, "disorder": disorder, "repeats": repeats}).encode()
    elif path == "/reset":
        counts.clear()
        last.clear()
        seen.clear()
        disorder = repeats = 0
        reply = b"{}"
    else:
        i = json.loads(b"".join(chunks))["data"]["i"]
        # Out of order: an event never seen before arriving after a later one. A repeat (an
        # at-least-once redelivery, as after a cluster fail-over) is counted apart.
        if i in seen.setdefault(path, set()):
            repeats += 1
        elif i < last.get(path, -1):
            disorder += 1
        seen[path].add(i)
        last[path] = max(i, last.get(path, -1))
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
