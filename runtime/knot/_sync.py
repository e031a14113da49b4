"""A blocking handle on a Runtime running on its own thread (notebooks, scripts, tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar, overload

from ._aliases import warn_renamed
from ._audit import AuditEntry
from ._events import Event
from ._exceptions import RuntimeClosed
from ._replay import ReplayReport
from ._runtime import EmitReport, Runtime
from ._sinkspec import SinkSpec
from .engine.registry import SinkStatus
from .observe.trace import Deliveries, Trace
from .scripts.replay import Progress
from .sinks import Sink

__all__ = ["SyncRuntime"]

T = TypeVar("T")


class SyncRuntime:
    """`with SyncRuntime("project") as rt: rt.emit("hello", {"x": 1})`.

    The runtime's event loop runs on a daemon thread; every method blocks until done.
    """

    def __init__(
        self, project: str | Path = ".", *, runtime: Runtime | None = None, **options: Any
    ) -> None:
        self.runtime = runtime or Runtime(project, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncRuntime:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeClosed("The runtime is not running.")
        return self._loop

    def start(self) -> SyncRuntime:
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="knot-runtime", daemon=True)
        self._thread.start()
        started.wait()
        self._loop = loop
        try:
            self.run(self.runtime.start())
        except BaseException:
            self._shutdown_loop()
            raise
        return self

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self.run(self.runtime.stop())
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if loop is not None and not loop.is_running():
            loop.close()

    def run(self, coro: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run a coroutine on the runtime's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeClosed("The runtime is not running.")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    @overload
    def call(self, method: str, params: Any = None) -> Any: ...

    @overload
    def call(self, coro: Coroutine[Any, Any, T], /, *, timeout: float | None = None) -> T: ...

    def call(self, method: Any, params: Any = None, *, timeout: float | None = None) -> Any:
        """`call(method, params)` is `call_method`, as on Client; `call(coro)` is the old
        name of `run` (deprecated), from before `call` meant calling a method everywhere."""
        if isinstance(method, str):
            return self.call_method(method, params)
        warn_renamed("SyncRuntime.call(coroutine)", "SyncRuntime.run(coroutine)")
        return self.run(method, timeout=timeout)

    # -- the Runtime API, blocking ---------------------------------------------------------

    def emit(self, event_type: str, payload: object = None, **options: Any) -> str:
        return self.run(self.runtime.emit(event_type, payload, **options))

    def emit_and_wait(
        self,
        event_type: str,
        payload: object = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> EmitReport:
        return self.run(self.runtime.emit_and_wait(event_type, payload, timeout=timeout, **options))

    def events(self, pattern: str | None = None, *, limit: int = 50, after: int = 0) -> list[Event]:
        return self.run(self.runtime.events(pattern, limit=limit, after=after))

    def audit_entries(self, *, limit: int = 50, sink: str | None = None) -> list[AuditEntry]:
        return self.run(self.runtime.audit_entries(limit=limit, sink=sink))

    def deliveries(self, event_id: str) -> Deliveries:
        """Every recorded delivery attempt of an event, per sink."""
        return self.run(self.runtime.deliveries(event_id))

    def replay(
        self,
        sink: str,
        *,
        since: str | None = None,
        from_seq: int | None = None,
        events: str | None = None,
        limit: int = 100,
        progress: Progress | None = None,
    ) -> ReplayReport:
        """`Runtime.replay`: the sink's current script on journaled events, compared with
        what ran then (`progress` is called on the runtime's loop thread)."""
        replaying = self.runtime.replay(
            sink, since=since, from_seq=from_seq, events=events, limit=limit, progress=progress
        )
        return self.run(replaying)

    def trace(self, event_id: str) -> Trace:
        """The tree of the chain `event_id` belongs to, from its root."""
        return self.run(self.runtime.trace(event_id))

    def audit(self, *, limit: int = 50) -> list[AuditEntry]:
        """Deprecated alias of `audit_entries` (on Runtime, `audit` was the write)."""
        warn_renamed("SyncRuntime.audit()", "SyncRuntime.audit_entries()")
        return self.audit_entries(limit=limit)

    def sinks(self) -> list[SinkStatus]:
        async def snapshot() -> list[SinkStatus]:
            return self.runtime.sinks()

        return self.run(snapshot())

    def add_sink(self, item: SinkSpec | Sink | Mapping[str, Any]) -> SinkSpec:
        return self.run(self.runtime.add_sink(item))

    def update_sink(self, name: str, changes: Mapping[str, Any]) -> SinkSpec:
        return self.run(self.runtime.update_sink(name, changes))

    def remove_sink(self, name: str) -> SinkSpec:
        return self.run(self.runtime.remove_sink(name))

    def call_method(self, method: str, params: Any = None) -> Any:
        """Call a method script's method (`script.method` or an unambiguous `method`)."""
        return self.run(self.runtime.call_method(method, params))

    def wait_idle(self, timeout: float = 30.0) -> None:
        self.run(self.runtime.wait_idle(timeout))
