"""`knot call METHOD [JSON]` and `knot methods`: call and list a running runtime's methods."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .._client import Client
from .._exceptions import InvalidInput, MethodFailed, NotFound
from .._json import JSONObject
from .._jsonrpc import METHOD_NOT_FOUND
from .common import (
    Subparsers,
    add_command,
    json_text,
    loads_user_json,
    print_table,
    takes_json_words,
)

__all__ = ["parse_params", "register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "call",
        _call,
        "Call a method of a method script (JSON-RPC); prints its result as JSON. A JSON-RPC "
        "error is one 'knot:' line on stderr and exit 1; with --json, stdout also gets "
        '{"error": {"code", "message", "data"}}.',
        '  knot call deploys.count \'{"space": "web"}\'\n'
        '  knot call count \'{"space": "web"}\'      a plain name, when one script has it\n'
        "  knot call calc.subtract '[42, 23]'\n"
        '  knot call calc.subtract \'[42, 23]\' --json   {"result": 19}, or {"error": {...}}\n'
        '  echo \'{"space": "web"}\' | knot call deploys.count\n',
    )
    p.add_argument("method", help="script.method, or a method name only one script declares")
    p.add_argument(
        "params", nargs="?", help="JSON object or array (default: read stdin if piped, else none)"
    )
    takes_json_words(p, "params", "params")
    p.add_argument(
        "--json",
        action="store_true",
        help='print the answer as one line: {"result": ...} or {"error": {code, message, data}}',
    )
    p = add_command(
        sub,
        "methods",
        _methods,
        "List the methods of the method scripts.",
        "  knot methods                  METHOD  MODE  EVENTS  WHERE\n"
        "  knot methods --json           one JSON object per method (with its params)\n",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def parse_params(raw: str | None) -> Any:
    """JSON-RPC params from the command line: an object or an array (None: no params)."""
    if raw is None or not raw.strip():
        return None
    value = loads_user_json(raw, subject="The params are")
    if not isinstance(value, dict | list):
        raise InvalidInput("The params must be a JSON object or array, like '{\"key\": 1}'.")
    return value


def _call(args: argparse.Namespace) -> int:
    raw = args.params
    if raw is None and not sys.stdin.isatty():
        raw = sys.stdin.read()
    params = parse_params(raw)
    with Client() as client:
        try:
            result = client.call_method(args.method, params)
        except (MethodFailed, NotFound) as exc:
            # The `knot:` line (main) is the whole story for a person; a program asks --json.
            if args.json:
                error: JSONObject = {"code": METHOD_NOT_FOUND, "message": str(exc)}
                if isinstance(exc, MethodFailed):
                    error = {"code": exc.code, "message": str(exc), "data": exc.data}
                print(json_text({"error": error}))
            raise
    if args.json:
        print(json_text({"result": result}))
    else:
        print(json_text(result, indent=2))
    return 0


def _methods(args: argparse.Namespace) -> int:
    with Client() as client:
        answer = client.methods()
    if args.json:
        for method in answer.get("methods", []):
            print(json_text(method))
        return 0
    print_table(
        answer.get("methods", []),
        [("name", "METHOD"), ("mode", "MODE"), ("events", "EVENTS"), ("where", "WHERE")],
    )
    for script in answer.get("scripts", []):
        if script.get("problem"):
            print(f"{script['script']}: {script['problem']}", file=sys.stderr)
    return 0
