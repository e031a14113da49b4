"""The login page (a bearer token in, a session cookie out) and the logout action."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .._exceptions import KnotError
from ..server.common import error_response, read_body
from .session import COOKIE, csrf_ok
from .web import UiState, set_cookie

__all__ = ["login", "logout"]

FAILED = "That token is not valid for this runtime (`knot user add NAME` prints one)."


def _next(target: str) -> str:
    """Where to go after logging in: a dashboard page only (never another site)."""
    ok = target.startswith("/ui") and not target.startswith("//") and "\\" not in target
    return target if ok else "/ui"


def _form(ui: UiState, target: str, error: str = "", status: int = 200) -> HTMLResponse:
    html = ui.templates.get_template("login.html").render(
        next=target, error=error, title="Log in", users=True, caller=None, csrf=""
    )
    return HTMLResponse(html, status_code=status)


async def login(request: Request) -> Response:
    """Dashboard: the login page; a user's token is traded for an HttpOnly session cookie."""
    ui: UiState = request.app.state.ui
    if request.method == "GET":
        if not ui.runtime.users:  # nothing to log in to: the local user is everyone here
            return RedirectResponse(_next(request.query_params.get("next", "/ui")), 303)
        return _form(ui, _next(request.query_params.get("next", "/ui")))
    try:
        form = dict(parse_qsl((await read_body(request)).decode("utf-8", "replace")))
    except KnotError as exc:
        return HTMLResponse(exc.message, status_code=error_response(exc).status_code)
    target = _next(form.get("next", "/ui"))
    user = (
        ui.runtime.users.authenticate(form.get("token", "").strip()) if ui.runtime.users else None
    )
    if user is None:
        return _form(ui, target, FAILED, status=401)
    session = ui.sessions.new(user.name)
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, session)
    return response


async def logout(request: Request) -> Response:
    """Dashboard: end the session."""
    ui: UiState = request.app.state.ui
    session = ui.sessions.get(request.cookies.get(COOKIE))
    if session is not None:
        form = dict(parse_qsl((await read_body(request)).decode("utf-8", "replace")))
        if not csrf_ok(request, session, form):
            return HTMLResponse("This action carries no valid CSRF token.", status_code=403)
        ui.sessions.drop(session.id)
    response = RedirectResponse("/ui/login" if ui.runtime.users else "/ui", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
