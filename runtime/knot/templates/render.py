"""How a parsed template runs: the data an event offers, fields, values, functions and nodes.

Knot's functions are `json`, `quote` (escapes `"` only, as Knot's does), `toUpper`, `toLower` and
`map "k" v ...`; Go's `and`, `or`, `not`, `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `len`, `index` and
`print` make `if` useful. Where Go would print `<no value>` or `map[k:v]`, a missing field prints
nothing and a map or list prints as JSON: a body template's job is to produce JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .._events import Event

__all__ = [
    "FUNCTIONS",
    "MAX_OUTPUT_CHARS",
    "MAX_RANGE_STEPS",
    "Emit",
    "Eval",
    "Failed",
    "Function",
    "Output",
    "RenderError",
    "Root",
    "Value",
    "action_node",
    "block_node",
    "chain",
    "field_of",
    "json_of",
    "kind_of",
    "path",
    "template_context",
    "text_node",
    "text_of",
    "truth",
]

Value = Any
Eval = Callable[[Value, "Root"], Value]  # (dot, root) -> value
Emit = Callable[[Value, "Root", list[str]], None]  # (dot, root, output)

# What one rendering may cost. Rendering runs on the event loop, and a template comes from
# whoever may create a sink while the data comes from whoever raises events: without a bound,
# `range` nested over a list from the payload (or many `json .event.data`) would stall the
# runtime or fill its memory. A body is far below these; a bomb fails that delivery.
MAX_OUTPUT_CHARS = 8 * 1024 * 1024
MAX_RANGE_STEPS = 100_000


class Root(dict[str, Any]):
    """The root data of one rendering, plus the event's ready-made data JSON and what is
    left of the rendering's budget of `range` iterations."""

    __slots__ = ("data_json", "steps")
    data_json: str
    steps: int

    def __init__(self, *args: Any, data_json: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.data_json = data_json
        self.steps = MAX_RANGE_STEPS


class Output(list[str]):
    """The pieces a rendering writes, refusing to grow past MAX_OUTPUT_CHARS."""

    __slots__ = ("room",)

    def __init__(self) -> None:
        super().__init__()
        self.room = MAX_OUTPUT_CHARS

    def append(self, text: str) -> None:
        self.room -= len(text)
        if self.room < 0:
            raise Failed(f"the rendered body is over {MAX_OUTPUT_CHARS} characters", 0)
        super().append(text)


def template_context(event: Event, *, custom: Mapping[str, Any] | None = None) -> Root:
    """The data a template sees for `event`.

    `.custom` is Knot's custom scope, as `knot.event.custom()` gives it to scripts: the payload
    of a custom event, empty for a system event; `custom` replaces it (embedders' own fields).
    """
    if custom is None:
        custom = event.data if event.type.startswith("custom.") else {}
    space = event.space
    return Root(
        event={"id": event.id, "type": event.type, "ts": event.ts, "data": event.data},
        space={"id": space.id, "name": space.name, "urls": list(space.urls)}
        if space
        else {"id": "", "name": "", "urls": []},
        actor=event.actor.to_dict(),
        custom=dict(custom or {}),
        data_json=event.data_json,
    )


# -- values -------------------------------------------------------------------------------


def text_of(value: Value) -> str:
    """How an action prints a value."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, int):
        return str(value)
    return json_of(value)


def json_of(value: Value, root: Root | None = None) -> str:
    if root is not None and root.data_json and value is root["event"]["data"]:
        encoded: str = root.data_json
        return encoded  # the journal already encoded it, in this exact form
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RenderError(f"json cannot encode this value: {exc}") from None


def truth(value: Value) -> bool:
    """Go's notion of true: not false, 0, nil, or an empty string, list or map."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | list | dict | tuple):
        return len(value) > 0
    return True


class RenderError(Exception):
    """A function or field failed on this event's data (becomes a TemplateError)."""


def _fn_map(*args: Value) -> dict[str, Value]:
    if len(args) % 2:
        raise RenderError("map needs key/value pairs: an even number of arguments")
    out: dict[str, Value] = {}
    for key, value in zip(args[::2], args[1::2], strict=True):
        if not isinstance(key, str):
            raise RenderError(f"map keys must be strings, not {kind_of(key)}")
        out[key] = value
    return out


def _fn_len(value: Value) -> int:
    if isinstance(value, str | list | dict | tuple):
        return len(value)
    raise RenderError(f"len of {kind_of(value)}")


def _fn_index(value: Value, *keys: Value) -> Value:
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key) if isinstance(key, str) else None
        elif isinstance(value, list | tuple | str):
            if isinstance(key, bool) or not isinstance(key, int):
                raise RenderError(f"cannot index {kind_of(value)} with {kind_of(key)}")
            if not 0 <= key < len(value):
                raise RenderError(f"index {key} out of range (length {len(value)})")
            value = value[key]
        elif value is None:
            return None
        else:
            raise RenderError(f"cannot index {kind_of(value)}")
    return value


def _compare(name: str, op: Callable[[Value, Value], bool]) -> Callable[[Value, Value], bool]:
    def compare(a: Value, b: Value) -> bool:
        numbers = isinstance(a, int | float) and isinstance(b, int | float)
        if not numbers and not (isinstance(a, str) and isinstance(b, str)):
            raise RenderError(
                f"{name} compares two numbers or two strings, not {kind_of(a)} and {kind_of(b)}"
            )
        return op(a, b)

    return compare


def _fn_print(*args: Value) -> str:
    # Go's fmt.Sprint: a space between operands when neither side is a string.
    out: list[str] = []
    for i, arg in enumerate(args):
        if i and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(text_of(arg))
    return "".join(out)


def _fn_and(*args: Value) -> Value:
    for arg in args[:-1]:
        if not truth(arg):
            return arg
    return args[-1]


def _fn_or(*args: Value) -> Value:
    for arg in args[:-1]:
        if truth(arg):
            return arg
    return args[-1]


@dataclass(frozen=True, slots=True)
class Function:
    call: Callable[..., Value]
    min_args: int
    max_args: int | None  # None: any number
    even: bool = False  # map: key/value pairs


FUNCTIONS: Mapping[str, Function] = {
    "json": Function(json_of, 1, 1),
    "quote": Function(lambda v: text_of(v).replace('"', '\\"'), 1, 1),
    "toUpper": Function(lambda v: text_of(v).upper(), 1, 1),
    "toLower": Function(lambda v: text_of(v).lower(), 1, 1),
    "map": Function(_fn_map, 0, None, even=True),
    "and": Function(_fn_and, 1, None),
    "or": Function(_fn_or, 1, None),
    "not": Function(lambda v: not truth(v), 1, 1),
    "eq": Function(lambda a, *bs: any(a == b for b in bs), 2, None),
    "ne": Function(lambda a, b: a != b, 2, 2),
    "lt": Function(_compare("lt", lambda a, b: a < b), 2, 2),
    "le": Function(_compare("le", lambda a, b: a <= b), 2, 2),
    "gt": Function(_compare("gt", lambda a, b: a > b), 2, 2),
    "ge": Function(_compare("ge", lambda a, b: a >= b), 2, 2),
    "len": Function(_fn_len, 1, 1),
    "index": Function(_fn_index, 1, None),
    "print": Function(_fn_print, 0, None),
}


def kind_of(value: Value) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def field_of(value: Value, name: str) -> Value:
    if isinstance(value, dict):
        return value.get(name)
    if value is None:
        return None
    raise RenderError(f"cannot read the field {name} of {kind_of(value)}")


def path(names: tuple[str, ...], *, from_root: bool) -> Eval:
    if not names:
        return (lambda dot, root: root) if from_root else (lambda dot, root: dot)
    if len(names) == 2 and from_root is False:
        a, b = names

        def two(dot: Value, root: Root) -> Value:
            return field_of(field_of(dot, a), b)

        return two

    def walk(dot: Value, root: Root) -> Value:
        value = root if from_root else dot
        for name in names:
            value = field_of(value, name)
        return value

    return walk


def chain(inner: Eval, names: tuple[str, ...]) -> Eval:
    def walk(dot: Value, root: Root) -> Value:
        value = inner(dot, root)
        for name in names:
            value = field_of(value, name)
        return value

    return walk


# -- nodes --------------------------------------------------------------------------------


class Failed(Exception):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos


def text_node(text: str) -> Emit:
    return lambda dot, root, out: out.append(text)


def action_node(pipeline: Eval, pos: int) -> Emit:
    def emit(dot: Value, root: Root, out: list[str]) -> None:
        try:
            out.append(text_of(pipeline(dot, root)))
        except RenderError as exc:
            raise Failed(str(exc), pos) from None

    return emit


def block_node(word: str, cond: Eval, body: list[Emit], otherwise: list[Emit], pos: int) -> Emit:
    def value_of(dot: Value, root: Root) -> Value:
        try:
            return cond(dot, root)
        except RenderError as exc:
            raise Failed(str(exc), pos) from None

    if word == "if":

        def run_if(dot: Value, root: Root, out: list[str]) -> None:
            for node in body if truth(value_of(dot, root)) else otherwise:
                node(dot, root, out)

        return run_if
    if word == "with":

        def run_with(dot: Value, root: Root, out: list[str]) -> None:
            value = value_of(dot, root)
            if truth(value):
                for node in body:
                    node(value, root, out)
            else:
                for node in otherwise:
                    node(dot, root, out)

        return run_with

    def run_range(dot: Value, root: Root, out: list[str]) -> None:
        value = value_of(dot, root)
        if isinstance(value, dict):
            items = [value[k] for k in sorted(value)]
        elif isinstance(value, list | tuple):
            items = list(value)
        elif value is None:
            items = []
        else:
            raise Failed(f"range needs a list or a map, not {kind_of(value)}", pos)
        root.steps -= len(items) or 1
        if root.steps < 0:
            raise Failed(
                f"range ran more than {MAX_RANGE_STEPS} times in one rendering (nested "
                "loops over the event's data?)",
                pos,
            )
        for item in items:
            for node in body:
                node(item, root, out)
        if not items:
            for node in otherwise:
                node(dot, root, out)

    return run_range
