"""Assembly: the starlette application over a Runtime, and `serve` to run both on one loop."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .._exceptions import KnotError
from .._logtext import loggable
from .._runtime import Runtime
from ..observe.metrics import Metrics
from ..observe.tracing import enable_from_env
from ..ui import install as install_ui
from ..ui import routes as ui_routes
from . import agent, api, channels, cluster, jsonrpc, observe, replay, sinks, sky, spaces, users
from .auth import AuthMiddleware
from .common import BodyLimit, error_response, internal_error
from .front import KnotApp
from .guard import BrowserGuard, is_loopback_host

__all__ = ["create_app", "serve"]

log = logging.getLogger("knot.server")


async def healthz(request: Request) -> Response:
    """`{"status": "ok", "zone"}`; 503 `{"status": "store failing", "error"}` while the store
    refuses writes (a full disk). Needs no token."""
    runtime: Runtime = request.app.state.runtime
    ok = runtime.running
    answer: dict[str, object] = {"status": "ok" if ok else "stopping", "zone": runtime.config.zone}
    failure = runtime.store_failure if ok else ""
    if failure:  # the last commit failed: nothing new can be acknowledged until one succeeds
        answer.update(status="store failing", error=failure)
    return JSONResponse(answer, status_code=200 if ok and not failure else 503)


async def _knot_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KnotError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) as JSON errors too."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        path = request.url.path
        message = f"There is no route {path}; see the HTTP API in docs/reference/http.md."
    elif exc.status_code == 405:
        message = f"{request.url.path} does not take {request.method} requests."
    else:
        message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", loggable(request.method), loggable(request.url.path))
    return internal_error(exc)


def create_app(
    runtime: Runtime,
    *,
    extra_routes: list[BaseRoute] | None = None,
    loopback: bool = True,
    metrics: Metrics | None = None,
) -> Starlette:
    """The HTTP API of a runtime. The runtime is started and stopped by its owner, not here.

    `loopback`: whether the app is reachable only from this machine (then a runtime without
    users lets every request act as the local user).
    """
    routes: list[BaseRoute] = [
        # Starlette tries routes in order: the hot ingress paths go first.
        *sky.routes,
        *agent.routes,
        *jsonrpc.routes,
        Route("/healthz", healthz, methods=["GET"]),
        *api.routes,
        *observe.routes,
        *channels.routes,
        *sinks.routes,
        *replay.routes,
        *users.routes,
        *spaces.routes,
        *cluster.routes,
        *ui_routes(),  # the dashboard at /ui (knot.ui): it authenticates its own sessions
        *(extra_routes or []),
    ]
    handlers: dict[type[Exception] | int, Callable[[Request, Exception], Awaitable[Response]]] = {
        KnotError: _knot_error,
        HTTPException: _http_error,
        Exception: _unexpected,
    }
    limit = runtime.config.server.max_body_bytes
    # Outermost first: no web page through a browser, then who is calling (401 whatever the
    # body), then the declared body size.
    middleware = [
        Middleware(observe.RequestMetrics, hooks=runtime.hooks),
        Middleware(BrowserGuard, loopback=loopback),
        Middleware(AuthMiddleware, runtime=runtime, loopback=loopback),
        Middleware(BodyLimit, limit=limit),
    ]
    app = KnotApp(
        runtime=runtime,
        loopback=loopback,
        limit=limit,
        routes=routes,
        exception_handlers=handlers,
        middleware=middleware,
    )
    app.state.runtime = runtime
    app.state.streams = api.EventStreams()
    app.state.stopping = asyncio.Event()  # set as the server's shutdown begins
    app.state.calls = set()  # JSON-RPC calls in flight, cancelled (and answered 503) then
    app.state.max_body_bytes = limit
    install_ui(app, runtime, app.state.streams, loopback=loopback)
    # Metrics exist where they can be scraped; `serve` attaches them before the runtime
    # starts, so the scripts loaded at start count too.
    if metrics is None and runtime.config.metrics.enabled:
        metrics = runtime_metrics(runtime)
    app.state.metrics = metrics
    return app


def runtime_metrics(runtime: Runtime) -> Metrics:
    """Metrics counting from now on the hooks of `runtime`."""
    return Metrics(
        runtime.hooks, delivery=lambda: runtime.delivery if runtime.running else None
    ).attach()


async def serve(
    runtime: Runtime,
    *,
    host: str | None = None,
    port: int | None = None,
    ready: Callable[[str, int], None] | None = None,
) -> None:
    """Run `runtime` (started here) and its HTTP API until SIGINT/SIGTERM.

    Tracing is on when the OTEL_* environment asks for it (see knot.observe.tracing)."""
    tracing = enable_from_env(runtime)
    metrics = runtime_metrics(runtime)
    await runtime.start()
    if not runtime.config.metrics.enabled:
        metrics.detach()
    try:
        settings = runtime.config.server
        host = host or settings.host
        loopback = is_loopback(host)
        if not loopback and not runtime.users:
            raise KnotError(
                f"Refusing to listen on {host}: with no users configured anyone who can reach "
                "it could do everything; add one with `knot user add NAME` (or [users] in "
                "knot.toml), or listen on 127.0.0.1."
            )
        sock = bind_socket(host, settings.port if port is None else port)
        # Read now: a signal during start-up can make uvicorn close the socket before `ready`.
        bound_host, bound_port = sock.getsockname()[:2]
        app = create_app(
            runtime, loopback=loopback, metrics=metrics if runtime.config.metrics.enabled else None
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
        )

        def on_shutdown() -> None:
            app.state.stopping.set()
            for call in list(app.state.calls):
                call.cancel()
            app.state.streams.close()
            runtime.release_waiters()

        server = _Server(config, on_shutdown=on_shutdown)
        app.state.ui.sampler.start()  # the overview's last hour counts from the start
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started and not server.should_exit and ready is not None:
            ready(bound_host, bound_port)
        try:
            await task
        finally:
            await app.state.ui.sampler.stop()
    finally:
        await runtime.stop()
        if tracing is not None:  # the exporter process exports what it still holds
            counts = await tracing.close()
            if counts.get("dropped"):
                log.warning(
                    "tracing dropped %d of %d span records (the exporter was behind)",
                    counts["dropped"],
                    counts["dropped"] + counts.get("sent", 0),
                )


is_loopback = is_loopback_host


class _Server(uvicorn.Server):
    """uvicorn, minus re-raising SIGINT/SIGTERM once it has shut down, plus ending the answers
    that never end by themselves (event streams) or wait on slow sinks (synchronous Sky
    events) as its shutdown begins.

    uvicorn re-raises the signal that stopped it, and with the default handler back in place
    SIGTERM ends the process on the spot: the runtime would never stop, and the processes of
    its spaces (each in a session of its own) would be left running. An open event stream
    would hold the shutdown for its whole graceful timeout and then be cancelled, which logs a
    traceback.
    """

    def __init__(self, config: uvicorn.Config, *, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.on_shutdown()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        signals = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves, so a busy port is a clear error, not an exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise KnotError(
                f"Port {port} on {host} is already in use; stop the other server or pass "
                "--port (or set KNOT_API_PORT)."
            ) from None
        raise KnotError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    sock.listen(2048)
    # Not inheritable (Python's default): no child of the runtime may hold the API's port.
    return sock
