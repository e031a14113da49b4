"""Webhook sinks: POST the event, rendered through the sink's template and signed, to a URL.

Every request carries `Content-Type: application/json`, Knot's `X-Knot-Event-Id`, `-Type`,
`-Ts` and `X-Knot-Signature: sha256=<hex HMAC-SHA256 of the body>`, the event's causation
(`X-Knot-Root-Id`, and `X-Knot-Parent-Id` for an event a sink raised), its W3C `traceparent`
when it carries one (the attempt's own span when tracing is on), and the Standard Webhooks
headers `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
id.timestamp.body>`; then the sink's own headers, which may not replace any of those. Success is
a 2xx within the sink's `timeout` (10 s); anything else is one failed attempt for the engine to
retry, with a reason that says what the receiver did.

All webhook sinks of a runtime share one pooled `httpx.AsyncClient` (`webhook_http`; owned
and closed by the runtime, a second one for sinks with `skip_tls_verify`). Its transport is the
seam: `Runtime(..., http_transport=...)` hands every webhook request to another transport.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import hmac
import os
import secrets
import ssl
import time
from collections.abc import Mapping
from typing import ClassVar
from urllib.parse import urlsplit

import httpx

from .._events import Event
from .._exceptions import DeliveryFailed, TemplateError
from .._json import JSONObject
from .._sinkspec import SinkSpec, masked_url
from ..templates.syntax import DEFAULT_TEMPLATE, Template
from .base import DeliveryResult, Sink, SinkHost
from .webhook_http import WebhookClients

__all__ = [
    "RESERVED_HEADERS",
    "WebhookClients",
    "WebhookSink",
    "new_secret",
    "standard_webhooks_key",
]

DEFAULT_TIMEOUT = 10.0
MAX_TIMEOUT = 300.0
EXCERPT_CHARS = 200
READ_LIMIT = 64 * 1024  # answer bytes read; the rest of a huge answer is not waited for
SECRET_PREFIX = "whsec_"  # Standard Webhooks' form: the base64 of the key follows
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-knot-event-id",
        "x-knot-event-type",
        "x-knot-event-ts",
        "x-knot-signature",
        "x-knot-parent-id",
        "x-knot-root-id",
        "traceparent",
        "tracestate",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
OPTIONS: Mapping[str, str] = {
    "url": "Where each event is POSTed (http or https).",
    "secret": "The signing key; generated (`whsec_...`) and kept in the store when absent.",
    "headers": "Headers added to every request (a table); they may not replace knot's own.",
    "body_template": "The request body, in Knot's template syntax; a default body when absent.",
    "skip_tls_verify": "true accepts any certificate (self-signed receivers); default false.",
    "timeout": "Seconds to wait for a 2xx answer; default 10.",
}


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes in Standard Webhooks' `whsec_` form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def standard_webhooks_key(secret: str) -> bytes:
    """The HMAC key of `webhook-signature`: the decoded key of a `whsec_` secret, else its bytes.

    (`X-Knot-Signature` is keyed by the whole secret string, as Knot's receivers expect.)
    """
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
        except binascii.Error:
            pass
    return secret.encode()


class WebhookSink(Sink):
    type: ClassVar[str] = "webhook"
    options: ClassVar[Mapping[str, str]] = OPTIONS

    def __init__(self, spec: SinkSpec) -> None:
        super().__init__(spec)
        opts = spec.options
        self.url = str(opts["url"])
        self.shown_url = masked_url(self.url)  # for messages: never a password
        self._password = urlsplit(self.url).password or ""
        self._target = httpx.URL(self.url)  # parsed once: httpx re-parses a str per request
        self.template = Template.parse(str(opts.get("body_template") or DEFAULT_TEMPLATE))
        self.headers = {str(k): str(v) for k, v in dict(opts.get("headers") or {}).items()}
        self.timeout = float(opts.get("timeout", DEFAULT_TIMEOUT))
        self.verify_tls = not opts.get("skip_tls_verify", False)
        self.secret = str(opts.get("secret") or "")
        self.last_status = 0
        self._clients: WebhookClients | None = None
        self._knot_key = b""
        self._standard_key = b""

    @classmethod
    def validate(cls, spec: SinkSpec) -> list[str]:
        opts = spec.options
        problems = cls.unknown_options(spec)
        problems += _url_problems(opts.get("url"))
        if "body_template" in opts and opts["body_template"] not in (None, ""):
            problem = Template.check(opts["body_template"])
            if problem is not None:
                problems.append(f"The body_template is not valid: {problem}")
        problems += _header_problems(opts.get("headers"))
        secret = opts.get("secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            problems.append("The secret must be a non-empty string (or left out to generate one).")
        elif isinstance(secret, str) and secret.startswith(SECRET_PREFIX):
            try:
                base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
            except binascii.Error:
                problems.append("A secret starting with whsec_ must continue in base64.")
        if not isinstance(opts.get("skip_tls_verify", False), bool):
            problems.append("The option skip_tls_verify must be true or false.")
        timeout = opts.get("timeout", DEFAULT_TIMEOUT)
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= MAX_TIMEOUT
        ):
            problems.append(
                f"The option timeout must be a number of seconds above 0 and at most "
                f"{MAX_TIMEOUT:g}, not {timeout!r}."
            )
        return problems

    async def start(self, host: SinkHost) -> None:
        await super().start(host)
        self._clients = host.webhook_clients
        if not self.secret:
            self.secret = await host.sink_secret(self.name)
        self._knot_key = self.secret.encode()
        self._standard_key = standard_webhooks_key(self.secret)

    def render(self, event: Event) -> bytes:
        """The request body for `event`; DeliveryFailed when the template fails on it."""
        try:
            return self.template.render(event).encode()
        except TemplateError as exc:
            raise DeliveryFailed(
                f"The body template of {self.name} failed on event {event.id}: {exc.message}",
                sink=self.name,
                event=event.id,
            ) from None

    def signed_headers(self, event: Event, body: bytes, timestamp: int) -> dict[str, str]:
        knot_sig = hmac.new(self._knot_key, body, hashlib.sha256).hexdigest()
        signed = f"{event.id}.{timestamp}.".encode() + body
        standard = hmac.new(self._standard_key, signed, hashlib.sha256).digest()
        headers = {
            "Content-Type": "application/json",
            "X-Knot-Event-Id": event.id,
            "X-Knot-Event-Type": event.type,
            "X-Knot-Event-Ts": event.ts,
            "X-Knot-Signature": f"sha256={knot_sig}",
            "X-Knot-Root-Id": event.root or event.id,
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{base64.b64encode(standard).decode()}",
        }
        if event.parent:
            headers["X-Knot-Parent-Id"] = event.parent
        # The delivery attempt's context when tracing is on, else the one the event carries.
        host = self.host
        traceparent = event.trace if host is None else host.delivery_trace(event, self.name)
        if traceparent:
            headers["traceparent"] = traceparent
        headers.update(self.headers)
        return headers

    async def deliver(self, event: Event) -> DeliveryResult | None:
        assert self._clients is not None, "start() before deliver()"
        body = self.render(event)
        headers = self.signed_headers(event, body, int(time.time()))
        client = self._clients.client(verify=self.verify_tls)
        for stale_retry in (True, False):
            try:
                # The whole exchange (connect, send, answer) must fit in the sink's timeout.
                async with asyncio.timeout(self.timeout):
                    status, reason, answer = await self._post(client, body, headers)
                break
            except (TimeoutError, httpx.TimeoutException):
                raise self._failed(
                    event,
                    f"The receiver at {self.shown_url} did not answer within {self.timeout:g} s.",
                ) from None
            except httpx.ConnectError as exc:
                raise self._failed(event, _connect_reason(self.shown_url, exc)) from None
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
                # Most often a pooled keep-alive connection the receiver had already closed:
                # one immediate retry on a fresh connection, as HTTP clients do.
                if stale_retry:
                    continue
                reason = f"The connection to {self.shown_url} broke before an answer came: {exc}."
                raise self._failed(event, reason) from None
            except httpx.HTTPError as exc:
                raise self._failed(event, f"The POST to {self.shown_url} failed: {exc}.") from None
        self.last_status = status
        excerpt = _excerpt(answer)
        detail = f"HTTP {status} {reason}".rstrip() + (f": {excerpt}" if excerpt else "")
        if not 200 <= status < 300:
            hint = " (redirects are not followed)" if 300 <= status < 400 else ""
            why = f"The receiver at {self.shown_url} answered {detail}{hint}"
            raise self._failed(event, why, status=status)
        return DeliveryResult(detail=detail, status=status)

    async def _post(
        self, client: httpx.AsyncClient, body: bytes, headers: dict[str, str]
    ) -> tuple[int, str, bytes]:
        """POST and read at most READ_LIMIT bytes of the answer (a huge one is not waited for)."""
        async with client.stream(
            "POST", self._target, content=body, headers=headers, timeout=self.timeout
        ) as response:
            answer = bytearray()
            async for chunk in response.aiter_bytes():
                answer += chunk
                if len(answer) >= READ_LIMIT:
                    break
            return response.status_code, response.reason_phrase, bytes(answer[:READ_LIMIT])

    def _failed(self, event: Event, reason: str, *, status: int = 0) -> DeliveryFailed:
        if self._password:  # an httpx message may quote the URL it was given
            reason = reason.replace(self._password, "********")
        return DeliveryFailed(reason, sink=self.name, event=event.id, status=status)

    def status(self) -> JSONObject:
        return {"last_status": self.last_status}


def _url_problems(url: object) -> list[str]:
    if not isinstance(url, str) or not url:
        return ["A webhook sink needs a url (http:// or https://)."]
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[" and friends
        return [f"The url {url!r} is not a valid URL."]
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [f"The url {url!r} is not an http:// or https:// URL with a host."]
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return [f"The url {url!r} has a port that is not a number from 0 to 65535."]
    return []


def _header_problems(headers: object) -> list[str]:
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        return ['The headers must be a table of names to strings, like { "X-Team" = "infra" }.']
    problems = []
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not _token(name):
            problems.append(f"The header name {name!r} is not a valid HTTP header name.")
        elif name.lower() in RESERVED_HEADERS:
            problems.append(f"The header {name} is set by the runtime and cannot be replaced.")
        if not isinstance(value, str):
            problems.append(f"The value of header {name} must be a string, not {value!r}.")
        elif "\r" in value or "\n" in value:
            problems.append(f"The value of header {name} may not contain line breaks.")
    return problems


def _token(name: str) -> bool:
    return all(c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in name)


def _excerpt(answer: bytes) -> str:
    text = answer.decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _connect_reason(url: str, exc: httpx.ConnectError) -> str:
    """Why a connection could not be made: TLS verification, or the socket's own error."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return (
                f"The TLS handshake with {url} failed: certificate verify failed: "
                f"{cause.verify_message} (set skip_tls_verify = true for a self-signed receiver)."
            )
        if isinstance(cause, ssl.SSLError):
            return f"The TLS handshake with {url} failed: {cause.reason or cause}."
        if isinstance(cause, OSError) and cause.errno:
            return f"Cannot connect to {url}: {_os_reason(cause)}."
        cause = cause.__cause__ or cause.__context__
    text = str(exc).lower()
    if "refused" in text:
        return f"Cannot connect to {url}: {os.strerror(errno.ECONNREFUSED).lower()}."
    return f"Cannot connect to {url}: {exc or 'the connection failed'}."


def _os_reason(error: OSError) -> str:
    text = os.strerror(error.errno) if error.errno else (error.strerror or str(error))
    return text[0].lower() + text[1:] if text else "the connection failed"
