"""The HTTP clients of webhook sinks: pooled `httpx.AsyncClient`s that keep no cookies.

`WebhookClients` holds the pools every webhook sink of a runtime shares (one per TLS-verify
flag). Under each client is aiohttp's transport (`webhook_aiohttp`, imported on first use: it
costs `import knot` a tenth of a second), or the runtime's transport seam
(`Runtime(..., http_transport=...)`) in its place. Sinks keep no cookies: the client never
parses answers for them either (about a tenth of a delivery's CPU).
"""

from __future__ import annotations

import httpx

__all__ = ["WebhookClients"]

USER_AGENT = "knot-runtime"


class _NoCookies(httpx.Cookies):
    """A jar that never takes a cookie from an answer nor puts one on a request."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None

    def set_cookie_header(self, request: httpx.Request) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    # `cookies` is the property httpx reads on every request and answer; this one stays empty.
    @property
    def cookies(self) -> httpx.Cookies:
        return _NoCookies()

    @cookies.setter
    def cookies(self, value: object) -> None:
        pass


class WebhookClients:
    """The connection pools every webhook sink of one runtime shares (created on first use)."""

    def __init__(self, *, limit: int = 512, transport: httpx.AsyncBaseTransport | None = None):
        self.limit = limit
        self.transport = transport
        self._clients: dict[bool, httpx.AsyncClient] = {}

    def client(self, *, verify: bool = True) -> httpx.AsyncClient:
        client = self._clients.get(verify)
        if client is None or client.is_closed:
            transport = self.transport
            if transport is None:
                from .webhook_aiohttp import WebhookTransport

                transport = WebhookTransport(verify=verify, limit=self.limit)
            client = self._clients[verify] = _CookielessClient(
                transport=transport,
                headers={"User-Agent": USER_AGENT},
                follow_redirects=False,
                trust_env=False,  # never route a sink through a proxy from the environment
            )
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
