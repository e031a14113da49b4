"""Helpers every command module shares: registration, JSON arguments, tables."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeAlias

from .._events import NotJSON
from .._exceptions import InvalidInput
from ..types import JSONObject

__all__ = [
    "Formatter",
    "Handler",
    "Parser",
    "Subparsers",
    "add_command",
    "choose_action",
    "loads_user_json",
    "parse_json_object",
    "print_table",
    "printable",
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
        self.exit(2, f"{self.prog}: error: {printable(message)}; see '{self.prog} --help'.\n")


def printable(text: str) -> str:
    """`text` with control characters escaped, so it stays on one line and inert."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def choose_action(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group called without an action: its help, and exit 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help()
        print(f"{parser.prog}: choose one of the actions above.", file=sys.stderr)
        return 2

    return show


def add_command(
    sub: Subparsers, name: str, handler: Handler, help: str, examples: str = ""
) -> argparse.ArgumentParser:
    epilog = "examples:\n" + examples if examples else None
    p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=Formatter)
    p.set_defaults(handler=handler)
    return p


def _not_json(constant: str) -> Any:
    raise NotJSON(f"{constant} is not a JSON value (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a JSON number, but Python reads it as Infinity
        raise NotJSON(f"{text} is too large for a JSON number")
    return value


def loads_user_json(raw: str, *, subject: str) -> Any:
    """JSON a user typed, minus Python's extensions (NaN, Infinity) that no receiver could
    read back; else one InvalidInput, a sentence starting with `subject` ("The payload is")."""
    try:
        return json.loads(raw, parse_constant=_not_json, parse_float=_finite)
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


def print_table(rows: list[JSONObject], columns: list[tuple[str, str]]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())
