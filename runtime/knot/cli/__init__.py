"""The `knot` command: a thin layer over the Python API and the HTTP client.

Each module here registers one group of subcommands; none holds logic of its own beyond
parsing arguments and printing results. Every command prints errors as one line on stderr and
exits non-zero: no tracebacks for anything a user can cause.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._exceptions import KnotError
from .._logtext import loggable
from . import channels, cluster, events, kernel, methods, scripts, serve, sinks, spaces, users
from .common import Formatter, Handler, Parser, choose_action

__all__ = ["build_parser", "main"]

# One line per command group; each module's register() adds its subcommands.
_GROUPS = (serve, events, sinks, scripts, methods, spaces, channels, users, kernel, cluster)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="knot",
        description="A local runtime for Knot-style events: scripts, webhooks and JSON-RPC sinks.",
        epilog=(
            "examples:\n"
            "  knot serve                          run the runtime on this project\n"
            '  knot event myapp.deployed \'{"version": "1.2"}\'\n'
            "  knot events -n 20                   the last 20 events\n"
            "  knot audit                          what was dropped or given up, and why\n"
            "  knot check scripts/                 check sink scripts against the sandbox rules\n"
            "  knot run scripts/sinks/x.py --event myapp.deployed   dry-run a sink script\n"
            '  knot call deploys.count \'{"space": "web"}\'   call a method script\'s method\n'
            "  knot space create web --cmd CMD --start   run a local space\n"
            "  knot sinks add hook --events 'custom.*' --url URL   a webhook sink\n"
            "  knot user add alice                 a user; prints the bearer token once\n\n"
            "Commands that talk to a running runtime use KNOT_API_PORT (default 12201) and,\n"
            "once users exist, KNOT_TOKEN."
        ),
        formatter_class=Formatter,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = getattr(args, "handler", None) or choose_action(parser)
    try:
        return handler(args)
    except KnotError as exc:
        print(f"knot: {loggable(str(exc), keep_tab=False)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `knot events | head`
        return 0
