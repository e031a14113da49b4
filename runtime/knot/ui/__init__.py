"""The browser dashboard at `/ui`: server-rendered pages (Jinja2), made live with htmx and
server-sent events; htmx and its SSE extension are vendored in `static/` (no Node toolchain).

`install(app, runtime)` adds it to the runtime's HTTP app; everything else lives here: routes
(`routes`), pages (`pages`, `more`), actions (`actions`), the live tail (`live`), sessions,
login and CSRF (`session`, `login`, `web`), and the overview's charts (`charts`).
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .._runtime import Runtime
from ..server.api import EventStreams
from . import actions, live, login, more, pages
from .web import UiState

__all__ = ["PREFIX", "UiState", "install", "routes"]

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"


def routes() -> list[BaseRoute]:
    get, post = ["GET"], ["POST"]
    return [
        Route("/ui", pages.overview, methods=get),
        Route("/ui/login", login.login, methods=["GET", "POST"]),
        Route("/ui/logout", login.logout, methods=post),
        Route("/ui/sinks", pages.sinks_page, methods=get),
        Route("/ui/sinks/rows", pages.sinks_rows, methods=get),
        Route("/ui/sinks/save", actions.save_sink, methods=post),
        Route("/ui/sinks/{name}/active", actions.pause_sink, methods=post),
        Route("/ui/sinks/{name}/delete", actions.delete_sink, methods=post),
        Route("/ui/sinks/{name}/test", actions.test_sink, methods=post),
        Route("/ui/events", pages.events_page, methods=get),
        Route("/ui/events/rows", pages.events_rows, methods=get),
        Route("/ui/events/stream", live.events_stream, methods=get),
        Route("/ui/events/retry", actions.retry_many, methods=post),
        Route("/ui/events/{event_id}", pages.event_page, methods=get),
        Route("/ui/events/{event_id}/redeliver", actions.redeliver, methods=post),
        Route("/ui/audit", more.audit_page, methods=get),
        Route("/ui/scripts", more.scripts_page, methods=get),
        Route("/ui/methods", more.methods_page, methods=get),
        Route("/ui/methods/call", actions.call_method, methods=post),
        Route("/ui/spaces", more.spaces_page, methods=get),
        Route("/ui/spaces/{name}/{verb}", actions.space_action, methods=post),
        Route("/ui/cluster", more.cluster_page, methods=get),
        Mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static"),
    ]


def install(
    app: Starlette, runtime: Runtime, streams: EventStreams, *, loopback: bool = True
) -> UiState:
    """Serve the dashboard from `app` (whose routes must include `routes()`); `loopback` as
    for the app (without users, only a loopback runtime lets a browser in)."""
    state = UiState(runtime, streams, loopback=loopback)
    app.state.ui = state
    return state
