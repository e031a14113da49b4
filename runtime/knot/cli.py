"""The `knot` command: a thin layer over the Python API and the HTTP client.

Every command prints errors as one line on stderr and exits non-zero; no tracebacks for
anything a user can cause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Sequence

from ._client import Client
from ._exceptions import InvalidInput, KnotError
from .types import JSONObject

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KnotError as exc:
        print(f"knot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `knot events | head`
        return 0


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: Handler,
    help: str,
    examples: str = "",
) -> argparse.ArgumentParser:
    epilog = "examples:\n" + examples if examples else None
    p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=_Formatter)
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="knot",
        description="A local runtime for Knot-style events: scripts, webhooks and JSON-RPC sinks.",
        epilog=(
            "examples:\n"
            "  knot serve                          run the runtime on this project\n"
            '  knot event myapp.deployed \'{"version": "1.2"}\'\n'
            "  knot events -n 20                   the last 20 events\n"
            "  knot audit                          what was dropped or given up, and why\n\n"
            "Commands that talk to a running runtime use KNOT_API_PORT (default 12201)."
        ),
        formatter_class=_Formatter,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = _command(
        sub,
        "serve",
        _serve,
        "Run the runtime: watch the scripts folder, deliver events, serve the HTTP API.",
        "  knot serve\n  knot serve --project ./my-project --port 12300\n",
    )
    p.add_argument("--project", default=".", help="project folder (default: .)")
    p.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: KNOT_API_PORT or 12201)")
    p.add_argument("--quiet", action="store_true", help="log warnings and errors only")

    p = _command(
        sub,
        "event",
        _event,
        "Raise a custom event (the type gets the 'custom.' prefix).",
        '  knot event myapp.deployed \'{"version": "1.2"}\'\n'
        "  echo '{\"n\": 1}' | knot event myapp.tick\n",
    )
    p.add_argument("type", help="event type, e.g. myapp.deployed")
    p.add_argument("payload", nargs="?", help="JSON object (default: read stdin if piped, else {})")
    p.add_argument("--id", default=None, help="event id (UUID) for idempotent retries")

    p = _command(
        sub,
        "events",
        _events,
        "Show recent events, optionally filtered by a pattern.",
        "  knot events\n  knot events 'custom.myapp.*' -n 100\n  knot events --follow\n",
    )
    p.add_argument("pattern", nargs="?", default=None, help="'*', 'prefix.*' or an exact type")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = _command(sub, "audit", _audit, "Show the audit log: drops, give-ups, rejected scripts.")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = _command(
        sub, "sinks", _sinks, "List the sinks of the running runtime.", "  knot sinks list\n"
    )
    p.add_argument("action", nargs="?", default="list", choices=["list"])
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    return parser


# -- serve ---------------------------------------------------------------------------------


class _LogFormatter(logging.Formatter):
    """`HH:MM:SS.mmm INFO:     message`, in the spirit of uvicorn's access log."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}"
        level = f"{record.levelname}:".ljust(9)
        text = f"{stamp} {level} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_LogFormatter())
    root = logging.getLogger("knot")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def _serve(args: argparse.Namespace) -> int:
    from ._runtime import Runtime
    from .server import serve

    _configure_logging(args.quiet)
    runtime = Runtime(args.project)

    def ready(host: str, port: int) -> None:
        sinks = runtime.sinks()
        print(
            f"knot: serving {runtime.project} on http://{host}:{port} "
            f"(zone {runtime.config.zone}, {len(sinks)} sink{'s' if len(sinks) != 1 else ''}, "
            f"store {runtime.resolve(runtime.config.store.path)})",
            flush=True,
        )

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(serve(runtime, host=args.host, port=args.port, ready=ready))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it on every platform we support
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


# -- client commands -----------------------------------------------------------------------


def _event(args: argparse.Namespace) -> int:
    raw = args.payload
    if raw is None and not sys.stdin.isatty():
        raw = sys.stdin.read()
    payload = _parse_payload(raw)
    with Client() as client:
        event_id = client.emit(args.type, payload, id=args.id)
    print(event_id)
    return 0


def _parse_payload(raw: str | None) -> JSONObject:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"The payload is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput('The payload must be a JSON object, like \'{"key": "value"}\'.')
    return value


def _events(args: argparse.Namespace) -> int:
    with Client() as client:
        for event in client.events(args.pattern, n=args.n):
            _print_event(event, as_json=args.json)
        if args.follow:
            for event in client.follow(args.pattern):
                _print_event(event, as_json=args.json)
    return 0


def _print_event(event: JSONObject, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(event), flush=True)
        return
    data = json.dumps(event.get("data", {}), separators=(",", ":"))
    if len(data) > 80:
        data = data[:77] + "..."
    print(
        f"{event['seq']:>7}  {event['ts']}  {event['type']:<32}  {event['id']}  {data}", flush=True
    )


def _audit(args: argparse.Namespace) -> int:
    with Client() as client:
        entries = client.audit(n=args.n)
    for entry in entries:
        if args.json:
            print(json.dumps(entry))
        else:
            sink = f"[{entry['sink']}] " if entry["sink"] else ""
            print(f"{entry['ts']}  {entry['title']:<28}  {sink}{entry['message']}")
    if not entries and not args.json:
        print("(the audit log is empty)")
    return 0


def _sinks(args: argparse.Namespace) -> int:
    with Client() as client:
        sinks = client.sinks()
    if args.json:
        for sink in sinks:
            print(json.dumps(sink))
        return 0
    _print_table(
        sinks,
        [
            ("name", "NAME"),
            ("type", "TYPE"),
            ("events", "EVENTS"),
            ("pending", "PENDING"),
            ("delivered", "DELIVERED"),
            ("failed", "FAILED"),
            ("dropped", "DROPPED"),
            ("problem", "PROBLEM"),
        ],
    )
    return 0


def _print_table(rows: list[JSONObject], columns: list[tuple[str, str]]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[str(row.get(key, "")) for key, _ in columns] for row in rows]
    widths = [max(len(title), *(len(c[i]) for c in cells)) for i, (_, title) in enumerate(columns)]
    print("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
