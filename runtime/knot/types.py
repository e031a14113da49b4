"""Type aliases shared across the package."""

from __future__ import annotations

from typing import Any, TypeAlias

JSONObject: TypeAlias = dict[str, Any]
"""A decoded JSON object: event data, sink options, API bodies."""
