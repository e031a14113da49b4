"""JSON aliases and limits: a leaf every module may import (the sandbox worker too)."""

from __future__ import annotations

from typing import Any, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
"""A decoded JSON object: event data, sink options, API bodies."""

MAX_JSON_DEPTH = 100
"""How deeply JSON may nest (objects and arrays), wherever it enters: HTTP bodies, the CLI, the
Python API, and what scripts emit, return or pass on. Sandbox workers run with a recursion limit
of a few hundred frames; this keeps every document they are handed decodable there."""
