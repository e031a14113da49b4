"""Scripts' HTTP requests, checked: what a script may ask for, and where it may go.

`check_url` (every hop) and `resolve` (every connection to a name) keep a request to
`http_allow`; `ScriptRequest.from_params` checks what a worker sent as if a script that got
past the sandbox had written it. `http.py` makes the requests (`transport.py`, on aiohttp),
with these checks at each step; its docstring tells the whole story.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._allowlist import AllowList, address_problem, default_port, normalize_host

if TYPE_CHECKING:
    from yarl import URL

__all__ = [
    "MAX_REDIRECTS",
    "USER_AGENT",
    "Refused",
    "ScriptRequest",
    "check_url",
    "resolve",
    "shown_url",
]

MAX_REDIRECTS = 5
MAX_TIMEOUT = 600.0  # seconds: a request's own timeout, whatever the script (or its worker) says
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 token)
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # whitespace and control characters: never in a URL
_SET_BY_RUNTIME = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authorization",
        "proxy-connection",
        "expect",
    }
)
USER_AGENT = "knot-runtime (script)"


class Refused(Exception):
    """A script's request that cannot be made or did not complete; `kind` is what the worker
    raises: denied (the allow-list), invalid, timeout, connection, redirects, too_large."""

    def __init__(self, kind: str, message: str, *, host: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.host = host


@dataclass(frozen=True, slots=True)
class ScriptRequest:
    """What a script asked for, checked to be plain data (`from_params`)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes | None
    timeout: float
    redirects: bool

    @classmethod
    def from_params(cls, params: dict[str, Any], body: bytes | None) -> ScriptRequest:
        """The worker's `http` request, checked again here: a worker that lies (a script that
        got past the sandbox) gets no further than an honest one."""
        method, url = params.get("method"), params.get("url")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise Refused("invalid", f"the HTTP method must be one of {', '.join(sorted(METHODS))}")
        if not isinstance(url, str):
            raise Refused("invalid", "the request needs a URL")
        pairs: list[tuple[str, str]] = []
        for pair in params.get("headers") or ():
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and isinstance(pair[0], str)
                and isinstance(pair[1], str)
                and _TOKEN.fullmatch(pair[0])
                and not any(c in pair[1] for c in "\r\n\0")
            ):
                raise Refused(
                    "invalid", "headers must be names (tokens) and values without line breaks"
                )
            if pair[0].lower() in _SET_BY_RUNTIME:
                raise Refused(
                    "invalid",
                    f"the header {pair[0]} is set by the runtime; a script may not set it",
                )
            pairs.append((pair[0], pair[1]))
        timeout = params.get("timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise Refused("invalid", "timeout= must be a number of seconds above 0")
        return cls(
            method.upper(),
            url,
            tuple(pairs),
            body,
            min(float(timeout), MAX_TIMEOUT),
            params.get("redirects") is not False,
        )


@dataclass(frozen=True, slots=True)
class Target:
    url: URL
    host: str  # normalized
    port: int

    @property
    def origin(self) -> str:
        return f"{self.url.scheme}://{self.host}:{self.port}"


def check_url(url: str | URL, allow: AllowList) -> Target:
    """The URL's target if `allow` lets a script reach it (by name, and for an IP address by
    its kind too); Refused otherwise."""
    from yarl import URL  # aiohttp's parser, loaded at the first request (see transport.py)

    if isinstance(url, str) and _UNSAFE.search(url):
        raise Refused("invalid", f"{url[:200]!r} holds whitespace or control characters")
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        raw_host = parsed.raw_host or ""
        port = parsed.port
    except (ValueError, TypeError, UnicodeError) as exc:
        raise Refused("invalid", f"{str(url)[:200]!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(
            "invalid", f"only http and https URLs can be requested, not {parsed.scheme!r}"
        )
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise Refused(
            "invalid", "the URL holds a user name or password: pass auth=(user, password) instead"
        )
    try:
        host = normalize_host(raw_host)
    except ValueError as exc:
        raise Refused("invalid", f"the URL's host is not valid: {exc}") from None
    port = port or default_port(parsed.scheme)
    shown = f"[{host}]" if ":" in host else host
    where = f"{shown}:{port}"
    entry = allow.match(host, port, parsed.scheme)
    if entry is None:
        raise Refused(
            "denied",
            f"the host {where} is not in {allow.setting}"
            + ("" if allow else ", which lists no host")
            + f' (add "{where}" there to let scripts reach it)',
            host=where,
        )
    if _is_ip(host) and entry.wildcard:  # aiohttp connects to an IP without asking a resolver
        problem = address_problem(host)
        if problem is not None:
            raise Refused("denied", _not_exact(host, host, problem, allow), host=where)
    return Target(parsed, host, port)


def _not_exact(host: str, address: str, problem: str, allow: AllowList) -> str:
    return (
        f"{host} resolves to {address}, {problem}: only a host {allow.setting} names exactly "
        "(not through a wildcard) may lead to such an address"
    )


async def resolve(host: str, port: int, allow: AllowList) -> list[str]:
    """The addresses of `host` a script may connect to; Refused when one may not be used."""
    try:
        addresses = [normalize_host(host)] if _is_ip(host) else await _lookup(host, port)
    except OSError as exc:
        raise Refused("connection", f"{host} cannot be resolved ({exc.strerror or exc})") from None
    exact = any(
        entry is not None and not entry.wildcard
        for entry in (allow.match(normalize_host(host), port, s) for s in ("http", "https"))
    )
    for address in addresses:
        problem = address_problem(address)
        if problem is not None and not exact:
            raise Refused(
                "denied", _not_exact(host, address, problem, allow), host=f"{host}:{port}"
            )
    return addresses


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


async def _lookup(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    if not seen:
        raise OSError(f"no address for {host}")
    return seen


def shown_url(url: str) -> str:
    """A URL for a message: scheme, host and path, without a query (it may hold tokens)."""
    return url.split("?", 1)[0].split("#", 1)[0][:200]
