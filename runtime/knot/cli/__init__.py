"""The `knot` command: a thin layer over the Python API and the HTTP client.

Each module here registers one group of subcommands; none holds logic of its own beyond
parsing arguments and printing results. Every command prints errors as one line on stderr and
exits non-zero: no tracebacks for anything a user can cause.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: see knot/__init__.py
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: `main` catches a Ctrl-C that lands while they load.
    from . import (
        channels,
        cluster,
        events,
        kernel,
        methods,
        replay,
        scaffold,
        scripts,
        serve,
        sinks,
        spaces,
        ui,
        users,
    )
    from .common import Formatter, Parser

    parser = Parser(
        prog="knot",
        description="A local runtime for Knot-style events: scripts, webhooks and JSON-RPC sinks.",
        epilog=(
            "examples:\n"
            "  knot init myproject                 a project: an example sink and its test\n"
            "  knot new sink notify --events 'custom.myapp.*'   start a script sink\n"
            "  knot serve                          run the runtime on this project\n"
            "  knot ui                             open its dashboard in a browser\n"
            '  knot event myapp.deployed \'{"version": "1.2"}\'\n'
            "  knot events -n 20                   the last 20 events\n"
            "  knot audit                          what was dropped or given up, and why\n"
            "  knot trace EVENT_ID                 what an event caused, and every delivery\n"
            "  knot check scripts/                 check sink scripts against the sandbox rules\n"
            "  knot run scripts/sinks/x.py --event myapp.deployed   dry-run a sink script\n"
            "  knot replay greeter --since 7d      today's script on last week's events, diffed\n"
            '  knot call deploys.count \'{"space": "web"}\'   call a method script\'s method\n'
            "  knot space create web --cmd CMD --start   run a local space\n"
            "  knot sinks add hook --events 'custom.*' --url URL   a webhook sink\n"
            "  knot user add alice                 a user; prints the bearer token once\n"
            "  knot cluster status                 the nodes on a shared NATS store\n\n"
            "Commands that talk to a running runtime use KNOT_URL or KNOT_API_PORT, else the\n"
            "[server] port of ./knot.toml, else 12201; and, once users exist, KNOT_TOKEN."
        ),
        formatter_class=Formatter,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    # One line per command group; each module's register() adds its subcommands.
    for group in (
        scaffold,
        serve,
        ui,
        events,
        sinks,
        scripts,
        replay,
        methods,
        spaces,
        channels,
        users,
        kernel,
        cluster,
    ):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # A Ctrl-C at any point, even while the runtime's modules are still being imported (the
    # first few hundred milliseconds of `knot serve`), ends the command quietly with 130.
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    from .._exceptions import KnotError
    from .._logtext import loggable
    from .common import Handler, choose_action, take_leftovers

    parser = build_parser()
    args, leftovers = parser.parse_known_args(argv)
    handler: Handler = getattr(args, "handler", None) or choose_action(parser)
    try:
        if leftovers:
            if getattr(args, "command_parser", None) is None:
                parser.error(f"unrecognized arguments: {' '.join(leftovers)}")
            take_leftovers(args, leftovers)
        return handler(args)
    except KnotError as exc:
        print(f"knot: {loggable(str(exc), keep_tab=False)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `knot events | head`
        return 0
