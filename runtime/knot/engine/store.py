"""The embedded store: one SQLite file (WAL) for the journal, delivery progress, sinks and audit.

It implements `storage.Storage`, the seam the engine is written against.

Delivery progress is one cursor per sink plus a short list of exceptions (events dropped or
given up for that sink), not a row per (event, sink): a sink is served in order, so "every
matching event up to seq N is done" is the whole state. That keeps a journaled event at one
row written once.

Writes happen on one connection owned by the journal's writer thread; reads use a second
connection behind a lock, so API queries never wait for a commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .._audit import AuditEntry, AuditKind
from .._events import Event
from .._exceptions import StoreError, StoreLocked
from .._json import JSONObject
from .._patterns import Pattern, PatternKind
from .attempts import SPAN, Attempt, pack, unpack
from .eventquery import EventQuery, search
from .kvstore import KvTable
from .pidlock import LockHeld, hold, let_go
from .schema import migrate
from .storage import WriteBatch

__all__ = ["Store"]

_EVENT_COLUMNS = "seq, id, type, ts, zone, owner, depth, data, meta"
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
_ATTEMPT_COLUMNS = "sink, lo, hi, started, ended, busy, seqs, records, version"


class Store(KvTable):
    """A SQLite store; `path=":memory:"` is not supported (WAL needs a file).

    Scripts' expiring keys (`ExpiringKv`) are `KvTable`'s, over the same connections."""

    def __init__(self, path: str | Path, *, synchronous: str = "normal") -> None:
        self.path = Path(path)
        self._lock_file: int | None = None
        self._read_lock = threading.Lock()
        self.kv_counts = {}
        try:
            # The store holds webhook secrets and the spaces' logs sit beside it: a folder
            # and a file the runtime creates are its user's alone (SQLite gives the -wal and
            # -shm files the database's mode). Existing ones keep the mode they have.
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(
                f"The store folder {self.path.parent} cannot be created: {exc.strerror}.",
                path=str(self.path),
            ) from None
        self._acquire_process_lock()
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            self._release_process_lock()
            raise StoreError(
                f"The store {self.path} cannot be created: {exc.strerror}.", path=str(self.path)
            ) from None
        try:
            self._writer = self._connect(synchronous)
            migrate(self._writer, self.path)
            self._reader = self._connect(synchronous)
        except sqlite3.DatabaseError as exc:
            self._release_process_lock()
            raise self.unusable(exc) from None

    # -- opening -------------------------------------------------------------------------

    def _acquire_process_lock(self) -> None:
        """Refuse a second runtime on the same store: two would deliver everything twice."""
        lock_path = f"{self.path}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"The store {self.path} cannot be opened: {exc.strerror} ({lock_path}).",
                path=str(self.path),
            ) from None
        try:
            hold(fd)
        except LockHeld as held:
            raise StoreLocked(
                f"The store {self.path} is in use by another knot runtime "
                f"(pid {held.pid or 'another process'}); "
                "stop it or use another --project or store path.",
                path=str(self.path),
                pid=held.pid,
            ) from None
        except OSError as exc:  # a full disk or a read-only file system, met at the lock file
            let_go(fd)
            raise StoreError(
                f"The store {self.path} cannot be written: {exc.strerror} ({lock_path}) (is "
                "its disk full, or read-only?).",
                path=str(self.path),
            ) from None
        self._lock_file = fd

    def _release_process_lock(self) -> None:
        let_go(self._lock_file)
        self._lock_file = None

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def unusable(self, exc: Exception) -> StoreError:
        """The StoreError for an SQLite error met while using this store."""
        return StoreError(self._describe(exc), path=str(self.path))

    def _describe(self, exc: Exception) -> str:
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return (
                f"The store {self.path} is damaged or not a SQLite database ({text}); restore "
                "it from a backup, or move it aside to start with an empty store."
            )
        if "readonly" in text or "read-only" in text:
            return f"The store {self.path} is read-only; knot needs to write to it."
        if "locked" in text:
            return f"The store {self.path} is locked by another program; close it and retry."
        if "unable to open" in text:
            return f"The store {self.path} cannot be opened; check the path and permissions."
        if "disk is full" in text or "disk I/O error" in text:
            return (
                f"The store {self.path} cannot be written: {text} (is its disk full, or "
                "read-only?)."
            )
        return f"The store {self.path} cannot be used: {text}."

    def close(self) -> None:
        for conn in (getattr(self, "_writer", None), getattr(self, "_reader", None)):
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
        self._release_process_lock()

    # -- the writer (journal thread only) -------------------------------------------------

    def write(self, batches: Sequence[WriteBatch]) -> list[bool]:
        """Commit batches, in order, in one transaction; per event, whether it was new."""
        conn = self._writer
        inserted: list[bool] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for batch in batches:
                inserted += self._apply(batch)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StoreError(self._describe(exc), path=str(self.path)) from exc
        return inserted

    def _apply(self, batch: WriteBatch) -> list[bool]:
        conn = self._writer
        inserted = [True] * len(batch.events)
        if batch.events:
            if batch.check_duplicates:
                inserted = self._insert_events_checked(batch.events)
            else:
                conn.executemany(_INSERT_EVENT, [_event_row(e) for e in batch.events])
            chained = [
                (e.root or e.parent, e.seq)
                for e, new in zip(batch.events, inserted, strict=True)
                if e.parent and new
            ]
            if chained:
                conn.executemany("INSERT OR IGNORE INTO chains (root, seq) VALUES (?, ?)", chained)
        if batch.attempts:
            conn.executemany(
                "INSERT INTO attempts (sink, lo, hi, started, ended, busy, seqs, records, version)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                pack(batch.attempts),
            )
        if batch.skips:
            conn.executemany(
                "INSERT OR REPLACE INTO skips (sink, seq, reason) VALUES (?,?,?)", batch.skips
            )
        if batch.forget:
            conn.executemany("DELETE FROM cursors WHERE sink = ?", [(s,) for s in batch.forget])
            conn.executemany("DELETE FROM skips WHERE sink = ?", [(s,) for s in batch.forget])
        if batch.cursors:
            conn.executemany(
                "INSERT INTO cursors (sink, seq) VALUES (?, ?) "
                "ON CONFLICT(sink) DO UPDATE SET seq = max(seq, excluded.seq)",
                list(batch.cursors.items()),
            )
        if batch.audits:
            conn.executemany(
                "INSERT INTO audit (ts, kind, message, sink, event_id) VALUES (?,?,?,?,?)",
                [(a.ts, a.kind.name, a.message, a.sink, a.event_id) for a in batch.audits],
            )
        return inserted

    def _insert_events_checked(self, events: Sequence[Event]) -> list[bool]:
        """Insert events whose ids may be known already (client ids, sinks' derived ids).

        Events raised by sinks take this path, so it stays one statement for the batch; only
        when some id was a duplicate does it look up which: an ignored event's seq (fresh,
        never reused) is then missing from the table.
        """
        conn = self._writer
        cur = conn.executemany(
            _INSERT_EVENT.replace("INSERT", "INSERT OR IGNORE", 1),
            [_event_row(e) for e in events],
        )
        if cur.rowcount == len(events):
            return [True] * len(events)
        seqs = [e.seq for e in events]
        stored: set[int] = set()
        for start in range(0, len(seqs), 500):
            chunk = seqs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT seq FROM events WHERE seq IN ({marks})", chunk)
            stored.update(seq for (seq,) in rows)
        return [e.seq in stored for e in events]

    def run(
        self, sql: str, params: Sequence[Any] | Iterable[Sequence[Any]] = (), *, many: bool = False
    ) -> int:
        """Run one write statement in its own transaction (writer thread only)."""
        conn = self._writer
        try:
            cur = conn.executemany(sql, params) if many else conn.execute(sql, params)  # type: ignore[arg-type]
        except sqlite3.Error as exc:
            raise StoreError(self._describe(exc), path=str(self.path)) from exc
        return cur.rowcount

    def prune(self, *, keep_events: int, keep_audit: int, active_sinks: Iterable[str]) -> int:
        """Delete journal rows every sink is past, beyond the newest `keep_events` (writer thread).

        Never deletes an event some sink has not handled: the floor is the lowest cursor.
        """
        conn = self._writer
        self.prune_expired(time.time())
        sinks = list(active_sinks)
        head = self.head_seq(conn)
        floor = head - keep_events
        if sinks:
            marks = ",".join("?" * len(sinks))
            row = conn.execute(
                f"SELECT min(seq), count(*) FROM cursors WHERE sink IN ({marks})", sinks
            ).fetchone()
            if row[1] < len(sinks):  # a sink without a cursor has handled nothing yet
                return 0
            floor = min(floor, row[0])
        if floor <= 0:
            return 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            deleted = conn.execute("DELETE FROM events WHERE seq <= ?", (floor,)).rowcount
            conn.execute("DELETE FROM skips WHERE seq <= ?", (floor,))
            conn.execute("DELETE FROM attempts WHERE lo <= ? AND hi <= ?", (floor, floor))
            conn.execute("DELETE FROM chains WHERE seq <= ?", (floor,))
            conn.execute(
                "DELETE FROM audit WHERE id <= (SELECT max(id) FROM audit) - ?", (keep_audit,)
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StoreError(self._describe(exc), path=str(self.path)) from exc
        return deleted

    # -- start-up (before the writer thread runs) ------------------------------------------

    def head_seq(self, conn: sqlite3.Connection | None = None) -> int:
        row = (conn or self._writer).execute("SELECT max(seq) FROM events").fetchone()
        return int(row[0] or 0)

    def load_cursors(self) -> dict[str, int]:
        return dict(self._writer.execute("SELECT sink, seq FROM cursors").fetchall())

    def backlog(self, sink: str, after: int, upto: int, *, chunk: int = 2000) -> Iterator[Event]:
        """Journal events in (after, upto], oldest first, minus those skipped for `sink`."""
        last = after
        while True:
            with self._read_lock:
                rows = self._reader.execute(
                    f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq > ? AND seq <= ? "
                    "AND seq NOT IN (SELECT seq FROM skips WHERE sink = ?) ORDER BY seq LIMIT ?",
                    (last, upto, sink, chunk),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                yield Event.from_row(*row)
            last = rows[-1][0]

    def count_backlog(
        self, sink: str, after: int, patterns: Sequence[Pattern], *, owner: str = ""
    ) -> int:
        """How many journal events after `after` would go to a sink with `patterns` (and
        `owner`; Sky's `_rids` too), minus those skipped for it: what waits for a sink that
        does not run (its script broken since start-up)."""
        where = ["seq > ?", "seq NOT IN (SELECT seq FROM skips WHERE sink = ?)"]
        params: list[Any] = [after, sink]
        if not any(p.kind is PatternKind.ALL for p in patterns):
            if not patterns:
                return 0
            alternatives = []
            for p in patterns:
                if p.kind is PatternKind.EXACT:
                    alternatives.append("type = ?")
                    params.append(p.value)
                else:
                    alternatives.append("substr(type, 1, ?) = ?")
                    params += [len(p.value), p.value]
            where.append(f"({' OR '.join(alternatives)})")
        if owner:
            where.append("owner = ?")
            params.append(owner)
        where.append(
            "(json_type(meta, '$.rids') IS NULL OR EXISTS "
            "(SELECT 1 FROM json_each(meta, '$.rids') WHERE value = ?))"
        )
        params.append(sink)
        with self._read_lock:
            (count,) = self._reader.execute(
                f"SELECT count(*) FROM events WHERE {' AND '.join(where)}", params
            ).fetchone()
        return int(count)

    # -- kv: small persisted records (sinks, channels, users, spaces) -----------------------

    def kv_put(self, scope: str, key: str, value: JSONObject) -> None:
        self.run(
            "INSERT OR REPLACE INTO kv (scope, key, value, expires) VALUES (?, ?, ?, NULL)",
            (scope, key, json.dumps(value, separators=(",", ":"))),
        )
        self.kv_counts.pop(scope, None)  # a record may be a new row

    def kv_all(self, scope: str) -> dict[str, JSONObject]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT key, value FROM kv WHERE scope = ? AND (expires IS NULL OR expires > ?) "
                "ORDER BY key",
                (scope, time.time()),
            ).fetchall()
        return {k: json.loads(v) for k, v in rows}

    # -- reads (any thread) -----------------------------------------------------------------

    def recent_events(
        self,
        *,
        pattern: Pattern | None = None,
        limit: int = 50,
        owner: str | None = None,
        after_seq: int = 0,
    ) -> list[Event]:
        """The newest `limit` events (oldest first), optionally filtered; or those after a seq."""
        where: list[str] = []
        params: list[Any] = []
        if pattern is not None and pattern.kind is PatternKind.EXACT:
            where.append("type = ?")
            params.append(pattern.value)
        elif pattern is not None and pattern.kind is PatternKind.PREFIX:
            where.append("substr(type, 1, ?) = ?")
            params += [len(pattern.value), pattern.value]
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if after_seq:
            where.append("seq > ?")
            params.append(after_seq)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "ASC" if after_seq else "DESC"
        sql = f"SELECT {_EVENT_COLUMNS} FROM events {clause} ORDER BY seq {order} LIMIT ?"
        with self._read_lock:
            rows = self._reader.execute(sql, [*params, limit]).fetchall()
        events = [Event.from_row(*row) for row in rows]
        return events if after_seq else events[::-1]

    def find_events(self, query: EventQuery) -> list[Event]:
        with self._read_lock:
            return search(self._reader, query)

    def get_event(self, event_id: str) -> Event | None:
        with self._read_lock:
            row = self._reader.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (event_id,)
            ).fetchone()
        return Event.from_row(*row) if row else None

    def audit_entries(
        self, *, limit: int = 50, sink: str | None = None, sinks: Collection[str] | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` entries (oldest first): of `sink`, of any of `sinks`, or all."""
        sql = "SELECT id, ts, kind, message, sink, event_id FROM audit"
        where: list[str] = []
        params: list[Any] = []
        if sink is not None:
            where.append("sink = ?")
            params.append(sink)
        if sinks is not None:
            if not sinks:
                return []
            where.append(f"sink IN ({','.join('?' * len(sinks))})")
            params.extend(sinks)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._read_lock:
            rows = self._reader.execute(sql, [*params, limit]).fetchall()
        return [
            AuditEntry(AuditKind[kind], message, sink_, event_id, ts, id_)
            for id_, ts, kind, message, sink_, event_id in reversed(rows)
        ]

    def chain(self, root: str, *, limit: int = 1000) -> list[Event]:
        """The events `root` caused, directly or not (not `root` itself), oldest first."""
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE seq IN "
                "(SELECT seq FROM chains WHERE root = ? ORDER BY seq LIMIT ?) ORDER BY seq",
                (root, limit),
            ).fetchall()
        return [Event.from_row(*row) for row in rows]

    def attempts(self, seqs: Collection[int]) -> list[Attempt]:
        """Every recorded delivery attempt on the events at `seqs`, in the order they ran."""
        found: list[Attempt] = []
        with self._read_lock:
            for seq in sorted(set(seqs)):
                rows = self._reader.execute(
                    f"SELECT {_ATTEMPT_COLUMNS} FROM attempts "
                    "WHERE lo > ? AND lo <= ? AND hi >= ? ORDER BY id",
                    (seq - SPAN, seq, seq),
                ).fetchall()
                for row in rows:
                    found += unpack(row, (seq,))
        found.sort(key=lambda a: (a.started, a.attempt))
        return found

    def sink_attempts(self, sink: str, after: int, upto: int) -> list[Attempt]:
        """Every recorded attempt of `sink` on the events in (after, upto], in the order
        they ran: what a replay compares with (one query, each row unpacked once)."""
        if upto <= after:
            return []
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT {_ATTEMPT_COLUMNS} FROM attempts "
                "WHERE sink = ? AND lo > ? AND lo <= ? AND hi > ? ORDER BY id",
                (sink, after - SPAN, upto, after),
            ).fetchall()
        wanted = range(after + 1, upto + 1)
        found = [a for row in rows for a in unpack(row, wanted)]
        found.sort(key=lambda a: (a.started, a.attempt))
        return found

    def skips(self, seqs: Collection[int]) -> list[tuple[str, int, str]]:
        """`(sink, seq, reason)` for the events at `seqs` a sink dropped or gave up."""
        if not seqs:
            return []
        marks = ",".join("?" * len(seqs))
        with self._read_lock:
            rows = self._reader.execute(
                f"SELECT sink, seq, reason FROM skips WHERE seq IN ({marks})", list(seqs)
            ).fetchall()
        return [(str(s), int(q), str(r)) for s, q, r in rows]

    def counts(self) -> JSONObject:
        with self._read_lock:
            events = self._reader.execute("SELECT count(*), max(seq) FROM events").fetchone()
            audit = self._reader.execute("SELECT count(*) FROM audit").fetchone()
        return {"events": events[0], "head_seq": events[1] or 0, "audit": audit[0]}


def _event_row(e: Event) -> tuple[Any, ...]:
    data = e.data_json or json.dumps(e.data, separators=(",", ":"), ensure_ascii=False)
    return (e.seq, e.id, e.type, e.ts, e.zone, e.owner, e.depth, data, e.meta_json())
