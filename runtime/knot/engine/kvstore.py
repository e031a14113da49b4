"""Expiring keys in the SQLite store: scripts' `knot.kv` (the `ExpiringKv` part of Storage).

Rows live in the store's `kv` table beside the records (a scope per script, `script:...`), with
an `expires` time (epoch seconds, NULL: never). An expired row is invisible to every read and
is replaced by a write as if it were not there; `prune_expired` (run by the housekeeper's
prune) deletes them.

Quotas count keys per scope. Counting a scope in SQL costs a scan (1.2 ms at 10,000 keys,
measured), and the idempotency idiom makes a new key per event, so the writer keeps each
scope's count of rows (live or expired) once it has counted it, updated by every write that
goes through here; only a scope at its quota is purged of expired rows and counted again.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._exceptions import KvError, StoreError
from .._json import compact
from .storage import MAX_KV_INTEGER, KvItem

__all__ = ["KvTable", "encode_value", "read_scope"]


def encode_value(value: Any) -> str:
    return compact(value)


_LIVE = "(expires IS NULL OR expires > ?)"


class KvTable:
    """The expiring-key operations of `Store` (a mixin over its two connections)."""

    path: Path
    _writer: sqlite3.Connection
    _reader: sqlite3.Connection
    _read_lock: threading.Lock
    kv_counts: dict[str, int]  # rows per scope, as far as counted (writer thread only)

    def _describe(self, exc: Exception) -> str:
        raise NotImplementedError

    @contextlib.contextmanager
    def _kv_transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.kv_counts.clear()
            raise StoreError(self._describe(exc), path=str(self.path)) from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.kv_counts.clear()
            raise

    # -- reads (any thread; committed data) -------------------------------------------------

    def kv_get(self, scope: str, key: str, *, now: float) -> KvItem | None:
        with self._read_lock:
            row = self._reader.execute(
                f"SELECT value, expires FROM kv WHERE scope = ? AND key = ? AND {_LIVE}",
                (scope, key, now),
            ).fetchone()
        return KvItem(json.loads(row[0]), row[1]) if row else None

    def kv_keys(self, scope: str, *, now: float) -> list[str]:
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT key FROM kv WHERE scope = ? AND {_LIVE} ORDER BY key", (scope, now)
            ).fetchall()
        return [row[0] for row in rows]

    # -- writes (the journal's writer thread) -----------------------------------------------

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
        text = encode_value(value)
        with self._kv_transaction() as conn:
            new = self._make_room(conn, scope, key, now, max_keys)
            conn.execute(
                "INSERT OR REPLACE INTO kv (scope, key, value, expires) VALUES (?, ?, ?, ?)",
                (scope, key, text, expires),
            )
        self._counted(scope, 1 if new else 0)

    def kv_incr(self, scope: str, key: str, amount: int, *, now: float, max_keys: int) -> int:
        with self._kv_transaction() as conn:
            row = conn.execute(
                f"SELECT value, expires FROM kv WHERE scope = ? AND key = ? AND {_LIVE}",
                (scope, key, now),
            ).fetchone()
            if row is None:
                current, expires = 0, None
            else:
                current, expires = json.loads(row[0]), row[1]
                if type(current) is not int:
                    raise KvError(
                        f"{key!r} does not hold an integer.", reason="not_integer", key=key
                    )
            total = current + amount
            if not -MAX_KV_INTEGER - 1 <= total <= MAX_KV_INTEGER:
                raise KvError(
                    f"{key!r} would pass a 64-bit integer ({total}).", reason="overflow", key=key
                )
            new = self._make_room(conn, scope, key, now, max_keys) if row is None else False
            conn.execute(
                "INSERT OR REPLACE INTO kv (scope, key, value, expires) VALUES (?, ?, ?, ?)",
                (scope, key, str(total), expires),
            )
        self._counted(scope, 1 if new else 0)
        return total

    def kv_delete(self, scope: str, key: str) -> bool:
        with self._kv_transaction() as conn:
            row = conn.execute(
                "SELECT expires FROM kv WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
            conn.execute("DELETE FROM kv WHERE scope = ? AND key = ?", (scope, key))
        if row is None:
            return False
        self._counted(scope, -1)
        return row[0] is None or row[0] > time.time()

    def kv_clear(self, scope: str) -> int:
        with self._kv_transaction() as conn:
            (live,) = conn.execute(
                f"SELECT count(*) FROM kv WHERE scope = ? AND {_LIVE}", (scope, time.time())
            ).fetchone()
            conn.execute("DELETE FROM kv WHERE scope = ?", (scope,))
        self.kv_counts[scope] = 0
        return int(live)

    def prune_expired(self, now: float) -> int:
        """Delete expired rows of every scope (the writer thread, as part of `prune`)."""
        with self._kv_transaction() as conn:
            gone = conn.execute(
                "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (now,)
            ).rowcount
        if gone:
            self.kv_counts.clear()
        return int(gone)

    # -- quotas -----------------------------------------------------------------------------

    def _make_room(
        self, conn: sqlite3.Connection, scope: str, key: str, now: float, max_keys: int
    ) -> bool:
        """Whether `key` adds a row; KvError when it would pass `max_keys` live keys."""
        row = conn.execute(
            "SELECT expires FROM kv WHERE scope = ? AND key = ?", (scope, key)
        ).fetchone()
        if row is not None:
            return False  # a live key, or an expired row: replaced in place, same count
        count = self.kv_counts.get(scope)
        if count is None:
            (count,) = conn.execute("SELECT count(*) FROM kv WHERE scope = ?", (scope,)).fetchone()
            self.kv_counts[scope] = count
        if count < max_keys:
            return True
        # At the quota by rows: expired ones give their room back, then count what is live.
        conn.execute(
            "DELETE FROM kv WHERE scope = ? AND expires IS NOT NULL AND expires <= ?",
            (scope, now),
        )
        (count,) = conn.execute("SELECT count(*) FROM kv WHERE scope = ?", (scope,)).fetchone()
        self.kv_counts[scope] = count
        if count >= max_keys:
            raise KvError(
                f"a new key {key!r} would pass the quota of {max_keys} keys.",
                reason="max_keys",
                key=key,
            )
        return True

    def _counted(self, scope: str, change: int) -> None:
        count = self.kv_counts.get(scope)
        if count is not None:
            self.kv_counts[scope] = count + change


def read_scope(path: Path, scope: str, *, now: float, limit: int) -> dict[str, KvItem]:
    """The live keys of `scope` in the store at `path`, read through a read-only connection
    of their own (a dry run's scratch copy, beside a running `knot serve`); {} when there is
    no store there. StoreError when it cannot be read."""
    if not path.exists():
        return {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.Error as exc:
        raise StoreError(f"The store {path} cannot be read: {exc}.", path=str(path)) from None
    try:
        rows = conn.execute(
            f"SELECT key, value, expires FROM kv WHERE scope = ? AND {_LIVE} ORDER BY key LIMIT ?",
            (scope, now, limit),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"The store {path} cannot be read: {exc}.", path=str(path)) from None
    finally:
        conn.close()
    return {key: KvItem(json.loads(value), expires) for key, value, expires in rows}
