"""Scripts' HTTP requests, made by the runtime: the allow-list at every hop and every connection.

A worker cannot open a socket (its seccomp filter refuses them), so `requests` in a script asks
the runtime, which makes the request here, with aiohttp (the client webhook sinks use too: twice
httpx-over-httpcore's rate here). Three checks keep it to `http_allow`:

1. The URL (`check_url`, parsed by yarl, the parser aiohttp itself uses, so the host checked
   is the host connected to): http or https, no user or password, no whitespace or control
   characters, a host and port an entry of the script's `AllowList` names; an IP address that
   is not public only through an entry naming it exactly. Each redirect's target is checked
   the same way before it is followed, so a redirect cannot lead out of the list.
2. The addresses of a name (`GuardedResolver`, aiohttp's resolver, asked for every connection:
   its DNS cache is off): the name is resolved once, there; an address that is not public
   (loopback, private, link-local, ...) passes only when the entry names the host exactly
   (never a wildcard), and aiohttp connects to the addresses that passed: a second lookup (DNS
   rebinding) never happens. TLS still verifies the certificate against the host name.
3. The answer: its body is read up to `http_max_bytes`, counting decoded bytes, and gzip or
   deflate are decoded a bounded piece at a time (a small compressed body cannot inflate past
   the cap in memory). The whole exchange, redirects included, ends at the run's deadline.

No cookie jar is shared between scripts (a DummyCookieJar), nothing comes from the runtime's
environment (no proxies or .netrc), redirects are followed here, not by aiohttp. One session
(its own connection pool) per distinct allow-list, so a connection opened under one list's
address rules is never reused under another's.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import zlib
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .._allowlist import AllowList, address_problem, default_port, normalize_host

__all__ = [
    "MAX_REDIRECTS",
    "Refused",
    "ScriptHttp",
    "ScriptRequest",
    "check_url",
    "resolve",
    "shown_url",
]

MAX_REDIRECTS = 5
MAX_SESSIONS = 32  # distinct allow-lists kept with a connection pool each
MAX_TIMEOUT = 600.0  # seconds: a request's own timeout, whatever the script (or its worker) says
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 token)
_UNSAFE = re.compile(r"[\x00-\x20\x7f]")  # whitespace and control characters: never in a URL
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
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


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, giving it only addresses `allow` lets scripts connect to."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[ResolveResult]:
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in await resolve(host, port, self.allow)
        ]

    async def close(self) -> None:
        return None


def _session(allow: AllowList) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow),
        use_dns_cache=False,  # every connection asks the resolver: no stale answer reused
        ssl=ssl.create_default_context(),  # verified against the system's CA certificates
        limit=100,
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,  # decoded here, a bounded piece at a time
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),  # each request gets its own
    )


class ScriptHttp:
    """Makes scripts' requests; one connection pool per distinct allow-list."""

    def __init__(self) -> None:
        self._sessions: dict[AllowList, aiohttp.ClientSession] = {}

    def _session(self, allow: AllowList) -> aiohttp.ClientSession:
        session = self._sessions.pop(allow, None)
        if session is None:
            session = _session(allow)
            if len(self._sessions) >= MAX_SESSIONS:  # the one used longest ago goes
                stale = self._sessions.pop(next(iter(self._sessions)))
                asyncio.get_running_loop().create_task(stale.close())
        self._sessions[allow] = session  # most recently used last
        return session

    async def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()

    async def fetch(
        self, request: ScriptRequest, allow: AllowList, *, deadline: float, max_bytes: int
    ) -> dict[str, Any]:
        """Make `request` (following allowed redirects) and return the answer for the worker.

        Ends by `deadline` (the event loop's clock), whatever the server does."""
        loop = asyncio.get_running_loop()
        deadline = min(deadline, loop.time() + request.timeout)
        what = f"{request.method} {shown_url(request.url)}"
        try:
            async with asyncio.timeout_at(deadline):
                return await self._exchange(request, allow, deadline, max_bytes)
        except TimeoutError:
            raise Refused("timeout", f"{what} did not finish in time") from None
        except aiohttp.InvalidURL as exc:
            raise Refused("invalid", f"{what}: the URL is not valid ({exc})") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise Refused("connection", f"{what} failed: {exc or type(exc).__name__}") from None

    async def _exchange(
        self, request: ScriptRequest, allow: AllowList, deadline: float, max_bytes: int
    ) -> dict[str, Any]:
        session = self._session(allow)
        method, body = request.method, request.body
        defaults = [("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip, deflate")]
        names = {name.lower() for name, _ in request.headers}
        headers = [h for h in defaults if h[0].lower() not in names] + list(request.headers)
        target = check_url(request.url, allow)
        loop = asyncio.get_running_loop()
        for _ in range(MAX_REDIRECTS + 1):
            left = max(deadline - loop.time(), 0.001)
            async with session.request(
                method,
                target.url,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=left),
            ) as response:
                location = response.headers.get("Location")
                if request.redirects and response.status in _REDIRECTS and location:
                    try:
                        joined = target.url.join(URL(location))
                    except (ValueError, TypeError) as exc:
                        raise Refused(
                            "invalid", f"the redirect's Location is not a URL ({exc})"
                        ) from None
                    following = check_url(joined, allow)
                    if following.origin != target.origin:  # credentials stay with their origin
                        headers = [
                            h for h in headers if h[0].lower() not in ("authorization", "cookie")
                        ]
                    if response.status in (301, 302, 303) and method != "HEAD":
                        method, body = "GET", None
                        headers = [h for h in headers if h[0].lower() != "content-type"]
                    target = following
                    continue
                content = await _read(response, max_bytes)
                return _answer(response, str(target.url), content)
        raise Refused(
            "redirects",
            f"{request.method} {shown_url(request.url)} redirected more than {MAX_REDIRECTS} times",
        )


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The body, decoded (gzip, deflate) a bounded piece at a time, at most `max_bytes`."""
    declared = response.headers.get("content-length", "")
    if (
        declared.isdigit()
        and int(declared) > max_bytes
        and not response.headers.get("content-encoding")
    ):
        raise _too_large(max_bytes)
    coding = response.headers.get("content-encoding", "").strip().lower()
    decoder = None
    if coding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        decoder = zlib.decompressobj()
    parts: list[bytes] = []
    total = 0

    def take(data: bytes) -> None:
        nonlocal total
        total += len(data)
        if total > max_bytes:
            raise _too_large(max_bytes)
        parts.append(data)

    try:
        async for chunk in response.content.iter_chunked(1 << 16):
            if decoder is None:
                take(chunk)
                continue
            pending = chunk
            while pending:
                take(decoder.decompress(pending, max_bytes + 1 - total))
                pending = decoder.unconsumed_tail
        if decoder is not None:
            take(decoder.flush())
    except zlib.error as exc:
        raise Refused("connection", f"the response's {coding} body is damaged ({exc})") from None
    return b"".join(parts)


def _too_large(max_bytes: int) -> Refused:
    return Refused(
        "too_large",
        f"the response's body is larger than scripts.http_max_bytes ({max_bytes} bytes)",
    )


def _answer(response: aiohttp.ClientResponse, url: str, content: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "status": response.status,
        "reason": response.reason or "",
        "url": url,
        "headers": [[k, v] for k, v in response.headers.items()],
    }
    try:
        answer["text"] = content.decode("utf-8")
    except UnicodeDecodeError:
        answer["body_b64"] = base64.b64encode(content).decode("ascii")
    return answer


def shown_url(url: str) -> str:
    """A URL for a message: scheme, host and path, without a query (it may hold tokens)."""
    return url.split("?", 1)[0].split("#", 1)[0][:200]
