"""`knot serve`: the runtime and its HTTP API in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable

from .._exceptions import KnotError
from .common import Subparsers, add_command, port_number, project_folder

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "serve",
        _serve,
        "Run the runtime: watch the scripts folder, deliver events, serve the HTTP API.",
        "  knot serve\n  knot serve --project ./my-project --port 12300\n"
        "  curl -s 127.0.0.1:12201/metrics            Prometheus metrics ([metrics] in knot.toml)\n"
        "  OTEL_TRACES_EXPORTER=console knot serve    OpenTelemetry spans (the otel extra)\n"
        "  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 knot serve   to a collector\n",
    )
    p.add_argument("--project", default=".", help="project folder (default: .)")
    p.add_argument("--host", default=None, help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--port", type=port_number, default=None, help="port (default: KNOT_API_PORT or 12201)"
    )
    p.add_argument(
        "--store",
        default="",
        metavar="URL",
        help="nats://host:4222[,nats://...]: share the project with other nodes through NATS "
        "JetStream (default: [store] in knot.toml, else the SQLite file)",
    )
    p.add_argument("--quiet", action="store_true", help="log warnings and errors only")


class LogFormatter(logging.Formatter):
    """`HH:MM:SS.mmm INFO:     message`, in the spirit of uvicorn's access log."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = self.formatTime(record, "%H:%M:%S") + f".{int(record.msecs):03d}"
        level = f"{record.levelname}:".ljust(9)
        text = f"{stamp} {level} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LogFormatter())
    root = logging.getLogger("knot")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def _serve(args: argparse.Namespace) -> int:
    from .._runtime import Runtime
    from ..cluster.part import ClusterPart
    from ..server import serve

    project = project_folder(args.project)
    configure_logging(args.quiet)
    if args.store and not all(u.strip().startswith("nats://") for u in args.store.split(",")):
        raise KnotError(f"--store {args.store!r} is not a nats:// URL (nats://host:4222).")
    runtime = Runtime(project, store_url=args.store)

    def ready(host: str, port: int) -> None:
        sinks = runtime.sinks()
        address = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
        for part in runtime.parts:  # other nodes show this node's API address
            if isinstance(part, ClusterPart) and part.membership is not None:
                part.membership.address = f"http://{address}:{port}"
        print(
            f"knot: serving {runtime.project} on http://{address}:{port} "
            f"(zone {runtime.config.zone}, {len(sinks)} sink{'s' if len(sinks) != 1 else ''}, "
            f"store {runtime.config.store.url or runtime.resolve(runtime.config.store.path)})",
            flush=True,
        )

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(runtime, host=args.host, port=args.port, ready=ready))
    except OSError as exc:  # what the system refused (a folder, a socket): one line, no trace
        where = f" ({exc.filename})" if exc.filename else ""
        raise KnotError(f"knot serve stopped: {exc.strerror or exc}{where}.") from None
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # uvicorn[standard] brings it on every platform we support
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
