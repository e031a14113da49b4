"""The sandbox's rules at run time: the namespace compiled scripts execute in.

`script_globals` builds it: curated builtins, RestrictedPython's guard hooks (`_getattr_`,
`_write_`, ...) and an importer that only hands out the purpose-built modules of `modules.py`.
The guards refuse a name that is not exactly a `str`, every name starting with an underscore,
the frame/code attributes of generators and tracebacks, `str.format`/`format_map`, `mro` and
`AttributeError.obj`, so no script can walk from an object to the interpreter's internals;
only containers and the script's own objects can be written to. `print` goes to a
`PrintCollector`, capped as the bytes arrive. (What a script may *say* is checked at load time,
in `policy.py`.)
"""

from __future__ import annotations

import builtins
import operator
import re
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from RestrictedPython.Guards import (
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safe_builtins,
)
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from .plain import exact_str

__all__ = ["PrintCollector", "guarded_getattr", "make_importer", "script_globals"]

_FORMAT_METHODS = frozenset({"format", "format_map"})
_EXCEPTION_ATTRIBUTES = frozenset({"obj", "with_traceback"})


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
