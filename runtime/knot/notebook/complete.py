"""Tab completion for `%knot` lines: commands and options, and the names the runtime knows.

`%knot <TAB>` gives the commands (and `%knot space <TAB>` its actions), `-<TAB>` a command's
options; then, where the command takes one: event types seen (`event`, `events`, `tail`,
`run --event`, `replay --events`), method names (`call`), script sink and method script names
(`%%knot sink`, `%%knot method`), the script sinks running (`replay`), sink scripts to dry-run
(`run`) and space names. The names come from the
runtime in use, never from one started for the purpose: before the first command, only the
scripts folder of the kernel's folder is looked at. IPython filters the answers by the word
being typed; an empty answer lets its own completers (file names) have a go.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .._config import load_config
from .._events import CUSTOM_PREFIX

if TYPE_CHECKING:
    from .backends import Backend
    from .session import KnotSession

__all__ = ["KnotCompleter"]

log = logging.getLogger("knot.notebook")

EVENTS_READ = 500  # recent events whose types are offered


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for a in parser._actions for o in a.option_strings)


def _shown(path: Path) -> str:
    """A script's path as typed in the kernel's folder: relative to it when inside."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _prefixes(types: Iterable[str]) -> list[str]:
    """Patterns that match the types: each type, its `prefix.*` parents, and `*`."""
    found = {"*"}
    for event_type in types:
        found.add(event_type)
        parts = event_type.split(".")
        found.update(".".join(parts[:n]) + ".*" for n in range(1, len(parts)))
    return sorted(found)


class KnotCompleter:
    """Completions for the text of a `%knot` line up to the cursor."""

    def __init__(self, session: KnotSession, parser: argparse.ArgumentParser) -> None:
        self.session = session
        self.parser = parser

    def __call__(self, text_until_cursor: str) -> list[str]:
        try:
            return self.complete(text_until_cursor)
        except Exception:  # a completion must never break the prompt: offer nothing instead
            log.debug("completing %r failed", text_until_cursor, exc_info=True)
            return []

    def complete(self, text_until_cursor: str) -> list[str]:
        words = text_until_cursor.lstrip().split()
        if not words or not words[0].lstrip("%").startswith("knot"):
            return []
        words = words[1:]
        current = "" if text_until_cursor[-1:].isspace() or not words else words.pop()
        commands = _subcommands(self.parser)
        if not words:
            return sorted(commands)
        command = commands.get(words[0])
        if command is None:
            return []
        if words[0] == "space":
            actions = _subcommands(command)
            if len(words) == 1:
                return sorted(actions)
            command = actions.get(words[1], command)
        if current.startswith("-"):
            return _options(command)
        return self._values(words, current)

    def _values(self, words: list[str], current: str) -> list[str]:
        """The names the argument at the cursor takes, by command and position."""
        command, given = words[0], len(words) - 1
        if words[-1] == "--event":
            return self._event_types()
        if command == "event" and given == 0:
            # Only custom types can be raised (`%knot event space.created` would raise
            # custom.space.created), and `myapp.x` raises custom.myapp.x: offer the short
            # form unless the full one is being typed.
            types = [t for t in self._event_types() if t.startswith(CUSTOM_PREFIX)]
            full = current.startswith(CUSTOM_PREFIX) or CUSTOM_PREFIX.startswith(current or "-")
            return types if full else [t.removeprefix(CUSTOM_PREFIX) for t in types]
        if command in ("events", "tail") and given == 0:
            return _prefixes(self._event_types())
        if command == "replay" and given == 0:
            return self._names(
                lambda backend: [str(s["name"]) for s in backend.sinks() if s["type"] == "script"]
            )
        if command == "replay" and words[-1] == "--events":
            return _prefixes(self._event_types())
        if command == "call" and given == 0:
            return self._names(lambda backend: backend.methods())
        if command == "sink" and given == 0:
            return self._script_names("sinks")
        if command == "method" and given == 0:
            return self._script_names("methods")
        if command == "run" and given == 0:
            folder = self._scripts_folder() / "sinks"
            return sorted(_shown(p) for p in folder.glob("*.py"))
        if command == "space" and len(words) == 2 and words[1] != "create":
            return self._names(lambda backend: [str(s["name"]) for s in backend.spaces()])
        return []

    # -- where the names come from --------------------------------------------------------

    def _backend(self) -> Backend | None:
        """The runtime in use; None before the first command (completion starts none)."""
        return self.session.current

    def _names(self, read: Callable[[Backend], list[str]]) -> list[str]:
        backend = self._backend()
        return sorted(set(read(backend))) if backend is not None else []

    def _event_types(self) -> list[str]:
        return self._names(
            lambda backend: [str(e["type"]) for e in backend.events(None, limit=EVENTS_READ)]
        )

    def _scripts_folder(self) -> Path:
        backend = self._backend()
        project = backend.project_folder() if backend is not None else None
        if project is None:
            project = Path.cwd()
        return project / load_config(project).raise_for_errors().scripts.dir

    def _script_names(self, kind: str) -> list[str]:
        """Scripts in the folder (they can be saved again) and those the runtime runs."""
        names = {p.stem for p in (self._scripts_folder() / kind).glob("*.py")}
        backend = self._backend()
        if backend is not None and kind == "sinks":
            names.update(str(s["name"]) for s in backend.sinks() if s.get("type") == "script")
        if backend is not None and kind == "methods":
            names.update(name.split(".")[0] for name in backend.methods())
        return sorted(names)
