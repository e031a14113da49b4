"""JSON as it enters knot: strict about what JSON is, so whatever is accepted can be stored,
sent on, printed and decoded again by a sandbox worker.

`json.loads` takes NaN and Infinity, numbers too large for a float, lone surrogate escapes and
any nesting; each of those once got past ingress and failed later, where it lost more (a SQLite
batch, a worker). Every door (HTTP bodies, the CLI, JSON-RPC, the notebook) reads through here.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

import msgspec

from ._exceptions import EventError
from ._json import MAX_JSON_DEPTH

__all__ = [
    "NotJSON",
    "TooDeep",
    "decode_json",
    "is_text",
    "json_kind",
    "loads_json",
    "nests_too_deeply",
]


def is_text(text: str) -> bool:
    """Whether `text` is valid Unicode (no lone surrogate, which JSON can escape but nothing
    downstream can store, send or print)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def nests_too_deeply(value: Any, text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `value` (decoded from, or encoded as, the JSON `text`) nests deeper than `limit`.

    Counting brackets in the text (in C) settles nearly every document at once: one with no
    more brackets than the limit cannot nest deeper. Only the rest are walked."""
    if isinstance(text, bytes):
        brackets = text.count(b"[") + text.count(b"{")
    else:
        brackets = text.count("[") + text.count("{")
    if brackets <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def json_kind(value: Any) -> str:
    """How a sentence names a JSON value's kind: 'an array', 'a string', 'null'..."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


class NotJSON(ValueError):
    """NaN, Infinity or -Infinity in a document (json.loads takes them; JSON does not)."""


class TooDeep(NotJSON):
    """A document nested deeper than MAX_JSON_DEPTH levels."""

    def __init__(self) -> None:
        super().__init__(
            f"it nests deeper than {MAX_JSON_DEPTH} levels of objects and arrays, the limit "
            "for JSON in knot"
        )


def _not_json(constant: str) -> Any:
    raise NotJSON(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a JSON number, but Python reads it as Infinity
        raise NotJSON(f"{text} is too large for a JSON number")
    return value


def loads_json(text: str | bytes, *, finite: bool = False) -> Any:
    """json.loads, minus Python's extensions: NaN, Infinity and -Infinity are not JSON, and a
    value holding one could not be sent on (encoders refuse them) nor stored as JSON.
    `finite` also refuses numbers too large for a float (1e999), for JSON a user typed.
    Nesting is limited to MAX_JSON_DEPTH levels (TooDeep): sandbox workers must be able to
    decode whatever comes in. Raises json.JSONDecodeError or NotJSON (both ValueErrors).

    Documents are first read by msgspec's decoder (3-4 times faster; it gives the values
    json.loads gives, and refuses NaN, Infinity, numbers past a float, lone surrogates and
    malformed UTF-8 by itself); whatever it refuses goes through json.loads and the checks
    below, so what is accepted and every error's wording stay json.loads's."""
    if not finite:
        value = _fast_loads(text)
        if value is not _REFUSED:
            return value
    try:
        if finite:
            value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
        else:
            value = json.loads(text, parse_constant=_not_json)
    except RecursionError:
        raise TooDeep() from None
    source = text if isinstance(text, str) else text.decode("utf-8", "replace")
    if isinstance(value, dict | list) and nests_too_deeply(value, source):
        raise TooDeep()
    if not source.isascii() and not is_text(source):  # a str with raw surrogates (argv)
        raise NotJSON("it is not valid Unicode text")
    if _SURROGATE_ESCAPE.search(source) and not is_text(json.dumps(value, ensure_ascii=False)):
        raise NotJSON("it holds a lone surrogate (a \\ud800-\\udfff escape without its pair)")
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_fast_decode = msgspec.json.Decoder().decode
_REFUSED: Any = object()


def _fast_loads(text: str | bytes) -> Any:
    """The document as msgspec reads it (TooDeep past MAX_JSON_DEPTH), or _REFUSED when
    msgspec refuses it (json.loads then says why) or cannot take it (a str that is not
    ASCII may hold lone surrogates, which it cannot encode)."""
    if type(text) is str and not text.isascii():
        return _REFUSED
    try:
        value = _fast_decode(text)
    except (msgspec.DecodeError, RecursionError):
        return _REFUSED
    if isinstance(value, dict | list) and nests_too_deeply(value, text):
        raise TooDeep()
    return value


def decode_json(body: bytes, *, what: str = "The request body") -> Any:
    """Decode UTF-8 JSON (never another encoding json.loads would guess), or EventError why not."""
    try:
        value = _fast_loads(body)  # msgspec reads UTF-8 only, and checks it
        if value is not _REFUSED:
            return value
        return loads_json(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise EventError(f"{what} is not UTF-8 text.") from None
    except TooDeep as exc:
        raise EventError(f"{what} is refused: {exc}.") from None
    except NotJSON as exc:
        raise EventError(f"{what} is not valid JSON: {exc}.") from None
    except json.JSONDecodeError as exc:
        raise EventError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
    except ValueError:  # int(): a number of more digits than Python converts (4300)
        raise EventError(
            f"{what} holds a number with more than {sys.get_int_max_str_digits()} digits, "
            "more than knot reads."
        ) from None
