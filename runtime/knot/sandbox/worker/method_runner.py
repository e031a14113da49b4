"""One method script inside its worker: loaded once, its methods called many times, on threads.

Unlike a sink script (run afresh per event), a method script's top level runs once, at load;
its module namespace (the script's state) lives as long as the worker. Each call runs one
declared function on whichever thread the worker gives it, with a thread's own `knot.event`
binding, `print` collector and `time.sleep` deadline. Failures come back as data (a JSON-RPC
error object); nothing a method raises escapes `call`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from ..._json import JSONObject
from ..._jsonrpc import INTERNAL_ERROR, METHOD_NOT_FOUND, SERVER_ERROR, error_object
from .event_module import (
    DEFAULT_LIMITS,
    AskFunction,
    EmitFunction,
    RunBudget,
    RunLimits,
    ThreadEventContext,
    build_knot_module,
    no_ask,
)
from .guards import PrintCollector, script_globals
from .kv_module import build_library_modules
from .method_module import (
    Declaration,
    Declarations,
    JSONRPCError,
    bind_params,
    build_method_modules,
    resolve_handler,
    timed_out,
)
from .modules import SleepBudget, build_modules, warm_up
from .plain import plain_json
from .policy import METHOD_SCRIPTS, Violation, compile_script
from .runner import MAX_OUTPUT_BYTES, ScriptError, describe_failure

__all__ = ["CallCancelled", "CallOutcome", "LoadOutcome", "MethodModule"]


class CallCancelled(BaseException):
    """Raised inside a call that ran past its time (see the worker's `cancel`)."""


class _Unsendable(Exception):
    """A method's result that JSON cannot carry (or nested too deeply)."""


class ThreadSleepBudget(SleepBudget):
    """`time.sleep` for method scripts: each thread sleeps against its own call's deadline."""

    setting = "methods.timeout"

    def __init__(self) -> None:
        self._local = threading.local()
        super().__init__()

    @property
    def deadline(self) -> float:
        value: float = getattr(self._local, "deadline", float("inf"))
        return value

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._local.deadline = value


class ThreadPrints:
    """`_print_` for method scripts: each thread prints into the collector of its call."""

    def __init__(self) -> None:
        self._local = threading.local()

    def bind(self, collector: PrintCollector | None) -> None:
        self._local.collector = collector

    def __call__(self, _getattr: object = None) -> PrintCollector:
        collector: PrintCollector | None = getattr(self._local, "collector", None)
        if collector is None:  # a thread of the script's own making cannot exist; be safe
            collector = PrintCollector()
            self._local.collector = collector
        return collector


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    methods: list[Declaration] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    violations: tuple[Violation, ...] = ()
    error: ScriptError | None = None


@dataclass(frozen=True, slots=True)
class CallOutcome:
    result: Any = None
    error: JSONObject | None = None
    output: list[str] = field(default_factory=list)
    directives: list[JSONObject] = field(default_factory=list)

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"ok": self.error is None}
        if self.error is None:
            out["result"] = self.result
        else:
            out["error"] = self.error
        if self.output:
            out["output"] = self.output
        if self.directives:
            out["directives"] = self.directives
        return out


@dataclass(frozen=True, slots=True)
class _Method:
    name: str
    function: Callable[..., Any]
    params: tuple[str, ...] | None
    notification: bool


def _no_emit(event_type: str, payload: str) -> str:
    raise RuntimeError("knot.event.emit() is only available while a method handles a call")


class MethodModule:
    """The sandbox of one method script: its modules, its namespace and its declared methods."""

    def __init__(self) -> None:
        self.context = ThreadEventContext()
        self.budget = ThreadSleepBudget()
        self.prints = ThreadPrints()
        self.declarations = Declarations()
        knot = build_knot_module(self.context)
        library = build_library_modules(self.context, knot)
        extra = build_method_modules(self.declarations)
        knot.methods = extra["knot.methods"]  # type: ignore[attr-defined]
        extra["scriptling.runtime"].kv = library["knot.kv"]  # type: ignore[attr-defined]
        self.modules = {**build_modules(knot, self.budget), **library, **extra}
        self.name = "script"
        self.filename = ""
        self.namespace: dict[str, Any] = {}
        self.methods: dict[str, _Method] = {}

    def warm_up(self) -> None:
        warm_up(self.modules)

    def load(
        self,
        name: str,
        source: str,
        filename: str,
        *,
        timeout: float,
        ask: AskFunction = no_ask,
        limits: RunLimits = DEFAULT_LIMITS,
    ) -> LoadOutcome:
        """Compile the script and run its top level once (declaring its methods). The top
        level may use `requests`, `knot.kv` and `knot.secrets` (through `ask`), within
        `limits`, but not emit."""
        compiled = compile_script(source, filename, kind=METHOD_SCRIPTS)
        if compiled.code is None:
            return LoadOutcome(violations=compiled.violations)
        return self._run_top_level(name, filename, compiled.code, timeout, ask, limits)

    def _run_top_level(
        self,
        name: str,
        filename: str,
        code: CodeType,
        timeout: float,
        ask: AskFunction,
        limits: RunLimits,
    ) -> LoadOutcome:
        self.name, self.filename = name, filename
        namespace = script_globals(self.modules, name=name)
        namespace["_print_"] = self.prints
        collector = PrintCollector()
        self.prints.bind(collector)
        self.context.bind({}, _no_emit, RunBudget(limits), ask)
        self.budget.deadline = time.monotonic() + timeout
        self.declarations.start(filename)
        try:
            exec(code, namespace)
            declared = self.declarations.close()
            methods = {
                d.name: _Method(
                    d.name, resolve_handler(d.handler, namespace), d.params, d.notification
                )
                for d in declared
            }
        except BaseException as exc:  # the script's failure is data, whatever it raised
            self.declarations.close()
            return LoadOutcome(output=collector.lines(), error=describe_failure(exc, filename))
        finally:
            self.budget.deadline = float("inf")
            self.prints.bind(None)
        self.namespace = namespace
        self.methods = methods
        return LoadOutcome(declared, collector.lines())

    def call(
        self,
        method: str,
        params: Any,
        event: JSONObject | None,
        emit: EmitFunction,
        *,
        timeout: float,
        budget: RunBudget | None = None,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        ask: AskFunction = no_ask,
    ) -> CallOutcome:
        """Run one call on this thread; every failure becomes a JSON-RPC error object.

        The result is copied to plain JSON here, on the call's clock: a result that is not
        JSON (or nests too deeply) is the method's error, not the worker's."""
        found = self.methods.get(method)
        if found is None:
            error = error_object(METHOD_NOT_FOUND, f"{self.name} has no method {method!r}.")
            return CallOutcome(error=error)
        collector = PrintCollector(max_output_bytes)
        self.prints.bind(collector)
        self.context.bind(event or {}, emit, budget or RunBudget(DEFAULT_LIMITS), ask)
        self.budget.deadline = time.monotonic() + timeout
        result: Any = None
        failure: JSONObject | None = None
        try:
            result = found.function(bind_params(f"{self.name}.{method}", found.params, params))
            if isinstance(result, JSONRPCError):  # Scriptling's `return runtime.jsonrpc.error()`
                failure, result = result.to_dict(), None
            elif not found.notification:
                result = self._sendable(method, result)
        except _Unsendable as exc:
            failure = error_object(
                INTERNAL_ERROR,
                f"The method {method} failed: its result cannot be sent as JSON ({exc}).",
            )
        except JSONRPCError as exc:
            failure = exc.to_dict()
        except CallCancelled:
            failure = timed_out(f"{self.name}.{method}", timeout)
        except BaseException as exc:  # the method's failure is data, whatever it raised
            failure = self._raised(method, describe_failure(exc, self.filename))
        finally:
            self.budget.deadline = float("inf")
        directives = self.context.directives
        self.context.bind({}, _no_emit)
        self.prints.bind(None)
        if found.notification:
            result = None
        return CallOutcome(result, failure, collector.lines(), directives)

    def _sendable(self, method: str, result: Any) -> Any:
        try:
            return plain_json(result, f"the result of {self.name}.{method}")
        except (TypeError, ValueError) as exc:
            raise _Unsendable(str(exc)) from None

    def _raised(self, method: str, error: ScriptError) -> JSONObject:
        where = f"{self.filename}:{error.line}" if error.line else self.filename
        detail = f": {error.message}" if error.message else ""
        if error.kind == "memory":
            message = (
                f"The method {self.name}.{method} ran out of memory ({where}; methods.memory_mb)."
            )
        elif error.kind == "recursion":
            message = f"The method {self.name}.{method} recursed too deeply ({where})."
        else:
            message = f"The method {self.name}.{method} raised {error.type}{detail} ({where})."
        data = {"type": error.type, "message": error.message, "line": error.line}
        return error_object(SERVER_ERROR, message, data)
