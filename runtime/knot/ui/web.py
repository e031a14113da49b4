"""The dashboard's request plumbing: its state, templates, and the two kinds of handler.

Every dashboard route is a `page` (GET: a session is required, made on the spot for the local
user of a runtime without users, else the login page) or an `action` (POST: a session and its
CSRF token are required, else 403 and nothing changes). Both set the request's Caller, so the
permission checks are the API's own (`server/auth.py`), and both answer the runtime's errors
as HTML with the API's status codes.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .._exceptions import KnotError
from .._runtime import Runtime
from ..server.api import EventStreams
from ..server.auth import Caller
from ..server.common import error_response, read_body
from .charts import Counters, Sampler
from .session import COOKIE, Session, Sessions, csrf_ok, who

__all__ = ["Ctx", "UiState", "action", "page"]

HERE = Path(__file__).parent
NO_CSRF = (
    "This action was refused: it did not carry the page's CSRF token (reload the page and try "
    "again; a page of another site cannot act for you)."
)


OPEN_TO_ALL = (
    "This runtime listens beyond loopback and has no users, so the dashboard is closed; add "
    "one with `knot user add NAME` and log in with its token."
)


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    return env


def when(ts: object) -> str:
    """An RFC 3339 time (or epoch seconds) as `2026-12-02 08:29:23` (UTC, as stored)."""
    if isinstance(ts, int | float):
        ts = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    text = str(ts)
    return text[:19].replace("T", " ") if len(text) >= 19 else text


@dataclass
class UiState:
    """One per app: the runtime, the browser sessions, the overview's sampler, templates."""

    runtime: Runtime
    streams: EventStreams
    loopback: bool = True
    sessions: Sessions = field(default_factory=Sessions)
    templates: Environment = field(default_factory=_templates)
    sampler: Sampler = field(init=False)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.sampler = Sampler(self._counters)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run an action's longer work after its answer (a reference is kept until it ends)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _counters(self) -> Counters | None:
        runtime = self.runtime
        if not runtime.running:
            return None
        workers = runtime.delivery.workers.values()
        return Counters(
            runtime.journal.head,
            sum(w.stats.delivered for w in workers),
            sum(w.stats.failed for w in workers),
            sum(w.stats.dropped for w in workers),
        )


@dataclass
class Ctx:
    """What a dashboard handler gets: the request, who asks, and how to answer."""

    request: Request
    ui: UiState
    session: Session
    caller: Caller
    form: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Runtime:
        return self.ui.runtime

    def arg(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()

    def link(self, path: str | None = None, **changes: object) -> str:
        """This page's URL (or `path`) with its query string changed: deep links that keep
        every other filter. A value of None or "" drops the parameter."""
        params = dict(self.request.query_params) if path is None else {}
        for key, value in changes.items():
            if value is None or value == "":
                params.pop(key, None)
            else:
                params[key] = str(value)
        base = self.request.url.path if path is None else path
        return f"{base}?{urlencode(params)}" if params else base

    def render(self, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
        page = self.ui.templates.get_template(template)
        html = page.render(
            ctx=self,
            caller=self.caller,
            csrf=self.session.csrf,
            users=bool(self.runtime.users),
            path=self.request.url.path,
            **values,
        )
        return HTMLResponse(html, status_code=status)

    def fail(self, exc: KnotError) -> HTMLResponse:
        status = error_response(exc).status_code
        if self.request.headers.get("hx-request"):  # into the page's message area
            return self.render("_message.html", status=status, error=exc.message)
        return self.render("error.html", status=status, error=exc.message)


Handler = Callable[[Ctx], Awaitable[Response]]


def _state(request: Request) -> UiState:
    ui: UiState = request.app.state.ui
    return ui


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/ui/login?next={quote(target, safe='')}"
    if request.headers.get("hx-request"):  # htmx would swap the login page into a fragment
        return Response(status_code=401, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


def set_cookie(response: Response, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        httponly=True,
        samesite="strict",
        path="/ui",  # a browser session cookie: the server forgets it first (12 h)
    )


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A GET route of the dashboard (see the module docstring)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        ui = _state(request)
        if not ui.runtime.users and not ui.loopback:
            return HTMLResponse(OPEN_TO_ALL, status_code=403)
        session = ui.sessions.get(request.cookies.get(COOKIE))
        made = None
        if session is None and not ui.runtime.users:
            session = made = ui.sessions.new("")
        caller = who(ui.runtime, session)
        if caller is None or session is None:
            return _login_redirect(request)
        request.scope.setdefault("state", {})["caller"] = caller
        ctx = Ctx(request, ui, session, caller)
        try:
            response = await handler(ctx)
        except KnotError as exc:
            response = ctx.fail(exc)
        if made is not None:
            set_cookie(response, made)
        return response

    return endpoint


def action(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A POST route of the dashboard (see the module docstring)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        ui = _state(request)
        if not ui.runtime.users and not ui.loopback:
            return HTMLResponse(OPEN_TO_ALL, status_code=403)
        session = ui.sessions.get(request.cookies.get(COOKIE))
        caller = who(ui.runtime, session)
        if session is None or caller is None:
            if ui.runtime.users:
                return _login_redirect(request)
            return HTMLResponse(NO_CSRF, status_code=403)
        try:
            body = (await read_body(request)).decode("utf-8", errors="replace")
        except KnotError as exc:
            return HTMLResponse(exc.message, status_code=error_response(exc).status_code)
        form = dict(parse_qsl(body, keep_blank_values=True))
        if not csrf_ok(request, session, form):
            return HTMLResponse(NO_CSRF, status_code=403)
        request.scope.setdefault("state", {})["caller"] = caller
        ctx = Ctx(request, ui, session, caller, form)
        try:
            return await handler(ctx)
        except KnotError as exc:
            return ctx.fail(exc)

    return endpoint
