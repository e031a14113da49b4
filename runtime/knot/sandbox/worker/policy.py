"""The sandbox's rules: what a script may say (checked at load time) and may touch (at run time).

Load time: `check_source` parses the script and runs RestrictedPython's transformer, extended
with our own rules (an allow-list of imports, no builtins that reach outside the sandbox, no
`str.format`), and reports every violation as (line, column, rule). Nothing runs.

What a script may touch when it runs is `guards.py`'s: the namespace compiled code executes
in. Time and memory are not limited here: scripts run in worker processes with rlimits and a
wall-clock deadline (`sink.py`, `wall.py`, and the runtime's `sandbox/process.py`).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from types import CodeType
from typing import Any, ClassVar

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.transformer import RestrictingNodeTransformer

__all__ = [
    "ALLOWED_MODULES",
    "METHOD_MODULES",
    "METHOD_SCRIPTS",
    "SINK_SCRIPTS",
    "CompiledScript",
    "ScriptKind",
    "Violation",
    "check_source",
    "compile_script",
]

ALLOWED_MODULES = frozenset(
    {
        "base64",
        "collections",
        "datetime",
        "functools",
        "hashlib",
        "hmac",
        "itertools",
        "json",
        "knot",
        "knot.event",
        "knot.kv",
        "knot.secrets",
        "math",
        "random",
        "re",
        "requests",
        "scriptling",
        "scriptling.runtime",
        "statistics",
        "string",
        "textwrap",
        "time",
        "uuid",
    }
)

METHOD_MODULES = ALLOWED_MODULES | {"knot.methods"}
"""Method scripts also declare methods: `knot.methods`, and Scriptling's `runtime.jsonrpc`
(on the same `scriptling.runtime` whose `kv` every script has)."""


@dataclass(frozen=True, slots=True)
class ScriptKind:
    """Which scripts a compile is for: the modules they may import, and how to name them."""

    modules: frozenset[str]
    noun: str  # "sink scripts", for messages


SINK_SCRIPTS = ScriptKind(ALLOWED_MODULES, "sink scripts")
METHOD_SCRIPTS = ScriptKind(frozenset(METHOD_MODULES), "method scripts")

# Builtins a script might reach for that the sandbox does not have, and why; refused at load
# time so the author learns it before the first event, not from a NameError in the log.
_MISSING_BUILTINS = {
    "open": "the file system is not available to scripts",
    "input": "scripts cannot read from a terminal",
    "eval": "eval() is not allowed",
    "exec": "exec() is not allowed",
    "compile": "compile() is not allowed",
    "globals": "globals() is not allowed",
    "locals": "locals() is not allowed",
    "vars": "vars() is not allowed",
    "dir": "dir() is not allowed",
    "type": "type() is not allowed; use isinstance()",
    "super": "super() is not allowed",
    "breakpoint": "breakpoint() is not allowed",
    "memoryview": "memoryview() is not allowed",
    "exit": "exit() is not allowed; return from the script or raise an exception",
    "quit": "quit() is not allowed; return from the script or raise an exception",
    "help": "help() is not available to scripts",
    "id": "id() is not available to scripts (it would reveal memory addresses)",
}
_FORMAT_METHODS = frozenset({"format", "format_map"})
_EXCEPTION_ATTRIBUTES = frozenset({"obj", "with_traceback"})


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule at a 1-based line and column."""

    line: int
    col: int
    rule: str


_SEP = "\x00"


class ScriptPolicy(RestrictingNodeTransformer):
    """RestrictedPython's transformer plus the rules of knot scripts, with columns."""

    bound_names: ClassVar[frozenset[str]] = frozenset()
    kind: ClassVar[ScriptKind] = SINK_SCRIPTS

    def error(self, node: ast.AST, info: str) -> None:
        line = getattr(node, "lineno", 0) or 0
        col = (getattr(node, "col_offset", 0) or 0) + 1
        self.errors.append(f"{line}{_SEP}{col}{_SEP}{info.rstrip('.')}")

    def warn(self, node: ast.AST, info: str) -> None:
        # RestrictedPython warns about its `printed` idiom, which scripts do not use.
        return None

    def visit_Import(self, node: ast.Import) -> Any:
        for alias in node.names:
            self._check_module(alias, alias.name)
        return super().visit_Import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        if node.level:
            self.error(node, "relative imports are not allowed")
        elif node.module is not None:
            self._check_module(node, node.module)
            if node.module in ("knot", "scriptling"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    if full not in self.kind.modules:
                        self.error(alias, f"'{full}' is not available to {self.kind.noun}")
        return super().visit_ImportFrom(node)

    def _check_module(self, node: ast.AST, name: str) -> None:
        if name not in self.kind.modules:
            self.error(node, f"import of {name!r} is not allowed")

    def visit_Name(self, node: ast.Name) -> Any:
        if (
            isinstance(node.ctx, ast.Load)
            and node.id in _MISSING_BUILTINS
            and node.id not in self.bound_names
        ):
            self.error(node, _MISSING_BUILTINS[node.id])
        return super().visit_Name(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if (
            node.attr in _FORMAT_METHODS
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            self.error(node, f"str.{node.attr}() is not allowed; use an f-string")
        return super().visit_Attribute(node)


def _bound_names(tree: ast.AST) -> frozenset[str]:
    """Names the script binds itself (so `type = "x"; print(type)` is not refused)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return frozenset(names)


@dataclass(frozen=True, slots=True)
class CompiledScript:
    code: CodeType | None
    violations: tuple[Violation, ...]

    @property
    def ok(self) -> bool:
        return self.code is not None


def compile_script(
    source: str, filename: str, *, kind: ScriptKind = SINK_SCRIPTS
) -> CompiledScript:
    """Parse, check and compile a script; never raises for bad input.

    Compiling recurses once per nesting level of the script, so it runs under at least
    CPython's default recursion limit, also inside a sandbox worker (whose own limit, for the
    scripts it runs, is much lower): a script `knot check` and the runtime accept compiles in
    every worker too.
    """
    limit = sys.getrecursionlimit()
    if limit < COMPILE_RECURSION_LIMIT:
        sys.setrecursionlimit(COMPILE_RECURSION_LIMIT)
    try:
        return _compile(source, filename, kind)
    finally:
        if limit < COMPILE_RECURSION_LIMIT:
            sys.setrecursionlimit(limit)


def _compile(source: str, filename: str, kind: ScriptKind) -> CompiledScript:
    try:
        tree = ast.parse(source, filename, "exec")
    except SyntaxError as exc:
        return CompiledScript(None, (_syntax_violation(exc),))
    except ValueError as exc:  # e.g. source with NUL bytes
        return CompiledScript(None, (Violation(1, 1, f"the script cannot be parsed: {exc}"),))
    except (RecursionError, MemoryError):
        return CompiledScript(None, (_TOO_DEEP,))
    policy = type(
        "BoundScriptPolicy", (ScriptPolicy,), {"bound_names": _bound_names(tree), "kind": kind}
    )
    try:
        result = compile_restricted_exec(tree, filename, policy=policy)
    except SyntaxError as exc:  # raised by compile() itself: `return` outside a function, ...
        return CompiledScript(None, (_syntax_violation(exc),))
    except (RecursionError, MemoryError):
        # The parser, RestrictedPython's transformer and compile() all recurse per nesting
        # level: `1 + 1 + ... + 1` with thousands of terms is a load error, not a crash.
        return CompiledScript(None, (_TOO_DEEP,))
    if result.errors:
        # One violation per position: `eval(...)` is refused both by RestrictedPython and by
        # our missing-builtin rule; the user needs to hear it once.
        violations: dict[tuple[int, int], Violation] = {}
        for v in sorted({_decode(e) for e in result.errors}, key=lambda v: (v.line, v.col, v.rule)):
            violations.setdefault((v.line, v.col), v)
        return CompiledScript(None, tuple(violations.values()))
    return CompiledScript(result.code, ())


COMPILE_RECURSION_LIMIT = 1000  # CPython's default
_TOO_DEEP = Violation(
    1,
    1,
    "the script is nested too deeply to compile (a very long chained expression or deeply "
    "nested brackets); split it into several statements",
)


def check_source(
    source: str, filename: str = "<script>", *, kind: ScriptKind = SINK_SCRIPTS
) -> tuple[Violation, ...]:
    """Every rule `source` breaks; empty when it may run in the sandbox."""
    return compile_script(source, filename, kind=kind).violations


def _decode(raw: str) -> Violation:
    parts = raw.split(_SEP, 2)
    if len(parts) != 3:  # an error recorded by RestrictedPython outside our `error()`
        return Violation(1, 1, raw)
    return Violation(int(parts[0]), int(parts[1]), parts[2])


def _syntax_violation(exc: SyntaxError) -> Violation:
    return Violation(exc.lineno or 1, exc.offset or 1, f"syntax error: {exc.msg}")
