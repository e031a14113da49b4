"""The transport under the webhook sinks' `httpx.AsyncClient`: aiohttp's, made strict.

httpx's own transport (httpcore) costs about 1 ms of CPU per small POST on the machines we
measured (≈1,000 requests/s on one core), a third of the webhook target (3,000 deliveries/s);
`httpx-aiohttp`'s transport under the same `httpx.AsyncClient` does ≈4,000/s. What is ours:

- the session keeps no cookies and reads no proxy from the environment; answers are never
  decompressed (only an excerpt is kept); credentials in a URL travel only in the
  Authorization header httpx made of them;
- errors are mapped by what aiohttp saw: a refused connection or a failed TLS handshake is an
  `httpx.ConnectError` (caused by the socket's or TLS error, which the sink reports), a
  connection the receiver dropped is an `httpx.RemoteProtocolError` (which the sink retries
  once on a fresh connection), and nothing aiohttp raises escapes as its own type. The
  library's table would make most of these `ConnectTimeout`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

__all__ = ["WebhookTransport", "httpx_error"]

KEEPALIVE_SECONDS = 5.0


def httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError:
    """The httpx error a caller of httpx expects for what aiohttp raised."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, unreachable, DNS, TLS
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError,
    ):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientOSError):  # reset or broken pipe on an open connection
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    return httpx.TransportError(message)


def _original(exc: BaseException) -> aiohttp.ClientError | None:
    """The aiohttp error behind `exc` (itself, or the cause httpx-aiohttp raised it from)."""
    while exc is not None:
        if isinstance(exc, aiohttp.ClientError):
            return exc
        exc = exc.__cause__  # type: ignore[assignment]
    return None


class _Stream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _reraise(exc)

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _reraise(exc)


def _reraise(exc: Exception) -> NoReturn:
    original = _original(exc)
    if original is None:
        raise exc
    # A connector error wraps the socket's or TLS's own error: that is the cause to report.
    cause = getattr(original, "certificate_error", None) or getattr(original, "os_error", None)
    raise httpx_error(original) from (cause if isinstance(cause, Exception) else original)


class WebhookTransport(AiohttpTransport):
    """An aiohttp-backed httpx transport with one pool of `limit` connections."""

    def __init__(self, *, verify: bool = True, limit: int = 512) -> None:
        super().__init__(verify=verify, trust_env=False, client=self._session)
        self._limit = limit

    def _session(self) -> aiohttp.ClientSession:
        # Made on the first request, inside the running event loop, as aiohttp requires.
        connector = aiohttp.TCPConnector(
            limit=self._limit, ssl=self.ssl_context, keepalive_timeout=KEEPALIVE_SECONDS
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.userinfo:
            # httpx has already turned a URL's user:password into an Authorization header;
            # aiohttp refuses a request that has both.
            request.url = request.url.copy_with(userinfo=b"")
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            _reraise(exc)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Stream(response.stream)
        return response
