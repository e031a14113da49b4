"""The sandbox worker process: `python -m knot.sandbox.worker --memory-mb 256`.

It speaks newline-delimited JSON-RPC 2.0 over stdin/stdout with its parent, both ways:

  parent → worker   ping; load {name, hash, source, filename}; run {name, hash, source?,
                    filename?, events: [...], timeout, max_emits}
  worker → parent   notification `ready` {pid} once, notification `result` {index, at,
                    output, directives} after each event of a `run` (`at`: when it finished,
                    CLOCK_MONOTONIC), request `emit` {index, type, payload} → {id} while a
                    script runs.

Results go to the results pipe when the runtime gave one (`--results-fd N`: a pipe it reads
when it needs to, not woken for each; see `knot.sandbox.results`), else to stdout.

A `run` answers `{failed_at: null}` when every event succeeded, else `{failed_at: i, error,
output, directives}` for the first failed event (later events are not run).

Before its first request the worker imports everything it will ever need, then walls itself
in at the OS level (`wall.lockdown`: inherited descriptors closed, an empty environment,
no_new_privs, Landlock, rlimits, seccomp) and lowers its recursion limit; `ready` names the
walls that are up. Time is limited by the parent, which SIGKILLs a worker that overruns; that
is the only way to stop a single C call such as `7 ** (10 ** 8)`. The worker also dies with
its parent (PR_SET_PDEATHSIG).

Method scripts run in workers of their own (`method.py`), built from the same parts. Both
frame their messages with `knot._jsonrpc`, as the runtime does on its side of the pipe.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..._json import JSONObject
from ..._jsonrpc import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SCRIPT_REJECTED,
    UNKNOWN_SCRIPT,
    decode_line,
    encode,
    encode_line,
    error_response,
    notification,
    plain_result_line,
    request_id_of,
    request_text,
    response,
    with_member,
)
from .event_module import RunLimits, RuntimeRefused
from .runner import MAX_OUTPUT_BYTES, ScriptRunner, set_recursion_limit
from .wall import Walls, lockdown

__all__ = [
    "RECURSION_LIMIT",
    "Pipe",
    "announce",
    "isolate",
    "main",
    "worker_options",
]

RECURSION_LIMIT = 400  # frames, the worker's own few included
# Decoding a message from the runtime recurses once per nesting level. Ingress keeps JSON
# within MAX_JSON_DEPTH (100) levels, but a frame must never end the worker: it is decoded
# under a higher limit, and one that is still too deep is answered as a parse error.
DECODE_RECURSION_LIMIT = 2000
DEFAULT_MAX_EMITS = 1000
M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


class Pipe:
    """The JSON-RPC pipe to the parent: our private copy of stdout, and stdin; and, when the
    parent gave one, the pipe for results (`report`), which it reads when it needs them rather
    than being woken for each."""

    def __init__(self, out_fd: int, results_fd: int = -1) -> None:
        self.out_fd = out_fd
        self.results_fd = results_fd if results_fd >= 0 else out_fd
        self.stdin = sys.stdin.buffer
        self._next_id = 0

    def send(self, message: JSONObject) -> None:
        self.send_text(encode(message))

    def send_text(self, text: str) -> None:
        """Write one message, framed already (`knot._jsonrpc`), as one line."""
        self.write(encode_line(text))

    def write(self, line: bytes, fd: int = -1) -> None:
        """Write one message's line, newline included (to `fd`, else to the protocol's pipe)."""
        fd = self.out_fd if fd < 0 else fd
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]

    def report(self, line: bytes) -> None:
        """Write a `result` notification's line to the results pipe."""
        self.write(line, self.results_fd)

    def notify(self, method: str, params: JSONObject) -> None:
        self.send(notification(method, params))

    def respond(self, request_id: Any, result: Any) -> None:
        self.send(response(request_id, result))

    def fail(self, request_id: Any, code: int, message: str, data: Any = None) -> None:
        self.send(error_response(request_id, code, message, data))

    def receive(self) -> JSONObject | None:
        """The next message from the runtime; one that cannot be decoded is answered with a
        parse error (for the request it was, when its id can be read) and skipped."""
        while True:
            line = self.stdin.readline()
            if not line:
                return None
            limit = sys.getrecursionlimit()
            sys.setrecursionlimit(max(limit, DECODE_RECURSION_LIMIT))
            try:
                message = decode_line(line)
            except (ValueError, RecursionError, MemoryError) as exc:
                reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                self.fail(request_id_of(line), PARSE_ERROR, f"the message cannot be read: {reason}")
                continue
            finally:
                sys.setrecursionlimit(limit)
            if isinstance(message, dict):
                return message

    def new_id(self) -> str:
        self._next_id += 1
        return f"w{self._next_id}"

    def call(self, method: str, params: JSONObject, raw: str = "") -> Any:
        """A request to the parent, answered before anything else arrives.

        `raw` is JSON text spliced into the params as the member `payload` (already encoded)."""
        request_id = self.new_id()
        encoded = encode(params)
        if raw:
            encoded = with_member(encoded, "payload", raw)
        self.send_text(request_text(request_id, method, encoded))
        reply = self.receive()
        if reply is None:
            raise SystemExit(0)  # the parent went away mid-call
        if reply.get("id") != request_id:
            raise RuntimeError("the runtime answered out of turn")
        if "error" in reply:
            raise RuntimeRefused.from_error(reply["error"])
        return reply.get("result")


class Worker:
    def __init__(self, pipe: Pipe, runner: ScriptRunner) -> None:
        self.pipe = pipe
        self.runner = runner

    def serve(self) -> None:
        while True:
            message = self.pipe.receive()
            if message is None:
                return
            request_id = message.get("id")
            method = message.get("method")
            params = message.get("params") or {}
            handler = {"ping": self.ping, "load": self.load, "run": self.run}.get(str(method))
            if handler is None:
                self.pipe.fail(request_id, METHOD_NOT_FOUND, f"unknown method {method!r}")
                continue
            try:
                handler(request_id, params)
            except (KeyError, TypeError) as exc:
                self.pipe.fail(request_id, INVALID_PARAMS, f"bad params: {exc}")

    def ping(self, request_id: Any, params: JSONObject) -> None:
        self.pipe.respond(request_id, {"pid": os.getpid()})

    def _ensure(self, request_id: Any, params: JSONObject) -> bool:
        name, digest = params["name"], params["hash"]
        if self.runner.has(name, digest):
            return True
        source = params.get("source")
        if not isinstance(source, str):
            self.pipe.fail(request_id, UNKNOWN_SCRIPT, f"script {name} {digest} not loaded")
            return False
        violations = self.runner.load(name, digest, source, str(params.get("filename") or name))
        if violations:
            data = [{"line": v.line, "col": v.col, "rule": v.rule} for v in violations]
            self.pipe.fail(request_id, SCRIPT_REJECTED, "the script breaks the rules", data)
            return False
        return True

    def load(self, request_id: Any, params: JSONObject) -> None:
        if self._ensure(request_id, params):
            self.pipe.respond(request_id, {"ok": True})

    def run(self, request_id: Any, params: JSONObject) -> None:
        if not self._ensure(request_id, params):
            return
        name = params["name"]
        timeout = float(params.get("timeout", 5.0))
        limits = RunLimits.from_params(params)
        max_output = int(params.get("max_output_bytes", MAX_OUTPUT_BYTES))
        events: Sequence[JSONObject] = params["events"]
        pipe = self.pipe
        current = 0  # the event being run: what the script's requests are about

        def emit(event_type: str, payload: str) -> str:
            result = pipe.call("emit", {"index": current, "type": event_type}, payload)
            return str(result["id"])

        def ask(method: str, params: JSONObject, raw: str) -> Any:
            return pipe.call(method, {"index": current, **params}, raw)

        for index, event in enumerate(events):
            current = index
            outcome = self.runner.run_one(
                name,
                event,
                emit,
                timeout=timeout,
                limits=limits,
                max_output_bytes=max_output,
                ask=ask,
            )
            if outcome.error is not None:
                pipe.respond(request_id, {"failed_at": index, **outcome.to_dict()})
                return
            # When it finished, on the clock the runtime reads too: each event's time limit
            # starts over then, whenever the runtime reads the result.
            at = time.monotonic()
            if outcome.output or outcome.directives:
                report = {"index": index, "at": at, **outcome.to_dict()}
                pipe.report(encode_line(encode(notification("result", report))))
            else:  # the common case: a line of fixed shape, never encoded
                pipe.report(plain_result_line(index, at))
        self.pipe.respond(request_id, {"failed_at": None})


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the parent dies (a busy loop never reads EOF)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent and os.getppid() != parent:
        os._exit(0)


def _one_malloc_arena() -> None:
    """Make every thread allocate from glibc's main arena.

    glibc gives each new thread an arena of its own, reserving 64 MB of address space for it
    up front. A method worker starts its call threads before RLIMIT_AS applies, so those
    reservations (8 threads: ~520 MB) counted as already used, and calls could fill them
    without ever touching the limit: 8 concurrent calls held ~545 MB at memory_mb = 64. With
    one arena the worker's VmSize before the limit is ~95 MB, all of it really mapped.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mallopt(M_ARENA_MAX, 1)
    except (OSError, AttributeError):  # not glibc: no per-thread arenas to worry about
        return


def isolate(parent: int) -> int:
    """Tie this process to its parent and keep fd 1 for the protocol; return that fd."""
    _die_with_parent(parent)
    _one_malloc_arena()  # before any thread starts
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over RLIMIT_FSIZE fails, not kills
    # Keep the protocol to ourselves: anything else printing to fd 1 goes to /dev/null.
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = sys.stderr
    return out_fd


def announce(pipe: Pipe, walls: Walls) -> None:
    """Lower the recursion limit (the last limit), then tell the parent we are ready."""
    set_recursion_limit(RECURSION_LIMIT)
    pipe.notify("ready", {"pid": os.getpid(), **walls.to_dict()})


def worker_options(argv: Sequence[str], **defaults: int) -> dict[str, int]:
    """The `--name N` options the runtime starts a worker with (`--memory-mb 256 ...`).

    Not argparse: the runtime writes this command line itself, and the worker imports as
    little as it can before its wall goes up."""
    options = dict(defaults)
    pairs = iter(argv)
    for flag in pairs:
        name = flag.removeprefix("--").replace("-", "_")
        if not flag.startswith("--") or name not in options:
            raise SystemExit(f"unknown worker option {flag!r}")
        try:
            options[name] = int(next(pairs))
        except (StopIteration, ValueError):
            raise SystemExit(f"the worker option {flag} needs a whole number") from None
    return options


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    options = worker_options(argv, memory_mb=256, parent=0, results_fd=-1)
    out_fd = isolate(options["parent"])
    results_fd = options["results_fd"]
    if results_fd >= 3:  # to the lowest free number (the parent's was any), beside out_fd
        moved = os.dup(results_fd)
        os.close(results_fd)
        results_fd = moved
    keep = (out_fd, results_fd) if results_fd >= 3 else (out_fd,)
    runner = ScriptRunner()
    walls = lockdown(memory_mb=options["memory_mb"], keep_fds=keep, warm_up=runner.warm_up)
    pipe = Pipe(out_fd, results_fd if results_fd >= 3 else -1)
    announce(pipe, walls)
    try:
        Worker(pipe, runner).serve()
    except MemoryError:
        os._exit(70)  # could not even report it; the parent sees us die and says so
    return 0


if __name__ == "__main__":
    sys.exit(main())
