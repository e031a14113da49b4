"""Who is calling: the identity every route acts for.

With no users configured, a loopback-only runtime has one local user who may do everything.
(Users, bearer tokens and permissions build on this seam: routes only ever ask `caller()`.)
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .._events import LOCAL_ACTOR, Actor

__all__ = ["LOCAL_CALLER", "Caller", "caller"]


@dataclass(frozen=True, slots=True)
class Caller:
    actor: Actor
    owner: str  # the owner of events this caller raises ("" = not a registered user)
    manage_own_sinks: bool = True
    manage_global_sinks: bool = True


LOCAL_CALLER = Caller(actor=LOCAL_ACTOR, owner="")


def caller(request: Request) -> Caller:
    """The identity a request acts for."""
    found = getattr(request.state, "caller", None)
    return found if isinstance(found, Caller) else LOCAL_CALLER
