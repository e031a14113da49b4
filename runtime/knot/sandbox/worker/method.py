"""The method-script worker process: one per method script, alive as long as its version is.

It speaks newline-delimited JSON-RPC 2.0 with the runtime over stdin/stdout, both ways:

  runtime → worker   load {name, source, filename, timeout}, once: compile the script and run
                     its top level (declaring its methods); call {method, params, event?,
                     timeout, max_emits}, or call {method, batch: [{params, event}, ...],
                     timeout, max_emits} (the calls of a subscription, in order); ping;
                     notification cancel {id}: call `id` ran out of time
  worker → runtime   notification ready {pid}, once; request emit {call, index, type, payload}
                     → {id}; notification progress {call}: one call of a batch is done

`load` answers {methods: [...], output} (or an error: -32001 with the broken rules as
`file:line:col` data, -32003 with what the top level raised). `call` answers {ok, result |
error: {code, message, data}, output?, directives?}: the method's own JSON-RPC outcome; a batch
answers {results: [outcome, ...]}, stopping after the first that failed.

Threads: the main thread reads the pipe; calls run on a fixed set of threads started after
Landlock is up (it confines only threads started after it) and before seccomp and the rlimits
(RLIMIT_NPROC = 0 forbids new ones later): `wall.lockdown(start_threads=...)`. A serial
method runs one call at a time, the others waiting here in arrival order; concurrent methods
take any free thread (up to `--threads` at once). A call past its time is cancelled by
raising CallCancelled in its thread (PyThreadState_SetAsyncExc) while it runs script code,
never while it talks to the runtime; one stuck in a single C call does not notice, and the
runtime kills the worker after a grace period. Limits otherwise as `sink.py`.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..._json import JSONObject
from ..._jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    LOAD_FAILED,
    METHOD_NOT_FOUND,
    SCRIPT_REJECTED,
    SERVER_ERROR,
    encode,
    error_object,
    request_text,
    response_text,
    with_member,
)
from .event_module import DEFAULT_LIMITS, RunBudget, RunLimits, RuntimeRefused, over_limit_text
from .method_module import timed_out
from .method_runner import CallCancelled, CallOutcome, MethodModule
from .runner import MAX_OUTPUT_BYTES
from .sink import Pipe, announce, isolate, worker_options
from .wall import lockdown

__all__ = ["main"]


class _Waiter:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: Any = None


class SharedPipe(Pipe):
    """The pipe to the runtime, shared by the reader and every call thread."""

    def __init__(self, out_fd: int) -> None:
        super().__init__(out_fd)
        self._write_lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._counter = itertools.count(1)

    def send_text(self, line: str) -> None:
        with self._write_lock:
            super().send_text(line)

    def call(self, method: str, params: JSONObject, raw: str = "") -> Any:
        """A request to the runtime from a call thread; the reader thread hands us the answer.

        `raw` is JSON text spliced into the params as the member `payload` (already encoded)."""
        request_id = self.new_id()
        encoded = encode(params)  # first: params that are not JSON fail before any write
        if raw:
            encoded = with_member(encoded, "payload", raw)
        waiter = _Waiter()
        self._waiters[request_id] = waiter
        self.send_text(request_text(request_id, method, encoded))
        waiter.done.wait()
        if waiter.error is not None:
            raise RuntimeRefused.from_error(waiter.error)
        return waiter.result

    def call_inline(self, method: str, params: JSONObject, raw: str = "") -> Any:
        """A request made from the reader thread itself (a script's top level, while it
        loads): nothing else is in flight, so it reads its own answer."""
        return Pipe.call(self, method, params, raw)

    def new_id(self) -> str:
        return f"w{next(self._counter)}"

    def resolve(self, message: JSONObject) -> None:
        waiter = self._waiters.pop(str(message.get("id")), None)
        if waiter is None:
            return
        error = message.get("error")
        if isinstance(error, dict):
            waiter.error = error
        else:
            waiter.result = message.get("result")
        waiter.done.set()


@dataclass(eq=False)
class _Call:
    id: Any
    method: str
    items: list[tuple[Any, JSONObject | None]]  # (params, event) per call; several in a batch
    batch: bool
    timeout: float
    serial: bool
    limits: RunLimits = DEFAULT_LIMITS  # per call (each call of a batch has its own budget)
    max_output_bytes: int = MAX_OUTPUT_BYTES
    state: str = "queued"  # queued → running ⇄ talking → done; or cancelled / cancel_asked
    thread: int = 0


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in another thread at its next bytecode (None: forget a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc is not None else None
    )


class Calls:
    """Schedules calls onto the worker's threads: serial methods one at a time, in order."""

    def __init__(self, module: MethodModule, pipe: SharedPipe, threads: int) -> None:
        self.module = module
        self.pipe = pipe
        self.jobs: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.calls: dict[Any, _Call] = {}
        self.busy: set[str] = set()  # serial methods with a call on a thread
        self.waiting: dict[str, deque[_Call]] = {}
        self.threads = max(1, threads)

    def start(self) -> None:
        """Start the call threads (once the walls they must be inside are up)."""
        for n in range(self.threads):
            threading.Thread(target=self._work, name=f"call-{n}", daemon=True).start()

    def submit(self, call: _Call) -> None:
        with self.lock:
            self.calls[call.id] = call
            if call.serial:
                if call.method in self.busy:
                    self.waiting.setdefault(call.method, deque()).append(call)
                    return
                self.busy.add(call.method)
        self.jobs.put(call)

    def cancel(self, call_id: Any) -> None:
        with self.lock:
            call = self.calls.get(call_id)
            if call is None:
                return
            if call.state == "running":
                call.state = "cancelled"
                _raise_in(call.thread, CallCancelled)
            elif call.state == "talking":  # never interrupt a write to the pipe: ask instead
                call.state = "cancel_asked"
            elif call.state == "queued":
                call.state = "cancelled"

    def _work(self) -> None:
        while True:
            call = self.jobs.get()
            try:
                self._run(call)
            except BaseException:  # a thread must survive whatever a call did
                self._reply(call, [CallOutcome(error=_internal(call, "the call failed"))])
            self._next(call)

    def _run(self, call: _Call) -> None:
        me = threading.get_ident()
        with self.lock:
            cancelled = call.state == "cancelled"
            if not cancelled:
                call.state, call.thread = "running", me
        if cancelled:
            self._reply(call, [CallOutcome(error=timed_out(self._name(call), call.timeout))])
            return
        outcomes: list[CallOutcome] = []
        try:
            try:
                for index, (params, event) in enumerate(call.items):
                    budget = RunBudget(call.limits)
                    outcome = self.module.call(
                        call.method,
                        params,
                        event,
                        self._emitter(call, index),
                        timeout=call.timeout,
                        budget=budget,
                        max_output_bytes=call.max_output_bytes,
                        ask=self._asker(call, index),
                    )
                    if budget.exceeded is not None:  # failed, whatever the method did with it
                        outcome = self._over_budget(call, outcome, budget)
                    outcomes.append(outcome)
                    if outcome.error is not None or index == len(call.items) - 1:
                        break
                    # The runtime's clock for this call starts over for the next one.
                    self._talk(call, lambda: self.pipe.notify("progress", {"call": call.id}))
            finally:
                with self.lock:
                    if call.state == "cancelled":
                        _raise_in(me, None)  # a cancel that came as the method returned
                    call.state = "done"
        except CallCancelled:
            outcomes.append(CallOutcome(error=timed_out(self._name(call), call.timeout)))
        self._reply(call, outcomes)

    def _talk(self, call: _Call, say: Callable[[], Any]) -> Any:
        """Talk to the runtime from a call's thread: a cancel waits until the pipe is free."""
        with self.lock:
            if call.state == "cancelled":  # cancelled just now: stop before the pipe
                raise CallCancelled()
            call.state = "talking"
        try:
            return say()
        finally:
            with self.lock:
                asked = call.state == "cancel_asked"
                call.state = "cancelled" if asked else "running"
            if asked:
                raise CallCancelled()

    def _emitter(self, call: _Call, index: int) -> Any:
        def emit(event_type: str, payload: str) -> str:
            params = {"call": call.id, "index": index, "type": event_type}
            answer = self._talk(call, lambda: self.pipe.call("emit", params, payload))
            return str(answer["id"])

        return emit

    def _asker(self, call: _Call, index: int) -> Any:
        def ask(method: str, params: JSONObject, raw: str) -> Any:
            sent = {"call": call.id, "index": index, **params}
            return self._talk(call, lambda: self.pipe.call(method, sent, raw))

        return ask

    def _over_budget(self, call: _Call, outcome: CallOutcome, budget: RunBudget) -> CallOutcome:
        exceeded = budget.exceeded
        assert exceeded is not None
        setting, limit = exceeded.setting, exceeded.limit
        error = error_object(
            SERVER_ERROR,
            f"The method {self._name(call)} {over_limit_text(setting, limit)} "
            f"in one call (methods.{setting} = {limit}).",
            {"reason": setting, setting: limit},
        )
        return CallOutcome(None, error, outcome.output, outcome.directives)

    def _name(self, call: _Call) -> str:
        return f"{self.module.name}.{call.method}"

    def _reply(self, call: _Call, outcomes: list[CallOutcome]) -> None:
        """Answer a call with its last outcome, or a batch with all of them; an outcome that
        cannot be sent as JSON becomes an internal error (and ends the batch there)."""
        encoded: list[str] = []
        for outcome in outcomes if call.batch else outcomes[-1:]:
            try:
                encoded.append(encode(outcome.to_dict()))
            except Exception as exc:
                problem = f"its result cannot be sent as JSON ({exc})"
                failed = CallOutcome(None, _internal(call, problem), outcome.output, [])
                encoded.append(encode(failed.to_dict()))
                break
        result = f'{{"results":[{",".join(encoded)}]}}' if call.batch else encoded[0]
        self.pipe.send_text(response_text(call.id, result))

    def _next(self, call: _Call) -> None:
        with self.lock:
            self.calls.pop(call.id, None)
            if not call.serial:
                return
            waiting = self.waiting.get(call.method)
            if not waiting:
                self.busy.discard(call.method)
                return
            following = waiting.popleft()
        self.jobs.put(following)


def _internal(call: _Call, problem: str) -> JSONObject:
    return error_object(INTERNAL_ERROR, f"The method {call.method} failed: {problem}.")


class MethodWorker:
    """The reader loop: loads the script once, then hands calls to `Calls`."""

    def __init__(self, pipe: SharedPipe, module: MethodModule, threads: int) -> None:
        self.pipe = pipe
        self.module = module
        self.calls = Calls(module, pipe, threads)
        self.loaded = False
        self.serial: frozenset[str] = frozenset()

    def serve(self) -> None:
        pipe = self.pipe
        while True:
            message = pipe.receive()
            if message is None:
                return
            method = message.get("method")
            if method is None:
                pipe.resolve(message)  # the runtime's answer to one of our emits
                continue
            request_id = message.get("id")
            params = message.get("params") or {}
            try:
                if method == "call":
                    batch = params.get("batch")
                    items = (
                        [(item.get("params"), item.get("event")) for item in batch]
                        if isinstance(batch, list) and batch
                        else [(params.get("params"), params.get("event"))]
                    )
                    self.calls.submit(
                        _Call(
                            request_id,
                            str(params["method"]),
                            items,
                            isinstance(batch, list) and bool(batch),
                            float(params.get("timeout", 30.0)),
                            params["method"] in self.serial,
                            RunLimits.from_params(params),
                            int(params.get("max_output_bytes", MAX_OUTPUT_BYTES)),
                        )
                    )
                elif method == "cancel":
                    self.calls.cancel(params.get("id"))
                elif method == "load":
                    self.load(request_id, params)
                elif method == "ping":
                    pipe.respond(request_id, {"pid": os.getpid()})
                else:
                    pipe.fail(request_id, METHOD_NOT_FOUND, f"unknown method {method!r}")
            except (KeyError, TypeError, ValueError) as exc:
                pipe.fail(request_id, INVALID_PARAMS, f"bad params: {exc}")

    def load(self, request_id: Any, params: JSONObject) -> None:
        if self.loaded:
            channel_error = f"this worker runs {self.module.name} already; start another"
            self.pipe.fail(request_id, INTERNAL_ERROR, channel_error)
            return
        outcome = self.module.load(
            str(params["name"]),
            str(params["source"]),
            str(params.get("filename") or params["name"]),
            timeout=float(params.get("timeout", 30.0)),
            ask=self.pipe.call_inline,
            limits=RunLimits.from_params(params),
        )
        if outcome.violations:
            rules = [{"line": v.line, "col": v.col, "rule": v.rule} for v in outcome.violations]
            self.pipe.fail(request_id, SCRIPT_REJECTED, "the script breaks the rules", rules)
        elif outcome.error is not None:
            raised = {**outcome.error.to_dict(), "output": outcome.output}
            self.pipe.fail(request_id, LOAD_FAILED, "the script failed to load", raised)
        else:
            self.loaded = True
            self.serial = frozenset(d.name for d in outcome.methods if d.mode == "serial")
            methods = [d.to_dict() for d in outcome.methods]
            self.pipe.respond(request_id, {"methods": methods, "output": outcome.output})


def main(argv: Sequence[str] | None = None) -> int:
    options = worker_options(
        sys.argv[1:] if argv is None else argv, memory_mb=256, parent=0, threads=8
    )
    out_fd = isolate(options["parent"])
    module = MethodModule()
    pipe = SharedPipe(out_fd)
    worker = MethodWorker(pipe, module, options["threads"])
    walls = lockdown(
        memory_mb=options["memory_mb"],
        keep_fds=(out_fd,),
        warm_up=module.warm_up,
        start_threads=worker.calls.start,  # inside Landlock, before seccomp and RLIMIT_NPROC
    )
    announce(pipe, walls)
    try:
        worker.serve()
    except MemoryError:
        os._exit(70)
    sys.stdout.flush()
    os._exit(0)  # the call threads are daemons; do not wait for one stuck in a script


if __name__ == "__main__":
    sys.exit(main())
