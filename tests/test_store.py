"""The SQLite store: durability, retention and clear errors for unusable files."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from knot import Config, Runtime, StoreError
from knot._config import StoreSettings
from knot.engine.store import Store

from .conftest import recording

pytestmark = pytest.mark.anyio


def test_store_is_wal_sqlite(tmp_path: Path) -> None:
    store = Store(tmp_path / "k.db")
    try:
        mode = sqlite3.connect(tmp_path / "k.db").execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        store.close()


def test_a_second_runtime_on_the_same_store_is_refused(tmp_path: Path) -> None:
    first = Store(tmp_path / "k.db")
    try:
        with pytest.raises(StoreError, match="in use by another knot runtime"):
            Store(tmp_path / "k.db")
    finally:
        first.close()
    Store(tmp_path / "k.db").close()  # free again once the first closes


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="is damaged or not a SQLite database"):
        Store(path)


def test_read_only_database_is_a_clear_error_even_for_root(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    Store(path).close()
    # A read-only open mode is what a read-only mount looks like to SQLite, even for root.
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as info:
        conn.execute("CREATE TABLE x (y)")
    message = Store.__new__(Store)
    message.path = path
    assert "read-only" in message._describe(info.value)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(StoreError, match="newer knot-runtime"):
        Store(path)


async def test_retention_keeps_undelivered_events(project: Path) -> None:
    config = Config(store=StoreSettings(retention_events=100))
    async with Runtime(project, config=config) as rt:
        sink = recording("all")
        await rt.add_sink(sink)
        for i in range(300):
            await rt.emit("x", {"i": i})
        await rt.wait_idle()
        rt.delivery.advance_idle()
        await rt.flush()
        deleted = await rt.journal.call(
            lambda s: s.prune(keep_events=100, keep_audit=100, active_sinks=["all"])
        )
        assert deleted == 200
        remaining = await rt.events(limit=1000)
        assert [e.data["i"] for e in remaining] == list(range(200, 300))


async def test_retention_never_deletes_past_the_slowest_cursor(project: Path) -> None:
    async with Runtime(project) as rt:
        await rt.add_sink(recording("a"))
        for i in range(50):
            await rt.emit("x", {"i": i})
        await rt.wait_idle()
        await rt.flush()
        # A sink whose cursor is still at 10 holds everything after it.
        store = rt.store
        assert isinstance(store, Store)  # this test reaches into SQLite itself
        await rt.journal.call(lambda s: store.run("UPDATE cursors SET seq = 10 WHERE sink = 'a'"))
        deleted = await rt.journal.call(
            lambda s: s.prune(keep_events=1, keep_audit=100, active_sinks=["a"])
        )
        assert deleted == 10


def test_a_new_store_is_private_to_its_user(tmp_path: Path) -> None:
    """It holds webhook secrets (and the spaces' logs sit in its folder)."""
    path = tmp_path / ".knot" / "knot.db"
    store = Store(path)
    try:
        store.kv_put("sinks", "hook", {"secret": "s3cret"})
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        for name in ("knot.db", "knot.db-wal", "knot.db-shm", "knot.db.lock"):
            assert stat.S_IMODE((path.parent / name).stat().st_mode) == 0o600, name
    finally:
        store.close()
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    Store(shared / "k.db").close()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755  # an existing folder is left alone
