"""Records and scripts' expiring keys on the NATS store: one KV bucket (RECORDS), mirrored.

A key is `<scope>.<key>` (each token `encode_key`'d). A record (`kv_put`: sinks made through
the API, users, channels, secrets) is its JSON; a key with an expiry (a script's `knot.kv`
with a ttl) is a NUL byte and then `[expires, value]` as JSON, which no JSON document starts
with. The bucket is watched, so reads are local and see other nodes' writes as they arrive
(milliseconds later). An expired key is invisible to every read; `prune` deletes it.

Across nodes: `kv_incr` is a compare-and-set on the key's revision, retried on a conflict, so
increments from several nodes never lose one. A quota (`max_keys`) is counted on this node's
mirror: two nodes adding new keys to one scope at the same instant could pass it by a key or
two. A script's keys are written by the one node that runs its sink, so in practice they do not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .._exceptions import KvError, StoreError
from .._json import JSONObject
from ..engine.storage import MAX_KV_INTEGER, KvItem
from ._codec import Names, decode_key, encode_key
from ._link import NatsLink
from ._local import NodeRecords

__all__ = ["LOCAL_SCOPES", "RecordsKv", "decode_record", "encode_record"]

LOCAL_SCOPES = frozenset({"spaces", "node"})  # a node's own: its spaces run there
_EXPIRING = b"\x00"
CAS_TRIES = 50  # compare-and-set rounds before kv_incr gives up (only under heavy contention)

# A mirrored key: its revision in the bucket, its value, when it expires (None: never).
Mirrored = tuple[int, Any, float | None]


def encode_record(value: Any, expires: float | None) -> bytes:
    text = json.dumps(
        value if expires is None else [expires, value],
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode()
    return text if expires is None else _EXPIRING + text


def decode_record(body: bytes) -> tuple[Any, float | None]:
    if body.startswith(_EXPIRING):
        expires, value = json.loads(body[1:])
        return value, float(expires)
    return json.loads(body), None


def _live(item: Mirrored | None, now: float) -> bool:
    return item is not None and (item[2] is None or item[2] > now)


class RecordsKv:
    """The key-value part of `NatsStorage` (a base class: it needs `link`, `names`, `local`)."""

    link: NatsLink
    names: Names
    local: NodeRecords
    _subs: list[Any]
    _spawn: Callable[[Any], None]  # the store's: run a task on the link's loop, kept until done

    def _init_records(self) -> None:
        self._records: dict[str, dict[str, Mirrored]] = {}
        self._record_listeners: list[Callable[[str, str], None]] = []

    async def _load_records(self) -> None:
        """Mirror RECORDS in memory: all of it now, then every change as it happens."""
        kv = await self.link.js.key_value(self.names.records)
        watcher = await kv.watchall()
        while True:
            entry = await watcher.updates(timeout=10)  # type: ignore[no-untyped-call]
            if entry is None:
                break
            self._apply_record(entry.key, entry.revision, entry.value, entry.operation)

        async def follow() -> None:
            async for entry in watcher:
                if entry is not None:
                    self._apply_record(entry.key, entry.revision, entry.value, entry.operation)

        self._subs.append(watcher)
        self._spawn(follow())

    def _apply_record(self, key: str, revision: int, value: bytes | None, op: Any) -> None:
        scope_token, _, key_token = key.partition(".")
        scope, name = decode_key(scope_token), decode_key(key_token)
        area = self._records.setdefault(scope, {})
        current = area.get(name)
        if current is not None and current[0] >= revision:
            return  # this node's own write got here first
        if op is not None or not value:
            area.pop(name, None)
        else:
            area[name] = (revision, *decode_record(value))
        for listener in list(self._record_listeners):
            listener(scope, name)

    def on_record_change(self, listener: Callable[[str, str], None]) -> None:
        """Call `listener(scope, key)` (on the NATS thread) whenever a record changes."""
        self._record_listeners.append(listener)

    def _subject(self, scope: str, key: str) -> str:
        return f"{encode_key(scope)}.{encode_key(key)}"

    def _put(self, scope: str, key: str, value: Any, expires: float | None) -> None:
        body = encode_record(value, expires)
        subject = self._subject(scope, key)

        async def put() -> int:
            kv = await self.link.js.key_value(self.names.records)
            return await kv.put(subject, body)

        self._mirror(scope, key, self.link.call(put()), value, expires)

    def _mirror(
        self, scope: str, key: str, revision: int, value: Any, expires: float | None
    ) -> None:
        area = self._records.setdefault(scope, {})
        current = area.get(key)
        if current is None or current[0] < revision:
            area[key] = (revision, value, expires)

    # -- records ----------------------------------------------------------------------------

    def kv_put(self, scope: str, key: str, value: JSONObject) -> None:
        if scope in LOCAL_SCOPES:
            self.local.put(scope, key, value)
            return
        self._put(scope, key, value, None)

    def kv_delete(self, scope: str, key: str) -> bool:
        if scope in LOCAL_SCOPES:
            return self.local.delete(scope, key)
        existed = _live(self._records.get(scope, {}).get(key), time.time())
        subject = self._subject(scope, key)

        async def delete() -> None:
            kv = await self.link.js.key_value(self.names.records)
            await kv.delete(subject)

        self.link.call(delete())
        self._records.get(scope, {}).pop(key, None)
        return existed

    def kv_all(self, scope: str) -> dict[str, JSONObject]:
        if scope in LOCAL_SCOPES:
            return self.local.all(scope)
        now = time.time()
        area = self._records.get(scope, {})
        return {k: item[1] for k, item in sorted(area.items()) if _live(item, now)}

    # -- expiring keys (ExpiringKv) ---------------------------------------------------------

    def kv_get(self, scope: str, key: str, *, now: float) -> KvItem | None:
        item = self._records.get(scope, {}).get(key)
        return KvItem(item[1], item[2]) if item is not None and _live(item, now) else None

    def kv_keys(self, scope: str, *, now: float) -> list[str]:
        return sorted(k for k, item in self._records.get(scope, {}).items() if _live(item, now))

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
        if not _live(self._records.get(scope, {}).get(key), now):
            self._check_room(scope, key, now, max_keys)
        self._put(scope, key, value, expires)

    def kv_incr(self, scope: str, key: str, amount: int, *, now: float, max_keys: int) -> int:
        return self.link.call(self._incr(scope, key, amount, now, max_keys))

    async def _incr(self, scope: str, key: str, amount: int, now: float, max_keys: int) -> int:
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        kv = await self.link.js.key_value(self.names.records)
        subject = self._subject(scope, key)
        for _ in range(CAS_TRIES):
            try:
                entry = await kv.get(subject)
            except KeyNotFoundError:
                entry = None
            current, expires, revision, new = 0, None, 0, True
            if entry is not None and entry.value:
                value, expires = decode_record(entry.value)
                revision = entry.revision or 0
                if expires is not None and expires <= now:
                    expires = None  # expired: starts afresh, as a new key
                elif type(value) is not int:
                    raise KvError(
                        f"{key!r} does not hold an integer.", reason="not_integer", key=key
                    )
                else:
                    current, new = value, False
            total = current + amount
            if not -MAX_KV_INTEGER - 1 <= total <= MAX_KV_INTEGER:
                raise KvError(
                    f"{key!r} would pass a 64-bit integer ({total}).", reason="overflow", key=key
                )
            if new:
                self._check_room(scope, key, now, max_keys)
            body = encode_record(total, expires)
            try:
                if revision:
                    written = await kv.update(subject, body, last=revision)
                else:
                    written = await kv.create(subject, body)
            except KeyWrongLastSequenceError:
                continue  # another node wrote it meanwhile: read it again
            self._mirror(scope, key, written, total, expires)
            return total
        raise StoreError(
            f"The key {key!r} changed under every one of {CAS_TRIES} increments; try again."
        )

    def kv_clear(self, scope: str) -> int:
        now = time.time()
        area = dict(self._records.get(scope, {}))
        live = sum(1 for item in area.values() if _live(item, now))
        for key in area:
            self.kv_delete(scope, key)
        return live

    def prune_expired(self, now: float) -> int:
        """Delete every expired key (the housekeeper's prune)."""
        gone = 0
        for scope, area in list(self._records.items()):
            for key, item in list(area.items()):
                if not _live(item, now):
                    self.kv_delete(scope, key)
                    gone += 1
        return gone

    def _check_room(self, scope: str, key: str, now: float, max_keys: int) -> None:
        area = self._records.get(scope, {})
        if sum(1 for item in area.values() if _live(item, now)) >= max_keys:
            raise KvError(
                f"a new key {key!r} would pass the quota of {max_keys} keys.",
                reason="max_keys",
                key=key,
            )
