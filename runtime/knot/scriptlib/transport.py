"""The aiohttp side of scripts' requests (`checks.py` has the checks, `http.py` the entry).

Imported at a script's first request, not with the runtime: aiohttp (and the TLS contexts it
makes on import) costs about 0.1 s that every `knot` command would pay otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import zlib
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .._allowlist import AllowList
from .checks import (
    MAX_REDIRECTS,
    USER_AGENT,
    Refused,
    ScriptRequest,
    check_url,
    resolve,
    shown_url,
)

__all__ = ["Sessions"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_SESSIONS = 32  # distinct allow-lists kept with a connection pool each


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


def _new_session(allow: AllowList) -> aiohttp.ClientSession:
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


class Sessions:
    """aiohttp sessions, one (a connection pool) per distinct allow-list, and the exchange."""

    def __init__(self) -> None:
        self._sessions: dict[AllowList, aiohttp.ClientSession] = {}

    def _session(self, allow: AllowList) -> aiohttp.ClientSession:
        session = self._sessions.pop(allow, None)
        if session is None:
            session = _new_session(allow)
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
