"""The span exporter process: builds and exports the spans of a tracing runtime, off its CPU.

An OpenTelemetry SDK span costs more CPU than a whole journaled event, and any span work in the
runtime's process (even on another thread, under the GIL) is taken from its throughput. So
`knot serve` starts this module as a child process (`python -m knot.observe.exporter SALT FD`)
at a lower priority and writes it the runtime's records (see spans.py) through a pipe,
without ever waiting: when the pipe is full (the exporter is behind) or the process is gone,
records are dropped, counted and logged once, and delivery goes on as if tracing were off.

The child configures OpenTelemetry from the same OTEL_* environment (exporters, resource,
OTLP settings), builds each span from the records and hands it to the exporters' batch
processors; at the end of its input it flushes them and writes how many spans it built to FD.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import fcntl
import io
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from typing import IO, Any

__all__ = ["ExporterProcess", "SpanOut", "main", "provider_from_env"]

log = logging.getLogger("knot.tracing")
PIPE_BYTES = 1 << 20  # the pipe's capacity asked for (Linux's default cap for a user)
PENDING_MAX = 1 << 20  # bytes of records held here when the pipe is full, then drops
NICE = 10


class SpanOut(abc.ABC):
    """Where a tracer's records go: counts what it had to drop."""

    dropped = 0  # records dropped (exporter behind or gone)

    @abc.abstractmethod
    def send(self, payload: bytes) -> None: ...

    async def close(self) -> dict[str, int]:
        return {}


class ExporterProcess(SpanOut):
    """The exporter child and the non-blocking pipe to it (records framed by their length)."""

    def __init__(self, salt: str, *, stdout: IO[Any] | int | None = None) -> None:
        stats_read, stats_write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "knot.observe.exporter", salt, str(stats_write)],
            stdin=subprocess.PIPE,
            stdout=stdout,
            pass_fds=(stats_write,),
        )
        os.close(stats_write)
        self._stats = stats_read
        assert self.process.stdin is not None
        self.fd = self.process.stdin.fileno()
        os.set_blocking(self.fd, False)
        with contextlib.suppress(OSError, AttributeError):  # not Linux: the default size
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.pending = bytearray()
        self._queued = 0  # records (whole or in part) in `pending`
        self.sent = 0
        self.dropped = 0
        self._gone = False
        self._waiting = False  # a writer callback is registered on the loop
        self._warned = False
        self._ready = False

    async def ready(self, timeout: float = 30.0) -> bool:
        """Wait until the child has configured its exporters (records sent before wait in
        the pipe meanwhile); False if it ended or did not answer in `timeout` seconds."""
        if not self._ready:
            line = await asyncio.wait_for(asyncio.to_thread(self._read_line), timeout)
            self._ready = line == b"ready\n"
        return self._ready

    def _read_line(self) -> bytes:
        line = b""
        while not line.endswith(b"\n"):
            byte = os.read(self._stats, 1)
            if not byte:
                break
            line += byte
        return line

    def send(self, payload: bytes) -> None:
        frame = len(payload).to_bytes(4, "little") + payload
        if self._gone or len(self.pending) + len(frame) > PENDING_MAX:
            self._drop("is behind" if not self._gone else "has exited")
            return
        self.sent += 1
        if self.pending:  # behind the records still waiting: they go first
            self.pending += frame
            self._queued += 1
            return
        try:
            written = os.write(self.fd, frame)
        except BlockingIOError:
            written = 0
        except OSError:
            self._exited()
            return
        if written < len(frame):
            self.pending += frame[written:]
            self._queued = 1
            self._wait()

    def _wait(self) -> None:
        if self._waiting:
            return
        try:
            asyncio.get_running_loop().add_writer(self.fd, self._drain)
        except RuntimeError:  # no loop here: the next send or close writes the rest
            return
        self._waiting = True

    def _drain(self) -> None:
        try:
            written = os.write(self.fd, self.pending)
        except BlockingIOError:
            return
        except OSError:
            self._exited()
            written = len(self.pending)
        del self.pending[:written]
        if not self.pending:
            self._queued = 0
        if not self.pending and self._waiting:
            asyncio.get_running_loop().remove_writer(self.fd)
            self._waiting = False

    def _exited(self) -> None:
        self._gone = True
        self.pending.clear()
        self._drop("has exited")

    def _drop(self, why: str) -> None:
        self.dropped += 1
        if not self._warned:
            self._warned = True
            log.warning(
                "the span exporter process %s: span records are dropped (counted; this is "
                "logged once), delivery goes on",
                why if why != "has exited" else f"has exited (code {self.process.poll()})",
            )

    async def close(self, timeout: float = 10.0) -> dict[str, int]:
        """Send what waits, end the input, and wait (up to `timeout`) for the child to
        export the rest; its counts (built, unknown) with ours (sent, dropped)."""
        if self._waiting:
            asyncio.get_running_loop().remove_writer(self.fd)
            self._waiting = False
        return await asyncio.to_thread(self._finish, timeout)

    def _finish(self, timeout: float) -> dict[str, int]:
        stdin = self.process.stdin
        assert stdin is not None
        deadline = time.monotonic() + timeout
        while self.pending and not self._gone:  # what waits, unless the child is stuck
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [self.fd], [], left)[1]:
                self.dropped += self._queued  # what waited (the first maybe partly sent)
                break
            try:
                del self.pending[: os.write(self.fd, self.pending)]
            except BlockingIOError:
                continue
            except OSError:
                break
        self.pending.clear()
        with contextlib.suppress(OSError):
            stdin.close()
        try:
            self.process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            log.warning("the span exporter process did not finish in %.0f s; killed", timeout)
            self.process.kill()
            self.process.wait()
        with os.fdopen(self._stats, "rb") as stats:
            text = stats.read()
        if not self._ready:
            text = text.partition(b"ready\n")[2]
        counts: dict[str, int] = json.loads(text) if text.strip() else {}
        return {**counts, "sent": self.sent, "dropped": self.dropped}


def provider_from_env() -> Any:
    """An SDK TracerProvider with a batch processor per exporter OTEL_TRACES_EXPORTER names
    (`otlp`, `console`, `none`); its resource from OTEL_SERVICE_NAME and
    OTEL_RESOURCE_ATTRIBUTES (service name `knot` unless named there)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from .._env import otel_exporters_from_env

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "knot"}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    for name in otel_exporters_from_env() or ():
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name != "none":
            log.warning("OTEL_TRACES_EXPORTER names %r, which knot does not know; ignored", name)
    return provider


def main(argv: list[str]) -> int:
    """The child: records on stdin until it ends, spans out; counts written to fd argv[1]."""
    from .spans import SpanBuilder, processor_of

    salt, stats_fd = argv[0], int(argv[1])
    # A Ctrl-C at the terminal reaches the whole process group: this process ends when the
    # runtime ends its input, after exporting what it was sent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(NICE)  # the runtime's work comes first: a busy exporter drops, never slows it
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    provider = provider_from_env()
    builder = SpanBuilder(processor_of(provider), provider.resource, salt)
    stats = os.fdopen(stats_fd, "w")
    stats.write("ready\n")
    stats.flush()
    source = sys.stdin.buffer
    assert isinstance(source, io.BufferedReader)
    buffer = bytearray()
    while chunk := source.read1(1 << 16):
        buffer += chunk
        at = 0
        while len(buffer) - at >= 4:
            size = int.from_bytes(buffer[at : at + 4], "little")
            if len(buffer) - at - 4 < size:
                break
            try:
                builder.feed(bytes(buffer[at + 4 : at + 4 + size]))
            except Exception:  # one bad record costs its spans, not the exporter
                log.exception("a span record could not be built; skipped")
            at += 4 + size
        del buffer[:at]
    provider.shutdown()  # exports what the batch processors still hold
    with stats:
        stats.write(json.dumps({"built": builder.built, "unknown": builder.unknown}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
