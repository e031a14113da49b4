"""The seams: small Protocols each service is typed against, instead of the runtime itself.

`Runtime` (in `_runtime.py`) satisfies all of them; services never import it, so the runtime
can import the services without an import cycle, and a test can hand a service a stand-in that
has only what the Protocol names. The JSON aliases (`JSONObject`, `MAX_JSON_DEPTH`) live in
`_json.py`, a leaf, and are re-exported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._clock import Clock
from ._json import MAX_JSON_DEPTH, JSONObject

if TYPE_CHECKING:
    from ._audit import AuditEntry
    from ._config import Config
    from ._events import Event, Space
    from .engine.hooks import Hooks
    from .engine.registry import SinkRegistry
    from .scriptlib.service import ScriptLibraries

__all__ = [
    "MAX_JSON_DEPTH",
    "Auditor",
    "Clock",
    "Emitter",
    "JSONObject",
    "KeyValueArea",
    "MethodLoader",
    "MethodsHost",
    "PartHost",
    "RuntimePart",
    "RuntimeView",
    "SystemEmitter",
]


class KeyValueArea(Protocol):
    """Durable records kept in the store, by area (users, channels, spaces, the node id)."""

    def kv_all(self, area: str) -> dict[str, Any]:
        """Every record of `area` (read at start, on the caller's thread)."""
        ...

    async def kv_put(self, area: str, key: str, value: Any) -> None: ...

    async def kv_delete(self, area: str, key: str) -> None: ...


class Auditor(Protocol):
    def record_audit(self, entry: AuditEntry) -> None:
        """Record what the runtime did not do as asked (written with the next commit)."""
        ...


class Emitter(Protocol):
    """Raising events: from outside (custom) or from a sink handling one (a child)."""

    async def emit(self, event_type: str, payload: object = None, **options: Any) -> str: ...

    async def emit_child(
        self,
        parent: Event,
        event_type: str,
        payload: JSONObject,
        *,
        sink: str = "",
        index: int | None = None,
    ) -> str:
        """With `sink` and `index` (the emit's place in that handling) the child's id is
        derived, so a re-run after a crash raises the same ids and the journal drops them."""
        ...


class SystemEmitter(Protocol):
    async def emit_system(
        self, event_type: str, payload: JSONObject, *, space: Space | None, owner: str = ""
    ) -> str:
        """Raise a system event (only the runtime's own parts do: spaces' lifecycle)."""
        ...


class RuntimeView(Protocol):
    """A running runtime's project folder and settings, read-only."""

    @property
    def project(self) -> Path: ...

    @property
    def config(self) -> Config: ...

    @property
    def config_path(self) -> Path | None: ...

    @property
    def running(self) -> bool: ...

    def resolve(self, path: str | Path) -> Path:
        """A path from the settings, relative to the project folder."""
        ...


class MethodLoader(Protocol):
    """Loading method scripts into their workers (the scripts folder's `methods/`)."""

    async def load(self, name: str, source: str | None, *, path: str = "") -> Any: ...

    async def unload(self, name: str, *, reason: str = "") -> bool: ...


class PartHost(RuntimeView, Auditor, KeyValueArea, SystemEmitter, Protocol):
    """What a RuntimePart (the script reloader, spaces) may ask of the runtime it runs with."""

    @property
    def hooks(self) -> Hooks:
        """The observers reloads are reported to (metrics)."""
        ...

    @property
    def registry(self) -> SinkRegistry: ...

    @property
    def method_loader(self) -> MethodLoader: ...

    @property
    def state_dir(self) -> Path:
        """Where the runtime keeps its own files (the store's folder, `.knot/`)."""
        ...

    async def apply_config(self, config: Config) -> tuple[str, ...]: ...


class MethodsHost(Auditor, Emitter, Protocol):
    """What the method-script service (`runtime.methods`) and its workers ask of the runtime."""

    @property
    def config(self) -> Config: ...

    @property
    def registry(self) -> SinkRegistry:
        """The sinks: json-rpc formatters and method sinks live there too."""
        ...

    def sink_output(self, sink: str, event: Event, lines: tuple[str, ...]) -> None: ...

    def delivery_trace(self, event: Event, sink: str) -> str:
        """The `traceparent` `sink`'s attempt on `event` hands on (its method call's parent)."""
        ...

    @property
    def script_libraries(self) -> ScriptLibraries:
        """What answers method scripts' `requests`, `knot.kv` and `knot.secrets`."""
        ...

    @property
    def hooks(self) -> Hooks:
        """The observers of calls (metrics) and the tracer."""
        ...


class RuntimePart(Protocol):
    """A component started after the core and stopped before it (reloader, spaces, ...)."""

    async def start(self, host: PartHost) -> None: ...

    async def stop(self) -> None: ...
