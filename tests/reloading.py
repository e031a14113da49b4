"""Helpers for hot-reload tests: wait for the reloader to apply a save, and save like editors do."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from knot.scripts.reload import Reload, Reloader


class Reloads:
    """Collects what a reloader applies; `next()` waits (no polling) for the next match."""

    def __init__(self, reloader: Reloader) -> None:
        self.seen: list[Reload] = []
        self._read = 0
        self._changed = asyncio.Event()
        reloader.on_reload(self._add)

    def _add(self, reload: Reload) -> None:
        self.seen.append(reload)
        self._changed.set()

    async def next(
        self, match: Callable[[Reload], bool] = lambda r: True, *, timeout: float = 5.0
    ) -> Reload:
        """The first reload after the last one returned that matches (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                while self._read < len(self.seen):
                    reload = self.seen[self._read]
                    self._read += 1
                    if match(reload):
                        return reload
                self._changed.clear()
                await self._changed.wait()

    async def named(self, name: str, *, timeout: float = 5.0) -> Reload:
        return await self.next(lambda r: r.name == name, timeout=timeout)

    async def quiet(self, seconds: float = 0.3) -> list[Reload]:
        """Whatever arrives within `seconds` (for asserting that nothing happens)."""
        start = len(self.seen)
        await asyncio.sleep(seconds)
        self._read = len(self.seen)
        return self.seen[start:]


def atomic_save(path: Path, text: str) -> None:
    """Write a temp file beside `path` and rename it over it (most editors, IDEs, formatters)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def vim_save(path: Path, text: str) -> None:
    """vim's default: probe file 4913, rename the original to a backup, write anew, drop backup."""
    probe = path.with_name("4913")
    probe.write_text("", encoding="utf-8")
    probe.unlink()
    backup = path.with_name(path.name + "~")
    os.replace(path, backup)
    path.write_text(text, encoding="utf-8")
    backup.unlink()
