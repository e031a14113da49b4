"""Save a script into a running runtime's scripts folder and wait until the runtime applied it.

What `%%knot sink NAME` and knot.testing's `write_sink` do: the file is written whole (as
editors save), then the runtime's own reloader picks it up exactly as it would a save from an
editor, and its verdict (loaded, reloaded, or refused with `file:line:col: rule`) comes back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from .._config import Config
from .._exceptions import InvalidInput, KnotError, SinkError
from .._sinkspec import check_sink_name
from .reload import Reload, Reloader

__all__ = ["ScriptKind", "ScriptsHost", "save_script"]

ScriptKind = Literal["sinks", "methods"]


class ScriptsHost(Protocol):
    """What saving a script needs of a runtime (`knot.Runtime` has it)."""

    @property
    def parts(self) -> Sequence[object]: ...

    @property
    def config(self) -> Config: ...

    def resolve(self, path: str | Path) -> Path: ...


async def save_script(
    runtime: ScriptsHost, kind: ScriptKind, name: str, source: str, *, timeout: float = 10.0
) -> Reload | None:
    """Write `<scripts.dir>/<kind>/<name>.py` and return the reloader's verdict on it.

    None when the file already holds exactly `source` (the reloader compares contents, so it
    would report nothing). Raises SinkError for a bad name, InvalidInput for a runtime that
    does not watch its scripts, KnotError when nothing was applied within `timeout` seconds.
    """
    if kind not in ("sinks", "methods"):
        raise InvalidInput(f"Scripts are saved to sinks/ or methods/, not {kind!r}.")
    if (problem := check_sink_name(name)) is not None:
        raise SinkError(problem, sink=name)
    reloader = next((p for p in runtime.parts if isinstance(p, Reloader)), None)
    if reloader is None:
        raise InvalidInput("This runtime does not watch its scripts folder.")
    path = runtime.resolve(runtime.config.scripts.dir) / kind / f"{name}.py"
    if path.is_file() and path.read_text(encoding="utf-8") == source:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.resolve()
    applied: asyncio.Future[Reload] = asyncio.get_running_loop().create_future()

    def listener(reload: Reload) -> None:
        if reload.path.resolve() == target and not applied.done():
            applied.set_result(reload)

    unsubscribe = reloader.on_reload(listener)  # before the write: the answer cannot be missed
    try:
        # Whole or not at all, as editors save: the reloader never reads a half-written file.
        staging = path.with_name(f".{path.name}.saving")
        staging.write_text(source, encoding="utf-8")
        os.replace(staging, path)
        try:
            async with asyncio.timeout(timeout):
                return await applied
        except TimeoutError:
            raise KnotError(f"The runtime did not pick up {path} within {timeout} s.") from None
    finally:
        unsubscribe()
