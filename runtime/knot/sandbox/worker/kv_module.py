"""`knot.kv` and `knot.secrets` as scripts see them, answered by the runtime.

`knot.kv` is durable state, one namespace per script (the runtime decides which: a script
never names it), kept in the runtime's store:

    set(key, value, ttl=0)      get(key, default=None)      delete(key) -> bool
    exists(key) -> bool         incr(key, amount=1) -> int  ttl(key) -> seconds, -1, -2
    keys(pattern="*") -> list   clear() -> int

Values are any JSON value (copied with `plain.py` before they leave). `ttl(key)` is Redis's:
the seconds left (rounded up), -1 for a key without an expiry, -2 for a missing key. The same
module is Scriptling's `scriptling.runtime.kv`.

`knot.secrets.get(NAME, default)` asks the runtime for a secret of the settings (`[secrets]`,
`KNOT_SECRET_<NAME>`); the runtime redacts its value from everything a script shows.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from .event_module import EventBinding, RuntimeRefused
from .http_module import build_requests_module
from .plain import check_text, exact_float, exact_int, exact_str, plain_json

__all__ = [
    "MAX_KEY_CHARS",
    "KvError",
    "SecretNotFound",
    "build_kv_modules",
    "build_library_modules",
]

MAX_KEY_CHARS = 1024
_MISSING = object()


class KvError(ValueError):
    """A knot.kv operation the runtime refused: a quota, incr on a value that is not an integer."""


class SecretNotFound(LookupError):
    """No secret of that name is defined (in knot.toml's [secrets] or KNOT_SECRET_<NAME>)."""


def _key(key: object, what: str) -> str:
    text = check_text(exact_str(key, f"{what}'s key"), f"{what}'s key")
    if not text or len(text) > MAX_KEY_CHARS:
        raise ValueError(f"{what}'s key must have 1 to {MAX_KEY_CHARS} characters")
    return text


def build_kv_modules(ctx: EventBinding) -> dict[str, ModuleType]:
    """`knot.kv` and `knot.secrets`, asking the runtime through `ctx` (the run's binding)."""

    def ask(op: str, params: dict[str, Any], raw: str = "") -> Any:
        try:
            return ctx.ask("kv", {"op": op, **params}, raw)
        except RuntimeRefused as refused:
            raise KvError(str(refused)) from None

    def set_(key: str, value: Any, ttl: float = 0) -> None:
        key = _key(key, "knot.kv.set()")
        seconds = exact_float(ttl, "knot.kv.set()'s ttl")
        if not 0 <= seconds < 10**10:
            raise ValueError("knot.kv.set()'s ttl must be 0 (no expiry) or a number of seconds")
        encoded = json.dumps(plain_json(value, "the value"), separators=(",", ":"))
        ask("set", {"key": key, "ttl": seconds}, encoded)

    def get(key: str, default: Any = None) -> Any:
        answer = ask("get", {"key": _key(key, "knot.kv.get()")})
        return answer["value"] if answer.get("found") else default

    def delete(key: str) -> bool:
        return bool(ask("delete", {"key": _key(key, "knot.kv.delete()")}))

    def exists(key: str) -> bool:
        return bool(ask("exists", {"key": _key(key, "knot.kv.exists()")}))

    def incr(key: str, amount: int = 1) -> int:
        step = exact_int(amount, "knot.kv.incr()'s amount")
        return int(ask("incr", {"key": _key(key, "knot.kv.incr()"), "amount": step}))

    def ttl(key: str) -> int:
        return int(ask("ttl", {"key": _key(key, "knot.kv.ttl()")}))

    def keys(pattern: str = "*") -> list[str]:
        glob = check_text(exact_str(pattern, "knot.kv.keys()'s pattern"), "the pattern")
        return [str(k) for k in ask("keys", {"pattern": glob})]

    def clear() -> int:
        return int(ask("clear", {}))

    kv = ModuleType("knot.kv")
    for attr, value in {
        "set": set_,
        "get": get,
        "delete": delete,
        "exists": exists,
        "incr": incr,
        "ttl": ttl,
        "keys": keys,
        "clear": clear,
        "KvError": KvError,
    }.items():
        setattr(kv, attr, value)

    def secret(name: str, default: Any = _MISSING) -> Any:
        text = check_text(exact_str(name, "knot.secrets.get()'s name"), "the name")
        try:
            answer = ctx.ask("secret", {"name": text}, "")
        except RuntimeRefused as refused:
            missing = isinstance(refused.data, dict) and refused.data.get("kind") == "missing"
            if missing and default is not _MISSING:
                return default
            raise (SecretNotFound if missing else RuntimeError)(str(refused)) from None
        return str(answer["value"])

    secrets = ModuleType("knot.secrets")
    secrets.get = secret  # type: ignore[attr-defined]
    secrets.SecretNotFound = SecretNotFound  # type: ignore[attr-defined]
    return {"knot.kv": kv, "knot.secrets": secrets}


def build_library_modules(ctx: EventBinding, knot: ModuleType) -> dict[str, ModuleType]:
    """`requests`, `knot.kv`, `knot.secrets` (also set on `knot`) and Scriptling's
    `scriptling.runtime.kv`, for a worker whose runs are bound to `ctx`. A method worker adds
    `jsonrpc` to its own `scriptling.runtime` (`method_module.py`)."""
    modules = build_kv_modules(ctx)
    knot.kv = modules["knot.kv"]  # type: ignore[attr-defined]
    knot.secrets = modules["knot.secrets"]  # type: ignore[attr-defined]
    runtime = ModuleType("scriptling.runtime")
    runtime.kv = modules["knot.kv"]  # type: ignore[attr-defined]
    scriptling = ModuleType("scriptling")
    scriptling.runtime = runtime  # type: ignore[attr-defined]
    return {
        **modules,
        "requests": build_requests_module(ctx),
        "scriptling": scriptling,
        "scriptling.runtime": runtime,
    }
