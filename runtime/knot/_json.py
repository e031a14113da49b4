"""JSON aliases and limits: a leaf every module may import (the sandbox worker too)."""

from __future__ import annotations

import json
from typing import Any, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
"""A decoded JSON object: event data, sink options, API bodies."""

MAX_JSON_DEPTH = 100
"""How deeply JSON may nest (objects and arrays), wherever it enters: HTTP bodies, the CLI, the
Python API, and what scripts emit, return or pass on. Sandbox workers run with a recursion limit
of a few hundred frames; this keeps every document they are handed decodable there."""


_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def compact(value: Any) -> str:
    """Compact JSON text, non-ASCII as is, and strict: NaN and Infinity raise ValueError.

    What `json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)` gives,
    from one encoder made once: `json.dumps` with any option builds a new encoder per call,
    which costs as much as encoding a small object, and the hot paths do it per event."""
    return _COMPACT.encode(value)


def canonical(value: Any) -> str:
    """Compact JSON text with sorted keys (records compare by it); NaN is written as NaN."""
    return _CANONICAL.encode(value)
