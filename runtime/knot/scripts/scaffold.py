"""`knot init` and `knot new`: a project to start from, and commented starting scripts.

Every script written here passes `knot check` (a test holds that), and nothing is ever
overwritten: when a file to write exists, nothing at all is written and the error names it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from .._config import CONFIG_FILE, load_config
from .._exceptions import InvalidInput, SinkError
from .._patterns import Pattern, parse_patterns
from .._sinkspec import check_sink_name

__all__ = ["Scaffold", "init_project", "new_method", "new_sink"]


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What was written, and the commands to try it (paths relative to `root`)."""

    root: Path
    created: tuple[Path, ...]
    next_steps: tuple[str, ...]

    def shown(self, path: Path) -> str:
        return _relative(path, self.root)


def _relative(path: Path, root: Path) -> str:
    """`path` as seen from the project folder (a scripts folder may lie elsewhere)."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


PROJECT_CONFIG = """\
# knot.toml: this project's settings, read by `knot serve`, `knot run --project` and the
# notebook. Every key is optional; those below show the defaults. Saving this file applies
# it to a running `knot serve` without a restart.
zone = "local"

[server]
host = "127.0.0.1"
port = 12201

[delivery]
attempts = 3            # tries per event and sink
backoff = [5.0, 15.0]   # seconds between them

[scripts]
dir = "scripts"         # sinks/ and methods/ below it
timeout = 5.0           # seconds per script-sink run
memory_mb = 256

# A webhook sink (script sinks need no entry: every scripts/sinks/NAME.py is one):
# [[sinks]]
# name = "deploy_hook"
# type = "webhook"
# events = "custom.myapp.*"
# url = "http://127.0.0.1:9000/hook"
"""

EXAMPLE_SINK = """\
# events: custom.hello.*
# description: Greet whoever a hello event names, and say so with an event when asked to
#
# An example script sink: edit it, or start another with `knot new sink NAME --events ...`.
# Try it:   knot run scripts/sinks/hello.py --event custom.hello.world --data '{"name": "Ada"}'
# Test it:  pytest tests/   (tests/test_hello.py)
import knot.event

name = knot.event.get_string("name", "world")
print(f"Hello, {name}!")

if knot.event.get_bool("reply"):
    # A follow-up event caused by this one (it becomes custom.greetings.sent). It is not one
    # of this sink's own events: a sink that answers its own events would loop.
    knot.event.emit("greetings.sent", {"name": name})
"""

EXAMPLE_TEST = '''\
"""Tests for scripts/sinks/hello.py with knot.testing, the pytest plugin of knot-runtime.

Run them with `pytest` in the project folder (pip install 'knot-runtime[testing]').
"""

from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
HELLO = PROJECT / "scripts" / "sinks" / "hello.py"


def test_it_greets_by_name(run_sink):
    # One run of the script in the production sandbox; nothing is delivered.
    run = run_sink(HELLO, "custom.hello.world", {"name": "Ada"})
    assert run.output == ("Hello, Ada!",)
    assert run.emitted == ()


def test_it_replies_with_an_event_when_asked(run_sink):
    run = run_sink(HELLO, "custom.hello.world", {"name": "Ada", "reply": True})
    (reply,) = run.emitted
    assert reply.type == "custom.greetings.sent"
    assert reply.data == {"name": "Ada"}


@pytest.mark.knot_project("..")  # a copy of this project: knot.toml and scripts/
def test_the_runtime_routes_hello_events_to_it(knot_runtime, assert_delivered):
    replies = knot_runtime.recording_sink("replies", "custom.greetings.*")
    knot_runtime.emit("hello.world", {"name": "Ada", "reply": True})
    (reply,) = assert_delivered(replies, 1)
    assert reply.data == {"name": "Ada"}
'''

GITIGNORE = """\
# The runtime's store (events, deliveries, audit): local state, not source.
.knot/
__pycache__/
"""

SINK_TEMPLATE = """\
# events: {events}
# description: {description}
#
# A script sink: the runtime runs this file once for each event matching the patterns above,
# in a sandbox (no files, network or processes; only json, re, math, time, datetime, ... and
# knot.event can be imported). Each run starts afresh; print() goes to `knot serve`'s log.
#
# Try it:  knot run {path} --event {example} \\
#              --data '{{"name": "Ada"}}'
import knot.event

# The event being handled: knot.event.type(), id(), ts(), data(), space(), actor(), and reads
# of its payload that give the default when the key is missing or of another type:
# get_string, get_int, get_bool, get_list, get_dict.
name = knot.event.get_string("name", "world")
print(f"{{knot.event.type()}}: hello, {{name}}")

# Raise a follow-up event, caused by this one (it becomes custom.{name_}.done):
# knot.event.emit("{name_}.done", {{"name": name}})
#
# Answer a synchronous Sky event (/sky/event/...) with a directive:
# knot.event.directive("say", {{"text": f"Hello, {{name}}!"}})
"""

METHOD_TEMPLATE = """\
# A method script: the runtime starts this file once, in a sandboxed worker process of its
# own, and keeps its module state between calls. Each function decorated with
# @knot.methods.method is a JSON-RPC method, named {name}.FUNCTION.
#
# Try it, with `knot serve` running:
#   knot call {name}.hello '{{"name": "Ada"}}'
#   knot call {name}.stats
import knot.methods

calls = {{"hello": 0}}  # module state: kept from call to call, and started afresh by a save


@knot.methods.method(params=["name"])  # params: {{"name": ...}} or ["..."]; else -32602
def hello(params):
    calls["hello"] = calls["hello"] + 1
    return {{"greeting": f"Hello, {{params['name']}}!"}}


@knot.methods.method
def stats(params):
    return calls


# A method can receive events too, as a sink does: each matching event is a call whose params
# are the event ({{"event_id", "event_type", "event_ts", "data"}}, or a json-rpc sink's
# template named in event_sinks):
#
# @knot.methods.method(events=["custom.{name}.*"])
# def on_event(params):
#     print(params["event_type"], params["data"])
"""


def _exists(path: Path) -> bool:
    """Path.exists, with what the system refuses to look at (a name too long) said clearly."""
    if "\x00" in str(path):  # Python raises ValueError for it, or says it does not exist
        raise InvalidInput(f"Cannot use {str(path)!r}: a file name cannot hold a NUL character.")
    try:
        return path.exists()
    except OSError as exc:
        raise InvalidInput(f"Cannot use {path}: {exc.strerror or exc}.") from None


def _refuse_existing(root: Path, files: list[Path]) -> None:
    existing = [p for p in files if _exists(p)]
    if existing:
        names = ", ".join(_relative(p, root) for p in existing)
        where = "This folder" if root == Path() else str(root)
        raise InvalidInput(
            f"{where} already has {names}; nothing was written (knot never overwrites a "
            "file: move it away, or choose another folder or name)."
        )


def _write(files: dict[Path, str]) -> None:
    """Write every file, or (when the system refuses one) none: those written are removed."""
    written: list[Path] = []
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8") as out:  # "x": never replace a file
                written.append(path)
                out.write(text)
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        where = exc.filename or path
        raise InvalidInput(
            f"Could not write {where}: {exc.strerror or exc}; no file was written."
        ) from None


def init_project(folder: str | Path = ".") -> Scaffold:
    """Make a project in `folder` (created if needed): knot.toml, scripts/sinks/hello.py, an
    empty scripts/methods/, tests/test_hello.py (knot.testing) and a .gitignore."""
    root = Path(folder)
    if _exists(root) and not root.is_dir():
        raise InvalidInput(f"{root} is a file; knot init makes a project in a folder.")
    methods = root / "scripts" / "methods"
    files = {
        root / CONFIG_FILE: PROJECT_CONFIG,
        root / "scripts" / "sinks" / "hello.py": EXAMPLE_SINK,
        root / "tests" / "test_hello.py": EXAMPLE_TEST,
        root / ".gitignore": GITIGNORE,
    }
    if _exists(root):
        _refuse_existing(root, list(files))
    _write(files)
    methods.mkdir(exist_ok=True)
    data = shlex.quote(json.dumps({"name": "Ada"}))
    created = list(files)
    created.insert(2, methods)
    return Scaffold(
        root,
        tuple(created),
        (
            f"knot run scripts/sinks/hello.py --event custom.hello.world --data {data}",
            "pytest tests/        (pytest comes with: pip install 'knot-runtime[testing]')",
            "knot serve",
        ),
    )


def _scripts_folder(project: str | Path) -> Path:
    root = Path(project)
    if not _exists(root) or not root.is_dir():
        raise InvalidInput(
            f"The project folder {root} does not exist; make one with `knot init {root}`."
        )
    return root / load_config(root).raise_for_errors().scripts.dir


def _check_name(name: str, what: str) -> None:
    problem = check_sink_name(name)
    if problem is not None:
        raise SinkError(
            f"{name!r} cannot name a {what}: a name starts with a letter and has 2 to 64 "
            "letters, digits or underscores (it is the file name, too).",
            sink=name,
        )


def _example_type(pattern: Pattern) -> str:
    """An event type the pattern matches, to try the new script on."""
    text = pattern.text
    if text == "*":
        return "custom.example"
    return f"{text[:-2]}.example" if text.endswith(".*") else text


def new_sink(
    name: str, events: str, *, project: str | Path = ".", description: str = ""
) -> Scaffold:
    """Write `<scripts.dir>/sinks/NAME.py`, a commented script sink for `events` (patterns)."""
    _check_name(name, "sink")
    patterns = parse_patterns(events)  # PatternError names the pattern it refuses, or none
    description = description.strip() or f"Handles {', '.join(p.text for p in patterns)} events"
    if "\n" in description or "\r" in description:
        raise InvalidInput("A sink's description is one line (it goes in its header comment).")
    root = Path(project)
    path = _scripts_folder(root) / "sinks" / f"{name}.py"
    _refuse_existing(root, [path])
    example = _example_type(patterns[0])
    shown = _relative(path, root)
    text = SINK_TEMPLATE.format(
        events=", ".join(p.text for p in patterns),
        description=description,
        path=shown,
        example=example,
        name_=name,
    )
    _write({path: text})
    data = shlex.quote(json.dumps({"name": "Ada"}))
    return Scaffold(root, (path,), (f"knot run {shown} --event {example} --data {data}",))


def new_method(name: str, *, project: str | Path = ".") -> Scaffold:
    """Write `<scripts.dir>/methods/NAME.py`, a commented method script with two methods."""
    _check_name(name, "method script")
    root = Path(project)
    path = _scripts_folder(root) / "methods" / f"{name}.py"
    _refuse_existing(root, [path])
    _write({path: METHOD_TEMPLATE.format(name=name)})
    params = shlex.quote(json.dumps({"name": "Ada"}))
    return Scaffold(root, (path,), (f"knot call {name}.hello {params}", f"knot call {name}.stats"))
