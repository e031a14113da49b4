"""The environment knot-runtime reads (variables; a client's project folder), each in one helper."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import NamedTuple

from ._exceptions import ConfigError

__all__ = [
    "DEFAULT_PORT",
    "ApiAddress",
    "api_port_from_env",
    "api_token_from_env",
    "api_url_from_env",
    "child_environment",
    "find_api",
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


def api_url_from_env(folder: Path | None = None) -> str:
    """Where a client finds the runtime: see `find_api`."""
    return find_api(folder).url


class ApiAddress(NamedTuple):
    url: str
    config: str = ""  # the knot.toml the address came from ("" when it did not)


def find_api(folder: Path | None = None) -> ApiAddress:
    """KNOT_URL when set; else 127.0.0.1 at KNOT_API_PORT; else, in a project folder (`folder`,
    default the current one, holding a knot.toml), the address its `[server]` table gives
    `knot serve`; else 127.0.0.1:12201.

    A knot.toml that cannot be read is passed over: the runtime says what is wrong with it.
    """
    url = os.environ.get("KNOT_URL", "").strip()
    if url:
        return ApiAddress(url.rstrip("/"))
    port = api_port_from_env()
    if port is not None:
        return ApiAddress(f"http://127.0.0.1:{port}")
    default = ApiAddress(f"http://127.0.0.1:{DEFAULT_PORT}")
    config = (folder or Path.cwd()) / "knot.toml"
    server = _server_table(config)
    if not server:
        return default
    host, configured = server.get("host", "127.0.0.1"), server.get("port", DEFAULT_PORT)
    if not isinstance(host, str) or isinstance(configured, bool):
        return default
    if not isinstance(configured, int) or not 0 < configured < 65536:
        return default  # a value the runtime refuses too, or 0 (any free port: not findable)
    # An address that means "every interface" is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return ApiAddress(f"http://{shown}:{configured}", str(config))


def _server_table(config: Path) -> dict[str, object]:
    try:
        with config.open("rb") as file:
            table = tomllib.load(file).get("server")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
    return table if isinstance(table, dict) else {}


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
