"""Who is calling: bearer tokens in, a Caller out; the single seam for identity and permissions.

With no users configured, a loopback-only runtime has one local user who may do everything.
Once a user exists, every request but `GET /healthz`, the dashboard's (`/ui`, which keeps its
own browser sessions: knot.ui.session) and a CORS preflight on the Sky routes
(`OPTIONS /sky/...`, which browsers send without credentials and which acts on nothing) needs
`Authorization: Bearer TOKEN` (401 otherwise); routes then ask the Caller what it may do (403
otherwise). Routes only ever ask `caller()`, never the headers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .._events import LOCAL_ACTOR, Actor
from .._exceptions import PermissionDenied
from .._logtext import loggable
from .._runtime import Runtime
from .._users import User
from .common import SKY_PREFIX

__all__ = [
    "ANONYMOUS_CALLER",
    "LOCAL_CALLER",
    "AuthMiddleware",
    "Caller",
    "admit",
    "caller",
    "caller_of",
    "deny",
]

log = logging.getLogger("knot.server")
OPEN_PATHS = frozenset({"/healthz"})
UI_PATH = "/ui"  # the dashboard authenticates its browser sessions itself (knot.ui.session)
METRICS_PATH = "/metrics"


@dataclass(frozen=True, slots=True)
class Caller:
    actor: Actor
    owner: str  # the owner of events this caller raises ("" = not a registered user)
    manage_own_sinks: bool = True
    manage_global_sinks: bool = True
    manage_users: bool = True

    @classmethod
    def for_user(cls, user: User) -> Caller:
        return cls(
            actor=user.actor,
            owner=user.name,
            manage_own_sinks=user.manage_own_sinks,
            manage_global_sinks=user.manage_global_sinks,
            manage_users=user.manage_users,
        )

    @property
    def name(self) -> str:
        return self.actor.username

    def may_see_sink(self, owner: str) -> bool:
        """Global sinks and one's own; every sink for those who manage global sinks."""
        return not owner or owner == self.owner or self.manage_global_sinks

    def may_manage_sink(self, owner: str) -> bool:
        if self.manage_global_sinks:
            return True
        return bool(owner) and owner == self.owner and self.manage_own_sinks

    def require_sink(self, owner: str, doing: str) -> None:
        """Raise 403 unless this caller may `doing` (e.g. "create the sink 'x'") for `owner`."""
        if self.may_manage_sink(owner):
            return
        if not owner:
            need = "Manage Global Event Sinks"
            whose = "a global sink"
        elif owner == self.owner:
            need, whose = "Manage Own Event Sinks", "your own sink"
        else:
            need, whose = "Manage Global Event Sinks", f"a sink owned by {owner!r}"
        raise PermissionDenied(
            f"User {self.name!r} may not {doing}: it is {whose}, which needs the permission "
            f'"{need}".'
        )

    def require_users(self, doing: str) -> None:
        if not self.manage_users:
            raise PermissionDenied(
                f'User {self.name!r} may not {doing}: that needs the permission "Manage Users".'
            )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "owner": self.owner,
            "actor": self.actor.to_dict(),
            "manage_own_sinks": self.manage_own_sinks,
            "manage_global_sinks": self.manage_global_sinks,
            "manage_users": self.manage_users,
        }


LOCAL_CALLER = Caller(actor=LOCAL_ACTOR, owner="")
# Who an unauthenticated Sky preflight acts as once users exist: nobody, with no rights (the
# preflight answers without asking; this only keeps a route from defaulting to LOCAL_CALLER).
ANONYMOUS_CALLER = Caller(
    actor=Actor("", ""),
    owner="",
    manage_own_sinks=False,
    manage_global_sinks=False,
    manage_users=False,
)


def caller(request: Request) -> Caller:
    """The identity a request acts for (set by AuthMiddleware; the local user otherwise)."""
    return caller_of(request.scope)


def caller_of(scope: Scope) -> Caller:
    """`caller`, from the ASGI scope."""
    # From the scope directly: `request.state` builds a State object on every call.
    found = scope.get("state", {}).get("caller")
    return found if isinstance(found, Caller) else LOCAL_CALLER


def admit(runtime: Runtime, loopback: bool, scope: Scope) -> str | None:
    """Put the Caller a request acts for in its scope, or say why it is refused (401)."""
    path = scope["path"]
    if path in OPEN_PATHS or path == UI_PATH or path.startswith(UI_PATH + "/"):
        return None  # (the dashboard authenticates its own sessions)
    if scope["method"] == "OPTIONS" and path.startswith(SKY_PREFIX):
        # A CORS preflight: browsers never send credentials with it, and it acts on nothing.
        scope.setdefault("state", {})["caller"] = ANONYMOUS_CALLER
        return None
    users = runtime.users
    if not users:
        if loopback:  # the one local user, who may do everything
            return None
        return (
            "This runtime listens beyond loopback and has no users; add one with "
            "`knot user add NAME`."
        )
    token = _bearer(scope)
    if token is not None and path == METRICS_PATH and _scrape_token(runtime, token):
        scope.setdefault("state", {})["caller"] = ANONYMOUS_CALLER  # may read /metrics only
        return None
    if token is None:
        return (
            "This runtime has users: send `Authorization: Bearer TOKEN` (the CLI reads KNOT_TOKEN)."
        )
    user = users.authenticate(token)
    if user is None:
        return "The bearer token is not valid for this runtime."
    scope.setdefault("state", {})["caller"] = Caller.for_user(user)
    return None


def _scrape_token(runtime: Runtime, token: str) -> bool:
    """Whether `token` is the scrape token of `[metrics]` (read at each request: a save of
    knot.toml applies at once)."""
    settings = runtime.config.metrics
    expected = settings.token_sha256.lower() or (
        hashlib.sha256(settings.token.encode()).hexdigest() if settings.token else ""
    )
    if not expected:
        return False
    presented = hashlib.sha256(token.encode()).hexdigest()
    return hmac.compare_digest(presented, expected)


async def deny(scope: Scope, receive: Receive, send: Send, message: str) -> None:
    """Answer 401 with `message`, and log it."""
    client = scope.get("client") or ("?", 0)
    # The path arrives percent-decoded: `%0A` in it must not start a forged log line.
    log.warning(
        "401 %s %s from %s: %s",
        loggable(scope["method"]),
        loggable(scope["path"]),
        loggable(str(client[0])),
        message,
    )
    headers = {"WWW-Authenticate": 'Bearer realm="knot"'}
    if scope["path"].startswith(SKY_PREFIX):  # a web page must be able to read why
        headers["Access-Control-Allow-Origin"] = "*"
    response = JSONResponse({"error": message}, status_code=401, headers=headers)
    await response(scope, receive, send)


class AuthMiddleware:
    """Turns `Authorization: Bearer TOKEN` into a Caller, or answers 401 (pure ASGI: cheap)."""

    def __init__(self, app: ASGIApp, *, runtime: Runtime, loopback: bool) -> None:
        self.app = app
        self.runtime = runtime
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            denial = admit(self.runtime, self.loopback, scope)
            if denial is not None:
                await deny(scope, receive, send, denial)
                return
        await self.app(scope, receive, send)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None
