"""The front door: the hot ingress paths answered without starlette's per-request machinery.

`POST /event` and `GET`/`POST /sky/event...` are most of what a busy runtime answers. Through
starlette each passes four middlewares of ours and three of starlette's (error handling,
exception handlers, routing), every one a coroutine frame that each resumption of the handler
travels through, plus a `Request`, route matching and an endpoint adapter. `KnotApp` answers
them directly, after the very same checks, in the same order, made by the same functions as
the middleware: the request counted for the metrics, the browser guard (403), who is calling
(401), the declared body size (413); then the route's own ASGI app (`agent.EVENTS`,
`sky.SKY_EVENTS`), which starlette's routes call too. Every other request (and every other
method on those paths, such as a Sky preflight) goes through the starlette app as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from .._logtext import loggable
from .._runtime import Runtime
from .agent import EVENTS, EventIngress
from .auth import admit, deny
from .common import declared_too_large, internal_error
from .guard import browser_refusal, refused
from .sky import SKY_EVENTS, SkyEvents

__all__ = ["KnotApp"]

log = logging.getLogger("knot.server")

_SKY = "/sky/event"
_SKY_ROUTE = "/sky/event/{rest:path}"  # the route templates the metrics count answers by
_NO_ROUTE = "(no route)"  # ...and a request refused before routing, as RequestMetrics does
_SKY_METHODS = frozenset({"GET", "POST"})


class KnotApp(Starlette):
    """The starlette app of a runtime, with the hot ingress paths answered up front."""

    def __init__(self, *, runtime: Runtime, loopback: bool, limit: int, **options: Any) -> None:
        super().__init__(**options)
        self.runtime = runtime
        self.loopback = loopback
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/event":
                if scope["method"] == "POST":
                    await self._answer(EVENTS, path, scope, receive, send)
                    return
            elif path.startswith(_SKY) and scope["method"] in _SKY_METHODS:
                rest = path[len(_SKY) :]
                if not rest:
                    await self._answer(SKY_EVENTS, _SKY, scope, receive, send)
                    return
                if rest[0] == "/":
                    await self._answer(SKY_EVENTS, _SKY_ROUTE, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _answer(
        self,
        app: EventIngress | SkyEvents,
        route: str,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        scope["app"] = self  # what starlette sets: the routes' apps read the runtime there
        hooks = self.runtime.hooks
        started = time.perf_counter() if hooks.request_listeners else 0.0
        status = 500  # what the client sees when nothing was sent (uvicorn answers 500)
        try:
            status = await self._checked(app, scope, receive, send)
            if status < 0:  # refused by a check, before routing
                status, route = -status, _NO_ROUTE
        except ClientDisconnect:
            pass  # nobody to answer
        except Exception as exc:
            log.exception(
                "unhandled error on %s %s", loggable(scope["method"]), loggable(scope["path"])
            )
            await internal_error(exc)(scope, receive, send)
        finally:
            if started:
                hooks.answered(route, status, time.perf_counter() - started)

    async def _checked(
        self, app: EventIngress | SkyEvents, scope: Scope, receive: Receive, send: Send
    ) -> int:
        """The middleware's checks, in its order, then the route's app; the status sent
        (negative when a check refused the request)."""
        problem = browser_refusal(scope, self.loopback)
        if problem is not None:
            await refused(problem)(scope, receive, send)
            return -403
        denial = admit(self.runtime, self.loopback, scope)
        if denial is not None:
            await deny(scope, receive, send, denial)
            return -401
        too_large = declared_too_large(scope, self.limit)
        if too_large is not None:
            await too_large(scope, receive, send)
            return -413
        return await app.answer(scope, receive, send)
