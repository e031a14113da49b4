"""The environment variables knot-runtime reads, each in one tiny helper."""

from __future__ import annotations

import os

__all__ = [
    "DEFAULT_PORT",
    "api_port_from_env",
    "api_token_from_env",
    "api_url_from_env",
    "child_environment",
]

DEFAULT_PORT = 12201


def api_port_from_env() -> int | None:
    """KNOT_API_PORT, when set to a valid port number."""
    raw = os.environ.get("KNOT_API_PORT", "").strip()
    if not raw:
        return None
    try:
        port = int(raw)
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


def api_url_from_env() -> str:
    """KNOT_URL when set, else the loopback agent API at KNOT_API_PORT (default 12201)."""
    url = os.environ.get("KNOT_URL", "").strip()
    if url:
        return url.rstrip("/")
    return f"http://127.0.0.1:{api_port_from_env() or DEFAULT_PORT}"


def api_token_from_env() -> str | None:
    return os.environ.get("KNOT_TOKEN", "").strip() or None


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, for a process the runtime starts (a space)."""
    return {**os.environ, **extra}
