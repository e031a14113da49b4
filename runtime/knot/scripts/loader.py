"""Loading a script: a sink script's header and name, and a sandbox compile, as data.

A sink script is `scripts/sinks/<name>.py`. Before its first statement it carries a header:

    # events: custom.myapp.*, space.started
    # description: Tell the team about deploys

`load_script` never raises for bad input: a missing or bad header, a file name that is not a
sink name, or a broken sandbox rule all come back as `ScriptProblem`s (`file:line:col: rule`)
for that file alone. Method scripts (`scripts/methods/<name>.py`) have no header and their own
modules (`knot.methods`): `method_script_problems` checks them before anything runs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import PatternError
from .._patterns import Pattern
from .._sinkspec import SinkOrigin, SinkSpec, check_sink_name
from ..sandbox.worker.policy import METHOD_SCRIPTS, check_source

__all__ = [
    "ScriptHeader",
    "ScriptLoad",
    "ScriptProblem",
    "load_method_script",
    "load_script",
    "method_script_problems",
    "parse_header",
]

_HEADER_LINE = re.compile(r"\s*#\s*([A-Za-z][A-Za-z_-]*)\s*:(.*)")
_HEADER_KEYS = ("events", "description")


@dataclass(frozen=True, slots=True)
class ScriptProblem:
    path: str
    line: int
    col: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.rule}"


@dataclass(frozen=True, slots=True)
class ScriptLoad:
    """The result of loading one script: a spec to install, or the problems that stop it."""

    path: Path
    spec: SinkSpec | None  # None for a method script (its methods are known once it runs)
    problems: tuple[ScriptProblem, ...] = ()
    warnings: tuple[str, ...] = ()
    method: bool = False  # a method script
    # The `# events:` patterns when the header itself is good (a broken sink's listing shows
    # them, and counts the events waiting for it by them).
    events: tuple[Pattern, ...] = ()

    @property
    def ok(self) -> bool:
        return (self.spec is not None or self.method) and not self.problems

    @property
    def name(self) -> str:
        return self.path.stem

    def describe(self) -> str:
        """All problems, one per line (what logs, statuses and audit entries show)."""
        return "\n".join(str(p) for p in self.problems)


@dataclass(frozen=True, slots=True)
class ScriptHeader:
    events: tuple[Pattern, ...]
    description: str
    problems: tuple[tuple[int, int, str], ...]  # (line, col, rule)
    warnings: tuple[tuple[int, str], ...]  # (line, text)


def parse_header(source: str) -> ScriptHeader:
    """Read `# events:` and `# description:` from the comment lines before the first statement."""
    events: tuple[Pattern, ...] | None = None
    description = ""
    problems: list[tuple[int, int, str]] = []
    warnings: list[tuple[int, str]] = []
    seen: set[str] = set()
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        match = _HEADER_LINE.match(line)
        if match is None:
            continue
        key, value = match.group(1).lower(), match.group(2)
        value_col = match.start(2) + 1 + (len(value) - len(value.lstrip()))
        if key not in _HEADER_KEYS:
            close = difflib.get_close_matches(key, _HEADER_KEYS, n=1, cutoff=0.75)
            if close:
                warnings.append(
                    (number, f"'# {key}:' is not a header; did you mean '# {close[0]}:'?")
                )
            continue
        if key in seen:
            problems.append((number, 1, f"the '# {key}:' header is given twice"))
            continue
        seen.add(key)
        if key == "description":
            description = value.strip()
            continue
        parsed, bad = _parse_events(value, value_col)
        problems.extend((number, col, rule) for col, rule in bad)
        if not bad and not parsed:
            problems.append((number, value_col, "the '# events:' header names no patterns"))
        events = parsed
    if events is None and "events" not in seen:
        problems.append(
            (
                1,
                1,
                "missing '# events:' header: add a comment like '# events: custom.myapp.*' "
                "before the first statement",
            )
        )
    return ScriptHeader(events or (), description, tuple(problems), tuple(warnings))


def _parse_events(text: str, first_col: int) -> tuple[tuple[Pattern, ...], list[tuple[int, str]]]:
    patterns: list[Pattern] = []
    problems: list[tuple[int, str]] = []
    offset = first_col - 1 - (len(text) - len(text.lstrip()))
    for entry in text.split(","):
        body = entry.strip()
        col = offset + (len(entry) - len(entry.lstrip())) + 1
        offset += len(entry) + 1
        if not body:
            continue
        try:
            patterns.append(Pattern.parse(body))
        except PatternError as exc:
            problems.append((col, exc.message.rstrip(".")))
    return tuple(patterns), problems


def _read(path: Path) -> tuple[str | None, ScriptProblem | None]:
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError as exc:
        return None, ScriptProblem(str(path), 1, 1, f"not UTF-8 text: {exc}")
    except OSError as exc:
        return None, ScriptProblem(str(path), 1, 1, f"cannot be read: {exc.strerror or exc}")


def _name_problems(shown: str, what: str) -> list[ScriptProblem]:
    """The file name, which names the sink or method script, checked like a sink name."""
    name = Path(shown).stem
    if check_sink_name(name) is None:
        return []
    reason = (
        f"the file name {name!r} is not a valid {what} name: it must start with a letter "
        "and have 2 to 64 letters, digits or underscores"
    )
    return [ScriptProblem(shown, 1, 1, reason)]


def method_script_problems(source: str, shown: str) -> tuple[ScriptProblem, ...]:
    """What is wrong with a method script before it runs: its file name and the sandbox rules."""
    problems = _name_problems(shown, "method script")
    problems.extend(
        ScriptProblem(shown, v.line, v.col, v.rule)
        for v in check_source(source, shown, kind=METHOD_SCRIPTS)
    )
    return tuple(problems)


def load_method_script(path: Path) -> ScriptLoad:
    """Read and check a method script (nothing runs); never raises."""
    path = Path(path)
    source, problem = _read(path)
    if source is None:
        assert problem is not None
        return ScriptLoad(path, None, (problem,), method=True)
    return ScriptLoad(path, None, method_script_problems(source, str(path)), method=True)


def load_script(path: Path, *, source: str | None = None) -> ScriptLoad:
    """Read (or take `source`), parse the header, compile in the sandbox; never raises."""
    path = Path(path)
    shown = str(path)
    if source is None:
        source, problem = _read(path)
        if source is None:
            assert problem is not None
            return ScriptLoad(path, None, (problem,))
    problems = _name_problems(shown, "sink")
    header = parse_header(source)
    problems.extend(ScriptProblem(shown, line, col, rule) for line, col, rule in header.problems)
    problems.extend(
        ScriptProblem(shown, v.line, v.col, v.rule) for v in check_source(source, shown)
    )
    warnings = tuple(f"{shown}:{line}: {text}" for line, text in header.warnings)
    problems.sort(key=lambda p: (p.line, p.col))
    if problems:
        return ScriptLoad(path, None, tuple(problems), warnings, events=header.events)
    spec = SinkSpec(
        name=path.stem,
        type="script",
        events=header.events,
        description=header.description,
        options={"path": shown, "source": source},
        origin=SinkOrigin.SCRIPT,
    )
    return ScriptLoad(path, spec, (), warnings)
