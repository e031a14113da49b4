"""Running compiled sink scripts on events, inside a worker process.

`ScriptRunner` keeps one compiled version per script name (replaced when the source changes)
and runs it once per event in a fresh namespace, collecting `print` output, directives and
emits. Failures come back as data (`ScriptError`) for the parent to phrase; nothing a script
raises, `SystemExit` and `MemoryError` included, escapes `run_one`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from types import CodeType, TracebackType

from ..._json import JSONObject
from .event_module import (
    DEFAULT_LIMITS,
    AskFunction,
    EmitFunction,
    EventContext,
    RunBudget,
    RunLimits,
    build_knot_module,
    no_ask,
)
from .guards import PrintCollector, script_globals
from .kv_module import build_library_modules
from .modules import SleepBudget, build_modules, warm_up
from .policy import Violation, compile_script

__all__ = ["MAX_OUTPUT_BYTES", "RunOutcome", "ScriptError", "ScriptRunner", "describe_failure"]

MAX_OUTPUT_BYTES = 64 * 1024  # what `print` may write in one run, by default


@dataclass(frozen=True, slots=True)
class ScriptError:
    kind: str  # "exception", "memory", "recursion", "limit" (past a RunLimits setting)
    type: str  # the exception class name
    message: str  # for "limit": the setting (max_emits, ...)
    line: int  # the script line it was raised at (0 when unknown)

    def to_dict(self) -> JSONObject:
        return {"kind": self.kind, "type": self.type, "message": self.message, "line": self.line}


@dataclass(frozen=True, slots=True)
class RunOutcome:
    output: list[str]
    directives: list[JSONObject]
    error: ScriptError | None = None

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"output": self.output, "directives": self.directives}
        if self.error is not None:
            out["error"] = self.error.to_dict()
        return out


@dataclass(frozen=True, slots=True)
class _Loaded:
    digest: str
    code: CodeType
    filename: str


class ScriptRunner:
    """The sandbox inside one process: modules, builtins and compiled scripts."""

    def __init__(self) -> None:
        self.context = EventContext()
        self.budget = SleepBudget()
        knot = build_knot_module(self.context)
        library = build_library_modules(self.context, knot)
        self.modules = {**build_modules(knot, self.budget), **library}
        self.namespace = script_globals(self.modules)
        self.scripts: dict[str, _Loaded] = {}

    def warm_up(self) -> None:
        warm_up(self.modules)

    def has(self, name: str, digest: str) -> bool:
        loaded = self.scripts.get(name)
        return loaded is not None and loaded.digest == digest

    def load(self, name: str, digest: str, source: str, filename: str) -> tuple[Violation, ...]:
        """Compile and keep `source` as the current version of `name`."""
        compiled = compile_script(source, filename)
        if compiled.code is None:
            return compiled.violations
        self.scripts[name] = _Loaded(digest, compiled.code, filename)
        return ()

    def run_one(
        self,
        name: str,
        event: JSONObject,
        emit: EmitFunction,
        *,
        timeout: float,
        limits: RunLimits = DEFAULT_LIMITS,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        ask: AskFunction = no_ask,
    ) -> RunOutcome:
        loaded = self.scripts[name]
        collector = PrintCollector(max_output_bytes)
        budget = RunBudget(limits)
        self.context.bind(event, emit, budget, ask)
        self.budget.deadline = time.monotonic() + timeout
        namespace = self.namespace.copy()
        namespace["_print_"] = collector
        error: ScriptError | None = None
        try:
            exec(loaded.code, namespace)
        except BaseException as exc:  # the script's failure is data, whatever it raised
            error = describe_failure(exc, loaded.filename)
        finally:
            self.budget.deadline = float("inf")
        directives = self.context.directives
        self.context.bind({}, _unbound_emit)
        if budget.exceeded is not None:  # failed, whatever the script did with the error
            error = over_limit(budget, error)
        return RunOutcome(collector.lines(), directives, error)


def over_limit(budget: RunBudget, error: ScriptError | None) -> ScriptError:
    """The run failed on a limit of its budget, whatever the script did with the error."""
    assert budget.exceeded is not None
    line = error.line if error is not None else 0
    return ScriptError("limit", "RunLimitReached", budget.exceeded.setting, line)


def _unbound_emit(event_type: str, payload: str) -> str:
    raise RuntimeError("knot.event.emit() is only available while a script handles an event")


def describe_failure(exc: BaseException, filename: str) -> ScriptError:
    """What a script raised, as data: its kind, type, message and the script line."""
    line = _script_line(exc.__traceback__, filename)
    if isinstance(exc, MemoryError):
        kind = "memory"
    elif isinstance(exc, RecursionError):
        kind = "recursion"
    else:
        kind = "exception"
    try:
        message = str(exc)
    except Exception:  # a script-defined __str__ may itself fail
        message = ""
    if len(message) > 2000:
        message = message[:2000] + "..."
    return ScriptError(kind, type(exc).__name__, message, line)


def _script_line(tb: TracebackType | None, filename: str) -> int:
    """The innermost line of the script itself (not of a module it called into)."""
    line = 0
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def set_recursion_limit(frames: int) -> None:
    sys.setrecursionlimit(frames)
