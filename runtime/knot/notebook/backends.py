"""Where the notebook magics send their work: an embedded runtime, or a running `knot serve`.

Both backends answer the same small protocol with plain JSON rows (the HTTP API's shapes), so
every magic is written once. Each method is a thin call into the Python API (SyncRuntime) or the
HTTP client (Client); neither holds logic of its own.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import psutil

from .._client import Client
from .._config import Config, load_config
from .._env import api_token_from_env
from .._events import Event
from .._exceptions import (
    InvalidInput,
    KnotError,
    PermissionDenied,
    RuntimeClosed,
    StoreLocked,
)
from .._json import JSONObject
from .._patterns import Pattern
from .._replay import ReplayReport
from .._sync import SyncRuntime
from ..scripts.reload import Reload
from ..scripts.save import ScriptKind, save_script
from .display import Feed

__all__ = ["Backend", "ConnectedBackend", "EmbeddedBackend", "SpaceAction", "serve_url"]

SpaceAction = Literal["start", "stop", "delete"]
PROBE_SECONDS = 1.0  # asking a local process whether it is a knot serve


class Backend(Protocol):
    """What the magics need from a runtime, embedded or remote."""

    def describe(self) -> str: ...

    def emit(self, event_type: str, payload: JSONObject | None = None) -> str: ...

    def events(self, pattern: str | None, *, limit: int) -> list[JSONObject]: ...

    def sinks(self) -> list[JSONObject]: ...

    def audit_entries(self, *, limit: int) -> list[JSONObject]: ...

    def trace(self, event_id: str) -> JSONObject: ...

    def wait_idle(self, timeout: float) -> None: ...

    def follow(self, pattern: Pattern) -> Feed: ...

    def save_sink(self, name: str, source: str, *, timeout: float) -> Reload | None: ...

    def save_method(self, name: str, source: str, *, timeout: float) -> Reload | None: ...

    def call_method(self, method: str, params: Any = None) -> Any: ...

    def replay(
        self,
        sink: str,
        *,
        since: str | None,
        from_seq: int | None,
        events: str | None,
        limit: int,
    ) -> ReplayReport: ...

    def methods(self) -> list[str]:
        """The full names (`script.method`) of the methods the runtime has."""
        ...

    def project_folder(self) -> Path | None:
        """The project folder whose scripts the runtime runs (None: not known here)."""
        ...

    def spaces(self) -> list[JSONObject]: ...

    def create_space(self, fields: JSONObject, *, start: bool) -> JSONObject: ...

    def space_action(self, name: str, action: SpaceAction) -> JSONObject: ...

    def space_log(self, name: str, *, limit: int) -> list[str]: ...

    def dry_run_settings(self) -> tuple[Config, Path]:
        """The settings a dry run applies (limits, http_allow, secrets) and its project."""
        ...

    def close(self) -> None: ...


class EmbeddedBackend:
    """A Runtime on a background loop inside this process (the kernel)."""

    def __init__(self, project: str | Path) -> None:
        try:
            self.sync = SyncRuntime(project).start()
        except StoreLocked as exc:
            raise StoreLocked(_locked_message(exc), path=exc.path, pid=exc.pid) from None

    @property
    def project(self) -> Path:
        return self.sync.runtime.project

    def describe(self) -> str:
        runtime = self.sync.runtime
        store = runtime.resolve(runtime.config.store.path)
        return f"embedded runtime on {runtime.project} (store {store})"

    def emit(self, event_type: str, payload: JSONObject | None = None) -> str:
        return self.sync.emit(event_type, payload)

    def events(self, pattern: str | None, *, limit: int) -> list[JSONObject]:
        return [event.to_dict() for event in self.sync.events(pattern, limit=limit)]

    def sinks(self) -> list[JSONObject]:
        return [status.to_dict() for status in self.sync.sinks()]

    def audit_entries(self, *, limit: int) -> list[JSONObject]:
        return [entry.to_dict() for entry in self.sync.audit_entries(limit=limit)]

    def trace(self, event_id: str) -> JSONObject:
        return self.sync.run(self.sync.runtime.trace(event_id)).to_dict()

    def wait_idle(self, timeout: float) -> None:
        self.sync.wait_idle(timeout)
        # Sinks audit their failures through the journal; make those rows readable too.
        self.sync.run(self.sync.runtime.flush())

    def follow(self, pattern: Pattern) -> _ListenerFeed:
        return _ListenerFeed(self.sync, pattern)

    def save_sink(self, name: str, source: str, *, timeout: float) -> Reload | None:
        """Save `scripts/sinks/NAME.py` and wait for the reloader to apply it (None: unchanged)."""
        return self._save("sinks", name, source, timeout=timeout)

    def save_method(self, name: str, source: str, *, timeout: float) -> Reload | None:
        """Save `scripts/methods/NAME.py` and wait until its worker runs it (None: unchanged)."""
        return self._save("methods", name, source, timeout=timeout)

    def call_method(self, method: str, params: Any = None) -> Any:
        return self.sync.call_method(method, params)

    def replay(
        self,
        sink: str,
        *,
        since: str | None,
        from_seq: int | None,
        events: str | None,
        limit: int,
    ) -> ReplayReport:
        return self.sync.replay(sink, since=since, from_seq=from_seq, events=events, limit=limit)

    def methods(self) -> list[str]:
        async def snapshot() -> list[str]:  # read on the loop that changes them
            return [info.full_name for info in self.sync.runtime.methods.all()]

        return self.sync.run(snapshot())

    def project_folder(self) -> Path | None:
        return self.project

    def spaces(self) -> list[JSONObject]:
        async def snapshot() -> list[JSONObject]:  # read on the loop that changes them
            return [info.to_dict() for info in self.sync.runtime.spaces.list()]

        return self.sync.run(snapshot())

    def create_space(self, fields: JSONObject, *, start: bool) -> JSONObject:
        spaces = self.sync.runtime.spaces
        return self.sync.run(spaces.create_from(fields, start=start)).to_dict()

    def space_action(self, name: str, action: SpaceAction) -> JSONObject:
        spaces = self.sync.runtime.spaces
        act = {"start": spaces.start, "stop": spaces.stop, "delete": spaces.delete}[action]
        return self.sync.run(act(name)).to_dict()

    def space_log(self, name: str, *, limit: int) -> list[str]:
        return self.sync.run(self.sync.runtime.spaces.logs(name, lines=limit))

    def _save(self, folder: ScriptKind, name: str, source: str, *, timeout: float) -> Reload | None:
        return self.sync.run(save_script(self.sync.runtime, folder, name, source, timeout=timeout))

    def dry_run_settings(self) -> tuple[Config, Path]:
        return self.sync.runtime.config, self.sync.runtime.project

    def close(self) -> None:
        self.sync.close()


def _locked_message(exc: StoreLocked) -> str:
    """The notebook's answer to a store another runtime holds: attach to it, if it serves."""
    url = serve_url(exc.pid)
    if url:
        return (
            f"The knot serve at {url} (pid {exc.pid}) already runs on this project (store "
            f"{exc.path}); use it with `%knot connect {url}` instead of a second runtime."
        )
    return (
        f"The store {exc.path} is in use by another knot runtime (pid {exc.pid or 'unknown'}) "
        "that answers no HTTP here (another kernel's embedded runtime?); stop it, or use "
        "`%knot connect URL` if it is a knot serve, or `%knot project DIR` for another folder."
    )


def serve_url(pid: int) -> str | None:
    """The URL of the knot serve running as process `pid`, if it is one and answers.

    `knot serve` records its address nowhere, so look at the sockets the process listens on
    and ask each for /healthz (a kernel listens too, for Jupyter: only a knot answer counts).
    """
    if pid <= 0:
        return None
    try:
        sockets = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return None
    for conn in sockets:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        host = conn.laddr.ip
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = "[::1]" if host == "::" else f"[{host}]"
        url = f"http://{host}:{conn.laddr.port}"
        try:
            answer = httpx.get(f"{url}/healthz", timeout=PROBE_SECONDS, trust_env=False)
            body = answer.json()
        except (httpx.HTTPError, ValueError):
            continue
        if isinstance(body, dict) and "status" in body and "zone" in body:
            return url
    return None


class _ListenerFeed:
    """Routed events from `Runtime.on_event`, handed from the runtime's loop to a reader."""

    def __init__(self, sync: SyncRuntime, pattern: Pattern) -> None:
        self._sync = sync
        self._queue: queue.SimpleQueue[JSONObject | None] = queue.SimpleQueue()

        def listener(event: Event, sinks: tuple[str, ...]) -> None:
            if pattern.matches(event.type):
                self._queue.put({**event.to_dict(), "sinks": list(sinks)})

        async def subscribe() -> None:
            self._unsubscribe = sync.runtime.on_event(listener)

        sync.run(subscribe())

    def __iter__(self) -> Iterator[JSONObject]:
        while (item := self._queue.get()) is not None:
            yield item

    def wait_open(self, timeout: float) -> bool:
        return True

    def watch_status(self, listener: Callable[[str, bool], None]) -> None:
        return None  # the embedded runtime is in this process: it does not go away alone

    def close(self) -> None:
        with contextlib.suppress(RuntimeClosed):  # a stopped runtime has no listeners left
            self._sync.loop.call_soon_threadsafe(self._unsubscribe)
        self._queue.put(None)


class _NotebookClient(Client):
    """The HTTP client, saying in a 401 how a notebook passes a token (the server's own
    message names the CLI's way)."""

    def __init__(self, url: str | None, *, token: str | None) -> None:
        super().__init__(url, token=token)
        self.has_token = bool(token)

    def request(self, method: str, path: str, **options: Any) -> Any:
        try:
            return super().request(method, path, **options)
        except PermissionDenied as exc:
            raise self._explain(exc) from None

    def follow(
        self,
        pattern: str | None = None,
        *,
        on_open: Callable[[], None] | None = None,
        reconnect: bool = False,
        on_status: Callable[[str, bool], None] | None = None,
    ) -> Iterator[JSONObject]:
        try:
            yield from super().follow(
                pattern, on_open=on_open, reconnect=reconnect, on_status=on_status
            )
        except PermissionDenied as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: PermissionDenied) -> PermissionDenied:
        if exc.status != 401:
            return exc  # a 403 says which permission is missing: nothing to add
        how = (
            f"connect with `%knot connect {self.url} --token TOKEN` (or run "
            f"`%env KNOT_TOKEN=TOKEN` before `%knot connect {self.url}`)"
        )
        if self.has_token:
            message = (
                f"The knot serve at {self.url} did not accept the token: {how}, with a token "
                "`knot user add` gave."
            )
        else:
            message = f"The knot serve at {self.url} has users and needs a token: {how}."
        return PermissionDenied(message, status=401)


class ConnectedBackend:
    """A `knot serve` reached over its HTTP API."""

    def __init__(self, url: str | None = None, *, token: str | None = None) -> None:
        self._token = token if token is not None else api_token_from_env()
        self.client = _NotebookClient(url, token=self._token)
        try:
            self.client.request("GET", "/healthz")
            # /healthz is open to all; an authenticated read finds a missing or wrong token
            # now rather than at the next magic.
            self.client.whoami()
        except KnotError:
            self.client.close()
            raise

    @property
    def url(self) -> str:
        return self.client.url

    def describe(self) -> str:
        return f"connected to the knot serve at {self.client.url}"

    def emit(self, event_type: str, payload: JSONObject | None = None) -> str:
        return self.client.emit(event_type, payload)

    def events(self, pattern: str | None, *, limit: int) -> list[JSONObject]:
        return self.client.events(pattern, limit=limit)

    def sinks(self) -> list[JSONObject]:
        return self.client.sinks()

    def audit_entries(self, *, limit: int) -> list[JSONObject]:
        return self.client.audit_entries(limit=limit)

    def trace(self, event_id: str) -> JSONObject:
        return self.client.trace(event_id)

    def wait_idle(self, timeout: float) -> None:
        self.client.wait_idle(timeout)

    def follow(self, pattern: Pattern) -> _StreamFeed:
        # A client of its own: closing it is how a blocked stream read is interrupted.
        return _StreamFeed(_NotebookClient(self.client.url, token=self._token), pattern)

    def save_sink(self, name: str, source: str, *, timeout: float) -> Reload | None:
        raise InvalidInput(
            f"The scripts folder belongs to the knot serve at {self.url}: save "
            f"scripts/sinks/{name}.py there and it reloads the sink by itself."
        )

    def save_method(self, name: str, source: str, *, timeout: float) -> Reload | None:
        raise InvalidInput(
            f"The scripts folder belongs to the knot serve at {self.url}: save "
            f"scripts/methods/{name}.py there and it reloads the method script by itself."
        )

    def call_method(self, method: str, params: Any = None) -> Any:
        return self.client.call_method(method, params)

    def replay(
        self,
        sink: str,
        *,
        since: str | None,
        from_seq: int | None,
        events: str | None,
        limit: int,
    ) -> ReplayReport:
        return self.client.replay(sink, since=since, from_seq=from_seq, events=events, limit=limit)

    def methods(self) -> list[str]:
        return [str(m["name"]) for m in self.client.methods().get("methods") or ()]

    def project_folder(self) -> Path | None:
        return None  # the server's folder may be anywhere, even on another machine

    def spaces(self) -> list[JSONObject]:
        return self.client.spaces()

    def create_space(self, fields: JSONObject, *, start: bool) -> JSONObject:
        return self.client.create_space({**fields, "start": start})

    def space_action(self, name: str, action: SpaceAction) -> JSONObject:
        if action == "delete":
            return self.client.delete_space(name)
        return self.client.space_action(name, action)

    def space_log(self, name: str, *, limit: int) -> list[str]:
        return self.client.space_log(name, limit=limit)

    def dry_run_settings(self) -> tuple[Config, Path]:
        return load_config(Path.cwd()).raise_for_errors(), Path.cwd()

    def close(self) -> None:
        self.client.close()


class _StreamFeed:
    """Routed events from the server-sent event stream `GET /api/events/stream`."""

    def __init__(self, client: Client, pattern: Pattern) -> None:
        self._client = client
        self._pattern = pattern
        self._open = threading.Event()
        self._closed = False
        self._error: KnotError | None = None
        self._on_status: Callable[[str, bool], None] | None = None

    def watch_status(self, listener: Callable[[str, bool], None]) -> None:
        self._on_status = listener

    def __iter__(self) -> Iterator[JSONObject]:
        try:
            # A server that restarts is waited for, and what it routed meanwhile comes first.
            yield from self._client.follow(
                self._pattern.text,
                on_open=self._open.set,
                reconnect=True,
                on_status=self._on_status,
            )
        except KnotError as exc:
            if not self._closed:
                self._error = exc
                raise
        finally:
            self._open.set()

    def wait_open(self, timeout: float) -> bool:
        opened = self._open.wait(timeout)
        if self._error is not None:
            raise self._error
        return opened and not self._closed

    def close(self) -> None:
        self._closed = True
        self._client.close()
