"""The browser guard: no web page may drive the runtime's API through the user's browser.

A runtime on loopback without users lets every request act as the local user, who may do
everything, running commands included (a space's `cmd`). Any page open in a browser on the
same machine can reach 127.0.0.1: a cross-site form or `fetch` is sent without asking first
(a "simple" request, body and all), and DNS rebinding (the attacker's hostname resolving to
127.0.0.1) even lets the page read the answers. So, before anything else:

- on loopback, the `Host` header must name a loopback address or `localhost`: a rebound page
  sends the attacker's hostname;
- a request a browser marks as coming from another site (an `Origin` that is neither a
  loopback origin nor this server's own, as named by `Host`; `Origin: null`; or no Origin
  and `Sec-Fetch-Site: cross-site`) is refused, except on the Sky routes: they are made for
  browsers (CORS `*`) and only act on a channel whose eci the caller must know.

Clients that are not browsers (the CLI, httpx, curl, the notebook's kernel) send neither
`Origin` nor `Sec-Fetch-Site`, and name the address they connect to in `Host`.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from .common import SKY_PREFIX

__all__ = ["BrowserGuard", "browser_refusal", "is_loopback_host", "refused"]


@functools.lru_cache(maxsize=256)  # a server sees a handful of Host values, on every request
def is_loopback_host(host: str) -> bool:
    """Whether `host` (no port) is reachable only from this machine: a loopback address or
    `localhost` (any other name could resolve anywhere)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """The host part of a Host header value (`[::1]:80` -> `::1`, `a:80` -> `a`)."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    name, _, port = header.rpartition(":")
    return name if name and port.isdigit() else header


def _loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and host is not None and is_loopback_host(host)


def _same_origin(origin: bytes, host: bytes | None) -> bool:
    """Whether a page's Origin is this server as the browser reached it (its Host): the
    dashboard's own pages on a runtime that listens beyond loopback (with users, so logged
    in). A rebound name is not this: on loopback, the Host check above refused it already."""
    if host is None:
        return False
    try:
        parts = urlsplit(origin.decode("latin-1"))
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https") and parts.netloc.lower() == host.decode("latin-1").lower()
    )


def browser_refusal(scope: Scope, loopback: bool) -> str | None:
    """Why an HTTP request is refused (403) as a rebound host or a cross-site browser request,
    or None; see the module docstring."""
    host = origin = fetch_site = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
        elif name == b"origin":
            origin = value
        elif name == b"sec-fetch-site":
            fetch_site = value
    if loopback and host is not None:
        shown = host.decode("latin-1")
        if not is_loopback_host(_host_of(shown)):
            return (
                f"The Host header {shown!r} does not name this machine: this runtime "
                "listens on loopback and answers 127.0.0.1 or localhost only (a page in a "
                "browser may be trying DNS rebinding)."
            )
    if origin is not None or fetch_site is not None:
        # Browsers send Origin with every request that can change something (and with
        # every CORS read); without one, only a navigation or an embed is left.
        foreign = (
            not _loopback_origin(origin.decode("latin-1")) and not _same_origin(origin, host)
            if origin is not None
            else fetch_site == b"cross-site"
        )
        if foreign and not scope["path"].startswith(SKY_PREFIX):
            shown = origin.decode("latin-1") if origin is not None else "another site"
            return (
                f"A web page ({shown}) may not call this runtime's API through a browser; "
                "only the Sky routes (/sky/...) take requests from web pages."
            )
    return None


def refused(problem: str) -> JSONResponse:
    return JSONResponse({"error": problem}, status_code=403)


class BrowserGuard:
    """Refuse (403) rebound hosts and cross-site browser requests; see the module docstring."""

    def __init__(self, app: ASGIApp, *, loopback: bool) -> None:
        self.app = app
        self.loopback = loopback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = browser_refusal(scope, self.loopback)
            if problem is not None:
                await refused(problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
