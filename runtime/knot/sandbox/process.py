"""One sandbox worker process, seen from the runtime: start it, make requests, kill it.

`WorkerProcess` starts `knot.sandbox.worker.sink` in a fresh interpreter (about 50 ms: it imports
only the sandbox, not the runtime), with a tiny environment of its own and `/` as its working
folder, and makes JSON-RPC requests to it. The worker walls itself in (`wall.py`) and says
which walls are up; a missing one is logged once per runtime. A request has a wall-
clock budget; when it runs out the worker is SIGKILLed, the only way to stop a script stuck in
one long C call. Requests the worker makes back (`emit`, and `http`, `kv`, `secret` for the
libraries scripts import) are answered in between, on the script's clock: a run that emits or
waits for a server is charged for that time (`deadline` says when its clock runs out). A sink
worker reports each event of a run on its results pipe (`results.py`), read before anything
else the worker says, every RESULTS_POLL while a run goes on, and when the worker stops; each
event's time limit starts when the one before it finished.

`redact`, when set, hides secrets in what the worker sends back: every message but a request
the runtime must see whole (an HTTP request or a key-value write carries the script's secrets
on purpose) has each secret value replaced before it is decoded (`scriptlib/secrets.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from .._json import JSONObject
from .._jsonrpc import (
    METHOD_NOT_FOUND,
    SERVER_ERROR,
    RpcError,
    decode_line,
    encode,
    encode_line,
    error_response,
    plain_result,
    request_text,
    response,
)
from .results import ResultsPipe, TooLong
from .worker.wall import WORKER_ENV_NAMES

__all__ = [
    "WORKER_FLAGS",
    "RemoteError",
    "WorkerBlocked",
    "WorkerDied",
    "WorkerProcess",
    "WorkerTimeout",
    "error_data",
    "worker_env",
]

log = logging.getLogger("knot.sandbox")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
_fast_decode = msgspec.json.Decoder().decode
RESULTS_POLL = 0.002  # seconds between looks at the results pipe while a run goes on
START_TIMEOUT = 30.0
_KNOT_DIR = str(Path(__file__).resolve().parent.parent)
# Boot the worker without executing knot/__init__.py (which imports the whole runtime, HTTP
# client included): a bare package object pointing at the source folder is enough.
_BOOT = (
    "import sys, types, importlib; pkg = types.ModuleType('knot'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['knot'] = pkg; "
    "sys.exit(importlib.import_module(sys.argv[2]).main(sys.argv[3:]))"
)

# Isolated mode (no PYTHON* variables, no user site, no script folder on sys.path) and UTF-8
# whatever the (absent) locale variables say.
WORKER_FLAGS = ("-I", "-X", "utf8")
_missing_walls_logged = False

RequestHandler = Callable[[str, JSONObject], Awaitable[Any]]
NotifyHandler = Callable[[str, JSONObject], None]
Redact = Callable[[bytes, JSONObject], JSONObject]
"""Hides secrets in a worker's message: (its raw line, the message decoded) → the message."""
_UNREDACTED = frozenset({"http", "kv"})  # worker requests that carry secrets to their use


class WorkerDied(Exception):
    """The worker process ended (or broke the protocol) during a request."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


class WorkerBlocked(WorkerDied):
    """A request ran out of time while another one, already past its own, held the worker.

    A call stuck in one long C operation holds the interpreter lock, so the worker answers
    nothing until it is killed; the requests caught behind it did not overrun by themselves.
    """


class WorkerTimeout(Exception):
    """A request ran past its budget; the worker was killed."""


class RemoteError(RpcError):
    """A JSON-RPC error answer from the worker (`.code`, `.message`, `.data`)."""


def error_data(exc: Exception) -> Any:
    """What the worker should know about a refusal besides its message (`ScriptRefusal.data`:
    which exception a script gets)."""
    data = getattr(exc, "data", None)
    return data if isinstance(data, dict) else None


def worker_env() -> dict[str, str]:
    """A worker's whole environment: none of the runtime's variables (tokens, KNOT_*, cloud
    credentials, the store's path) but the few an interpreter may need (`WORKER_ENV_NAMES`)."""
    return {name: os.environ[name] for name in WORKER_ENV_NAMES if name in os.environ}


def _log_missing_walls(missing: Mapping[str, str]) -> None:
    """Once per runtime: a layer of the OS wall could not be raised on this machine."""
    global _missing_walls_logged
    if not missing or _missing_walls_logged:
        return
    _missing_walls_logged = True
    reasons = "; ".join(f"{layer} ({why})" for layer, why in missing.items())
    log.warning(
        "sandbox workers run without part of their OS wall, the scripts' last line of "
        "defence after RestrictedPython: %s (see SECURITY.md, 'What a script can reach')",
        reasons,
    )


class WorkerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, memory_mb: int) -> None:
        self.proc = proc
        self.memory_mb = memory_mb
        self.walls: tuple[str, ...] = ()  # the OS-level layers the worker reported up
        self.missing_walls: dict[str, str] = {}  # requested layers that are not, and why
        self.loaded: dict[str, str] = {}  # script name → the version (hash) it has compiled
        self.broken = False
        self._next_id = 0
        self._expired = False
        self._killed = False
        self._lines: deque[bytes] = deque()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._stderr_task: asyncio.Task[None] | None = None
        self.last_size = 0  # bytes of the last message read (what an emit weighs, at most)
        self.redact: Redact | None = None
        self.deadline: float | None = None  # the loop time the current run's clock runs out
        self._results: ResultsPipe | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._notify: NotifyHandler | None = None  # the request's, while it runs
        self._timeout: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return not self.broken and self.proc.returncode is None

    @classmethod
    async def spawn(
        cls,
        *,
        memory_mb: int,
        module: str = "sink",
        args: tuple[str, ...] = (),
        redact: Redact | None = None,
    ) -> WorkerProcess:
        """Start `knot.sandbox.worker.<module>` (`sink`, or `method` for method scripts).

        A sink worker gets a results pipe of its own (results.py)."""
        results = ResultsPipe(MAX_MESSAGE_BYTES) if module == "sink" else None
        if results is not None:
            args = (*args, "--results-fd", str(results.write_fd))
        command = (
            sys.executable,
            *WORKER_FLAGS,
            "-c",
            _BOOT,
            _KNOT_DIR,
            f"knot.sandbox.worker.{module}",  # in the command line: `ps` tells workers apart
            "--memory-mb",
            str(memory_mb),
            "--parent",
            str(os.getpid()),
            *args,
        )
        try:
            worker = await cls.launch(command, memory_mb=memory_mb, results=results)
        except BaseException:
            if results is not None:
                results.close()
            raise
        worker.redact = redact
        return worker

    @classmethod
    async def launch(
        cls,
        command: Sequence[str],
        *,
        memory_mb: int,
        env: Mapping[str, str] | None = None,
        cwd: str = "/",
        results: ResultsPipe | None = None,
    ) -> WorkerProcess:
        """Start `command` as a worker and wait for its `ready` (`spawn` builds knot's own
        command lines; tests launch probes that boot the same way). `env` defaults to
        `worker_env()`; the working folder is `/`, far from the project and its store."""
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=worker_env() if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C in the terminal is the runtime's to handle
            pass_fds=(results.write_fd,) if results is not None else (),
        )
        worker = cls(proc, memory_mb)
        if results is not None:
            results.handed_over()
            worker._results = results
        worker._stderr_task = asyncio.create_task(worker._drain_stderr())
        try:
            async with asyncio.timeout(START_TIMEOUT):
                ready = await worker._read()
        except (TimeoutError, WorkerDied) as exc:
            worker.kill()
            raise WorkerDied(f"the sandbox worker did not start: {exc}") from None
        if ready.get("method") != "ready":
            worker.kill()
            raise WorkerDied(f"the sandbox worker said {ready!r} instead of ready")
        params = ready.get("params") or {}
        worker.walls = tuple(str(layer) for layer in params.get("walls") or ())
        missing = params.get("missing") or {}
        worker.missing_walls = {str(k): str(v) for k, v in missing.items()}
        _log_missing_walls(worker.missing_walls)
        return worker

    async def _drain_stderr(self) -> None:
        """Log what the worker writes to stderr (nothing, unless something is badly wrong)."""
        stream = self.proc.stderr
        assert stream is not None
        with contextlib.suppress(Exception):
            while chunk := await stream.read(1 << 14):
                for line in chunk.decode(errors="replace").splitlines():
                    log.warning("sandbox worker %d: %s", self.pid, line.rstrip())

    async def receive(self) -> JSONObject:
        """The next message from the worker (for callers that run their own reader)."""
        return await self._read()

    def send(self, message: JSONObject | str) -> None:
        """Write one message (a dict, or one already framed as JSON text without newlines)."""
        self._write_text(message if isinstance(message, str) else encode(message))

    def _write_text(self, text: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(encode_line(text))
        except (ConnectionError, RuntimeError) as exc:
            self.broken = True
            raise WorkerDied(f"its input pipe is closed ({exc})") from None

    async def _read(self) -> JSONObject:
        """The next message; lines are read in bulk (one read often holds a batch's results)."""
        lines = self._lines
        while not lines:
            await self._fill()
        line = lines.popleft()
        self.last_size = len(line)
        return self._decode(line)

    def _decode(self, line: bytes) -> JSONObject:
        try:
            try:  # msgspec first: the values json.loads gives, 3 times faster
                message: JSONObject = _fast_decode(line)
            except (msgspec.DecodeError, RecursionError):  # lone surrogates, and the rest
                message = decode_line(line)
            if self.redact is not None and not (
                message.get("method") in _UNREDACTED and "id" in message
            ):
                message = self.redact(line, message)
        except ValueError:
            self.broken = True
            self.kill()
            raise WorkerDied("it sent something that is not JSON") from None
        return message

    async def _fill(self, until: float | None = None) -> None:
        """Read what the worker wrote to its protocol pipe; with `until` (loop time), return
        then if nothing came."""
        stdout = self.proc.stdout
        assert stdout is not None
        if until is None:
            chunk = await stdout.read(1 << 16)
        else:
            try:
                async with asyncio.timeout_at(until):
                    chunk = await stdout.read(1 << 16)
            except TimeoutError:
                return
        if not chunk:
            self.broken = True
            # What it finished before it stopped is in the results pipe.
            self._take_results(asyncio.get_running_loop())
            if self._expired:
                raise WorkerTimeout()
            raise WorkerDied(await self._exit_status())
        pending = self._pending
        pending.append(chunk)
        if b"\n" not in chunk:
            self._pending_size += len(chunk)
            if self._pending_size > MAX_MESSAGE_BYTES:
                self.broken = True
                self.kill()
                raise WorkerDied(f"it sent a message over {MAX_MESSAGE_BYTES} bytes")
            return
        parts = b"".join(pending).split(b"\n")
        pending.clear()
        tail = parts.pop()
        if tail:
            pending.append(tail)
        self._pending_size = len(tail)
        self._lines.extend(parts)

    async def _exit_status(self) -> str:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await self.proc.wait()
        code = self.proc.returncode
        if code is None:
            self.kill()
            return "it closed its output"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"it was killed by {name}"
        return f"it exited with status {code}"

    def _expire(self) -> None:
        self._expired = True
        self.kill()

    async def request(
        self,
        method: str,
        params: JSONObject | str,
        *,
        timeout: float | None = None,
        on_request: RequestHandler | None = None,
        on_notify: NotifyHandler | None = None,
    ) -> Any:
        """Send one request and serve the worker until it answers.

        `params` may come JSON-encoded already (a str holding one object), which lets a caller
        splice in payloads it has as JSON text instead of encoding them again.

        `timeout` is the budget for each event a `run` handles: it starts over at each
        `result` notification (one event done). It keeps running while `on_request` serves
        the worker's own requests: the time an event's emits take is part of its run.
        """
        if not self.alive:
            raise WorkerDied("it had already stopped")
        self._next_id += 1
        request_id = self._next_id
        encoded = params if isinstance(params, str) else encode(params)
        self._write_text(request_text(request_id, method, encoded))
        loop = asyncio.get_running_loop()
        # One timer per request; a result only moves the deadline, and the timer, when it
        # fires before the deadline, sleeps again until the deadline it finds.
        timer = None
        if timeout is not None:
            self.deadline = loop.time() + timeout
            timer = self._timer = loop.call_at(self.deadline, self._check_deadline, loop)
        else:
            self.deadline = None
        self._notify, self._timeout = on_notify, timeout
        results = self._results
        lines = self._lines
        try:
            while True:
                if not lines:
                    if results is None:
                        await self._fill()
                        continue
                    self._take_results(loop)
                    await self._fill(loop.time() + RESULTS_POLL)
                    continue
                line = lines.popleft()
                self.last_size = len(line)
                if results is not None:  # what it finished comes before what it says next
                    self._take_results(loop)
                found = plain_result(line)
                if found is not None:  # a result on the protocol pipe (a worker without one)
                    if on_notify is not None:
                        on_notify("result", {"index": found[0]})
                    if timeout is not None:
                        self.deadline = loop.time() + timeout
                    continue
                message = self._decode(line)
                # An error without an id: the worker could not read what we sent (this is
                # the only request it has from us).
                if "method" not in message and message.get("id") in (request_id, None):
                    if "error" in message:
                        raise RemoteError.from_object(message["error"])
                    return message.get("result")
                method_name = message.get("method")
                if not isinstance(method_name, str):
                    continue
                params_in = message.get("params") or {}
                if "id" not in message:
                    if on_notify is not None:
                        on_notify(method_name, params_in)
                    if method_name == "result" and timeout is not None:
                        self.deadline = loop.time() + timeout
                    continue
                await self._answer(message["id"], method_name, params_in, on_request)
        except RemoteError:
            raise
        except BaseException:
            # Cancelled or failed mid-request: the protocol state is unknown.
            self.broken = True
            self.kill()
            raise
        finally:
            self._notify = self._timeout = None
            if timer is not None and self._timer is not None:
                self._timer.cancel()  # the first, or the one it set again
                self._timer = None

    def _check_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self.deadline
        if deadline is None:
            return
        now = loop.time()
        if now < deadline:  # an event finished meanwhile: its successor's clock runs
            self._timer = loop.call_at(deadline, self._check_deadline, loop)
        elif self._results is not None and self._results.unread():
            # Reported, not read yet (the loop was busy): the request reads them and moves the
            # deadline, then this looks again.
            self._timer = loop.call_at(now + RESULTS_POLL, self._check_deadline, loop)
        else:
            self._expire()

    def _take_results(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand the results the worker reported since the last look to the request's
        `on_notify`; each starts its successor's time limit from when the worker finished it."""
        results, notify, timeout = self._results, self._notify, self._timeout
        if results is None:
            return
        try:
            lines = results.lines()
        except TooLong:
            self.broken = True
            self.kill()
            raise WorkerDied(f"it sent a message over {MAX_MESSAGE_BYTES} bytes") from None
        if not lines:
            return
        at: object = None
        for line in lines:
            found = plain_result(line)
            if found is not None:
                params: JSONObject = {"index": found[0]}
                at = found[1]
            else:
                message = self._decode(line)
                params = message.get("params") or {}
                if message.get("method") != "result" or "id" in message:
                    continue  # nothing else belongs on this pipe
                at = params.get("at")
            if notify is not None:
                notify("result", params)
        if timeout is not None:  # results come in order: the last one's time counts
            age = time.monotonic() - at if isinstance(at, float | int) else 0.0
            finished = loop.time() - min(max(age, 0.0), timeout)
            self.deadline = max(self.deadline or 0.0, finished + timeout)

    async def _answer(
        self, request_id: Any, method: str, params: JSONObject, handler: RequestHandler | None
    ) -> None:
        if handler is None:
            not_here = f"{method} is not available here"
            self.send(error_response(request_id, METHOD_NOT_FOUND, not_here))
            return
        try:
            result = await handler(method, params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.send(error_response(request_id, SERVER_ERROR, str(exc), error_data(exc)))
            return
        self.send(response(request_id, result))

    def kill(self) -> None:
        # os.kill, not Popen.kill: the latter polls first and may reap the child under
        # asyncio's child watcher, which then reports a bogus exit status.
        if self.proc.returncode is None and not self._killed:
            self._killed = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Stop the worker (closing its input ends it; a stuck one is killed)."""
        self.broken = True
        if self._results is not None:
            self._results.close()
        stdin = self.proc.stdin
        if stdin is not None:
            with contextlib.suppress(Exception):
                stdin.close()
        try:
            async with asyncio.timeout(1.0):
                await self.proc.wait()
        except TimeoutError:
            self.kill()
            await self.proc.wait()
        if self._stderr_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._stderr_task, 1.0)
