"""Hot reload: watch the scripts folder and knot.toml, and apply what changed on disk.

Two steps, kept apart (like matching and handling in a router):

1. deciding — pure functions. `checks` turns a batch of file-system notifications into the
   paths worth looking at; `classify` compares what those paths hold now with what was last
   applied and returns the steps: load this source, unload that path, or nothing. Editors save
   in many ways (write in place, temp file + rename, vim's backup dance); comparing contents
   instead of trusting the kind of notification makes them all the same case.
2. applying — the Reloader, a RuntimePart, runs the steps through the loader of each folder
   (`scripts/sinks/` → script sinks, `scripts/methods/` → method scripts) and through
   `Runtime.apply_config` for knot.toml, logging one line per reload.

Two watchers run: the project folder, not recursively (knot.toml, and the scripts folder coming
and going; watching the project recursively would wake on every store commit and walk .venv),
and the scripts folder, recursively, restarted whenever the folder is created again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from watchfiles import Change, awatch

from .._audit import AuditEntry, AuditKind
from .._config import CONFIG_FILE, ConfigResult, changed_settings, parse_config
from ..types import PartHost

__all__ = [
    "Action",
    "Checks",
    "FolderLoader",
    "Reload",
    "ReloadStatus",
    "Reloader",
    "Seen",
    "Step",
    "checks",
    "classify",
    "display_path",
    "is_script_name",
]

log = logging.getLogger("knot.reload")

CONFIG = "config"
"""The kind of knot.toml in steps; script kinds are their folder names (`sinks`)."""


class Action(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"


class ReloadStatus(StrEnum):
    LOADED = "loaded"  # new, and good
    RELOADED = "reloaded"  # replaced a running version
    KEPT = "kept"  # broken save; the last good version goes on running
    REJECTED = "rejected"  # broken, and there was no good version to keep
    REMOVED = "removed"  # the file is gone; so is what it defined


@dataclass(frozen=True, slots=True)
class Reload:
    """What one applied step did, for logs, tests and listeners."""

    status: ReloadStatus
    kind: str  # "sinks", "config", ...
    name: str  # the sink or method script name; "knot.toml" for the settings
    path: Path
    message: str  # the log line
    problems: tuple[str, ...] = ()
    at: float = field(default_factory=time.time)  # when it was applied (epoch seconds)

    @property
    def ok(self) -> bool:
        return self.status not in (ReloadStatus.KEPT, ReloadStatus.REJECTED)


class FolderLoader(Protocol):
    """Turns the scripts of one folder (`scripts/sinks/`) into running parts of the runtime."""

    async def load(self, host: PartHost, path: Path, source: str | None) -> Reload:
        """Apply a new or changed script (`source` None: it could not be read as text)."""
        ...

    async def unload(self, host: PartHost, path: Path) -> Reload | None:
        """The script is gone; remove what it defined (None: it had defined nothing)."""
        ...


# -- deciding (pure) ---------------------------------------------------------------------------


def is_script_name(name: str) -> bool:
    """A file name a script folder loads: `x.py`.

    Editors' leftovers fail the suffix test (`x.py~`, `#x.py#`, `x.py.tmp`, vim's `4913`
    probe) or are dotfiles (`.x.py.swp`, emacs' `.#x.py` lock, most atomic-save temp files).
    """
    return name.endswith(".py") and len(name) > 3 and not name.startswith((".", "#", "~"))


@dataclass(frozen=True, slots=True)
class Checks:
    """The paths a batch of notifications asks us to look at."""

    files: Mapping[Path, str]  # path → kind
    rescan: frozenset[str] = frozenset()  # folders to list again (a folder itself changed)


def checks(
    changes: Iterable[tuple[Change, str]],
    *,
    project: Path,
    scripts: Path,
    kinds: Iterable[str],
    config: bool = True,
) -> Checks:
    """Which files (and whole folders) a batch of watchfiles changes concerns.

    A change to a folder itself (the scripts folder or `sinks/` deleted, renamed or created)
    means every script under it must be looked at again; notify does not always report
    each file inside.
    """
    folders = {scripts / kind: kind for kind in kinds}
    files: dict[Path, str] = {}
    rescan: set[str] = set()
    for _, raw in changes:
        path = Path(raw)
        if config and path == project / CONFIG_FILE:
            files[path] = CONFIG
            continue
        kind = folders.get(path.parent)
        if kind is not None and is_script_name(path.name):
            files[path] = kind
            continue
        if path in folders:
            rescan.add(folders[path])
        elif any(folder.is_relative_to(path) for folder in folders):
            # An ancestor of the folders (the scripts folder itself) changed.
            rescan.update(folders.values())
    return Checks(files, frozenset(rescan))


@dataclass(frozen=True, slots=True)
class Seen:
    """What a path holds now: its text and digest, or nothing (gone)."""

    kind: str
    source: str | None = None  # None with a digest: there, but not UTF-8 text
    digest: str = ""  # "" means the file is gone

    @property
    def exists(self) -> bool:
        return bool(self.digest)


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    kind: str
    path: Path
    source: str | None = None
    digest: str = ""


def classify(seen: Mapping[Path, Seen], known: Mapping[Path, str]) -> list[Step]:
    """The steps that bring what is applied (`known`: path → digest) in line with the disk.

    Unchanged content is no step at all (a touch, a save without edits, a vim save of the same
    text). Unloads come first, so a rename never has two versions running at once.
    """
    unloads: list[Step] = []
    loads: list[Step] = []
    for path in sorted(seen):
        now = seen[path]
        before = known.get(path)
        if not now.exists:
            if before is not None:
                unloads.append(Step(Action.UNLOAD, now.kind, path))
        elif now.digest != before:
            loads.append(Step(Action.LOAD, now.kind, path, now.source, now.digest))
    return unloads + loads


def display_path(project: Path, path: Path) -> str:
    """A path as the user thinks of it: relative to the project when it is inside."""
    try:
        return str(path.relative_to(project))
    except ValueError:
        return str(path)


# -- looking at the disk ---------------------------------------------------------------------


def look(path: Path, kind: str) -> Seen:
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return Seen(kind)
    except OSError as exc:
        log.warning("cannot read %s: %s", path, exc)
        return Seen(kind)
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    try:
        return Seen(kind, data.decode("utf-8"), digest)
    except UnicodeDecodeError:
        return Seen(kind, None, digest)


def listing(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if is_script_name(p.name) and p.is_file()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc)
        return []


# -- applying -------------------------------------------------------------------------------


@dataclass
class _Watch:
    """One running awatch loop and the event that stops it."""

    task: asyncio.Task[None]
    stop: asyncio.Event


class Reloader:
    """A RuntimePart: loads the scripts folder at start, then keeps it (and knot.toml) live.

    `folders` maps a subfolder of the scripts folder to its loader: data, so another kind of
    script is one more entry. `debounce_ms`/`step_ms` are watchfiles' grouping window: a batch
    is handed over once a step passes without news, so a save is noticed after about two steps
    (measured: step 10 ≈ 20 ms, step 5 ≈ 7 ms; both watchers idle at ~0.6% of a core with 5).
    `grace` is how long a vanished file gets to come back before it counts as deleted (vim
    renames the old file away before writing the new one).
    """

    def __init__(
        self,
        *,
        folders: Mapping[str, FolderLoader],
        debounce_ms: int = 50,
        step_ms: int = 5,
        grace: float = 0.1,
    ) -> None:
        self.folders = dict(folders)
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self.grace = grace
        self.history: deque[Reload] = deque(maxlen=200)
        self._host: PartHost | None = None
        self._known: dict[Path, str] = {}  # path → digest of the content last applied
        self._lock = asyncio.Lock()
        self._project_watch: _Watch | None = None
        self._scripts_watch: _Watch | None = None
        self._listeners: list[Callable[[Reload], None]] = []

    @property
    def host(self) -> PartHost:
        assert self._host is not None, "the reloader is not running"
        return self._host

    @property
    def scripts(self) -> Path:
        return self.host.resolve(self.host.config.scripts.dir)

    def on_reload(self, listener: Callable[[Reload], None]) -> Callable[[], None]:
        """Call `listener(reload)` after each applied step; returns an unsubscribe."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def start(self, host: PartHost) -> None:
        self._host = host
        config_path = host.config_path
        if config_path is not None:
            seen = look(config_path, CONFIG)
            if seen.exists:
                self._known[config_path] = seen.digest
        # Watch first, then scan: a save between the two is seen twice and applied once.
        project = host.project
        try:
            top = self.scripts.relative_to(project).parts[0]
        except (ValueError, IndexError):
            top = ""  # a scripts folder outside the project: watched while it exists
        names = {CONFIG_FILE, top}
        self._project_watch = self._watch(
            project,
            self._project_changed,
            recursive=False,
            only=lambda _, path: Path(path).name in names,
        )
        self._start_scripts_watch()
        await asyncio.sleep(0)
        await self._rescan(self.folders)

    async def stop(self) -> None:
        for watch in (self._project_watch, self._scripts_watch):
            if watch is not None:
                await _stop(watch)
        self._project_watch = self._scripts_watch = None

    def _watch(
        self,
        path: Path,
        handle: Callable[[set[tuple[Change, str]]], Awaitable[None]],
        *,
        recursive: bool,
        only: Callable[[Change, str], bool] | None = None,
    ) -> _Watch:
        stop = asyncio.Event()
        task = asyncio.create_task(
            self._run(path, handle, recursive, only, stop), name=f"knot-reload-{path.name}"
        )
        return _Watch(task, stop)

    def _start_scripts_watch(self) -> None:
        if self.scripts.is_dir():
            self._scripts_watch = self._watch(self.scripts, self._changed, recursive=True)

    async def _run(
        self,
        path: Path,
        handle: Callable[[set[tuple[Change, str]]], Awaitable[None]],
        recursive: bool,
        only: Callable[[Change, str], bool] | None,
        stop: asyncio.Event,
    ) -> None:
        try:
            async for changes in awatch(
                path,
                watch_filter=only,
                recursive=recursive,
                debounce=self.debounce_ms,
                step=self.step_ms,
                stop_event=stop,
            ):
                try:
                    await handle(changes)
                except Exception:
                    log.exception("could not apply the changes under %s", path)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("watching %s stopped", path)

    async def _project_changed(self, changes: set[tuple[Change, str]]) -> None:
        """knot.toml, or the scripts folder itself (created, deleted, renamed)."""
        scripts = self.scripts
        if any(Path(p) == scripts for _, p in changes):
            # A recreated folder is a new inode: the old watch is blind to it from now on.
            if self._scripts_watch is not None:
                old, self._scripts_watch = self._scripts_watch, None
                await _stop(old)
            self._start_scripts_watch()
            await asyncio.sleep(0)
        await self._changed(changes)

    async def _changed(self, changes: set[tuple[Change, str]]) -> None:
        host = self.host
        found = checks(
            changes,
            project=host.project,
            scripts=self.scripts,
            kinds=self.folders,
            config=host.config_path is not None,
        )
        if found.files or found.rescan:
            await self._apply(found)

    async def _rescan(self, kinds: Iterable[str]) -> None:
        await self._apply(Checks({}, frozenset(kinds)))

    async def _apply(self, found: Checks) -> None:
        async with self._lock:
            targets = dict(found.files)
            folders = {self.scripts / kind: kind for kind in found.rescan}
            targets.update({p: folders[p.parent] for p in self._known if p.parent in folders})
            seen = await asyncio.to_thread(_look_all, targets, folders)
            vanished = {p: s.kind for p, s in seen.items() if not s.exists and p in self._known}
            if vanished:
                await asyncio.sleep(self.grace)
                seen.update(await asyncio.to_thread(_look_all, vanished, {}))
            for step in classify(seen, self._known):
                try:
                    reload = await self._step(step)
                except Exception:
                    log.exception("reloading %s failed", step.path)
                    continue
                if reload is not None:
                    self._publish(reload)

    async def _step(self, step: Step) -> Reload | None:
        if step.action is Action.UNLOAD:
            self._known.pop(step.path, None)
        else:
            self._known[step.path] = step.digest
        if step.kind == CONFIG:
            return await self._apply_config(step)
        loader = self.folders[step.kind]
        if step.action is Action.UNLOAD:
            return await loader.unload(self.host, step.path)
        return await loader.load(self.host, step.path, step.source)

    async def _apply_config(self, step: Step) -> Reload:
        host = self.host
        path = step.path
        shown = display_path(self.host.project, path)
        if step.source is None and step.action is Action.LOAD:
            result = ConfigResult(None, (f"{shown}: is not UTF-8 text.",), path=shown)
        else:
            # A deleted knot.toml means the defaults, as at start.
            result = parse_config(step.source or "", path=shown)
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.config is None:
            problems = result.errors
            message = f"kept the last good settings of {shown}: " + " ".join(problems)
            host.record_audit(AuditEntry.new(AuditKind.CONFIG_REJECTED, message))
            log.error("%s", message)
            return Reload(ReloadStatus.KEPT, CONFIG, CONFIG_FILE, path, message, problems)
        new = result.config.with_env()
        changed = changed_settings(host.config, new)
        pending = await host.apply_config(new)
        for name in pending:
            log.warning(
                "%s: %s changed; restart the runtime to apply it (the running value stays)",
                shown,
                name,
            )
        applied = [n for n in changed if n not in pending]
        what = ", ".join(applied) if applied else "no setting changed"
        if step.action is Action.UNLOAD:
            status, message = ReloadStatus.REMOVED, f"{shown} was deleted: defaults apply ({what})"
        else:
            status, message = ReloadStatus.RELOADED, f"reloaded {shown} ({what})"
        log.info("%s", message)
        return Reload(status, CONFIG, CONFIG_FILE, path, message)

    def _publish(self, reload: Reload) -> None:
        self.history.append(reload)
        hooks = self.host.hooks
        if hooks.reload_listeners:
            hooks.reloaded(reload.status.value)
        for listener in list(self._listeners):
            try:
                listener(reload)
            except Exception:
                log.exception("a reload listener failed")


def _look_all(targets: Mapping[Path, str], folders: Mapping[Path, str]) -> dict[Path, Seen]:
    """Look at `targets` and at every script now in `folders` (path → kind both)."""
    found = dict(targets)
    for folder, kind in folders.items():
        found.update(dict.fromkeys(listing(folder), kind))
    return {path: look(path, kind) for path, kind in found.items()}


async def _stop(watch: _Watch) -> None:
    """Stop an awatch loop through its stop event (cancelling would wait out rust_timeout)."""
    watch.stop.set()
    try:
        async with asyncio.timeout(2):
            await asyncio.shield(watch.task)
    except TimeoutError:
        watch.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch.task
