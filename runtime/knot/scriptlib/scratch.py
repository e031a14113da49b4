"""A scratch `ExpiringKv` in memory: where a dry run's `knot.kv` writes go.

`knot run` and `%knot run` must leave the store as it was, so a dry run's script writes here.
It starts as a copy of the script's live keys when a store is given and can be read (the real
namespace is never written), and behaves as the store does: the same quotas, expiry, errors and
JSON round trip (`tests/test_storage_contract.py` runs the `ExpiringKv` contract on both).
"""

from __future__ import annotations

import json
import time
from typing import Any

from .._exceptions import KvError
from ..engine.kvstore import encode_value
from ..engine.storage import MAX_KV_INTEGER, KvItem

__all__ = ["ScratchKv"]


class ScratchKv:
    """Scopes of keys held in memory, each key a JSON text and its expiry."""

    def __init__(self, seed: dict[str, dict[str, KvItem]] | None = None) -> None:
        self._scopes: dict[str, dict[str, tuple[str, float | None]]] = {}
        for scope, items in (seed or {}).items():
            self._scopes[scope] = {k: (encode_value(i.value), i.expires) for k, i in items.items()}

    def _live(self, scope: str, now: float) -> dict[str, tuple[str, float | None]]:
        keys = self._scopes.setdefault(scope, {})
        for key in [
            k for k, (_, expires) in keys.items() if expires is not None and expires <= now
        ]:
            del keys[key]
        return keys

    def kv_get(self, scope: str, key: str, *, now: float) -> KvItem | None:
        found = self._live(scope, now).get(key)
        return KvItem(json.loads(found[0]), found[1]) if found else None

    def kv_keys(self, scope: str, *, now: float) -> list[str]:
        return sorted(self._live(scope, now))

    def kv_set(
        self,
        scope: str,
        key: str,
        value: Any,
        *,
        expires: float | None,
        now: float,
        max_keys: int,
    ) -> None:
        keys = self._live(scope, now)
        self._make_room(keys, key, max_keys)
        keys[key] = (encode_value(value), expires)

    def kv_incr(self, scope: str, key: str, amount: int, *, now: float, max_keys: int) -> int:
        keys = self._live(scope, now)
        found = keys.get(key)
        current, expires = (json.loads(found[0]), found[1]) if found else (0, None)
        if type(current) is not int:
            raise KvError(f"{key!r} does not hold an integer.", reason="not_integer", key=key)
        total = current + amount
        if not -MAX_KV_INTEGER - 1 <= total <= MAX_KV_INTEGER:
            raise KvError(
                f"{key!r} would pass a 64-bit integer ({total}).", reason="overflow", key=key
            )
        if found is None:
            self._make_room(keys, key, max_keys)
        keys[key] = (str(total), expires)
        return total

    def kv_delete(self, scope: str, key: str) -> bool:
        return self._live(scope, time.time()).pop(key, None) is not None

    def kv_clear(self, scope: str) -> int:
        count = len(self._live(scope, time.time()))
        self._scopes.pop(scope, None)
        return count

    @staticmethod
    def _make_room(keys: dict[str, tuple[str, float | None]], key: str, max_keys: int) -> None:
        if key not in keys and len(keys) >= max_keys:
            raise KvError(
                f"a new key {key!r} would pass the quota of {max_keys} keys.",
                reason="max_keys",
                key=key,
            )
