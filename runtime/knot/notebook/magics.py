"""The `%knot` / `%%knot` magics: parse a line like the `knot` command does, call the session.

Arguments are split like a shell line, except that JSON may be typed as is (`line.py`), and
parsed with argparse; a usage mistake or any KnotError prints one line on stderr, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand

from .._events import as_custom_type
from .._exceptions import InvalidInput, KnotError
from .._patterns import reading_pattern
from .._replay import MAX_SEQ
from ..cli.common import count, parse_json_object, seconds
from ..cli.methods import parse_params
from ..cli.spaces import add_create_options, create_fields
from ..scripts.tools import dry_run
from .display import (
    DryRunReport,
    LiveTail,
    Message,
    Raised,
    TextLines,
    TraceView,
    audit_table,
    event_table,
    sink_table,
    space_table,
)
from .line import split_line
from .replay_view import ReplayView

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .session import KnotSession

__all__ = ["KnotMagics", "build_parser"]

Handler = Callable[["KnotSession", argparse.Namespace, "str | None"], object]


class _HelpShown(Exception):
    """argparse printed the help text; there is nothing else to do."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports mistakes as InvalidInput instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        raise InvalidInput(f"{self.prog}: {message} (see `{self.prog} -h`).")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            raise InvalidInput(message.strip())
        raise _HelpShown


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="%knot",
        description="Raise and inspect knot events from a notebook (an embedded runtime, or a "
        "knot serve attached with `%knot connect`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        '  %knot event myapp.deployed {"version": "1.2"}     JSON as typed, or shell-quoted\n'
        "  %knot events 'custom.myapp.*' -n 5\n"
        "  %knot tail 'custom.*'\n"
        '  %knot run scripts/sinks/notify.py --event custom.myapp.deployed --data {"v": 1}\n'
        "  %knot trace 0192f6a4-...    what an event caused, and every delivery attempt\n"
        "  %knot replay greeter --since 7d    the sink's current script on last week's events\n"
        '  %knot call deploys.count {"space": "web"}\n'
        "  %knot space create web --cmd 'python -m http.server 8000' --start\n",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str, handler: Handler, help: str, description: str = ""
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        p.set_defaults(handler=handler)
        return p

    command("status", _status, "Which runtime the magics and knot.event use.")
    p = command("project", _project, "Run an embedded runtime on this project folder.")
    p.add_argument("dir", help="the project folder (knot.toml, scripts/)")
    p = command("connect", _connect, "Use a running `knot serve` instead of the embedded runtime.")
    p.add_argument("url", nargs="?", default=None, help="default: KNOT_URL or KNOT_API_PORT")
    p.add_argument("--token", default=None, help="bearer token (default: KNOT_TOKEN)")
    p = command(
        "event",
        _event,
        "Raise a custom event (as %%%%knot event TYPE, the cell is the JSON payload).",
        "Raise a custom event (as %%knot event TYPE, the cell is the JSON payload).",
    )
    p.add_argument("type", help="event type, e.g. myapp.deployed")
    p.add_argument("payload", nargs="?", default=None, help="JSON object (default {})")
    p = command("events", _events, "Recent events, optionally filtered by a pattern.")
    p.add_argument("pattern", nargs="?", default=None, help="'*', 'prefix.*' or an exact type")
    p.add_argument("-n", type=count(1), default=20, help="how many (default 20)")
    command("sinks", _sinks, "The sinks, with their delivery counts and problems.")
    p = command(
        "trace",
        _trace,
        "The chain an event belongs to, from its root: the events its sinks raised and every "
        "delivery attempt.",
    )
    p.add_argument("event_id", help="any event of the chain")
    p = command("audit", _audit, "The audit log: drops, give-ups, rejected scripts.")
    p.add_argument("-n", type=count(1), default=20, help="how many (default 20)")
    p = command("wait", _wait, "Wait until the sinks have handled every event raised so far.")
    p.add_argument("--timeout", type=seconds, default=30.0, help="seconds (default 30)")
    p = command("tail", _tail, "A live view of events as they are routed (updates in place).")
    p.add_argument("pattern", nargs="?", default="*", help="'*', 'prefix.*' or an exact type")
    p.add_argument("-n", type=count(1), default=10, help="rows to keep (default 10)")
    p.add_argument("--stop", action="store_true", help="stop every live tail")
    p = command(
        "run",
        _run,
        "Dry-run a sink script on one event: its output, emits, directives, HTTP requests "
        "(not sent without --live) and knot.kv changes (in a scratch copy); nothing is "
        "delivered.",
    )
    p.add_argument("script", help="the sink script file")
    p.add_argument("--event", required=True, metavar="TYPE", help="the event type (as given)")
    p.add_argument("--data", default=None, metavar="JSON", help="the payload (a JSON object)")
    p.add_argument("--space", default=None, metavar="NAME", help="give the event a space")
    p.add_argument("--project", default=None, help="whose settings apply (limits, secrets)")
    p.add_argument("--live", action="store_true", help="send its HTTP requests (if allowed)")
    p = command(
        "replay",
        _replay,
        "Run a script sink's current version again on journaled events (nothing delivered "
        "or journaled, no real HTTP, knot.kv in a scratch copy) and compare with what ran then.",
    )
    p.add_argument("sink", help="a script sink's name")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="TIME", help="ISO 8601, or a time ago (30m, 7d)")
    start.add_argument("--from", dest="from_seq", type=count(0, MAX_SEQ), metavar="SEQ")
    p.add_argument("--events", metavar="PATTERN", help="instead of the sink's own patterns")
    p.add_argument("--limit", "-n", type=count(1), default=100, help="at most N (default 100)")
    p = command(
        "sink",
        _sink,
        "As %%%%knot sink NAME: save the cell as scripts/sinks/NAME.py and wait for the reload.",
        "As %%knot sink NAME: save the cell as the embedded runtime's scripts/sinks/NAME.py "
        "and wait until it has loaded it (or said why not).",
    )
    p.add_argument("name", help="the sink's name (the file name without .py)")
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds (default 10)")
    p = command(
        "method",
        _method,
        "As %%%%knot method NAME: save the cell as scripts/methods/NAME.py and wait for it.",
        "As %%knot method NAME: save the cell as the embedded runtime's "
        "scripts/methods/NAME.py and wait until its worker runs it (or it says why not).",
    )
    p.add_argument("name", help="the method script's name (the file name without .py)")
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds (default 10)")
    p = command(
        "call",
        _call,
        "Call a method of a method script; the result is the method's result (JSON as Python).",
    )
    p.add_argument("method", help="script.method, or a method name only one script declares")
    p.add_argument("params", nargs="?", default=None, help="JSON object or array (default none)")
    _add_space_commands(command)
    return parser


def _add_space_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`%knot space ACTION`, as `knot space ACTION` (cli/spaces.py) with the same options."""
    group = command(
        "space",
        _space_without_action,
        "Create, start, stop, delete and list local spaces, and read their logs.",
        "Create, start, stop, delete and list local spaces (each change raises a space.* "
        "event), and read what their processes print.",
    )
    actions = group.add_subparsers(title="actions", metavar="ACTION", parser_class=_Parser)

    def action(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler, space_action=name)
        if name != "list":
            p.add_argument("name", help="the space's name" + (" or id" if name != "create" else ""))
        return p

    p = action("create", _space_create, "Create a space (raises space.created).")
    add_create_options(p)
    action("start", _space_act, "Start a space (raises space.started).")
    action("stop", _space_act, "Stop a space: SIGTERM, then SIGKILL (raises space.stopped).")
    action("delete", _space_act, "Delete a space, stopping it first (raises space.deleted).")
    action("list", _space_list, "The spaces, with their state, health and process.")
    p = action("logs", _space_logs, "What a space's process printed (stdout and stderr).")
    p.add_argument("-n", type=count(1), default=50, help="how many lines (default 50)")


def _status(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return Message(session.describe())


def _project(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return Message(session.use_project(args.dir).describe())


def _connect(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return Message(session.connect(args.url, token=args.token).describe())


def _event(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    raw = args.payload
    if cell is not None:
        if raw is not None:
            raise InvalidInput("Give the payload on the %%knot line or in the cell, not both.")
        raw = cell
    payload = parse_json_object(raw)
    return Raised(session.backend.emit(args.type, payload), as_custom_type(args.type))


def _events(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    pattern = reading_pattern(args.pattern).text if args.pattern else None
    rows = session.backend.events(pattern, limit=args.n)
    return event_table(f"events {pattern or '*'} (newest {args.n})", rows)


def _sinks(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return sink_table(session.backend.sinks())


def _trace(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return TraceView(session.backend.trace(args.event_id))


def _audit(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return audit_table(session.backend.audit_entries(limit=args.n))


def _wait(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    session.backend.wait_idle(args.timeout)
    return Message("every event raised so far has been handled by its sinks")


def _tail(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    if args.stop:
        stopped = session.stop_tails()
        return Message(f"stopped {stopped} live tail{'s' if stopped != 1 else ''}")
    pattern = reading_pattern(args.pattern)
    tail = LiveTail(pattern.text, session.backend.follow(pattern), keep=args.n)
    session.add_tail(tail.start())
    return tail


def _run(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    data = parse_json_object(args.data, what="--data payload")
    config, project = session.dry_run_settings(args.project)
    result = dry_run(
        args.script,
        args.event,
        data,
        space=args.space,
        config=config,
        project=project,
        live=args.live,
    )
    return DryRunReport(result.to_dict())


def _replay(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    pattern = reading_pattern(args.events).text if args.events else None
    report = session.backend.replay(
        args.sink, since=args.since, from_seq=args.from_seq, events=pattern, limit=args.limit
    )
    return ReplayView(report)


def _sink(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    if cell is None:
        raise InvalidInput("Use %%knot sink NAME as a cell magic: the cell is the sink script.")
    reload = session.backend.save_sink(args.name, cell, timeout=args.timeout)
    if reload is None:
        return Message(f"sink {args.name} unchanged: the runtime already runs this text")
    return Message(reload.message)


def _method(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    if cell is None:
        raise InvalidInput("Use %%knot method NAME as a cell magic: the cell is the script.")
    reload = session.backend.save_method(args.name, cell, timeout=args.timeout)
    if reload is None:
        return Message(f"method script {args.name} unchanged: the runtime already runs this text")
    return Message(reload.message)


def _call(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return session.backend.call_method(args.method, parse_params(args.params))


def _space_without_action(
    session: KnotSession, args: argparse.Namespace, cell: str | None
) -> object:
    raise InvalidInput(
        "%knot space: choose an action: create, start, stop, delete, list or logs "
        "(see `%knot space -h`)."
    )


def _space_create(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    space = session.backend.create_space(create_fields(args), start=args.start)
    return space_table(f"space {space['name']} created", [space])


_DONE = {"start": "started", "stop": "stopped", "delete": "deleted"}


def _space_act(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    action = args.space_action
    space = session.backend.space_action(args.name, action)
    return space_table(f"space {space['name']} {_DONE[action]}", [space])


def _space_list(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    return space_table("spaces", session.backend.spaces())


def _space_logs(session: KnotSession, args: argparse.Namespace, cell: str | None) -> object:
    lines = session.backend.space_log(args.name, limit=args.n)
    return TextLines(f"log of space {args.name} (last {args.n} lines)", tuple(lines))


_TAKE_A_CELL = (_event, _sink, _method)


@magics_class
class KnotMagics(Magics):
    def __init__(self, shell: InteractiveShell, session: KnotSession) -> None:
        super().__init__(shell)
        self.session = session
        self.parser = build_parser()

    @line_cell_magic
    @no_var_expand  # JSON payloads are full of braces; {x} must stay as typed
    def knot(self, line: str, cell: str | None = None) -> object:
        """Raise and inspect knot events: `%knot -h` lists the commands."""
        try:
            split = split_line(line)
            words = split.words or ["-h"]
            try:
                args = self.parser.parse_args(words)
            except InvalidInput:
                # argparse complaining about the pieces of JSON that did not parse says
                # nothing useful ("unrecognized arguments: 1}"); the JSON's problem does.
                if split.json_problem:
                    raise InvalidInput(split.json_problem) from None
                raise
            handler: Handler | None = getattr(args, "handler", None)
            if handler is None:
                self.parser.print_help()
                return None
            if cell is not None and handler not in _TAKE_A_CELL:
                raise InvalidInput(
                    "Only %%knot event TYPE (the cell is the payload), %%knot sink NAME and "
                    "%%knot method NAME (the cell is the script) take a cell."
                )
            return handler(self.session, args, cell)
        except _HelpShown:
            return None
        except KnotError as exc:
            _say(str(exc))
            return None


def _say(message: str) -> None:
    print(f"knot: {message}", file=sys.stderr)
