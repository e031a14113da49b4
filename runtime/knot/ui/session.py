"""Who is looking at the dashboard: browser sessions, the login, and CSRF tokens.

The API takes a bearer token in a header, which a browser page cannot keep safely; the
dashboard trades one (typed once into its login page) for a session cookie instead: random,
HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it) and scoped to
`/ui`. Sessions live in this process only: a restart logs everyone out. With no users
configured (a loopback runtime's one local user may do everything), every browser gets a
session on its first page, without a login, so that it too has a CSRF token.

Every action (a POST) must carry the session's CSRF token, in the `X-CSRF-Token` header (htmx
sends it from the page's meta tag) or a `csrf` form field; without it the answer is 403 and
nothing changes. The browser guard (server/guard.py) still refuses other sites' pages first.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

from starlette.requests import Request

from .._runtime import Runtime
from ..server.auth import LOCAL_CALLER, Caller

__all__ = ["COOKIE", "Session", "Sessions", "csrf_ok", "who"]

COOKIE = "knot_ui"
MAX_SESSIONS = 1000  # the oldest goes first: a script opening pages cannot fill the memory
SESSION_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    user: str  # "" = the local user of a runtime without users
    csrf: str
    expires: float


class Sessions:
    def __init__(self, *, limit: int = MAX_SESSIONS, seconds: float = SESSION_SECONDS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self.limit = limit
        self.seconds = seconds

    def new(self, user: str) -> Session:
        session = Session(
            secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), time.time() + self.seconds
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        found = self._sessions.get(session_id)
        if found is None:
            return None
        if found.expires < time.time():
            del self._sessions[session_id]
            return None
        return found

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def drop_user(self, user: str) -> None:
        for key in [k for k, s in self._sessions.items() if s.user == user]:
            del self._sessions[key]


def who(runtime: Runtime, session: Session | None) -> Caller | None:
    """The Caller a session acts as; None when it must log in (again).

    With users configured, a session of a user removed since (or a local session from before
    the first user was added) is no longer good."""
    if not runtime.users:
        return LOCAL_CALLER if session is not None else None
    if session is None or not session.user:
        return None
    user = runtime.users.get(session.user)
    return Caller.for_user(user) if user is not None else None


def csrf_ok(request: Request, session: Session, form: dict[str, str]) -> bool:
    presented = request.headers.get("x-csrf-token") or form.get("csrf", "")
    return bool(presented) and hmac.compare_digest(presented.encode(), session.csrf.encode())
