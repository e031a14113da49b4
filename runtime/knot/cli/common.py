"""Helpers every command module shares: registration, JSON arguments, tables."""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeAlias

from .._exceptions import InvalidInput
from .._json import JSONObject
from .._jsontext import NotJSON, loads_json
from .._logtext import loggable

__all__ = [
    "REDELIVER_TIMEOUT",
    "Formatter",
    "Handler",
    "Parser",
    "Subparsers",
    "add_command",
    "choose_action",
    "count",
    "json_text",
    "loads_user_json",
    "parse_json_object",
    "port_number",
    "print_table",
    "project_folder",
    "seconds",
    "take_leftovers",
    "takes_json_words",
]

Handler = Callable[[argparse.Namespace], int]
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Formatter(argparse.RawDescriptionHelpFormatter):
    pass


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line on stderr (the CLI's rule for every error).

    argparse would print the usage block and echo arguments as given; an argument holding a
    newline or an escape sequence then spreads the error over lines or into the terminal.
    """

    def error(self, message: str) -> NoReturn:
        shown = loggable(message, keep_tab=False)
        self.exit(2, f"{self.prog}: error: {shown}; see '{self.prog} --help'.\n")


# Seconds a re-delivery may take to answer: the sink's whole retry schedule may pass first
# (5 s + 15 s of backoff by default, and every attempt's own time).
REDELIVER_TIMEOUT = 600.0


def choose_action(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group called without an action: its help, and exit 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        print(f"{parser.prog}: choose one of the actions above.", file=sys.stderr)
        return 2

    return show


# Types for numeric options: a value the runtime would refuse (or misread: `-n -5` used to
# print nothing, `--port 70000` to overflow) is a usage error naming the option, exit 2.


def count(lo: int, hi: int = 10_000) -> Callable[[str], int]:
    """A whole number from `lo` to `hi` (the API's limits for `n`)."""

    def parse(raw: str) -> int:
        value = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else -1
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"must be a whole number from {lo} to {hi}, not {raw!r}"
            )
        return value

    parse.__name__ = "count"  # argparse names the type in some messages
    return parse


def port_number(raw: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    value = int(raw) if raw.strip().isascii() and raw.strip().isdigit() else -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be a port number from 0 to 65535 (0: any free port), not {raw!r}"
        )
    return value


def seconds(raw: str) -> float:
    """A duration in seconds: a finite number > 0."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, not {raw!r}")
    return value


def project_folder(raw: str) -> Path:
    """The --project folder, which must exist: a typo must not start an empty project (and
    create a store) somewhere else."""
    path = Path(raw)
    if path.is_dir():
        return path
    if path.exists():
        raise InvalidInput(f"The project {raw} is not a folder; pass --project a project folder.")
    raise InvalidInput(
        f"The project folder {raw} does not exist; create it first (mkdir -p {shlex.quote(raw)}) "
        "or pass --project an existing folder."
    )


def add_command(
    sub: Subparsers, name: str, handler: Handler | None, help: str, examples: str = ""
) -> argparse.ArgumentParser:
    """A command; `handler` None makes it a group whose bare call shows its actions."""
    epilog = "examples:\n" + examples if examples else None
    p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=Formatter)
    # `command_parser`: the innermost command reports leftover arguments in its own name.
    p.set_defaults(handler=handler if handler is not None else choose_action(p), command_parser=p)
    return p


def takes_json_words(p: argparse.ArgumentParser, dest: str, what: str) -> None:
    """Let the JSON positional `dest` of command `p` also take the words left over after it.

    argparse stops filling an optional positional at the first option, so `knot call M --json
    '{...}'` left the JSON over; and a shell splits unquoted JSON into several words. Both
    reach `take_leftovers`, which gives them to `dest` (`what` names it in errors).
    """
    p.set_defaults(json_words=(dest, what))


_OPTION = re.compile(r"--?[A-Za-z]")


def take_leftovers(args: argparse.Namespace, leftovers: list[str]) -> None:
    """Words argparse did not place: JSON for a command that takes JSON words, else a usage
    error in the command's own name (exit 2)."""
    parser: argparse.ArgumentParser = args.command_parser
    target = getattr(args, "json_words", None)
    unknown = [w for w in leftovers if _OPTION.match(w)]
    if target is None or unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown or leftovers)}")
    dest, what = target
    given = getattr(args, dest)
    words = [given, *leftovers] if given is not None else leftovers
    joined = " ".join(words)
    if len(words) > 1:
        try:
            loads_json(joined, finite=True)
        except (NotJSON, json.JSONDecodeError):
            raise InvalidInput(
                f"The {what} came as {len(words)} words ({loggable(joined)}), which are not "
                "JSON together: the shell splits unquoted JSON at spaces and removes its double "
                f'quotes. Quote it: \'{{"key": "value"}}\'.'
            ) from None
    setattr(args, dest, joined)


def loads_user_json(raw: str, *, subject: str) -> Any:
    """JSON a user typed, minus Python's extensions (NaN, Infinity) that no receiver could
    read back; else one InvalidInput, a sentence starting with `subject` ("The payload is")."""
    try:
        return loads_json(raw, finite=True)
    except NotJSON as exc:
        raise InvalidInput(f"{subject} not valid JSON: {exc}.") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"{subject} not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None


def parse_json_object(raw: str | None, *, what: str = "payload") -> JSONObject:
    """A JSON object from the command line ('' or None is {}), or one clear error."""
    if raw is None or not raw.strip():
        return {}
    value = loads_user_json(raw, subject=f"The {what} is")
    if not isinstance(value, dict):
        raise InvalidInput(f'The {what} must be a JSON object, like \'{{"key": "value"}}\'.')
    return value


def json_text(value: Any, *, indent: int | None = None, compact: bool = False) -> str:
    """JSON for a terminal: text as text (`名`, not `\\u540d`), but every character a
    terminal could act on (C0 and C1 controls, bidi overrides, line separators) still
    escaped, as JSON allows inside a string."""
    separators = (",", ":") if compact else None
    text = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == "\n" else json.dumps(c)[1:-1] for c in text)


def print_table(rows: list[JSONObject], columns: list[tuple[str, str]]) -> None:
    if not rows:
        print("(none)")
        return
    # None is a value not known (a broken sink's pending count): "?", not "None".
    cells = [[_cell(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def _cell(value: object) -> str:
    return "?" if value is None else str(value)
