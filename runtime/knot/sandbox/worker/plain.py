"""Values a script hands to the worker's own code, copied to exact builtin types first.

A script may subclass `str`, `dict`, `list`, `int` or `float` and override any of their
methods, `__eq__`, `__hash__` and `__str__` included (RestrictedPython allows dunder methods in
a class body). Code of ours that called a method of such a value would run the script's code
and believe what it said: the attribute guard once asked `name.startswith("_")` of a name and
was told "no" about `__globals__`. So a value crossing from a script into the sandbox's own code
(an attribute name, a regex pattern, an emitted payload, a directive, a method's result) is
copied first, through the base types' own slots (`str.__str__(v)`, `dict.items(v)`), which never
dispatch to an override, and checked for what JSON allows. Copies are made iteratively: the
worker's recursion limit is low and a script can nest values as deeply as memory allows.
"""

from __future__ import annotations

import math
from typing import Any

from ..._json import MAX_JSON_DEPTH

__all__ = ["check_text", "exact_float", "exact_int", "exact_str", "plain_json"]


def _kind(value: object) -> str:
    for base, name in ((str, "a string"), (dict, "a dict"), (list, "a list"), (int, "a number")):
        if isinstance(value, base):
            return name
    if value is None:
        return "None"
    return "an object of a class of its own" if not isinstance(value, float) else "a number"


def exact_str(value: object, what: str) -> str:
    """`value` as an exact `str` (a subclass's text, never its overrides), or TypeError."""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)  # the base slot: a copy of the text, whatever was overridden
    raise TypeError(f"{what} must be a string, not {_kind(value)}")


def exact_int(value: object, what: str) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int.__int__(value)
    raise TypeError(f"{what} must be an integer, not {_kind(value)}")


def exact_float(value: object, what: str) -> float:
    """An int or float as an exact float (never a subclass whose arithmetic a script wrote)."""
    if type(value) is float:
        return value
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number, not a boolean")
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, int):
        return float(int.__int__(value))
    raise TypeError(f"{what} must be a number, not {_kind(value)}")


def check_text(text: str, what: str) -> str:
    """`text` itself, or ValueError when it holds a lone surrogate: JSON can escape one, but it
    is not text, and nothing downstream (the store, HTTP answers, a terminal) could encode it."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} holds a lone surrogate, which is not text") from None
    return text


def plain_json(value: object, what: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A copy of `value` made of exact dict, list, str, int, float, bool and None.

    Tuples become lists. Raises TypeError for anything JSON cannot hold (a set, a function,
    a non-string key) and ValueError for NaN or infinity, a lone surrogate in a string, or
    nesting deeper than `max_depth`.
    """
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, slot, depth = stack.pop()
        kind = type(item)
        copy: Any
        if item is None or kind is bool:
            copy = item
        elif issubclass(kind, str):
            copy = check_text(item if kind is str else str.__str__(item), what)
        elif issubclass(kind, int):
            copy = item if kind is int else int.__int__(item)
        elif issubclass(kind, float):
            copy = item if kind is float else float.__float__(item)
            if not math.isfinite(copy):
                raise ValueError(f"{what} holds {copy}, which is not a JSON number")
        elif issubclass(kind, dict | list | tuple):
            if depth >= max_depth:
                raise ValueError(f"{what} nests deeper than {max_depth} levels")
            if issubclass(kind, dict):
                copy = {}
                for key, member in dict.items(item):
                    if not isinstance(key, str):
                        raise TypeError(f"{what} has a key that is not a string: {_kind(key)}")
                    name = check_text(key if type(key) is str else str.__str__(key), what)
                    copy[name] = None
                    stack.append((member, copy, name, depth + 1))
            else:
                members: list[Any] = list(
                    list.__iter__(item) if issubclass(kind, list) else tuple.__iter__(item)
                )
                copy = [None] * len(members)
                stack.extend((m, copy, i, depth + 1) for i, m in enumerate(members))
        else:
            raise TypeError(f"{what} holds {_kind(item)}, which JSON cannot represent")
        parent[slot] = copy
    return root[0]
