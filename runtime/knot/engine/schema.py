"""The SQLite store's tables, and how a store written by an older knot-runtime is brought
forward (`migrate`, run once when the store opens)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .._exceptions import StoreError

__all__ = ["SCHEMA_VERSION", "migrate"]

# 1: the first. 2: kv rows may expire (scripts' knot.kv): the column `expires`. 3: the chains
# of caused events, and the attempts table. 4: the script version a run of attempts ran (for
# `knot replay`; records carry theirs in their JSON).
SCHEMA_VERSION = 4
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq   INTEGER PRIMARY KEY,
    id    TEXT NOT NULL UNIQUE,
    type  TEXT NOT NULL,
    ts    TEXT NOT NULL,
    zone  TEXT NOT NULL,
    owner TEXT NOT NULL,
    depth INTEGER NOT NULL,
    data  TEXT NOT NULL,
    meta  TEXT NOT NULL
);
-- Causation: a row per event some sink raised, under the first event of its chain. Root
-- events (most of them) cost nothing here; an index on events would cost each one.
CREATE TABLE IF NOT EXISTS chains (
    root TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (root, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS skips (
    sink   TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (sink, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id       INTEGER PRIMARY KEY,
    ts       TEXT NOT NULL,
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL,
    sink     TEXT NOT NULL,
    event_id TEXT NOT NULL
);
-- Delivery attempts, packed: a run of quick successes per row, or records (engine/attempts.py).
CREATE TABLE IF NOT EXISTS attempts (
    id        INTEGER PRIMARY KEY,
    lo        INTEGER NOT NULL,
    hi        INTEGER NOT NULL,
    sink      TEXT NOT NULL,
    started   REAL NOT NULL,
    ended     REAL NOT NULL,
    busy      REAL NOT NULL,
    seqs      BLOB NOT NULL,
    records   TEXT NOT NULL,
    version   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_lo ON attempts (lo);
CREATE TABLE IF NOT EXISTS kv (
    scope   TEXT NOT NULL,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    expires REAL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
"""
_MIGRATIONS = {
    # A store of schema 1 has kv rows without an expiry: they never expire.
    2: "ALTER TABLE kv ADD COLUMN expires REAL",
}
_INDEXES = "CREATE INDEX IF NOT EXISTS kv_expiring ON kv (expires) WHERE expires IS NOT NULL;"


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Make the tables of a new store, or bring an older store's forward, step by step."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"The store {path} was written by a newer knot-runtime "
            f"(schema {version}, this one knows {SCHEMA_VERSION}).",
            path=str(path),
        )
    fresh = not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'kv'").fetchone()
    conn.executescript(_SCHEMA)
    if not fresh:  # tables made by an older schema: bring them forward, step by step
        for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
            if step in _MIGRATIONS:
                conn.execute(_MIGRATIONS[step])
        if version < 3:
            _add_chains(conn)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(attempts)")}
        if "version" not in columns:  # a schema 3 table (a 1 or 2 store just got a new one)
            # Attempts recorded before: no version, so a replay says it has no record of them.
            conn.execute("ALTER TABLE attempts ADD COLUMN version TEXT NOT NULL DEFAULT ''")
    conn.executescript(_INDEXES)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")


def _add_chains(conn: sqlite3.Connection) -> None:
    """Schema 3: file the child events an older store holds under their roots.

    Versions 1 and 2 kept only each event's parent, in `meta`; parents are journaled before
    their children, so one pass in journal order finds every root still in the journal (a
    parent already pruned stands in for its own root).
    """
    roots: dict[str, str] = {}
    rows = conn.execute(
        "SELECT seq, id, json_extract(meta, '$.parent') FROM events WHERE depth > 0 ORDER BY seq"
    ).fetchall()
    chained: list[tuple[str, int]] = []
    for seq, event_id, parent in rows:
        if parent:
            roots[event_id] = root = roots.get(parent, parent)
            chained.append((root, seq))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("INSERT OR IGNORE INTO chains (root, seq) VALUES (?, ?)", chained)
        conn.executemany(  # and in each event, as version 3 journals it
            "UPDATE events SET meta = json_set(meta, '$.root', ?) WHERE seq = ?", chained
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
