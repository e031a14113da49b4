"""The sandbox's rules: what a script may say (checked at load time) and may touch (at run time).

Load time: `check_source` parses the script and runs RestrictedPython's transformer, extended
with our own rules (an allow-list of imports, no builtins that reach outside the sandbox, no
`str.format`), and reports every violation as (line, column, rule). Nothing runs.

Run time: `script_globals` builds the namespace compiled scripts execute in: curated
builtins, RestrictedPython's guard hooks (`_getattr_`, `_write_`, ...) and an importer that only
hands out the purpose-built modules of `modules.py`. The guards refuse every name starting with
an underscore, the frame/code attributes of generators and tracebacks, `str.format`/
`format_map`, `mro` and `AttributeError.obj`, so no script can walk from an object to the
interpreter's internals. Time and memory are not limited here: scripts run in worker
processes with rlimits and a wall-clock deadline (see `worker.py` and `pool.py`).
"""

from __future__ import annotations

import ast
import builtins
import operator
import re
import sys
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any, ClassVar

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
)
from RestrictedPython.transformer import INSPECT_ATTRIBUTES, RestrictingNodeTransformer

from .plain import exact_str

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
    "guarded_getattr",
    "script_globals",
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
        "math",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
        "time",
        "uuid",
    }
)

METHOD_MODULES = ALLOWED_MODULES | {"knot.methods", "scriptling", "scriptling.runtime"}
"""Method scripts also declare methods: `knot.methods`, and Scriptling's `runtime.jsonrpc`."""


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


# -- run time -------------------------------------------------------------------------------


def _refuse_attribute(obj: object, name: object) -> str | None:
    # Exactly `str`, checked before any method of the name is called: a subclass could
    # override `startswith` to hide "__globals__" from the test below (see plain.py).
    if type(name) is not str:
        return "attribute names must be plain strings (not of a str subclass)"
    if name.startswith("_"):
        return f'"{name}" is an invalid attribute name because it starts with "_"'
    if name in INSPECT_ATTRIBUTES:
        return f'"{name}" is a restricted attribute'
    if name in _FORMAT_METHODS and (
        isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))
    ):
        return f"str.{name}() is not allowed; use an f-string"
    if name == "mro" and isinstance(obj, type):
        return '"mro" is a restricted attribute'
    if name in _EXCEPTION_ATTRIBUTES and (
        isinstance(obj, BaseException) or (isinstance(obj, type) and issubclass(obj, BaseException))
    ):
        return f'"{name}" is a restricted attribute of exceptions'
    return None


def guarded_getattr(obj: object, name: str, *default: object) -> Any:
    """`obj.name` and `getattr(obj, name[, default])` as scripts get them."""
    problem = _refuse_attribute(obj, name)
    if problem is not None:
        raise AttributeError(problem)
    return getattr(obj, name, *default)


def _hasattr(obj: object, name: str) -> bool:
    if _refuse_attribute(obj, name) is not None:
        return False
    return hasattr(obj, name)


class _ScriptClasses:
    """Classes a script defines: the only non-container objects it may write attributes on."""

    def __init__(self) -> None:
        self.classes: weakref.WeakSet[type] = weakref.WeakSet()

    def metaclass(self, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
        cls = type(name, bases, namespace)
        self.classes.add(cls)
        return cls

    def writable(self, obj: object) -> bool:
        return type(obj) in self.classes or (isinstance(obj, type) and obj in self.classes)


_CONTAINERS = (dict, list, set, bytearray, deque)


def _make_write_guard(classes: _ScriptClasses) -> Callable[[object], object]:
    def write_guard(obj: object) -> object:
        if isinstance(obj, _CONTAINERS) or classes.writable(obj):
            return obj
        raise TypeError(f"Scripts cannot change {type(obj).__name__} objects.")

    return write_guard


_INPLACE: Mapping[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "|=": operator.ior,
    "^=": operator.ixor,
    "&=": operator.iand,
    "@=": operator.imatmul,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


_PLAIN_BUILTINS = [
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "tuple",
    "zip",
    "NotImplemented",
]


_SURROGATE = re.compile("[\ud800-\udfff]")


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


class PrintCollector:
    """Collects what `print()` writes during one run, capped as it arrives.

    The cap holds for every write: the part of a write past `max_bytes` (UTF-8) is cut off
    before it is kept, so one `print('x' * 10**8)` keeps `max_bytes`, not 100 MB, and the
    output ends with a line saying it was truncated.
    """

    def __init__(self, max_bytes: int = 64 * 1024) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.max_bytes = max_bytes
        self.truncated = False

    def __call__(self, _getattr: object = None) -> PrintCollector:
        # RestrictedPython calls `_print_(_getattr_)` at the top of every function that
        # prints; one shared collector keeps the whole run's output in order.
        return self

    def write(self, text: str) -> None:
        if self.truncated:
            return
        text = exact_str(text, "printed text")
        room = self.max_bytes - self.size
        if len(text) * 4 <= room:  # fits even at four bytes a character
            self.parts.append(text)
            self.size += len(text) if text.isascii() else _utf8_length(text)
            return
        head = text[:room].encode("utf-8", "surrogatepass")  # O(room), however long `text` is
        if len(text) <= room and len(head) <= room:
            self.parts.append(text)
            self.size += len(head)
            return
        self.truncated = True
        kept = head[:room].decode("utf-8", "ignore")  # without a character cut in half
        self.parts.append(kept)
        self.size += _utf8_length(kept)

    def _call_print(self, *objects: object, **kwargs: Any) -> None:
        target = kwargs.get("file")
        if target is None:
            kwargs["file"] = self
        else:
            guarded_getattr(target, "write")
        print(*objects, **kwargs)

    def lines(self) -> list[str]:
        text = "".join(self.parts)
        if not text.isascii():  # a lone surrogate is not text: shown as U+FFFD
            text = _SURROGATE.sub("\ufffd", text)
        lines = text.splitlines()
        if self.truncated:
            lines.append(f"[output truncated at {self.max_bytes} bytes]")
        return lines


def make_importer(modules: Mapping[str, ModuleType]) -> Callable[..., ModuleType]:
    """`__import__` for scripts: only the purpose-built modules, never the real ones."""

    def importer(
        name: str,
        globals: object = None,
        locals: object = None,
        fromlist: Iterable[str] | None = (),
        level: int = 0,
    ) -> ModuleType:
        if level or name not in modules:
            raise ImportError(f"import of {name!r} is not allowed")
        if fromlist:
            return modules[name]
        return modules[name.split(".")[0]]

    return importer


def script_globals(modules: Mapping[str, ModuleType], *, name: str = "script") -> dict[str, Any]:
    """The namespace template scripts run in: copy it per run and set `_print_` in the copy.

    The set of script-defined classes (whose instances may be written to) is shared by all
    runs: no object survives from one run to another, so sharing it lets nothing through, and
    the template is built once instead of per event.
    """
    classes = _ScriptClasses()
    write_guard = _make_write_guard(classes)

    def guarded_setattr(obj: object, attr: str, value: object) -> None:
        problem = _refuse_attribute(obj, attr)
        if problem is not None:
            raise AttributeError(problem)
        setattr(write_guard(obj), attr, value)

    def guarded_delattr(obj: object, attr: str) -> None:
        problem = _refuse_attribute(obj, attr)
        if problem is not None:
            raise AttributeError(problem)
        delattr(write_guard(obj), attr)

    builtins_: dict[str, Any] = {k: v for k, v in safe_builtins.items() if not k.startswith("_")}
    builtins_.update({name: getattr(builtins, name) for name in _PLAIN_BUILTINS})
    builtins_["__build_class__"] = builtins.__build_class__
    builtins_["__import__"] = make_importer(modules)
    builtins_["getattr"] = guarded_getattr
    builtins_["hasattr"] = _hasattr
    builtins_["setattr"] = guarded_setattr
    builtins_["delattr"] = guarded_delattr
    return {
        "__builtins__": builtins_,
        "__name__": name,
        "__metaclass__": classes.metaclass,
        "_getattr_": guarded_getattr,
        "_getitem_": operator.getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": write_guard,
        "_print_": None,
        "_inplacevar_": _inplacevar,
        "_apply_": _apply,
    }
