"""Scripts' HTTP requests, made by the runtime: the allow-list at every hop and every connection.

A worker cannot open a socket (its seccomp filter refuses them), so `requests` in a script asks
the runtime, which makes the request here, with aiohttp (the client webhook sinks use too: twice
httpx-over-httpcore's rate here). Three checks keep it to `http_allow`:

1. The URL (`checks.check_url`, parsed by yarl, the parser aiohttp itself uses, so the host checked
   is the host connected to): http or https, no user or password, no whitespace or control
   characters, a host and port an entry of the script's `AllowList` names; an IP address that
   is not public only through an entry naming it exactly. Each redirect's target is checked
   the same way before it is followed, so a redirect cannot lead out of the list.
2. The addresses of a name (`transport.GuardedResolver`, aiohttp's resolver, asked for every
   connection: its DNS cache is off): the name is resolved once, there; an address that is
   not public (loopback, private, link-local, ...) passes only when the entry names the host
   exactly (never a wildcard), and aiohttp connects to the addresses that passed: a second
   lookup (DNS rebinding) never happens. TLS still verifies the certificate against the host name.
3. The answer: its body is read up to `http_max_bytes`, counting decoded bytes, and gzip or
   deflate are decoded a bounded piece at a time (a small compressed body cannot inflate past
   the cap in memory). The whole exchange, redirects included, ends at the run's deadline.

No cookie jar is shared between scripts (a DummyCookieJar), nothing comes from the runtime's
environment (no proxies or .netrc), redirects are followed here, not by aiohttp. One session
(its own connection pool) per distinct allow-list, so a connection opened under one list's
address rules is never reused under another's. aiohttp is imported at the first request
(`transport.py`): it costs `import knot` a tenth of a second otherwise.
"""

from __future__ import annotations

from typing import Any

from .._allowlist import AllowList
from .checks import ScriptRequest

__all__ = ["ScriptHttp"]


class ScriptHttp:
    """Makes scripts' requests (`transport.py`, loaded at the first one)."""

    def __init__(self) -> None:
        self._sessions: Any = None

    async def close(self) -> None:
        if self._sessions is not None:
            await self._sessions.close()

    async def fetch(
        self, request: ScriptRequest, allow: AllowList, *, deadline: float, max_bytes: int
    ) -> dict[str, Any]:
        """Make `request` (following allowed redirects) and return the answer for the worker.

        Ends by `deadline` (the event loop's clock), whatever the server does."""
        if self._sessions is None:
            from .transport import Sessions

            self._sessions = Sessions()
        answer: dict[str, Any] = await self._sessions.fetch(
            request, allow, deadline=deadline, max_bytes=max_bytes
        )
        return answer
