"""`ScriptLibraries`: the runtime's answers to what scripts ask of `requests`, `knot.kv` and
`knot.secrets`, for sink scripts (`sinks/script.py`) and method scripts (`methods/service.py`).

A worker's request names only what the script passed; who the script is (`ScriptRef`, from
which worker asked) and what its run has used (`RunUse`) the runtime keeps. Everything in the
request is checked again here: the worker's own checks are for clear errors, not for safety.

Dry runs (`knot run`) get a `DryRunLog`: requests are checked against the allow-list exactly
as in the runtime (addresses included) and recorded, but sent only when it is `live`; the
answer to one not sent is a 200 with the JSON body `{}` and `X-Knot-Dry-Run: not sent`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .._audit import AuditEntry, AuditKind
from .._config import Config
from .._exceptions import KnotError, KvError
from .._json import JSONObject
from .._logtext import loggable
from .._sinkspec import SECRET_HEADER
from ..engine.journal import Journal
from .checks import Refused, ScriptRequest, check_url, resolve, shown_url
from .http import ScriptHttp
from .kv import KvCall, serve_kv
from .secrets import Secrets

__all__ = [
    "DryRunLog",
    "LibraryHost",
    "RecordedRequest",
    "RunUse",
    "ScriptLibraries",
    "ScriptRef",
    "ScriptRefusal",
]

log = logging.getLogger("knot.scripts")

MAX_BODY_SHOWN = 4096  # characters of a request body a dry run shows


@dataclass(frozen=True, slots=True)
class ScriptRef:
    """The script a worker runs: `kind` "sinks" or "methods", its name and file."""

    kind: str
    name: str
    path: str = ""

    @property
    def namespace(self) -> str:
        """Its `knot.kv` scope in the store."""
        return f"script:{self.kind}/{self.name}"

    @property
    def label(self) -> str:
        noun = "sink script" if self.kind == "sinks" else "method script"
        return f"{noun} {self.name}" + (f" ({self.path})" if self.path else "")


@dataclass(slots=True)
class RunUse:
    """What one run (a sink handling one event, or one call) has asked for so far."""

    event_id: str = ""
    requests: int = 0
    denied: set[str] = field(default_factory=set)  # hosts audited already in this run


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request a dry run made (or would have made): secrets and credentials masked."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str
    sent: bool
    status: int = 0
    error: str = ""
    event_id: str = ""  # the event whose handling made it (a replay runs many)

    def to_dict(self) -> JSONObject:
        return {
            "method": self.method,
            "url": self.url,
            "headers": [list(h) for h in self.headers],
            "body": self.body,
            "sent": self.sent,
            "status": self.status,
            "error": self.error,
        }


@dataclass
class DryRunLog:
    live: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)


class LibraryHost(Protocol):
    """What ScriptLibraries needs of a runtime: its settings, folder, journal and audit log."""

    @property
    def config(self) -> Config: ...

    @property
    def project(self) -> Path: ...

    @property
    def journal(self) -> Journal: ...

    def record_audit(self, entry: AuditEntry) -> None: ...


class ScriptLibraries:
    """Answers `http`, `kv` and `secret` requests of scripts' workers, for one runtime."""

    @classmethod
    def for_runtime(cls, host: LibraryHost) -> ScriptLibraries:
        """Over a runtime's store: key-value operations run on the journal's writer thread,
        in order with everything else it writes."""
        return cls(
            config=lambda: host.config,
            project=host.project,
            kv=lambda operation: host.journal.call(operation),
            audit=host.record_audit,
        )

    def __init__(
        self,
        *,
        config: Callable[[], Config],
        project: Path,
        kv: KvCall,
        audit: Callable[[AuditEntry], None],
        dry_run: DryRunLog | None = None,
    ) -> None:
        self._config = config
        self._kv = kv
        self._audit = audit
        self.dry_run = dry_run
        self.secrets = Secrets(config, project)
        self.http = ScriptHttp()

    async def close(self) -> None:
        await self.http.close()

    async def serve(
        self,
        script: ScriptRef,
        method: str,
        params: JSONObject,
        use: RunUse,
        *,
        deadline: float | None = None,
    ) -> Any:
        """Answer one request; raises KnotError (a sentence for the script) when refused,
        with `.data` saying which exception the worker raises."""
        if method == "http":
            return await self._http(script, params, use, deadline)
        if method == "kv":
            try:
                return await serve_kv(self._kv, script.namespace, self._config().scripts, params)
            except KvError as exc:
                raise ScriptRefusal(exc.message, {"kind": exc.reason}) from None
        if method == "secret":
            name = params.get("name")
            value = self.secrets.get(name) if isinstance(name, str) else None
            if value is None:
                raise ScriptRefusal(self.secrets.missing(str(name)), {"kind": "missing"})
            return {"value": value}
        raise ScriptRefusal(f"{method} is not available to scripts.", {"kind": "unknown"})

    async def _http(
        self, script: ScriptRef, params: JSONObject, use: RunUse, deadline: float | None
    ) -> Any:
        settings = self._config().scripts
        limit = (
            settings.http_max_requests
            if script.kind == "sinks"
            else self._config().methods.http_max_requests
        )
        use.requests += 1
        if use.requests > limit:  # the worker counts too; this holds if it does not
            raise ScriptRefusal(
                f"More than {limit} HTTP requests in one run (http_max_requests).",
                {"kind": "limit"},
            )
        allow = settings.allow_list(script.kind, script.name)
        loop = asyncio.get_running_loop()
        try:
            request = ScriptRequest.from_params(params, _body(params, settings.http_max_bytes))
            if self.dry_run is not None:
                return await self._dry(
                    request,
                    allow,
                    deadline or loop.time() + request.timeout,
                    settings.http_max_bytes,
                    use.event_id,
                )
            return await self.http.fetch(
                request,
                allow,
                deadline=deadline if deadline is not None else loop.time() + request.timeout,
                max_bytes=settings.http_max_bytes,
            )
        except Refused as refused:
            message = self.secrets.redact(refused.message)
            if refused.kind == "denied":
                self._denied(script, params, use, refused.host, message)
            raise ScriptRefusal(message, {"kind": refused.kind}) from None

    def _denied(
        self, script: ScriptRef, params: JSONObject, use: RunUse, host: str, message: str
    ) -> None:
        """Log and audit a refused request: once per host and run (a loop adds nothing)."""
        if host in use.denied:
            return
        use.denied.add(host)
        url = shown_url(str(params.get("url") or ""))
        method = str(params.get("method"))[:16]
        # A URL's path may hold a token (a Slack hook's does): the line is redacted whole.
        text = self.secrets.redact(
            f"The {script.label} tried {method} {url} and was refused: {message}."
        )
        log.warning("%s", loggable(text))
        name = script.name if script.kind == "sinks" else f"methods/{script.name}"
        self._audit(
            AuditEntry.new(AuditKind.REQUEST_DENIED, text, sink=name, event_id=use.event_id)
        )

    async def _dry(
        self, request: ScriptRequest, allow: Any, deadline: float, max_bytes: int, event: str
    ) -> Any:
        """A dry run's request: checked as in the runtime, recorded, sent only when live."""
        assert self.dry_run is not None
        redact = self.secrets.redact
        headers = tuple(
            (name, "********" if SECRET_HEADER.search(name) else redact(value))
            for name, value in request.headers
        )
        body = redact((request.body or b"").decode("utf-8", "replace"))
        if len(body) > MAX_BODY_SHOWN:
            body = body[:MAX_BODY_SHOWN] + f"... ({len(body)} characters)"
        shown = (request.method, redact(request.url), headers, body)
        try:
            if not self.dry_run.live:
                target = check_url(request.url, allow)
                await resolve(target.host, target.port, allow)
                self.dry_run.requests.append(RecordedRequest(*shown, sent=False, event_id=event))
                return {
                    "status": 200,
                    "reason": "OK",
                    "url": str(target.url),
                    "headers": [
                        ["Content-Type", "application/json"],
                        ["X-Knot-Dry-Run", "not sent"],
                    ],
                    "text": "{}",
                }
            answer = await self.http.fetch(request, allow, deadline=deadline, max_bytes=max_bytes)
        except Refused as refused:
            error = redact(refused.message)
            self.dry_run.requests.append(
                RecordedRequest(*shown, sent=False, error=error, event_id=event)
            )
            raise
        self.dry_run.requests.append(
            RecordedRequest(*shown, sent=True, status=int(answer["status"]), event_id=event)
        )
        return answer


class ScriptRefusal(KnotError):
    """A script's request refused: the message for the script, `data` for its worker."""

    def __init__(self, message: str, data: JSONObject) -> None:
        super().__init__(message)
        self.data = data


def _body(params: JSONObject, max_bytes: int) -> bytes | None:
    encoded = params.get("body_b64")
    if encoded is None:
        return None
    if not isinstance(encoded, str) or len(encoded) > (max_bytes + 2) // 3 * 4 + 4:
        raise Refused(
            "too_large",
            f"the request body is larger than scripts.http_max_bytes ({max_bytes} bytes)",
        )
    try:
        body = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("invalid", "the request body could not be read") from None
    if len(body) > max_bytes:
        raise Refused(
            "too_large",
            f"the request body is larger than scripts.http_max_bytes ({max_bytes} bytes)",
        )
    return body
