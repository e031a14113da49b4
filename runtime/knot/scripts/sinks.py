"""Script sinks from the scripts folder: `<project>/<scripts.dir>/sinks/*.py`.

`ScriptSinks` is the loader the Reloader (`_reload.py`) uses for the `sinks/` folder: the
reloader decides which files changed and how (at start every file counts as new); this module
turns one file into a running sink. A good script is installed as a sink named after its file
(replacing a running version keeps its queue, in order; a changed `# events:` header re-routes).
A broken one is recorded as the sink's problem (shown in listings), audited ("Event Sink Script
Rejected") and logged with `file:line:col: rule`; when a sink of that name is already running,
the last good version keeps handling events. A deleted script's sink is removed and its queued
events given up, each with an audit entry.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .._audit import AuditEntry, AuditKind
from .._exceptions import KnotError
from .._sinkspec import SinkOrigin, SinkSpec
from ..types import PartHost
from .loader import ScriptLoad, ScriptProblem, load_script
from .reload import Reload, ReloadStatus, display_path

__all__ = ["ScriptSinks"]

log = logging.getLogger("knot.scripts")

KIND = "sinks"


class ScriptSinks:
    """Loads, reloads and unloads the script sinks of one runtime (a reloader FolderLoader)."""

    async def load(self, host: PartHost, path: Path, source: str | None) -> Reload:
        """Install the script at `path` (text `source`), or say why not, keeping the old one."""
        shown = display_path(host.project, path)
        # Problems and the sink's messages name the file as the user sees it in the project.
        load = load_script(Path(shown), source=source) if source is not None else load_script(path)
        for warning in load.warnings:
            log.warning("%s", warning)
        registry = host.registry
        name = path.stem
        running = name in registry and registry.spec(name).origin is SinkOrigin.SCRIPT
        if load.spec is not None:
            try:
                await registry.install(load.spec)
            except KnotError as exc:
                problem = ScriptProblem(shown, 1, 1, str(exc).rstrip("."))
                load = ScriptLoad(load.path, None, (problem,), load.warnings)
            else:
                status = ReloadStatus.RELOADED if running else ReloadStatus.LOADED
                message = f"{status} sink {name} ({shown})"
                log.info("%s", message)
                return Reload(status, KIND, name, path, message)
        problems = tuple(str(p) for p in load.problems)
        listed = (
            registry.spec(name)
            if running
            else SinkSpec(
                name, "script", load.events, options={"path": shown}, origin=SinkOrigin.SCRIPT
            )
        )
        registry.set_problem(name, listed, load.describe())
        if running:
            message = f"kept the last good version of sink {name} ({shown}): "
        else:
            message = f"could not load sink {name} ({shown}): "
        message += "; ".join(problems)
        log.error("%s", message)
        host.record_audit(AuditEntry.new(AuditKind.SCRIPT_REJECTED, message, sink=name))
        status = ReloadStatus.KEPT if running else ReloadStatus.REJECTED
        return Reload(status, KIND, name, path, message, problems)

    async def unload(self, host: PartHost, path: Path) -> Reload | None:
        """The script is gone: remove its sink (queued events are given up and audited)."""
        registry = host.registry
        name = path.stem
        shown = display_path(host.project, path)
        had_problem = bool(registry.problem(name))
        registry.clear_problem(name)
        if name in registry and registry.spec(name).origin is SinkOrigin.SCRIPT:
            await registry.remove(name, reason=f"its script {shown} was deleted")
            message = f"removed sink {name} ({shown} was deleted)"
        elif had_problem:
            message = f"forgot the broken sink {name} ({shown} was deleted)"
        else:
            return None
        log.info("%s", message)
        return Reload(ReloadStatus.REMOVED, KIND, name, path, message)
