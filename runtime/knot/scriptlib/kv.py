"""Scripts' `knot.kv` requests, answered against an `ExpiringKv` (the store, or a scratch one).

Each script has a namespace of its own, the scope `script:<kind>/<name>` (`ScriptRef`): the
worker never names it, so no script can read or write another's keys. Keys are 1 to 1024
characters; a value is at most `scripts.kv_max_value_bytes` of JSON, and a script keeps at most
`scripts.kv_max_keys` live keys. `keys(pattern)` is a glob (`*`, `?`, `[abc]`, `[!abc]`), matched
with RE2 so no pattern can backtrack.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import re2  # type: ignore[import-untyped]  # google-re2 ships no stubs

from .._config import ScriptSettings
from .._exceptions import KvError
from ..engine.kvstore import encode_value
from ..engine.storage import ExpiringKv
from ..sandbox.worker.kv_module import MAX_KEY_CHARS

__all__ = ["KvCall", "glob_regex", "serve_kv"]

T = TypeVar("T")
KvCall = Callable[[Callable[[ExpiringKv], Any]], Awaitable[Any]]
"""Runs one operation against the key-value storage (on the store's writer thread)."""

MAX_TTL = 10**10  # seconds (~300 years): past that, a ttl is a mistake


def glob_regex(pattern: str) -> str:
    """A glob as an anchored-by-fullmatch regular expression."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            end = pattern.find("]", i + 1 if i < len(pattern) and pattern[i] in "!^" else i)
            if end < 0:
                out.append(re2.escape("["))
                continue
            body = pattern[i:end]
            i = end + 1
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            escaped = "".join("\\" + ch if ch in "\\^]" else ch for ch in body)
            out.append(f"[{'^' if negate else ''}{escaped}]")
        else:
            out.append(re2.escape(c))
    return "".join(out)


def _key(params: dict[str, Any]) -> str:
    key = params.get("key")
    if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
        raise KvError(
            f"A key must be a string of 1 to {MAX_KEY_CHARS} characters.", reason="invalid"
        )
    return key


async def serve_kv(kv: KvCall, scope: str, settings: ScriptSettings, params: dict[str, Any]) -> Any:
    """Answer one `kv` request of a script whose namespace is `scope`; KvError with a
    sentence (naming the setting) when it cannot be done."""
    op = params.get("op")
    now = time.time()
    if op == "get":
        key = _key(params)
        item = await kv(lambda s: s.kv_get(scope, key, now=now))
        return {"found": True, "value": item.value} if item is not None else {"found": False}
    if op == "exists":
        key = _key(params)
        return (await kv(lambda s: s.kv_get(scope, key, now=now))) is not None
    if op == "ttl":
        key = _key(params)
        item = await kv(lambda s: s.kv_get(scope, key, now=now))
        if item is None:
            return -2
        return -1 if item.expires is None else max(math.ceil(item.expires - now), 0)
    if op == "set":
        key = _key(params)
        value = params.get("payload")
        size = len(encode_value(value).encode("utf-8", "surrogatepass"))
        if size > settings.kv_max_value_bytes:
            raise KvError(
                f"knot.kv.set({key!r}): the value is {size} bytes of JSON, more than "
                f"scripts.kv_max_value_bytes ({settings.kv_max_value_bytes}).",
                reason="max_value_bytes",
                key=key,
            )
        ttl = params.get("ttl") or 0
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 <= ttl < MAX_TTL:
            raise KvError("knot.kv.set(): ttl must be 0 or a number of seconds.", reason="invalid")
        expires = now + ttl if ttl else None
        await _limited(
            kv,
            lambda s: s.kv_set(
                scope, key, value, expires=expires, now=now, max_keys=settings.kv_max_keys
            ),
            settings,
        )
        return None
    if op == "incr":
        key = _key(params)
        amount = params.get("amount", 1)
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise KvError("knot.kv.incr(): amount must be an integer.", reason="invalid")
        return await _limited(
            kv,
            lambda s: s.kv_incr(scope, key, amount, now=now, max_keys=settings.kv_max_keys),
            settings,
        )
    if op == "delete":
        key = _key(params)
        return await kv(lambda s: s.kv_delete(scope, key))
    if op == "keys":
        pattern = params.get("pattern", "*")
        if not isinstance(pattern, str):
            raise KvError("knot.kv.keys(): the pattern must be a string.", reason="invalid")
        keys: list[str] = await kv(lambda s: s.kv_keys(scope, now=now))
        if pattern == "*":
            return keys
        try:
            matcher = re2.compile(glob_regex(pattern))
        except re2.error:
            raise KvError(
                f"knot.kv.keys(): {pattern!r} is not a glob pattern.", reason="invalid"
            ) from None
        return [k for k in keys if matcher.fullmatch(k)]
    if op == "clear":
        return await kv(lambda s: s.kv_clear(scope))
    raise KvError(f"knot.kv has no operation {op!r}.", reason="invalid")


async def _limited(
    kv: KvCall, operation: Callable[[ExpiringKv], Any], settings: ScriptSettings
) -> Any:
    """Run a write; its KvError (from the storage, which knows no settings) named with them."""
    try:
        return await kv(operation)
    except KvError as exc:
        if exc.reason == "max_keys":
            raise KvError(
                f"knot.kv: a new key {exc.key!r} would pass this script's quota of "
                f"{settings.kv_max_keys} keys (scripts.kv_max_keys); delete keys, give them a "
                "ttl, or raise the quota.",
                reason=exc.reason,
                key=exc.key,
            ) from None
        if exc.reason == "not_integer":
            raise KvError(
                f"knot.kv.incr({exc.key!r}): the value is not an integer.",
                reason=exc.reason,
                key=exc.key,
            ) from None
        if exc.reason == "overflow":
            raise KvError(
                f"knot.kv.incr({exc.key!r}) would pass the largest 64-bit integer.",
                reason=exc.reason,
                key=exc.key,
            ) from None
        raise
