"""Method scripts from the scripts folder: `<project>/<scripts.dir>/methods/*.py`.

`MethodScripts` is the loader the Reloader (`_reload.py`) uses for the `methods/` folder, as
`ScriptSinks` is for `sinks/`: it turns one file into a running method script through
`runtime.methods` (which owns workers, calls and subscriptions) and reports what happened as
a `Reload` for the log and listeners. The script is named after its file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..types import PartHost
from .reload import Reload, ReloadStatus, display_path

__all__ = ["MethodScripts"]

log = logging.getLogger("knot.methods")

KIND = "methods"


class MethodScripts:
    """Loads, reloads and unloads the method scripts of one runtime (a reloader FolderLoader)."""

    async def load(self, host: PartHost, path: Path, source: str | None) -> Reload:
        shown = display_path(host.project, path)
        name = path.stem
        result = await host.method_loader.load(name, source, path=shown)
        if result.ok:
            status = ReloadStatus.RELOADED if result.replaced else ReloadStatus.LOADED
            names = ", ".join(m.name for m in result.methods) or "no methods"
            message = f"{status} method script {name} ({shown}): {names}"
            log.info("%s", message)
            return Reload(status, KIND, name, path, message)
        status = ReloadStatus.KEPT if result.replaced else ReloadStatus.REJECTED
        return Reload(status, KIND, name, path, result.message, result.problems)

    async def unload(self, host: PartHost, path: Path) -> Reload | None:
        name = path.stem
        shown = display_path(host.project, path)
        if not await host.method_loader.unload(name, reason=f"its script {shown} was deleted"):
            return None
        message = f"removed method script {name} ({shown} was deleted)"
        log.info("%s", message)
        return Reload(ReloadStatus.REMOVED, KIND, name, path, message)
