"""The environment variables knot-runtime reads, each in one tiny helper."""

from __future__ import annotations

import os

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_PORT",
    "api_port_from_env",
    "api_token_from_env",
    "api_url_from_env",
    "child_environment",
    "otel_exporters_from_env",
]

DEFAULT_PORT = 12201


def api_port_from_env() -> int | None:
    """KNOT_API_PORT, when set; a value that is not a port number is a ConfigError (ignoring
    it would send the command, or the runtime, to the default port without a word)."""
    raw = os.environ.get("KNOT_API_PORT", "").strip()
    if not raw:
        return None
    port = int(raw) if raw.isascii() and raw.isdigit() else 0
    if not 0 < port < 65536:
        raise ConfigError(
            f"KNOT_API_PORT is {raw[:40]!r}, not a port number; set it to one from 1 to 65535, "
            "or unset it for the default (12201)."
        )
    return port


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


def otel_exporters_from_env() -> tuple[str, ...] | None:
    """The trace exporters OTEL_TRACES_EXPORTER names (default `otlp`) when the environment
    asks for tracing: that variable or an OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and OTEL_SDK_DISABLED is not true. None: off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""
    )
    if not names and not endpoint.strip():
        return None
    found = tuple(n.strip().lower() for n in (names or "otlp").split(",") if n.strip())
    return found or ("otlp",)
