"""Scripts' HTTP requests, made by the runtime: the allow-list at every hop and every connection.

A worker cannot open a socket (its seccomp filter refuses them), so `requests` in a script asks
the runtime, which makes the request here with httpx. Three checks keep it to `http_allow`:

1. The URL (`check_url`): http or https, no user or password in it, a host and port an entry
   of the script's `AllowList` names. Each redirect's target is checked the same way before it
   is followed, so a redirect cannot lead out of the list.
2. The addresses (`GuardedBackend.connect_tcp`, under httpcore, so for every connection the
   request opens): the host is resolved once, here; an address that is not public (loopback,
   private, link-local, ...) passes only when the entry names the host exactly (never a
   wildcard), and the connection goes to an address that passed: a second lookup (DNS
   rebinding) never happens. TLS still verifies the certificate against the host name.
3. The answer: its body is read up to `http_max_bytes`, counting decoded bytes, and gzip or
   deflate are decoded a bounded piece at a time (a small compressed body cannot inflate past
   the cap in memory). The whole exchange, redirects included, ends at the run's deadline.

Requests are built and sent on a transport, never through an httpx Client: no cookie jar
shared between scripts, no proxies or .netrc from the environment, no default auth. One
transport (its own connection pool) per distinct allow-list, so a connection opened under one
list's address rules is never reused under another's.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

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
MAX_TRANSPORTS = 32  # distinct allow-lists kept with a connection pool each
MAX_TIMEOUT = 600.0  # seconds: a request's own timeout, whatever the script (or its worker) says
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 token)
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
    url: httpx.URL
    host: str  # normalized
    port: int

    @property
    def origin(self) -> str:
        return f"{self.url.scheme}://{self.host}:{self.port}"


def check_url(url: str | httpx.URL, allow: AllowList) -> Target:
    """The URL's target if `allow` lets a script reach it by name; Refused otherwise."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise Refused("invalid", f"{str(url)[:200]!r} is not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise Refused(
            "invalid", f"only http and https URLs can be requested, not {parsed.scheme!r}"
        )
    if parsed.userinfo:
        raise Refused(
            "invalid", "the URL holds a user name or password: pass auth=(user, password) instead"
        )
    try:
        host = normalize_host(parsed.raw_host.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("invalid", f"the URL's host is not valid: {exc}") from None
    port = parsed.port or default_port(parsed.scheme)
    shown = f"[{host}]" if ":" in host else host
    if allow.match(host, port, parsed.scheme) is None:
        where = f"{shown}:{port}"
        raise Refused(
            "denied",
            f"the host {where} is not in {allow.setting}"
            + ("" if allow else ", which lists no host")
            + f' (add "{where}" there to let scripts reach it)',
            host=where,
        )
    return Target(parsed, host, port)


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
                "denied",
                f"{host} resolves to {address}, {problem}: only a host {allow.setting} names "
                "exactly (not through a wildcard) may lead to such an address",
                host=f"{host}:{port}",
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


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses `allow` lets scripts reach."""

    def __init__(self, allow: AllowList) -> None:
        self.allow = allow
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await resolve(host, port, self.allow):
            try:
                return await self.inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address may answer
                failure = exc
        assert failure is not None
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class _Transport(httpx.AsyncHTTPTransport):
    def __init__(self, allow: AllowList) -> None:
        super().__init__(trust_env=False, retries=0)
        # httpx takes no network backend: its pool is rebuilt around ours (same settings).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow),
        )


class ScriptHttp:
    """Makes scripts' requests; one connection pool per distinct allow-list."""

    def __init__(self) -> None:
        self._transports: dict[AllowList, _Transport] = {}

    def _transport(self, allow: AllowList) -> _Transport:
        transport = self._transports.pop(allow, None)
        if transport is None:
            transport = _Transport(allow)
            if len(self._transports) >= MAX_TRANSPORTS:  # the one used longest ago goes
                oldest = next(iter(self._transports))
                stale = self._transports.pop(oldest)
                asyncio.get_running_loop().create_task(stale.aclose())
        self._transports[allow] = transport  # most recently used last
        return transport

    async def close(self) -> None:
        transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            await transport.aclose()

    async def fetch(
        self, request: ScriptRequest, allow: AllowList, *, deadline: float, max_bytes: int
    ) -> dict[str, Any]:
        """Make `request` (following allowed redirects) and return the answer for the worker.

        Ends by `deadline` (the event loop's clock), whatever the server does."""
        loop = asyncio.get_running_loop()
        deadline = min(deadline, loop.time() + request.timeout)
        try:
            async with asyncio.timeout_at(deadline):
                return await self._exchange(request, allow, deadline, max_bytes)
        except TimeoutError:
            raise Refused(
                "timeout", f"{request.method} {shown_url(request.url)} did not finish in time"
            ) from None
        except httpx.TimeoutException:
            raise Refused(
                "timeout", f"{request.method} {shown_url(request.url)} did not finish in time"
            ) from None
        except httpx.TransportError as exc:
            raise Refused(
                "connection",
                f"{request.method} {shown_url(request.url)} failed: {exc or type(exc).__name__}",
            ) from None

    async def _exchange(
        self, request: ScriptRequest, allow: AllowList, deadline: float, max_bytes: int
    ) -> dict[str, Any]:
        transport = self._transport(allow)
        method, body, url = request.method, request.body, request.url
        headers = [("User-Agent", USER_AGENT), ("Accept-Encoding", "gzip, deflate")]
        names = {name.lower() for name, _ in request.headers}
        headers = [h for h in headers if h[0].lower() not in names] + list(request.headers)
        target = check_url(url, allow)
        for _ in range(MAX_REDIRECTS + 1):
            left = max(deadline - asyncio.get_running_loop().time(), 0.001)
            sent = httpx.Request(
                method,
                target.url,
                headers=headers,
                content=body,
                extensions={
                    "timeout": {"connect": left, "read": left, "write": left, "pool": left}
                },
            )
            response = await transport.handle_async_request(sent)
            try:
                location = response.headers.get("location")
                if request.redirects and response.status_code in _REDIRECTS and location:
                    following = check_url(target.url.join(location), allow)
                    if following.origin != target.origin:  # credentials stay with their origin
                        headers = [
                            h for h in headers if h[0].lower() not in ("authorization", "cookie")
                        ]
                    if response.status_code in (301, 302, 303) and method != "HEAD":
                        method, body = ("GET" if method != "GET" else method), None
                        headers = [h for h in headers if h[0].lower() != "content-type"]
                    target = following
                    continue
                content = await _read(response, max_bytes)
            finally:
                await response.aclose()
            return _answer(response, str(target.url), content)
        raise Refused(
            "redirects",
            f"{request.method} {shown_url(url)} redirected more than {MAX_REDIRECTS} times",
        )


async def _read(response: httpx.Response, max_bytes: int) -> bytes:
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

    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    try:
        async for chunk in stream:
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


def _answer(response: httpx.Response, url: str, content: bytes) -> dict[str, Any]:
    reason = response.extensions.get("reason_phrase", b"")
    answer: dict[str, Any] = {
        "status": response.status_code,
        "reason": reason.decode("ascii", "replace") if isinstance(reason, bytes) else "",
        "url": url,
        "headers": [[k, v] for k, v in response.headers.multi_items()],
    }
    try:
        answer["text"] = content.decode("utf-8")
    except UnicodeDecodeError:
        answer["body_b64"] = base64.b64encode(content).decode("ascii")
    return answer


def shown_url(url: str) -> str:
    """A URL for a message: scheme, host and path, without a query (it may hold tokens)."""
    return url.split("?", 1)[0].split("#", 1)[0][:200]
