"""Script sinks from the scripts folder: `<project>/<scripts.dir>/sinks/*.py`.

`ScriptSinks` is a RuntimePart: at start it loads every script in the folder. A good script is
installed as a sink named after its file; a broken one is recorded as the sink's problem
(shown in listings), audited ("Event Sink Script Rejected") and logged with `file:line:col`.
When a sink of that name is already running, a broken version leaves it running: the last
good version keeps handling events. `apply(path)` and `unload(path)` do the same for one file,
for whoever watches the folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ._audit import AuditEntry, AuditKind
from ._exceptions import KnotError
from ._sinkspec import SinkOrigin, SinkSpec
from .sandbox.loader import ScriptLoad, ScriptProblem, load_script

if TYPE_CHECKING:
    from ._runtime import Runtime

__all__ = ["ScriptSinks"]

log = logging.getLogger("knot.scripts")


class ScriptSinks:
    """Loads, reloads and unloads the script sinks of one runtime."""

    def __init__(self) -> None:
        self._runtime: Runtime | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("ScriptSinks is not started")
        return self._runtime

    @property
    def folder(self) -> Path:
        """The folder holding the sink scripts (it need not exist)."""
        runtime = self.runtime
        return runtime.resolve(runtime.config.scripts.dir) / "sinks"

    async def start(self, runtime: Runtime) -> None:
        self._runtime = runtime
        await self.scan()

    async def stop(self) -> None:
        self._runtime = None

    def paths(self) -> list[Path]:
        folder = self.folder
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*.py") if p.is_file())

    async def scan(self) -> list[ScriptLoad]:
        """Load every script in the folder; unload script sinks whose file is gone."""
        paths = self.paths()
        present = {p.stem for p in paths}
        registry = self.runtime.registry
        for name in registry.names(SinkOrigin.SCRIPT):
            if name not in present:
                await registry.remove(name, reason="its script is gone")
        return [await self.apply(path) for path in paths]

    async def apply(self, path: Path, *, source: str | None = None) -> ScriptLoad:
        """Load one script and install it, or record why it cannot be (keeping the old one)."""
        runtime = self.runtime
        load = load_script(path, source=source)
        for warning in load.warnings:
            log.warning("%s", warning)
        registry = runtime.registry
        spec = load.spec
        if spec is not None:
            try:
                await registry.install(spec)
            except KnotError as exc:
                problem = ScriptProblem(str(path), 1, 1, str(exc).rstrip("."))
                load = ScriptLoad(load.path, None, (problem,), load.warnings)
            else:
                log.info("script sink %s loaded (events: %s)", load.name, spec.events_text)
                return load
        name = load.name
        running = name in registry and registry.spec(name).origin is SinkOrigin.SCRIPT
        text = load.describe()
        shown = (
            registry.spec(name)
            if running
            else SinkSpec(name, "script", (), options={"path": str(path)}, origin=SinkOrigin.SCRIPT)
        )
        registry.set_problem(name, shown, text)
        keep = " (the last good version keeps running)" if running else ""
        log.error("script sink %s rejected%s:\n%s", name, keep, text)
        runtime.audit(
            AuditEntry.new(
                AuditKind.SCRIPT_REJECTED,
                f"The script {path} was not loaded{keep}: " + "; ".join(map(str, load.problems)),
                sink=name,
            )
        )
        return load

    async def unload(self, path: Path, *, reason: str = "its script was deleted") -> bool:
        """Remove the sink of a deleted script; its queued events are given up and audited."""
        registry = self.runtime.registry
        name = Path(path).stem
        registry.clear_problem(name)
        if name in registry and registry.spec(name).origin is SinkOrigin.SCRIPT:
            await registry.remove(name, reason=reason)
            log.info("script sink %s removed (%s)", name, reason)
            return True
        return False
